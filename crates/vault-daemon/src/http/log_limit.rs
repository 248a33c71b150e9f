//! Warnings that an outage would repeat on every request (the database unavailable), written at
//! most once per [`INTERVAL`]: under load, a database that is down for a minute would otherwise
//! write a warning per refused request (tens of thousands a second). Each line that is written
//! says how many were left out since the last one.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// The least time between two lines of one kind.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// One kind of repeated warning.
pub(crate) struct LogLimit {
    /// When the last line was written, and how many were left out since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    pub(crate) const fn new() -> Self {
        Self {
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether to write the line now: `Some(left out since the last line)`, or `None` (counted).
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        // A poisoned lock still holds a usable count: a panic elsewhere must not stop logging.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, left_out) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < INTERVAL => {
                *left_out += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(left_out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{INTERVAL, LogLimit};

    #[test]
    fn one_line_per_interval_counting_what_was_left_out() {
        let limit = LogLimit::new();
        let t0 = Instant::now();
        assert_eq!(limit.admit_at(t0), Some(0));
        for i in 1..=500u32 {
            assert_eq!(
                limit.admit_at(t0 + Duration::from_micros(u64::from(i))),
                None
            );
        }
        assert_eq!(
            limit.admit_at(t0 + INTERVAL - Duration::from_millis(1)),
            None
        );
        assert_eq!(limit.admit_at(t0 + INTERVAL), Some(501));
        assert_eq!(
            limit.admit_at(t0 + INTERVAL + Duration::from_millis(1)),
            None
        );
        assert_eq!(limit.admit_at(t0 + 3 * INTERVAL), Some(1));
        assert_eq!(limit.admit_at(t0 + 4 * INTERVAL), Some(0));
    }
}
