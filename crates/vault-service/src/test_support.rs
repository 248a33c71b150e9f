//! What the crate's own unit tests share: vault options for a test and a key.

use std::sync::Arc;

use time::macros::datetime;
use vault_core::{KdfParams, KeySource, SecretKey};
use vault_store::Durability;

use crate::{ManualClock, VaultOptions};

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
