//! Reveals on a vault shared with other daemons (PostgreSQL): the record is read in the group
//! commit that carries the reveal's audit entry, in one round trip.
//!
//! Elsewhere a reveal reads its record first (coalesced with concurrent reads), then queues its
//! audit entry for the next group commit (`queue.rs`), and the card goes back once that group is
//! durable: two stages, each a round trip to the database and a wait for the batch in flight. On
//! a shared vault in the default `RevealAudit::Durable` mode the reveal queues its request, and
//! the job that takes the queued requests, on the committer thread, does one of two things:
//!
//! - **Guard** (the usual case): it writes every reveal's entry as granted and makes the group
//!   conditional on each record being the token's, the merchant's, bound to the given customer
//!   (or to none) and live ([`RecordGuard`]). The database checks that as it commits, in the same
//!   statement, and hands back the records; the cards are opened once the group is durable. One
//!   round trip. When a guard does not hold (a token not found, expired, another customer's) the
//!   database writes nothing and the committer runs the group again, and the job then reads first.
//! - **Read first** (on that second run, and for the groups after one whose guards failed, until
//!   a group whose reveals all went through): it reads all the records in one round trip
//!   (`WriteTx::records`, on the committer's own connection), decides each reveal (live, the
//!   customer binding, the card opened) and appends their entries, each naming its outcome; the
//!   group's commit is the second round trip. A stream of refused reveals so costs what it did
//!   before guards, not one wasted round trip per group.
//!
//! Either way the entry is durable before the card goes back, and names the outcome: a guarded
//! entry says granted only of a record the database found live for that merchant and customer.
//! The one outcome the database cannot check is the card opening (its seal is checked in the
//! daemon): a record altered in the database so that its card no longer opens is refused as an
//! integrity failure after its entry was written as granted, and a second entry, naming the
//! refusal, follows (`audit_log/corrections.rs`); so does any other refusal at that stage (the
//! stored key header unreadable while following a new data key).
//!
//! The job may run again (another daemon raced a write in its group): it then reads and
//! decides anew, on fresh reads, for the same requests it took on its first run. Dropped unrun
//! (the committer is gone), it answers every request it would have taken with `Closed`.

use std::sync::Arc;

use parking_lot::Mutex;
use vault_core::{CustomerId, MerchantId, Token};
use vault_store::{GuardedReads, HeaderReader, RecordGuard, StoreError, StoredRecord, WriteTx};

use crate::{
    RevealedCard, Vault, VaultError,
    audit::{RevealDone, RevealRequest},
    vault::{Core, reveal_draft, revealed},
};

use super::queue::FailUnrun;

/// What one reveal job took and decided, shared between its runs and its completion.
#[derive(Default)]
struct Taken {
    requests: Vec<RevealRequest>,
    dones: Vec<RevealDone>,
    /// The last run guarded: the records come back with the commit.
    guarded: Option<GuardedReads>,
    /// The last run read first: its decisions.
    results: Vec<Result<RevealedCard, VaultError>>,
}

