//! Audit entries for refusals that cost the caller nothing (bad API keys, rate-limited logins)
//! are aggregated: at most one entry per key (a socket peer, a claimed merchant id) per minute,
//! so a flood cannot grow the append-only log at request rate. The refusals not recorded are
//! counted, and the next entry for that key carries the count (`count=N`: the refusals it stands
//! for, itself included); counts still pending when their minute is over are written by
//! [`Vault::flush_audit_counts`] (the daemon calls it every minute).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::{Actor, AuditAction, AuditOutcome, Vault};

/// Seconds between two entries for one key.
pub(crate) const AUDIT_EVERY: i64 = 60;
/// Keys tracked at once; past that (thousands of keys refused within a minute), new keys are
/// not recorded rather than grow the map.
const MAX_KEYS: usize = 4096;

/// What to do with one refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Write an entry standing for `count` refusals (this one included).
    Record { count: u64 },
    /// Counted; a later entry carries it.
    Counted,
    /// Too many keys at once: neither recorded nor counted.
    Dropped,
}

struct Window {
    /// When the last entry for the key was written (unix seconds).
    recorded_at: i64,
    /// Refusals since, not yet in an entry.
    pending: u64,
    /// What to write in a flushed entry: who, what, why refused.
    actor: Actor,
    action: AuditAction,
    outcome: AuditOutcome,
}

/// Per-key windows of one kind of refusal (see the module docs): the vault keeps its own, and a
/// layer above keeps one per kind of refusal it aggregates ([`Vault::audit_throttled`]).
#[derive(Default)]
pub struct AuditThrottle {
    windows: Mutex<HashMap<u64, Window>>,
}

impl AuditThrottle {
    /// Decides for one refusal by `actor` under `key` at `now` (unix seconds).
    fn admit(
        &self,
        key: u64,
        now: i64,
        actor: &Actor,
        action: AuditAction,
        outcome: &AuditOutcome,
    ) -> Admit {
        let mut windows = self.windows.lock();
        if windows.len() >= MAX_KEYS && !windows.contains_key(&key) {
            windows.retain(|_, w| now - w.recorded_at < AUDIT_EVERY || w.pending > 0);
            if windows.len() >= MAX_KEYS {
                return Admit::Dropped;
            }
        }
        match windows.get_mut(&key) {
            Some(w) if now - w.recorded_at < AUDIT_EVERY => {
                w.pending += 1;
                Admit::Counted
            }
            Some(w) => {
                let count = w.pending + 1;
                w.recorded_at = now;
                w.pending = 0;
                Admit::Record { count }
            }
            None => {
                windows.insert(
                    key,
                    Window {
                        recorded_at: now,
                        pending: 0,
                        actor: actor.clone(),
                        action,
                        outcome: outcome.clone(),
                    },
                );
                Admit::Record { count: 1 }
            }
        }
    }

    /// Takes the counts of windows that are over: (actor, action, outcome, count), and forgets
    /// windows over with nothing pending.
    fn take_due(&self, now: i64) -> Vec<(Actor, AuditAction, AuditOutcome, u64)> {
        let mut due = Vec::new();
        self.windows.lock().retain(|_, w| {
            if now - w.recorded_at < AUDIT_EVERY {
                return true;
            }
            if w.pending > 0 {
                due.push((w.actor.clone(), w.action, w.outcome.clone(), w.pending));
            }
            false
        });
        due
    }
}

/// The `detail` of an aggregated entry.
pub(crate) fn count_detail(count: u64) -> String {
    format!("count={count}")
}

impl Vault {
    /// Records a refusal that cost the caller nothing (by this handle's actor), through
    /// `throttle` under `key` (at most one entry per key per minute, carrying the count). Not
    /// waited for. Counts still pending in `throttle` are written by
    /// [`flush_audit_counts_of`](Self::flush_audit_counts_of).
    pub fn audit_throttled(
        &self,
        throttle: &AuditThrottle,
        key: u64,
        action: AuditAction,
        outcome: AuditOutcome,
    ) {
        self.record_throttled(throttle, key, self.actor(), action, outcome);
    }

    /// Writes the counts of `throttle`'s aggregated refusals whose minute is over (and the
    /// vault's own, as [`flush_audit_counts`](Self::flush_audit_counts) does).
    pub fn flush_audit_counts_of(&self, throttle: &AuditThrottle) {
        let now = self.now().unix_timestamp();
        self.flush_audit_counts_at(now);
        self.flush_throttles(&[throttle], now);
    }

    fn record_throttled(
        &self,
        throttle: &AuditThrottle,
        key: u64,
        actor: &Actor,
        action: AuditAction,
        outcome: AuditOutcome,
    ) {
        let now = self.now().unix_timestamp();
        if let Admit::Record { count } = throttle.admit(key, now, actor, action, &outcome) {
            self.record_then(
                actor,
                action,
                None,
                Some(count_detail(count)),
                outcome,
                |_| {},
            );
            self.flush_audit_counts_at(now);
            if !std::ptr::eq(throttle, &self.inner.auth_failures) {
                self.flush_throttles(&[throttle], now);
            }
        }
    }

    /// Records a failed API-key authentication by `actor`, aggregated per socket peer per minute
    /// (see the module documentation). Not waited for.
    pub(crate) fn record_auth_failure(&self, actor: &Actor, outcome: AuditOutcome) {
        let key = actor.peer_uid.map_or(u64::MAX, u64::from);
        self.record_throttled(
            &self.inner.auth_failures,
            key,
            actor,
            AuditAction::AuthFailed,
            outcome,
        );
    }

    /// Writes the counts of aggregated refusals whose minute is over (one entry per key, with
    /// `count=N`). The daemon calls this every minute; harmless to call at any time.
    pub fn flush_audit_counts(&self) {
        self.flush_audit_counts_at(self.now().unix_timestamp());
    }

    fn flush_audit_counts_at(&self, now: i64) {
        self.flush_throttles(&[&self.inner.auth_failures], now);
    }

    fn flush_throttles(&self, throttles: &[&AuditThrottle], now: i64) {
        let due = throttles.iter().flat_map(|t| t.take_due(now));
        for (actor, action, outcome, count) in due {
            self.record_then(
                &actor,
                action,
                None,
                Some(count_detail(count)),
                outcome,
                |_| {},
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_key_per_minute_with_the_count() {
        let t = AuditThrottle::default();
        let (a, o) = (Actor::local(), AuditOutcome::Denied("unauthorized".into()));
        let f = AuditAction::AuthFailed;
        assert_eq!(t.admit(1, 100, &a, f, &o), Admit::Record { count: 1 });
        for _ in 0..999 {
            assert_eq!(t.admit(1, 130, &a, f, &o), Admit::Counted);
        }
        assert_eq!(t.admit(2, 130, &a, f, &o), Admit::Record { count: 1 });
        assert!(t.take_due(159).is_empty());
        assert_eq!(t.admit(1, 160, &a, f, &o), Admit::Record { count: 1000 });
        t.admit(1, 170, &a, f, &o);
        let due = t.take_due(220);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].3, 1);
        assert!(t.take_due(1000).is_empty());
    }
}
