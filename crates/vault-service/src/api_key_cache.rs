//! The vault's in-memory API-key state: the cache of key records (authentication costs one HMAC
//! and no I/O) and the keyed hasher, derived once. A leaf module: `vault` holds it in its core,
//! `admin` implements the operations on it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::HmacSha256;

/// A stored API key (the record behind `K` + key id; MAC'd).
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct ApiKeyRec {
    pub(crate) v: u8,
    /// The merchant, or `admin::OPERATOR` (0) for an operator key.
    pub(crate) merchant: u64,
    pub(crate) scopes: u8,
    pub(crate) hash: [u8; 32],
    pub(crate) label: String,
    pub(crate) created_at: i64,
    pub(crate) revoked: bool,
}

/// In-memory cache of API key records, and the keyed HMAC state for API-key hashes, derived once.
#[derive(Default)]
pub(crate) struct KeyCache {
    pub(crate) records: parking_lot::RwLock<HashMap<[u8; 8], ApiKeyRec>>,
    pub(crate) hasher: std::sync::OnceLock<HmacSha256>,
}
