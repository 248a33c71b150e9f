//! Connecting to a daemon's socket, with an error that says what to check.

use std::path::Path;

use vault_client::{ApiKey, Client, ClientError};

/// Connects to the daemon at `socket`. A failed connection says the daemon may not be running.
pub(crate) async fn connect(socket: &Path, key: Option<&ApiKey>) -> anyhow::Result<Client> {
    Client::connect(socket, key)
        .await
        .map_err(|e| match e {
            ClientError::Connect(io) => anyhow::anyhow!(
                "cannot connect to the daemon at {}: {io}; is the daemon running? (start it with `cardvault serve`, or name its socket with --socket)",
                socket.display()
            ),
            other => anyhow::Error::new(other)
                .context(format!("daemon socket {}", socket.display())),
        })
}
