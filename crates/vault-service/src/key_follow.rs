//! Following key changes made by another process on a shared vault (several daemons on one
//! PostgreSQL database).
//!
//! Each process holds the key header and its unwrapped keyring in memory. When one daemon
//! rotates, retires or rewraps, the others pick the new header up:
//!
//! - **at once when they need it**: a record sealed under a data key this process has not loaded,
//!   or one under the current key's id that does not open with the key it holds by that id,
//!   makes it re-read the header and retry (not an error, unless the record was altered);
//! - **within [`KEY_FOLLOW_INTERVAL`] otherwise**: a thread of each process re-reads the stored
//!   header that often (one point read; never on a request's path), so a daemon stops sealing
//!   under a key another daemon replaced as "current" within that bound;
//! - **before changing keys itself**: a key change starts from the stored header and replaces it
//!   only if it is still that header (`WriteTx::replace_header`), so two daemons rotating at once
//!   never drop each other's data keys. Both make a key with the same next id, and the one that
//!   loses the race to the header runs again and makes the next: it commits in a group of its
//!   own (`Store::submit_alone`), so no job of its group runs again on the key that lost, and a
//!   card sealed under that key on a caller's thread meanwhile is sealed again at commit (the
//!   key's stamp, id and material, is not the current one: `Keyring::current_stamp`).
//!
//! A header re-keyed by another daemon under a new passphrase or key file cannot be followed
//! with the key-encryption key this process holds: it keeps serving with the data keys it has,
//! and logs nothing secret; restart it with the new key (docs/operations.md).

use std::time::Duration;

use vault_core::{KeyHeader, Keyring};

use crate::{
    VaultError,
    vault::{Core, Inner},
};

/// How stale a shared vault's in-memory keys may get: a thread of each process re-reads the
/// stored key header this often.
pub const KEY_FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Makes `header` and `keyring` the ones `stored` encodes, when it differs (unwrapping with the
/// key-encryption key `keyring` already holds). Returns whether anything changed.
pub(crate) fn follow(
    stored: &[u8],
    header: &mut KeyHeader,
    keyring: &mut Keyring,
) -> Result<bool, VaultError> {
    if stored == header.encode().as_slice() {
        return Ok(false);
    }
    let newer = KeyHeader::decode(stored)?;
    let unlocked = newer.unlock_with(keyring)?;
    *header = newer;
    *keyring = unlocked;
    Ok(true)
}

impl Inner {
    /// Re-reads the stored header and follows it (see the module docs). A no-op on a vault
    /// this process owns alone.
    pub(crate) fn follow_keys(&self) -> Result<bool, VaultError> {
        if !self.store.shared() {
            return Ok(false);
        }
        self.core.follow_stored(&self.store.header()?)
    }

    /// Starts the thread that follows the stored key header of a shared vault every
    /// [`KEY_FOLLOW_INTERVAL`], and writes the queued entries correcting guarded reveals
    /// (`audit_log/corrections.rs`) as often (none for a vault this process owns alone). It
    /// holds only a weak reference: it ends within one interval after the vault is dropped.
    /// Request paths never wait on this read (a slow database must not stall them).
    pub(crate) fn start_key_follower(inner: &std::sync::Arc<Self>) {
        if !inner.store.shared() {
            return;
        }
        let weak = std::sync::Arc::downgrade(inner);
        let spawned = std::thread::Builder::new()
            .name("cardvault-keys".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(KEY_FOLLOW_INTERVAL);
                    let Some(inner) = weak.upgrade() else { return };
                    // A failure (the database unreachable) is retried at the next interval;
                    // a record under an unknown key makes its reader follow at once anyway.
                    let _ = inner.follow_keys();
                    // Likewise the entries correcting guarded reveals whose card did not open.
                    let _ = inner.write_corrections();
                }
            });
        // Without the thread, keys are still followed when a record needs it, and before
        // every key change: only the "stop sealing under a retired current key" bound is lost.
        drop(spawned);
    }
}

impl Core {
    /// Follows `stored`, the key header as read from the store (by the caller: through the
    /// store, or inside a write job through its transaction). Returns whether anything changed.
    pub(crate) fn follow_stored(&self, stored: &[u8]) -> Result<bool, VaultError> {
        if stored == self.header.lock().encode().as_slice() {
            return Ok(false);
        }
        // The same lock order as a key change on the committer thread: keyring, then header.
        let mut keyring = self.keyring.write();
        let mut header = self.header.lock();
        follow(stored, &mut header, &mut keyring)
    }
}

#[cfg(test)]
mod tests;
