//! Admin bodies (`/admin/...`, `admin` scope): merchants, API keys, terminals, vault keys,
//! sweeps and statistics. Merchant ids travel as strings of 1-18 digits.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroize;

/// `POST /admin/merchants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantAddRequest {
    /// 1-18 digits.
    pub merchant_id: String,
    /// Display name.
    pub name: String,
}

/// A merchant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantResponse {
    /// 1-18 digits.
    pub merchant_id: String,
    /// Display name.
    pub name: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /admin/merchants`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantList {
    /// Every merchant.
    pub merchants: Vec<MerchantResponse>,
}

/// `POST /admin/merchants/{id}/password`: sets or replaces a merchant's gateway password
/// (the session-token API). `Debug` hides it; wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantPasswordRequest {
    /// 1-64 characters.
    pub password: String,
}

impl fmt::Debug for MerchantPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantPasswordRequest")
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Drop for MerchantPasswordRequest {
    fn drop(&mut self) {
        self.password.zeroize();
    }
}

/// `POST /admin/apikeys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyCreateRequest {
    /// The merchant the key acts for (absent for an operator key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// An operator key: belongs to no merchant, holds only `admin`.
    #[serde(default, skip_serializing_if = "crate::tokens::is_false")]
    pub operator: bool,
    /// Merchant keys: any of `tokenize`, `reveal`, `fingerprint`, `sessions` (at least one);
    /// operator keys: `admin`.
    pub scopes: Vec<String>,
    /// Free-form label.
    #[serde(default)]
    pub label: String,
}

/// An API key's public description (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyResponse {
    /// 16 hex characters.
    pub id: String,
    /// Its merchant (absent for an operator key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// `merchant` or `operator`.
    #[serde(default)]
    pub kind: ApiKeyKind,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its label.
    pub label: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Whom an API key belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyKind {
    /// A merchant's key.
    #[default]
    Merchant,
    /// An operator key (no merchant; `admin`).
    Operator,
}

/// `201` of `POST /admin/apikeys`: the key, shown this once. `Debug` hides it; wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    /// `cvk_<16 hex id>_<64 hex secret>`: the bearer credential.
    pub key: String,
    /// Its description.
    pub api_key: ApiKeyResponse,
}

impl fmt::Debug for ApiKeyCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyCreated")
            .field("key", &"<redacted>")
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl Drop for ApiKeyCreated {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// `GET /admin/apikeys[?merchant_id=...]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyList {
    /// The keys.
    pub api_keys: Vec<ApiKeyResponse>,
}

/// `POST /admin/terminals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalAddRequest {
    /// Owner.
    pub merchant_id: String,
    /// 4-50 characters of `[A-Za-z0-9_-]`.
    pub terminal_id: String,
}

/// A processing terminal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalResponse {
    /// Its id.
    pub terminal_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /admin/terminals[?merchant_id=...]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalList {
    /// The terminals.
    pub terminals: Vec<TerminalResponse>,
}

/// One data key in [`KeyStatusResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DekStatus {
    /// Key id.
    pub id: u32,
    /// `current` or `decrypt-only`.
    pub state: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /admin/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatusResponse {
    /// The key new records are sealed with.
    pub current_dek: u32,
    /// Every data key in the header.
    pub deks: Vec<DekStatus>,
}

/// `POST /admin/keys/rotate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateResponse {
    /// The new current key.
    pub current_dek: u32,
}

/// `POST /admin/keys/rewrap`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapResponse {
    /// Records examined.
    pub scanned: u64,
    /// Records re-sealed under the current key.
    pub rewrapped: u64,
    /// Records that failed their integrity check (left unchanged).
    pub failed: u64,
    /// Records when the pass started.
    pub total: u64,
}

/// `POST /admin/keys/retire`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireResponse {
    /// Decrypt-only keys no record used, now removed.
    pub retired: Vec<u32>,
}

/// `POST /admin/sweep`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepResponse {
    /// Expired records removed.
    pub removed: u64,
}

/// `GET /admin/stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Records stored (live, plus expired ones not yet swept).
    pub records: u64,
    /// The current data key.
    pub current_dek: u32,
    /// Data keys in the header.
    pub deks: u32,
    /// Group commits since open.
    pub groups: u64,
    /// Write jobs committed since open.
    pub jobs: u64,
    /// fsyncs since open.
    pub flushes: u64,
    /// Bytes on disk.
    pub size_on_disk: u64,
    /// Groups by size: bucket `i` counts groups of at most `2^i` jobs (the last is unbounded).
    pub group_size_buckets: Vec<u64>,
}

/// `POST /admin/backup`: where the daemon writes the backup file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequest {
    /// An absolute path on the daemon's machine; the file must not exist (it is created 0600).
    pub path: String,
}

/// `POST /admin/backup`: what was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupResponse {
    /// The file written.
    pub path: String,
    /// Token records in the backup.
    pub records: u64,
    /// Key/value entries in the backup (records, indexes, counters, admin data).
    pub entries: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// SHA-256 of the file's contents before the trailer's digest (64 lowercase hex).
    pub sha256: String,
    /// How long writes were held while the snapshot was taken, in milliseconds.
    pub pause_ms: u64,
}
