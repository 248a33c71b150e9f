//! Reveal audit entries gathered in memory between group commits.
//!
//! A reveal does not hand the committer a job of its own. It adds its draft entry to this queue;
//! the reveal that finds the queue idle also submits **one** drain job. When that job runs on the
//! committer thread it takes every draft queued by then and appends them together (one head read,
//! one HMAC per entry, a few blocks, one head write), so a group commit carries one job and a few
//! sled keys for hundreds of reveals instead of one job and one key per reveal.
//!
//! Ordering and bounds are those of one job per reveal: a draft queued before a job is submitted
//! is drained by a drain job that is already in the committer's channel ahead of it (the flag
//! `scheduled` is cleared only by the drain itself, under the lock), so `Vault::barrier` still
//! covers every reveal that returned before it; and the crash window of `RevealAudit::Queued`
//! stays at most `MAX_QUEUED_AUDIT` answered reveals, counted by `Core::audit_in_flight` from the
//! moment a draft is queued until its group is durable.

use parking_lot::Mutex;

use super::Draft;
use crate::VaultError;

/// Told whether a waited-for entry is durable.
pub(crate) type Waiter = Box<dyn FnOnce(Result<(), VaultError>) + Send>;

#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) drafts: Vec<Draft>,
    /// Callers waiting for their entry to be durable (`Durable` mode, or the queue was full).
    pub(crate) waiters: Vec<Waiter>,
    /// Drafts whose reveal was answered at once (each holds one `audit_in_flight` slot).
    pub(crate) queued: usize,
    /// A drain job is in the committer's channel and has not taken the queue yet.
    pub(crate) scheduled: bool,
}

/// The reveal audit queue of one vault.
#[derive(Default)]
pub(crate) struct RevealQueue(pub(crate) Mutex<Pending>);
