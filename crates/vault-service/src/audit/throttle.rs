//! Audit entries for refusals that cost the caller nothing (bad API keys, rate-limited logins)
//! are aggregated: at most one entry per key (a socket peer, a claimed merchant id) per minute,
//! so a flood cannot grow the append-only log at request rate. The refusals not recorded are
//! counted, and the next entry for that key carries the count (`count=N`: the refusals it stands
//! for, itself included); counts still pending when their minute is over are written by
//! [`Vault::flush_audit_counts`] (the daemon calls it every minute).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::{Actor, AuditAction, AuditOutcome};

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
/// layer above keeps one per kind of refusal it aggregates ([`Vault::audit_throttled`](crate::Vault::audit_throttled)).
#[derive(Default)]
pub struct AuditThrottle {
    windows: Mutex<HashMap<u64, Window>>,
}

impl AuditThrottle {
    /// Decides for one refusal by `actor` under `key` at `now` (unix seconds).
    pub(crate) fn admit(
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
    pub(crate) fn take_due(&self, now: i64) -> Vec<(Actor, AuditAction, AuditOutcome, u64)> {
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
