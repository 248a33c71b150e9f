//! The key space of the single sled tree. (The key header lives in its own file, see
//! `header_file.rs`.)
//!
//! The key space of the single sled tree. One prefix byte per kind keeps every kind in its own
//! contiguous range while letting one `apply_batch` change several kinds atomically.
//!
//! | prefix | key                                   | value                         |
//! |--------|---------------------------------------|-------------------------------|
//! | `V`    | `V`                                   | store format version, u16 BE  |
//! | `C`    | `C`                                   | live record count, u64 BE     |
//! | `R`    | `R` + lookup id (16)                  | [`StoredRecord`](crate::StoredRecord) |
//! | `E`    | `E` + keep_until (u64 BE, sign-flipped i64) + lookup id (16) | empty |
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

pub(crate) const VERSION_KEY: &[u8] = b"V";
pub(crate) const COUNT_KEY: &[u8] = b"C";
pub(crate) const RECORD_PREFIX: u8 = b'R';
pub(crate) const EXPIRY_PREFIX: u8 = b'E';
pub(crate) const DEDUPE_PREFIX: u8 = b'D';

pub(crate) fn record_key(id: &LookupId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RECORD_PREFIX;
    k[1..].copy_from_slice(&id.0);
    k
}

pub(crate) fn expiry_key(keep_until: i64, id: &LookupId) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = EXPIRY_PREFIX;
    k[1..9].copy_from_slice(&order_preserving(keep_until).to_be_bytes());
    k[9..].copy_from_slice(&id.0);
    k
}

/// Upper bound (exclusive) of expiry keys with `keep_until <= at`.
pub(crate) fn expiry_upper_bound(at: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EXPIRY_PREFIX;
    // keys for `at` itself sort below `at + 1`.
    k[1..9].copy_from_slice(&order_preserving(at.saturating_add(1)).to_be_bytes());
    k
}

pub(crate) fn dedupe_key(key: &DedupeKey) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = DEDUPE_PREFIX;
    k[1..].copy_from_slice(&key.0);
    k
}

/// Maps i64 to u64 so that big-endian byte order equals numeric order.
fn order_preserving(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

pub(crate) fn lookup_from_expiry_key(k: &[u8]) -> Option<LookupId> {
    let tail: [u8; 16] = k.get(9..25)?.try_into().ok()?;
    Some(LookupId(tail))
}

pub(crate) fn lookup_from_record_key(k: &[u8]) -> Option<LookupId> {
    let tail: [u8; 16] = k.get(1..17)?.try_into().ok()?;
    Some(LookupId(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time() {
        let id = LookupId([7; 16]);
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(
                expiry_key(w[0], &id) < expiry_key(w[1], &id),
                "{} !< {}",
                w[0],
                w[1]
            );
        }
        assert!(
            expiry_key(10, &LookupId([0xff; 16])).as_slice() < expiry_upper_bound(10).as_slice()
        );
        assert!(expiry_key(11, &LookupId([0; 16])).as_slice() >= expiry_upper_bound(10).as_slice());
    }
}
