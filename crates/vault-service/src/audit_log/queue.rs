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

/// Owned by a job that answers queued callers (the reveal audit drain, the reveals read in their
/// group): if the job is dropped unrun (the committer is gone), `fail` answers whatever is queued
/// rather than leaving it waiting for ever. That drop can happen inside `Store::submit`, while the
/// submitting thread holds the queue's lock, so `fail` runs on a thread of its own.
pub(crate) struct FailUnrun {
    fail: Option<Box<dyn FnOnce() + Send>>,
}

impl FailUnrun {
    pub(crate) fn new(fail: impl FnOnce() + Send + 'static) -> Self {
        Self {
            fail: Some(Box::new(fail)),
        }
    }

    /// The job ran: nothing to fail.
    pub(crate) fn ran(&mut self) {
        self.fail = None;
    }
}

impl Drop for FailUnrun {
    fn drop(&mut self) {
        if let Some(fail) = self.fail.take() {
            let _ = std::thread::Builder::new()
                .name("cardvault-queue-fail".into())
                .spawn(fail);
        }
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
        let (job_core, done_core, fail_core) = (core.clone(), core.clone(), core.clone());
        let mut guard = FailUnrun::new(move || {
            let (_, taken) = fail_core.reveal_queue.take();
            taken.finish(&fail_core, &Err(StoreError::Closed));
        });
        // What the first run took. A group that another writer of a shared database raced runs
        // again (every job anew): the run again appends the same drafts, and answers the same
        // waiters, rather than taking the queue a second time (which would drop both).
        let mut drafts: Option<Vec<Draft>> = None;
        self.inner.store.submit_exempt(
            move |tx| {
                guard.ran();
                let drafts = drafts.get_or_insert_with(|| {
                    let (drafts, t) = job_core.reveal_queue.take();
                    *taken.lock() = t;
                    drafts
                });
                job_core.append_audits(tx, drafts).map_err(|e| match e {
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
