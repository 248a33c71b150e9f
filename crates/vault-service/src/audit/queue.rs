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
//!
//! On a vault shared with other daemons, a `Durable` reveal queues its request instead
//! (`RevealReads`), before its record is read: the job that takes the requests reads their
//! records in its group, decides each reveal and appends the entries (`audit_log/reveal_group.rs`).

use parking_lot::Mutex;
use time::OffsetDateTime;
use vault_core::{CustomerId, MerchantId, Token};
use vault_store::LookupId;

use super::{Actor, Draft};
use crate::{RevealedCard, VaultError};

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

/// A reveal on a vault shared with other daemons, waiting for the next group commit: its record
/// is read in that group, and its audit entry appended there (see `audit_log/reveal_group.rs`).
pub(crate) struct RevealRequest {
    pub(crate) merchant: MerchantId,
    pub(crate) token: Token,
    /// The token's lookup id (where its record is).
    pub(crate) id: LookupId,
    pub(crate) customer: Option<CustomerId>,
    pub(crate) actor: std::sync::Arc<Actor>,
    /// When the reveal was asked for: the record must be live then.
    pub(crate) now: OffsetDateTime,
}

/// Told the card (or the refusal) once a reveal's audit entry is durable.
pub(crate) type RevealDone = Box<dyn FnOnce(Result<RevealedCard, VaultError>) + Send>;

#[derive(Default)]
pub(crate) struct PendingReveals {
    pub(crate) requests: Vec<RevealRequest>,
    /// One per request, in the same order.
    pub(crate) dones: Vec<RevealDone>,
    /// A job that takes them is in the committer's channel and has not taken them yet.
    pub(crate) scheduled: bool,
    /// The next job reads the records before it writes the entries (see
    /// `audit_log/reveal_group.rs`): set when a group's guards failed, cleared by a group whose
    /// reveals all went through.
    pub(crate) read_first: bool,
}

/// The reveals of one vault waiting to be read and audited in the next group commit.
#[derive(Default)]
pub(crate) struct RevealReads(pub(crate) Mutex<PendingReveals>);
