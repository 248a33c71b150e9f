//! Failure rate limits: failures counted in a sliding window per merchant id and per peer, in
//! this process's memory (a shared vault counts merchants' failures in the store instead:
//! `failures.rs`).

use super::*;

/// Failures counted in a sliding window, per merchant id and per peer. A success does not
/// clear a merchant's failures: only time (or an operator's [`Gateway::unlock_merchant`](crate::Gateway::unlock_merchant)) does.
#[derive(Default)]
pub(super) struct Limits {
    pub(super) merchants: HashMap<u64, Window>,
    pub(super) peers: HashMap<Option<u32>, Window>,
}

/// The most recent failures (at most [`MAX_KEPT_FAILURES`]), oldest first.
#[derive(Clone, Default)]
pub(super) struct Window {
    pub(super) failures: std::collections::VecDeque<OffsetDateTime>,
}

/// Failures remembered per id: more than any sane limit needs (a limit above it acts as this).
pub(super) const MAX_KEPT_FAILURES: usize = 256;

pub(super) fn window_len(policy: &LoginPolicy) -> time::Duration {
    time::Duration::try_from(policy.window).unwrap_or(time::Duration::MAX)
}

/// Failures of `key` within the last `len`.
pub(super) fn current<K: std::hash::Hash + Eq>(
    map: &HashMap<K, Window>,
    key: &K,
    now: OffsetDateTime,
    len: time::Duration,
) -> u32 {
    map.get(key).map_or(0, |w| {
        let n = w.failures.iter().filter(|at| now - **at < len).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    })
}

pub(super) fn count_failure<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Window>,
    key: K,
    now: OffsetDateTime,
    len: time::Duration,
) {
    if map.len() >= PRUNE_AT {
        map.retain(|_, w| w.failures.back().is_some_and(|at| now - *at < len));
    }
    let w = map.entry(key).or_default();
    while w.failures.front().is_some_and(|at| now - *at >= len) {
        w.failures.pop_front();
    }
    if w.failures.len() >= MAX_KEPT_FAILURES {
        w.failures.pop_front();
    }
    w.failures.push_back(now);
}

impl Limits {
    pub(super) fn check(
        &self,
        merchant: u64,
        peer: Option<u32>,
        now: OffsetDateTime,
        policy: &LoginPolicy,
    ) -> Result<(), GatewayError> {
        let len = window_len(policy);
        if current(&self.merchants, &merchant, now, len) >= policy.merchant_failures
            || current(&self.peers, &peer, now, len) >= policy.peer_failures
        {
            return Err(GatewayError::RateLimited);
        }
        Ok(())
    }

    /// [`check`](Self::check) of the peer alone (a shared vault counts merchants in the store).
    pub(super) fn check_peer(
        &self,
        peer: Option<u32>,
        now: OffsetDateTime,
        policy: &LoginPolicy,
    ) -> Result<(), GatewayError> {
        if current(&self.peers, &peer, now, window_len(policy)) >= policy.peer_failures {
            return Err(GatewayError::RateLimited);
        }
        Ok(())
    }

    /// [`fail`](Self::fail) of the peer alone.
    pub(super) fn fail_peer(&mut self, peer: Option<u32>, now: OffsetDateTime, p: &LoginPolicy) {
        count_failure(&mut self.peers, peer, now, window_len(p));
    }

    pub(super) fn fail(
        &mut self,
        merchant: u64,
        peer: Option<u32>,
        now: OffsetDateTime,
        p: &LoginPolicy,
    ) {
        let len = window_len(p);
        count_failure(&mut self.merchants, merchant, now, len);
        count_failure(&mut self.peers, peer, now, len);
    }
}
