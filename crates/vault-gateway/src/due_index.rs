//! Time-ordered removal indexes for short-lived records (sessions, payments): beside each record,
//! an empty entry `prefix || due time (8 bytes, big-endian) || record key`, so a sweep reads only
//! what is due, oldest first, instead of every record.

use time::OffsetDateTime;

use vault_service::{Vault, VaultError};

/// Index entries removed per commit.
const BATCH: usize = 1000;

/// The index entry for `record_key`, due at `due` (unix seconds; negative times sort as 0).
pub(crate) fn entry(prefix: u8, due: i64, record_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + record_key.len());
    k.push(prefix);
    k.extend_from_slice(&u64::try_from(due).unwrap_or(0).to_be_bytes());
    k.extend_from_slice(record_key);
    k
}

fn due_time(entry: &[u8]) -> Option<i64> {
    let t: [u8; 8] = entry.get(1..9)?.try_into().ok()?;
    i64::try_from(u64::from_be_bytes(t)).ok()
}

/// Removes every index entry under `prefix` due at or before `now`, and the record each names.
/// Returns how many records were removed. A malformed entry is removed on its own.
pub(crate) fn sweep_due(vault: &Vault, prefix: u8, now: OffsetDateTime) -> Result<u64, VaultError> {
    {
        let now = now.unix_timestamp();
        let mut removed = 0;
        loop {
            let batch = vault.scan(&[prefix], BATCH)?;
            let full = batch.len() == BATCH;
            let due: Vec<Vec<u8>> = batch
                .into_iter()
                .map(|(k, _)| k)
                .take_while(|k| due_time(k).is_none_or(|t| t <= now))
                .collect();
            if due.is_empty() {
                return Ok(removed);
            }
            let all_due = due.len() == BATCH;
            removed += vault.transact(move |tx| -> Result<u64, VaultError> {
                let mut n = 0;
                for entry in due.clone() {
                    tx.delete(&entry)?;
                    if let Some(record) = entry.get(9..).filter(|r| !r.is_empty()) {
                        tx.delete(record)?;
                        n += 1;
                    }
                }
                Ok(n)
            })?;
            if !(full && all_due) {
                return Ok(removed);
            }
        }
    }
}
