//! Hashing slots: at most `max_concurrent_hashes` Argon2id verifications at once, at most
//! `max_waiting` callers queued for one.

use super::*;

/// A counting semaphore of hashing slots.
pub(super) struct Slots {
    pub(super) state: Mutex<SlotState>,
    pub(super) freed: Condvar,
}

pub(super) struct SlotState {
    pub(super) max: usize,
    pub(super) running: usize,
    pub(super) waiting: usize,
    pub(super) peak: usize,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            state: Mutex::new(SlotState {
                max: LoginPolicy::default().max_concurrent_hashes,
                running: 0,
                waiting: 0,
                peak: 0,
            }),
            freed: Condvar::new(),
        }
    }
}

/// A held hashing slot; released on drop.
pub(super) struct Slot<'a>(&'a Slots);

impl Slots {
    /// Takes a slot, waiting for one if all are taken. With `max_waiting`, a caller who would
    /// be past that many waiters is refused `Busy` instead.
    pub(super) fn acquire(&self, max_waiting: Option<usize>) -> Result<Slot<'_>, VaultError> {
        let mut s = self.state.lock();
        if s.running >= s.max {
            if max_waiting.is_some_and(|w| s.waiting >= w) {
                return Err(VaultError::Busy);
            }
            s.waiting += 1;
            while s.running >= s.max {
                self.freed.wait(&mut s);
            }
            s.waiting -= 1;
        }
        s.running += 1;
        s.peak = s.peak.max(s.running);
        Ok(Slot(self))
    }

    pub(super) fn resize(&self, max: usize) {
        self.state.lock().max = max;
        self.freed.notify_all();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().running -= 1;
        self.0.freed.notify_one();
    }
}
