//! What the crate's own unit tests share: vault options for a test, a key, and the in-memory
//! keys of a vault as a key change leaves them before its header is stored.

use std::sync::Arc;

use time::macros::datetime;
use vault_core::{DekId, KdfParams, KeyHeader, KeySource, Keyring, SecretKey};
use vault_store::Durability;

use crate::{ManualClock, VaultOptions, vault::Core};

/// Flushed on every group, a fast KDF, a manual clock at 2026-12-07 12:00 UTC.
pub(crate) fn options() -> VaultOptions {
    VaultOptions {
        durability: Durability::Flush,
        kdf: KdfParams::insecure_for_tests(),
        clock: Arc::new(ManualClock::new(datetime!(2026-12-07 12:00:00 UTC))),
        cache_capacity: 1024 * 1024,
    }
}

/// A key-file key.
pub(crate) fn key() -> KeySource {
    KeySource::KeyFile(SecretKey::from_bytes([9; 32]))
}

/// A copy of the header and keyring `core` holds, to put back with [`put_keys_back`].
pub(crate) fn held_keys(core: &Core) -> (KeyHeader, Keyring) {
    (core.header.lock().clone(), core.keyring.read().duplicate())
}

/// Makes `keys` the ones `core` holds (the lock order of a key change: keyring, then header).
pub(crate) fn put_keys_back(core: &Core, (header, keyring): (KeyHeader, Keyring)) {
    let mut held = core.keyring.write();
    *core.header.lock() = header;
    *held = keyring;
}

/// Makes `from` the keys `core` holds and then a new key current, in memory only, as a
/// rotation does before its header is stored (one lock scope: a key follower cannot step in);
/// returns its id.
pub(crate) fn make_key_in_memory(core: &Core, (header, keyring): (KeyHeader, Keyring)) -> DekId {
    let mut held = core.keyring.write();
    let mut held_header = core.header.lock();
    (*held_header, *held) = (header, keyring);
    let now = core.clock.now();
    held_header.rotate(&mut held, &mut crate::os_rng::os_rng(), now)
}
