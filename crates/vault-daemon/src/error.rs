//! The daemon's own failures (binding, serving, flushing), as opposed to per-request errors,
//! which are HTTP responses (see `response.rs`).

use std::{fmt, io, net::SocketAddr, path::PathBuf};

use vault_service::VaultError;

/// Why the daemon could not start or stop cleanly.
#[derive(Debug)]
#[non_exhaustive]
pub enum DaemonError {
    /// A socket operation failed.
    Io(io::Error),
    /// The socket path is unsafe: its directory is writable by others, not ours, or the path is
    /// taken by something that is not a socket.
    InsecureSocketPath {
        /// The path refused.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// Another daemon answers on this socket.
    SocketInUse(PathBuf),
    /// TCP listening is for loopback addresses only.
    NotLoopback(SocketAddr),
    /// The final flush of the vault failed.
    Vault(VaultError),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket error: {e}"),
            Self::InsecureSocketPath { path, reason } => {
                write!(f, "refusing socket path {}: {reason}", path.display())
            }
            Self::SocketInUse(path) => {
                write!(f, "another daemon is listening on {}", path.display())
            }
            Self::NotLoopback(addr) => write!(f, "refusing to listen on non-loopback {addr}"),
            Self::Vault(e) => write!(f, "vault error: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Vault(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for DaemonError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<VaultError> for DaemonError {
    fn from(e: VaultError) -> Self {
        Self::Vault(e)
    }
}
