//! Connecting to a daemon's socket, with an error that says what to check.

use std::path::Path;

use vault_client::{ApiKey, Client, ClientError};

/// Connects to the daemon at `socket`. A failed connection says the daemon may not be running.
pub(crate) async fn connect(socket: &Path, key: Option<&ApiKey>) -> anyhow::Result<Client> {
    Client::connect(socket, key)
        .await
        .map_err(|e| match e {
            // The socket or its directory is not open to this user: the daemon runs, as another.
            ClientError::Connect(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                anyhow::anyhow!(
                    "cannot connect to the daemon at {}: {io}: the socket (or its directory) is not \
                     open to this user; run as the daemon's user or root, or start the daemon with \
                     `serve --allow-uid UID` / `--allow-gid GID` and give this user access to the \
                     socket's directory (docs/operations.md, \"Under systemd\")",
                    socket.display()
                )
            }
            ClientError::Connect(io) => anyhow::anyhow!(
                "cannot connect to the daemon at {}: {io}; is the daemon running? (start it with `cardvault serve`, or name its socket with --socket)",
                socket.display()
            ),
            other => anyhow::Error::new(other)
                .context(format!("daemon socket {}", socket.display())),
        })
}
