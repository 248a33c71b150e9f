//! The reveal queue's drain (the queue itself is `audit/queue.rs`; see its docs).

use std::sync::{Arc, atomic::Ordering};

use parking_lot::Mutex;
use vault_store::StoreError;

use crate::{
    Vault, VaultError,
    audit::{Draft, RevealQueue, Waiter},
    vault::Core,
};

/// What one drain job took: answered once its group's outcome is known.
#[derive(Default)]
struct Taken {
    waiters: Vec<Waiter>,
    queued: usize,
}

impl Taken {
    fn finish(self, core: &Core, outcome: &Result<(), StoreError>) {
        core.audit_in_flight
            .fetch_sub(self.queued, Ordering::AcqRel);
        for w in self.waiters {
            w(outcome.clone().map_err(VaultError::Store));
        }
    }
}

/// Owned by a drain job: if the job is dropped unrun (the committer is gone), whatever is queued
/// is failed rather than left waiting for ever. That drop can happen inside `Store::submit`, while
/// the submitting thread holds the queue's lock, so the clean-up runs on a thread of its own.
struct DrainGuard {
    core: Arc<Core>,
    ran: bool,
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.ran {
            return;
        }
        let core = self.core.clone();
        let _ = std::thread::Builder::new()
            .name("cardvault-audit-fail".into())
            .spawn(move || {
                let (_, taken) = core.reveal_queue.take();
                taken.finish(&core, &Err(StoreError::Closed));
            });
    }
}

impl RevealQueue {
    /// Takes every queued draft and clears `scheduled`: the next draft schedules a new drain.
    fn take(&self) -> (Vec<Draft>, Taken) {
        let mut p = self.0.lock();
        p.scheduled = false;
        let taken = Taken {
            waiters: std::mem::take(&mut p.waiters),
            queued: std::mem::take(&mut p.queued),
        };
        (std::mem::take(&mut p.drafts), taken)
    }
}

impl Vault {
    /// Queues a reveal's entry for the next group commit. With `waiter`, it is told once the
    /// entry is durable (or failed); without, the entry holds one of the `MAX_QUEUED_AUDIT` slots,
    /// which the caller has already taken, until its group is durable.
    pub(crate) fn queue_reveal_entry(&self, draft: Draft, waiter: Option<Waiter>) {
        let core = &self.inner.core;
        let mut p = core.reveal_queue.0.lock();
        p.drafts.push(draft);
        match waiter {
            Some(w) => p.waiters.push(w),
            None => p.queued += 1,
        }
        if p.scheduled {
            return;
        }
        p.scheduled = true;
        // Submitted under the lock: no draft can be queued behind `scheduled` before the job that
        // drains it is in the channel. Exempt from the store's queue bound: at most one drain job
        // is queued at a time, and each waiting reveal holds its caller (its memory is bounded by
        // the callers, as for blocking writes).
        let taken = Arc::new(Mutex::new(Taken::default()));
        let done_taken = taken.clone();
        let done_core = core.clone();
        let mut guard = DrainGuard {
            core: core.clone(),
            ran: false,
        };
        // What the first run took. A group that another writer of a shared database raced runs
        // again (every job anew): the run again appends the same drafts, and answers the same
        // waiters, rather than taking the queue a second time (which would drop both).
        let mut drafts: Option<Vec<Draft>> = None;
        self.inner.store.submit_exempt(
            move |tx| {
                guard.ran = true;
                let drafts = drafts.get_or_insert_with(|| {
                    let (drafts, t) = guard.core.reveal_queue.take();
                    *taken.lock() = t;
                    drafts
                });
                guard.core.append_audits(tx, drafts).map_err(|e| match e {
                    VaultError::Store(s) => s,
                    _ => StoreError::Corrupt(vault_store::Structure::Value(
                        vault_store::KeySpace::AuditEntry,
                    )),
                })
            },
            move |outcome: Result<(), StoreError>| {
                std::mem::take(&mut *done_taken.lock()).finish(&done_core, &outcome);
            },
        );
    }

    /// Queues a reveal's entry and blocks until it is durable.
    pub(crate) fn log_reveal_durably(&self, draft: Draft) -> Result<(), VaultError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.queue_reveal_entry(
            draft,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.recv()
            .unwrap_or(Err(VaultError::Store(StoreError::Closed)))
    }
}
