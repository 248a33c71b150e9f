//! The store's own keys (the key header lives in its own file, see `header_file.rs`). Every
//! prefix byte of every layer is registered in [`KeySpace`](crate::KeySpace); one prefix byte
//! per kind keeps every kind in its own contiguous range while letting one group commit change
//! several kinds atomically.
//!
//! | prefix | key                                   | value                         |
//! |--------|---------------------------------------|-------------------------------|
//! | `V`    | `V`                                   | store format version, u16 BE  |
//! | `C`    | `C`                                   | live record count, u64 BE     |
//! | `G`    | `G`                                   | group commits made, u64 BE    |
//! | `R`    | `R` + lookup id (16)                  | [`StoredRecord`](crate::StoredRecord) |
//! | `E`    | reserved (an expiry index in early development; never written)  |       |
//! | `D`    | `D` + de-duplication key (16)         | token (24)                    |

/// Keyed 16-byte identifier under which a token's record is stored: HMAC of the token under a
/// vault secret (see `vault_core::LookupKey`). Keying the tree by it, not by the token, means a
/// B-tree search compares values the caller cannot choose, so lookup timing says nothing about
/// other tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(pub [u8; 16]);

/// Keyed 16-byte digest of (card fingerprint, customer): records that share it are the same card
/// for the same merchant and customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DedupeKey(pub [u8; 16]);

use crate::KeySpace;

pub(crate) const VERSION_KEY: &[u8] = &[KeySpace::Version.byte()];
pub(crate) const COUNT_KEY: &[u8] = &[KeySpace::Count.byte()];
/// Group commits made so far, u64 BE (see `generation.rs`).
pub(crate) const GENERATION_KEY: &[u8] = &[KeySpace::Generation.byte()];
pub(crate) const RECORD_PREFIX: u8 = KeySpace::Record.byte();
pub(crate) const DEDUPE_PREFIX: u8 = KeySpace::Dedupe.byte();

pub(crate) fn record_key(id: &LookupId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RECORD_PREFIX;
    k[1..].copy_from_slice(&id.0);
    k
}

pub(crate) fn dedupe_key(key: &DedupeKey) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = DEDUPE_PREFIX;
    k[1..].copy_from_slice(&key.0);
    k
}

pub(crate) fn lookup_from_record_key(k: &[u8]) -> Option<LookupId> {
    let tail: [u8; 16] = k.get(1..17)?.try_into().ok()?;
    Some(LookupId(tail))
}
