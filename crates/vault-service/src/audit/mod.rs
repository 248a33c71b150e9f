//! The audit log: append-only, hash-chained entries in the store.
//!
//! One entry per reveal, admin action, key operation, sweep and failed authentication (and per
//! action of the layers above, under the codes `codes.rs` reserves for them): when, who
//! (merchant, API key id, peer uid), what, which token, and the outcome. Never a card number,
//! key material or other secret: an entry has no field that could hold one (the free-text
//! `detail` is written from ids and counts only).
//!
//! Entry `n` (from 1) carries
//! `hash = HMAC-SHA256(audit key, "cardvault/v1/audit" || prev_hash || body)` where `prev_hash`
//! is entry `n - 1`'s hash (zeros for the first) and `body` the entry's canonical encoding. The
//! audit key is the vault's `mac_key("audit")`: someone who can write the disk but does not hold
//! the vault key cannot recompute the chain. Entries appended by one write job are packed, still
//! each individually chained, into **blocks** (one sled value of at most about 4 KiB or 64
//! entries, under `A` + the block's first seq, u64 BE); a block of one entry is exactly the
//! first layout's "one entry per key". The head (last seq and hash) is kept under `a`, tagged
//! with the same key, and replaced in the same atomic batch as each append; appends run on the
//! committer thread, so sequence order is commit order. Reveals queue their entries in memory
//! (`queue.rs`) so that one job per group commit appends all of them. See `docs/record-format.md`.

pub(crate) mod codec;
mod codes;
mod queue;
mod throttle;

use time::OffsetDateTime;
use vault_core::{MerchantId, Token};

pub(crate) use codec::AuditKey;
pub(crate) use codec::Chain;
pub use codes::{AuditAction, AuditCode};
pub(crate) use queue::{RevealDone, RevealQueue, RevealReads, RevealRequest, Waiter};
pub use throttle::AuditThrottle;
pub(crate) use throttle::{Admit, count_detail};

use self::codec::{MAX_DETAIL, MAX_TEXT, clean, reason_code};
use crate::VaultError;

/// A decoded head record `(seq, hash)`, or why it did not verify.
pub(crate) type HeadRecord = Result<(u64, [u8; 32]), &'static str>;

/// Who acted. Every field is optional: a direct library call (the CLI offline, a linked
/// service) is the empty actor, shown as "local".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// The merchant the caller authenticated as.
    pub merchant: Option<MerchantId>,
    /// The public id of the API key used (never its secret).
    pub key_id: Option<String>,
    /// The uid of the Unix-socket peer.
    pub peer_uid: Option<u32>,
}

impl Actor {
    /// The empty actor: a direct call on the library.
    pub fn local() -> Self {
        Self::default()
    }

    /// The same actor, seen on a socket peer with this uid.
    #[must_use]
    pub fn with_peer_uid(mut self, uid: Option<u32>) -> Self {
        self.peer_uid = uid;
        self
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(m) = self.merchant {
            parts.push(format!("merchant={m}"));
        }
        if let Some(k) = &self.key_id {
            parts.push(format!("key={k}"));
        }
        if let Some(u) = self.peer_uid {
            parts.push(format!("uid={u}"));
        }
        if parts.is_empty() {
            f.write_str("local")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// How it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Done.
    Ok,
    /// Refused, with a reason code (`not_found`, `customer_mismatch`, `unauthorized`, ...; only
    /// `[a-z_.-]` is kept).
    Denied(String),
    /// Failed (store or integrity error).
    Error,
}

impl AuditOutcome {
    /// The outcome of a call that returned `r`.
    pub fn of<T>(r: &Result<T, VaultError>) -> Self {
        match r {
            Ok(_) => Self::Ok,
            Err(e) => Self::of_error(e),
        }
    }

    /// The outcome of a call that failed with `e`.
    pub fn of_error(e: &VaultError) -> Self {
        let code = match e {
            VaultError::Invalid(f) => f.code,
            VaultError::NotFound => "not_found",
            VaultError::CustomerMismatch => "customer_mismatch",
            VaultError::Unauthorized => "unauthorized",
            VaultError::Forbidden => "forbidden",
            VaultError::Key(_) => "key",
            VaultError::Busy => "busy",
            VaultError::TooManyCards { .. } => "masked_form_limit",
            VaultError::Conflict(conflict) => conflict.code(),
            _ => return Self::Error,
        };
        Self::Denied(code.to_owned())
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Denied(code) => write!(f, "denied:{code}"),
            Self::Error => f.write_str("error"),
        }
    }
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When it was appended (the vault clock, at commit).
    pub at: OffsetDateTime,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// Which token, if one was involved.
    pub token: Option<Token>,
    /// Ids and counts written by the vault (`merchant=890490`, `dek=3`, `removed=12`); never
    /// card data or secrets.
    pub detail: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The previous entry's hash (zeros for the first).
    pub prev_hash: [u8; 32],
    /// This entry's chained, keyed hash.
    pub hash: [u8; 32],
    /// The chain it belongs to, in hex: `None` for the vault's own chain, the writing process's
    /// chain id on a shared vault (`seq` counts within the chain).
    pub chain: Option<String>,
}

/// When a reveal hands back the card, relative to its audit entry ([`Vault::set_reveal_audit`](crate::Vault::set_reveal_audit)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RevealAudit {
    /// Opt-in. The entry joins the next group commit (normally within a millisecond or two)
    /// and the card is returned at once. A crash in that window can lose the entries of reveals
    /// already answered, never more than [`MAX_QUEUED_AUDIT`](crate::MAX_QUEUED_AUDIT): past that
    /// many uncommitted entries, reveals wait for durability (back-pressure). A store failure while
    /// committing a queued entry is not reported to the revealer.
    Queued,
    /// The default. The card is returned only once its entry is durable (under the vault's
    /// [`Durability`](crate::Durability)); if the entry cannot be written the reveal fails. The
    /// entry joins the next group commit like any write, packed with the entries of every other
    /// reveal waiting for that group (one job per group, not one per reveal), so concurrent
    /// revealers share each commit.
    #[default]
    Durable,
}

/// What [`Vault::audit_verify`](crate::Vault::audit_verify) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries that verified, from seq 1.
    pub entries: u64,
    /// The first sequence number at which the chain is broken (an edited, inserted, reordered or
    /// missing entry, or entries missing at the tail); `None` when the whole log verifies.
    pub first_bad: Option<u64>,
    /// What is wrong, for humans.
    pub problem: Option<String>,
}

impl AuditReport {
    /// Whether the whole log verified.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// An entry before it is chained.
#[derive(Clone)]
pub(crate) struct Draft {
    pub(crate) actor: Actor,
    pub(crate) action: AuditAction,
    pub(crate) token: Option<Token>,
    pub(crate) detail: Option<String>,
    pub(crate) outcome: AuditOutcome,
}

impl Draft {
    /// The entry for `action`, its texts cleaned (printable, bounded; reason codes `[a-z_.-]`).
    pub(crate) fn new(
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        detail: Option<String>,
        outcome: AuditOutcome,
    ) -> Self {
        Self {
            actor: Actor {
                merchant: actor.merchant,
                key_id: actor.key_id.as_deref().map(|k| clean(k, MAX_TEXT)),
                peer_uid: actor.peer_uid,
            },
            action,
            token: token.copied(),
            detail: detail.map(|s| clean(&s, MAX_DETAIL)),
            outcome: match outcome {
                AuditOutcome::Denied(c) => AuditOutcome::Denied(reason_code(&c)),
                o => o,
            },
        }
    }
}
