//! Store records with random contents, for the bare-store floor of the benchmarks.

use rand::Rng;
use vault_store::{DedupeKey, LookupId, StoredRecord};

/// A stored record of `merchant` with random token, lookup id, de-duplication key and sealed
/// bytes of `sealed_len` (as tokenize writes them, without the cryptography).
pub fn random_record(
    rng: &mut impl Rng,
    merchant: u64,
    sealed_len: usize,
    now: i64,
    keep_until: i64,
) -> (LookupId, StoredRecord) {
    let mut token = [0u8; 24];
    let mut id = [0u8; 16];
    let mut dedupe = [0u8; 16];
    let mut sealed = vec![0u8; sealed_len];
    rng.fill_bytes(&mut token);
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut dedupe);
    rng.fill_bytes(&mut sealed);
    let record = StoredRecord {
        merchant,
        token,
        created_at: now,
        updated_at: now,
        keep_until,
        dedupe: DedupeKey(dedupe),
        dedupe_indexed: false,
        customer: None,
        sealed,
    };
    (LookupId(id), record)
}