/// Takes every queued request and clears `scheduled`: the next request schedules a new job.
/// Also says whether the job is to read first.
fn take(core: &Core) -> (Vec<RevealRequest>, Vec<RevealDone>, bool) {
    let mut p = core.reveal_reads.0.lock();
    p.scheduled = false;
    (
        std::mem::take(&mut p.requests),
        std::mem::take(&mut p.dones),
        p.read_first,
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
        let taken: Arc<Mutex<Taken>> = Arc::default();
        let job_taken = taken.clone();
        let (job_core, done_core, fail_core) = (core.clone(), core.clone(), core.clone());
        let header = self.inner.store.header_reader();
        let mut guard = FailUnrun::new(move || {
            let (_, dones, _) = take(&fail_core);
            for done in dones {
                done(Err(VaultError::Store(StoreError::Closed)));
            }
        });
        let mut first_run = true;
        self.inner.store.submit_exempt(
            move |tx| -> Result<(), VaultError> {
                guard.ran();
                let mut t = job_taken.lock();
                t.guarded = None;
                t.results.clear();
                // Guards only on the first run (a second one follows a refused guard).
                if std::mem::take(&mut first_run) {
                    let (requests, dones, read_first) = take(&job_core);
                    (t.requests, t.dones) = (requests, dones);
                    if !read_first {
                        t.guarded = guarded(&job_core, tx, &t.requests)?;
                        if t.guarded.is_some() {
                            return Ok(());
                        }
                    }
                }
                t.results = decide(&job_core, tx, &t.requests)?;
                // Guards again after a group whose reveals all went through.
                job_core.reveal_reads.0.lock().read_first = !t.results.iter().all(Result::is_ok);
                Ok(())
            },
            move |outcome: Result<(), VaultError>| {
                let t = std::mem::take(&mut *taken.lock());
                match outcome {
                    Ok(()) => {
                        let results = match &t.guarded {
                            Some(reads) => opened(&done_core, &header, &t.requests, reads.take()),
                            None => t.results,
                        };
                        for (done, result) in t.dones.into_iter().zip(results) {
                            done(result);
                        }
                    }
                    Err(e) => {
                        for done in t.dones {
                            done(Err(e.clone()));
                        }
                    }
                }
            },
        );
    }
}

/// Writes the entries of `requests` as granted, on the condition that the database finds each
/// record live for its merchant and customer as the group commits (see the module docs); the
/// records come back with the commit. `None` when that cannot be (a record among the group's own
/// pending writes): read first.
fn guarded(
    core: &Core,
    tx: &mut WriteTx<'_>,
    requests: &[RevealRequest],
) -> Result<Option<GuardedReads>, VaultError> {
    let guards = requests
        .iter()
        .map(|r| {
            RecordGuard::new(
                &r.id,
                r.merchant.get(),
                *r.token.as_bytes(),
                r.customer.as_ref().map(|c| c.as_str().to_owned()),
                r.now.unix_timestamp(),
            )
        })
        .collect();
    let Some(reads) = tx.read_as_committed(guards) else {
        return Ok(None);
    };
    let granted: Result<(), VaultError> = Ok(());
    let drafts: Vec<_> = requests
        .iter()
        .map(|r| reveal_draft(&r.actor, &r.token, &granted))
        .collect();
    core.append_audits(tx, &drafts)?;
    Ok(Some(reads))
}

/// The cards of a guarded group, once it is durable: each record as the database read it,
/// decided again in full (a record the database passed may still fail to open: it was altered).
/// A refusal here contradicts the entry written as granted: a second entry naming it is queued.
fn opened(
    core: &Arc<Core>,
    header: &HeaderReader,
    requests: &[RevealRequest],
    values: Option<Vec<Vec<u8>>>,
) -> Vec<Result<RevealedCard, VaultError>> {
    let Some(values) = values else {
        return requests
            .iter()
            .map(|_| Err(VaultError::Store(StoreError::Closed)))
            .collect();
    };
    requests
        .iter()
        .zip(values)
        .map(|(r, value)| {
            // On the committer thread, outside the job (whose panics the committer catches): a
            // panic on bytes from the database must not take the committer down.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let read = StoredRecord::decode(&value).map(Some);
                // Sealed under a data key another daemon made: follow the stored header.
                let loaded = core.open_live(read, r.merchant, &r.token, r.now, || {
                    core.follow_stored(&header.read()?).map(drop)
                });
                revealed(loaded, r.customer.as_ref())
            }))
            .unwrap_or(Err(VaultError::Integrity));
            if result.is_err() {
                core.correct(reveal_draft(&r.actor, &r.token, &result));
            }
            result
        })
        .collect()
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
        let loaded = core.open_live_in(tx, read, r.merchant, &r.token, r.now);
        let result = revealed(loaded, r.customer.as_ref());
        drafts.push(reveal_draft(&r.actor, &r.token, &result));
        results.push(result);
    }
    core.append_audits(tx, &drafts)?;
    Ok(results)
}
