//! Failed logins counted in the store, for a vault shared by several daemons: each daemon's
//! memory sees only its own failures, so five wrong passwords spread over three daemons would
//! never reach a limit of five there.
//!
//! One record per merchant id that failed recently, `L` + merchant id (u64 BE), a postcard
//! record `{v: 1, failures: [unix seconds]}` (the most recent [`MAX_KEPT_FAILURES`], oldest
//! first). A login reads it before any hashing (one point read); a failure rewrites it in one
//! conditional write (compare-and-set on the bytes read, so failures counted by two daemons at
//! once are both kept: the commit that lost the race runs again on fresh reads). It holds no
//! secret and decides no access by itself (it can only refuse), so it carries no record MAC:
//! whoever can delete it can delete the vault's records anyway. Setting a merchant's password and
//! unlocking the merchant delete it; so does the sweep once every failure in it is older than the
//! window.

use vault_service::{Table, Txn, Update, Vault};

use super::*;
use crate::credentials::limits::{MAX_KEPT_FAILURES, window_len};

/// Failed logins by merchant id (`L` + merchant id).
pub(super) const FAILURES: Table<u64, FailuresRec> = Table::new(KeySpace::LoginFailures);
const FAILURES_VERSION: u8 = 1;

#[derive(Serialize, Deserialize, Default)]
pub(super) struct FailuresRec {
    v: u8,
    /// Unix seconds, oldest first.
    failures: Vec<i64>,
}

impl Versioned for FailuresRec {
    const VERSION: u8 = FAILURES_VERSION;
}

impl FailuresRec {
    /// Failures within the window ending at `now`.
    fn current(&self, now: OffsetDateTime, len: time::Duration) -> u32 {
        let now = now.unix_timestamp();
        let len = len.whole_seconds();
        let n = self
            .failures
            .iter()
            .filter(|&&at| at <= now && now.saturating_sub(at) < len)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The newest failure (unix seconds; `i64::MIN` for none).
    fn newest(&self) -> i64 {
        self.failures.iter().copied().max().unwrap_or(i64::MIN)
    }

    /// The record with a failure at `now` added and those out of the window dropped.
    fn with_failure(mut self, now: OffsetDateTime, len: time::Duration) -> Self {
        let now = now.unix_timestamp();
        let len = len.whole_seconds();
        self.v = FAILURES_VERSION;
        self.failures.retain(|&at| now.saturating_sub(at) < len);
        if self.failures.len() >= MAX_KEPT_FAILURES {
            let excess = self.failures.len() + 1 - MAX_KEPT_FAILURES;
            self.failures.drain(..excess);
        }
        self.failures.push(now);
        self
    }
}

/// Failures counted in the store for `merchant` within the policy's window.
pub(super) fn stored_failures(
    vault: &Vault,
    merchant: u64,
    now: OffsetDateTime,
    policy: &LoginPolicy,
) -> Result<u32, GatewayError> {
    Ok(vault
        .read_in(&FAILURES, &merchant)?
        .map_or(0, |r| r.current(now, window_len(policy))))
}

/// Counts a failed login of `merchant` at `now` in the store, durably, before returning.
pub(super) fn count_stored_failure(
    vault: &Vault,
    merchant: u64,
    now: OffsetDateTime,
    policy: &LoginPolicy,
) -> Result<(), GatewayError> {
    let len = window_len(policy);
    vault.transact(move |txn| -> Result<(), GatewayError> {
        txn.update(&FAILURES.key(&merchant), |read| {
            // A record that does not decode is replaced: it only ever counted failures.
            let rec = read
                .and_then(|b| FAILURES.decode(b).ok())
                .unwrap_or_default()
                .with_failure(now, len);
            Ok::<_, GatewayError>(Update::Put(FAILURES.encode(&rec), ()))
        })
    })
}

/// Forgets the failures counted for `merchant` (in the caller's job).
pub(super) fn clear_stored_failures(
    txn: &mut Txn<'_, '_>,
    merchant: u64,
) -> Result<(), VaultError> {
    txn.delete_in(&FAILURES, &merchant)
}

/// Removes the records whose every failure is out of the window at `now` (conditionally: a
/// failure counted meanwhile by another daemon keeps its record); returns how many.
pub(super) fn sweep(
    vault: &Vault,
    now: OffsetDateTime,
    policy: &LoginPolicy,
) -> Result<u64, VaultError> {
    let len = window_len(policy);
    let mut due = Vec::new();
    for (key, value) in vault.scan(&[KeySpace::LoginFailures.byte()], usize::MAX)? {
        let stale = FAILURES.decode(&value).map_or(true, |r| {
            r.current(now, len) == 0 && r.newest() <= now.unix_timestamp()
        });
        if stale {
            due.push((key, value));
        }
    }
    let mut removed = 0;
    for chunk in due.chunks(SWEEP_BATCH) {
        let chunk = chunk.to_vec();
        removed += vault.transact(move |txn| -> Result<u64, VaultError> {
            let mut n = 0;
            for (key, value) in &chunk {
                // A failure counted meanwhile changed the record: it stays.
                n += txn.update(key, |current| {
                    Ok::<_, VaultError>(match current {
                        Some(c) if c == value.as_slice() => Update::Delete(1),
                        _ => Update::Keep(0),
                    })
                })?;
            }
            Ok(n)
        })?;
    }
    Ok(removed)
}

/// Records removed per sweep commit.
const SWEEP_BATCH: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(t).expect("valid time")
    }

    #[test]
    fn counts_within_the_window_and_keeps_a_bounded_tail() {
        let len = time::Duration::seconds(100);
        let mut rec = FailuresRec::default();
        for t in [0, 10, 50] {
            rec = rec.with_failure(at(t), len);
        }
        assert_eq!(rec.current(at(50), len), 3);
        assert_eq!(rec.current(at(105), len), 2, "the failure at 0 slid out");
        // A failure after the window drops what slid out of it.
        let rec = rec.with_failure(at(200), len);
        assert_eq!(rec.failures, vec![200]);
        let mut rec = FailuresRec::default();
        for t in 0..(MAX_KEPT_FAILURES as i64 + 10) {
            rec = rec.with_failure(at(t), time::Duration::hours(1));
        }
        assert_eq!(rec.failures.len(), MAX_KEPT_FAILURES);
        assert_eq!(rec.failures.last(), Some(&(MAX_KEPT_FAILURES as i64 + 9)));
        // A clock that went back does not count failures "from the future" against it.
        assert_eq!(rec.current(at(-5), len), 0);
        let bytes = FAILURES.encode(&rec);
        assert_eq!(bytes[0], FAILURES_VERSION);
        assert_eq!(
            FAILURES.decode(&bytes).expect("decodes").failures,
            rec.failures
        );
    }
}
