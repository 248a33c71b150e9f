//! Following key changes made by another process on a shared vault (several daemons on one
//! PostgreSQL database).
//!
//! Each process holds the key header and its unwrapped keyring in memory. When one daemon
//! rotates, retires or rewraps, the others pick the new header up:
//!
//! - **at once when they need it**: a record sealed under a data key this process has not loaded
//!   makes it re-read the header and retry (never an error);
//! - **within [`KEY_FOLLOW_INTERVAL`] otherwise**: reads and tokenizes re-read the stored header
//!   when the last check is older than that (one point read), so a daemon stops sealing under a
//!   key another daemon retired from "current" within that bound;
//! - **before changing keys itself**: a key change starts from the stored header and replaces it
//!   only if it is still that header (`WriteTx::replace_header`), so two daemons rotating at once
//!   never drop each other's data keys.
//!
//! A header re-keyed by another daemon under a new passphrase or key file cannot be followed
//! with the key-encryption key this process holds: it keeps serving with the data keys it has,
//! and logs nothing secret; restart it with the new key (docs/operations.md).

use vault_core::{KeyHeader, Keyring};

use crate::{VaultError, vault::Inner};

#[cfg(doc)]
use crate::KEY_FOLLOW_INTERVAL;

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
        let stored = self.store.header()?;
        if stored == self.header.lock().encode().as_slice() {
            return Ok(false);
        }
        // The same lock order as a key change on the committer thread: keyring, then header.
        let mut keyring = self.keyring.write();
        let mut header = self.header.lock();
        follow(&stored, &mut header, &mut keyring)
    }

    /// [`follow_keys`](Self::follow_keys) when the last check is older than
    /// [`KEY_FOLLOW_INTERVAL`]. A failure to read the header is left to the operation itself
    /// (it reads the same database).
    pub(crate) fn follow_keys_if_due(&self) {
        if self.store.shared() && self.key_check.due() {
            let _ = self.follow_keys();
        }
    }
}
