//! Throttled refusals: at most one audit entry per key per minute, carrying the count (the
//! throttle itself is `audit/throttle.rs`).

use crate::{
    Actor, AuditAction, AuditOutcome, AuditThrottle, Vault,
    audit::{Admit, count_detail},
};

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
