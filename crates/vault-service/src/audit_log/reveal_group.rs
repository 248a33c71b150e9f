//! Reveals on a vault shared with other daemons (PostgreSQL): the record is read in the group
//! commit that carries the reveal's audit entry.
//!
//! Elsewhere a reveal reads its record first (coalesced with concurrent reads), then queues its
//! audit entry for the next group commit (`queue.rs`), and the card goes back once that group is
//! durable: two stages, each a round trip to the database and a wait for the batch in flight. On
//! a shared vault in the default `RevealAudit::Durable` mode the two are one: the reveal queues
//! its request, and the job that takes the queued requests, on the committer thread, reads all
//! their records in one round trip (`WriteTx::records`, on the committer's own connection),
//! decides each reveal (live, the customer binding, the card opened) and appends their audit
//! entries; the card goes back once that group is durable. What the entry records and when the
//! card is handed out are unchanged: the entry names the outcome, and is durable first.
//!
//! The job may run again (another daemon raced a write in its group): it then reads and
//! decides anew, on fresh reads, for the same requests it took on its first run. Dropped unrun
//! (the committer is gone), it answers every request it would have taken with `Closed`.

use std::sync::Arc;

use parking_lot::Mutex;
use vault_core::{CustomerId, MerchantId, Token};
use vault_store::{StoreError, WriteTx};

use crate::{
    RevealedCard, Vault, VaultError,
    audit::{RevealDone, RevealRequest},
    vault::{Core, reveal_draft, revealed},
};

use super::queue::FailUnrun;

/// Takes every queued request and clears `scheduled`: the next request schedules a new job.
fn take(core: &Core) -> (Vec<RevealRequest>, Vec<RevealDone>) {
    let mut p = core.reveal_reads.0.lock();
    p.scheduled = false;
    (
        std::mem::take(&mut p.requests),
        std::mem::take(&mut p.dones),
    )
}

impl Vault {
    /// Queues a reveal to be read and audited in the next group commit; `done` receives the
    /// card (or the refusal) once its audit entry is durable, on the committer thread.
    pub(crate) fn reveal_in_group(
        &self,
        merchant: MerchantId,
        token: &Token,
        customer: Option<CustomerId>,
        done: RevealDone,
    ) {
        let core = &self.inner.core;
        let request = RevealRequest {
            merchant,
            token: *token,
            id: core.lookup(token),
            customer,
            actor: self.actor.clone(),
            now: core.clock.now(),
        };
        let mut p = core.reveal_reads.0.lock();
        p.requests.push(request);
        p.dones.push(done);
        if p.scheduled {
            return;
        }
        p.scheduled = true;
        // Submitted under the lock: no request can be queued behind `scheduled` before the job
        // that takes it is in the channel. Exempt from the store's queue bound, as the reveal
        // audit drain: at most one such job is queued at a time, and each waiting reveal holds
        // its caller.
        let dones: Arc<Mutex<Vec<RevealDone>>> = Arc::default();
        let results: Arc<Mutex<Vec<Result<RevealedCard, VaultError>>>> = Arc::default();
        let (job_dones, job_results) = (dones.clone(), results.clone());
        let (job_core, fail_core) = (core.clone(), core.clone());
        let mut guard = FailUnrun::new(move || {
            let (_, dones) = take(&fail_core);
            for done in dones {
                done(Err(VaultError::Store(StoreError::Closed)));
            }
        });
        let mut requests: Option<Vec<RevealRequest>> = None;
        self.inner.store.submit_exempt(
            move |tx| -> Result<(), VaultError> {
                guard.ran();
                let requests = requests.get_or_insert_with(|| {
                    let (requests, dones) = take(&job_core);
                    *job_dones.lock() = dones;
                    requests
                });
                *job_results.lock() = decide(&job_core, tx, requests)?;
                Ok(())
            },
            move |outcome: Result<(), VaultError>| {
                let dones = std::mem::take(&mut *dones.lock());
                let results = std::mem::take(&mut *results.lock());
                match outcome {
                    Ok(()) => {
                        for (done, result) in dones.into_iter().zip(results) {
                            done(result);
                        }
                    }
                    Err(e) => {
                        for done in dones {
                            done(Err(e.clone()));
                        }
                    }
                }
            },
        );
    }
}

/// Reads the records of `requests` (one round trip), decides each reveal and appends their audit
/// entries to `tx`; the results, in the order of `requests`.
fn decide(
    core: &Core,
    tx: &mut WriteTx<'_>,
    requests: &[RevealRequest],
) -> Result<Vec<Result<RevealedCard, VaultError>>, VaultError> {
    let ids: Vec<_> = requests.iter().map(|r| r.id).collect();
    // A read that failed fails each reveal, which is recorded as such (as when a reveal's own
    // read fails elsewhere); the group's commit then says whether the entries are durable.
    let reads = match tx.records(&ids) {
        Ok(reads) => reads,
        Err(e) => ids.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut results = Vec::with_capacity(requests.len());
    let mut drafts = Vec::with_capacity(requests.len());
    for (r, read) in requests.iter().zip(reads) {
        // Sealed under a data key another daemon made: follow the stored header.
        let loaded = core.open_live(read, r.merchant, &r.token, r.now, || {
            core.follow_stored(&tx.stored_header()?).map(drop)
        });
        let result = revealed(loaded, r.customer.as_ref());
        drafts.push(reveal_draft(&r.actor, &r.token, &result));
        results.push(result);
    }
    core.append_audits(tx, &drafts)?;
    Ok(results)
}
