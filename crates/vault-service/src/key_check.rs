//! When this process last compared its key header with the stored one (a leaf below `vault`:
//! the state; the operations are `key_follow.rs`'s).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// How stale a shared vault's in-memory keys may get before a read or tokenize re-reads the
/// stored header.
pub const KEY_FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// When this process last compared its header with the stored one (milliseconds since
/// `started`).
#[derive(Debug)]
pub(crate) struct KeyCheck {
    started: Instant,
    last_ms: AtomicU64,
}

impl Default for KeyCheck {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl KeyCheck {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Claims the next check if one is due (only one caller per interval gets `true`).
    pub(crate) fn due(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(KEY_FOLLOW_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(last) >= interval
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }
}
