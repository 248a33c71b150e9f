//! `GET /health`.

use serde::{Deserialize, Serialize};

/// `{"status":"ok","version":"0.1.0"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
    /// The daemon's version.
    pub version: String,
}
