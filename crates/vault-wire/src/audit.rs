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

/// `POST /admin/audit/archive`: what to move out of the log, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditArchiveRequest {
    /// RFC 3339 time: the whole blocks of entries written before it move to the file.
    pub before: String,
    /// An absolute path on the daemon's machine; the file must not exist (it is created 0600).
    pub path: String,
}

/// `POST /admin/audit/archive`: what was moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditArchiveResponse {
    /// The file written (none when `entries` is 0).
    pub path: String,
    /// Entries moved to the file, of every chain (0: nothing old enough; no file written).
    pub entries: u64,
    /// Each chain archived from, in the file's order.
    pub chains: Vec<ArchivedChainView>,
    /// Older whole blocks remain (one run moves at most a bounded number): run it again with
    /// another path.
    pub more: bool,
}

/// The entries one chain gave to an archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedChainView {
    /// The chain's id in hex (`null`: the vault's own chain, on a vault in a directory).
    pub chain: Option<String>,
    /// The first archived entry.
    pub first_seq: u64,
    /// The last archived entry; the chain now starts after it.
    pub last_seq: u64,
}
