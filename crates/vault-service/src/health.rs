//! Whether the vault can serve: [`Vault::health`], what the daemon's `/health` reports.

use vault_store::{Location, StoreError, Unavailable};

use crate::Vault;

/// What [`Vault::health`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// The vault serves.
    Ok,
    /// The store has hit a fatal write error (disk full, I/O error): sled 0.34 then refuses
    /// every operation until the vault is reopened, so the process should be restarted.
    /// Everything acknowledged before the failure is intact.
    Failed,
    /// The vault's database cannot be reached now (see [`StoreError::Unavailable`]); the engine
    /// reconnects by itself, and the vault serves again once the server answers.
    Unavailable(Unavailable),
}

impl Vault {
    /// Whether the vault can serve. A directory vault is [`Health::Failed`] once its store has
    /// failed, else [`Health::Ok`], without any I/O. A database vault also reads one key (a round
    /// trip to the server, bounded by the engine's time limits): [`Health::Unavailable`] when
    /// the server cannot be reached or does not answer in time. Blocking: call it off an async
    /// runtime's worker threads.
    pub fn health(&self) -> Health {
        if self.inner.store.has_failed() {
            return Health::Failed;
        }
        if let Location::Database(_) = self.inner.location {
            // Any other error is a request's to report (it answers with it); liveness is about
            // reaching the server.
            if let Err(StoreError::Unavailable(why)) = self.inner.store.generation() {
                return Health::Unavailable(why);
            }
        }
        Health::Ok
    }
}
