//! The vault's in-memory API-key state: the cache of key records (authentication costs one HMAC
//! and no I/O; on a vault shared by several daemons, one store read per key every
//! [`SHARED_KEY_CACHE_TTL`]) and the keyed hasher, derived once. A leaf module: `vault` holds it
//! in its core, `admin` implements the operations on it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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

/// How long a cached key record is trusted on a vault shared by several daemons: a key revoked
/// through one daemon stops authenticating on every other one at most this long after (on the
/// vault clocks). A directory vault has one writer, which updates its own cache, so its entries
/// never expire.
pub const SHARED_KEY_CACHE_TTL: time::Duration = time::Duration::seconds(2);

/// A cached key record and when it was read from the store (vault clock).
#[derive(Clone)]
pub(crate) struct CachedKey {
    pub(crate) rec: ApiKeyRec,
    pub(crate) read_at: OffsetDateTime,
}

impl CachedKey {
    /// Whether the entry may answer at `now`: always on a single-writer vault; on a shared one
    /// only within [`SHARED_KEY_CACHE_TTL`] of its read (a clock that went back counts as stale).
    pub(crate) fn fresh(&self, now: OffsetDateTime, shared: bool) -> bool {
        !shared || (self.read_at <= now && now - self.read_at < SHARED_KEY_CACHE_TTL)
    }
}

/// In-memory cache of API key records, and the keyed HMAC state for API-key hashes, derived once.
#[derive(Default)]
pub(crate) struct KeyCache {
    pub(crate) records: parking_lot::RwLock<HashMap<[u8; 8], CachedKey>>,
    pub(crate) hasher: std::sync::OnceLock<HmacSha256>,
}

impl KeyCache {
    /// The cached record of `id`, if one may answer at `now`.
    pub(crate) fn fresh(
        &self,
        id: &[u8; 8],
        now: OffsetDateTime,
        shared: bool,
    ) -> Option<ApiKeyRec> {
        self.records
            .read()
            .get(id)
            .filter(|c| c.fresh(now, shared))
            .map(|c| c.rec.clone())
    }

    /// Keeps `rec` as read from the store at `now` by an authentication, unless a fresher
    /// entry got there first (a revocation made by this process meanwhile must not be
    /// overwritten by a read from before it).
    pub(crate) fn offer(&self, id: [u8; 8], rec: ApiKeyRec, now: OffsetDateTime, shared: bool) {
        let mut records = self.records.write();
        if records.get(&id).is_some_and(|c| c.fresh(now, shared)) {
            return;
        }
        records.insert(id, CachedKey { rec, read_at: now });
    }

    /// Keeps `rec`, just written by this process (a created or revoked key), in any case.
    pub(crate) fn put(&self, id: [u8; 8], rec: ApiKeyRec, now: OffsetDateTime) {
        self.records
            .write()
            .insert(id, CachedKey { rec, read_at: now });
    }
}
