//! Audit bodies (`/admin/audit...`, `admin` scope): entries of the audit log and the result of
//! checking its chain.

use serde::{Deserialize, Serialize};

/// One audit entry. Holds no card data and no secret: who (merchant, API key id, socket peer
/// uid), what, which token, a vault-written detail and the outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntryView {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// `reveal`, `key.rotate`, ...
    pub action: String,
    /// `ok`, `denied:<reason>` or `error`.
    pub outcome: String,
    /// The acting merchant, if any.
    pub merchant_id: Option<String>,
    /// The acting API key's public id, if any.
    pub key_id: Option<String>,
    /// The socket peer's uid, if known.
    pub peer_uid: Option<u32>,
    /// The token acted on, if any.
    pub token: Option<String>,
    /// A vault-written detail, if any.
    pub detail: Option<String>,
    /// The previous entry's hash (hex).
    pub prev_hash: String,
    /// This entry's keyed hash (hex).
    pub hash: String,
    /// On a vault shared by several daemons (PostgreSQL), the chain the entry belongs to (hex id;
    /// one chain per daemon process, `seq` counts within it). Absent for the vault's own chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

/// `GET /admin/audit?after=SEQ&limit=N`: entries oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntryView>,
}

/// `POST /admin/audit/verify`: the whole chain checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerifyResponse {
    /// Whether the chain is intact.
    pub ok: bool,
    /// Entries verified (before the first bad one, if any).
    pub entries: u64,
    /// The first bad entry.
    pub first_bad: Option<u64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}
