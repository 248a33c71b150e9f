//! `GET /health`.

use serde::{Deserialize, Serialize};

/// `{"status":"ok","version":"0.1.0"}`; with 503, `{"status":"failed","code":"store_failed",...}`
/// (restart the daemon) or `{"status":"unavailable","code":"database_unavailable",...}` (the
/// vault's database cannot be reached; the daemon reconnects by itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok`, `failed` or `unavailable`.
    pub status: String,
    /// The daemon's version.
    pub version: String,
    /// Why it is not `ok`: `store_failed` or `database_unavailable`. Absent when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}
