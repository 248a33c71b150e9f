//! `vault-service`: the cardvault **Vault**, the API a card-processing service links.
//!
//! ```no_run
//! use vault_service::{KeySource, MerchantId, NewCard, Passphrase, TokenizeOptions, Vault, VaultOptions};
//! use vault_service::{Expiry, Pan};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = KeySource::Passphrase(Passphrase::new("correct horse battery staple".into())?);
//! let vault = Vault::create("/var/lib/cardvault", &key, VaultOptions::default())?;
//! let merchant = MerchantId::parse("890490")?;
//! let card = NewCard::new(Pan::parse("4242424242424242")?, Expiry::parse_yymm("2802")?);
//! let info = vault.tokenize(merchant, card, TokenizeOptions::default())?;
//! assert_eq!(info.masked_pan.as_str(), "424242****4242");
//! let card = vault.reveal(merchant, &info.token, None)?;
//! assert_eq!(card.pan.expose_digits(), "4242424242424242");
//! # Ok(()) }
//! ```
//!
//! Every write (`tokenize`, `tokenize_batch`, `update`, `delete`, key operations) returns only once
//! it is durable under the configured [`Durability`]; concurrent callers share group commits.
//!
//! A vault lives in a directory ([`Vault::create`], [`Vault::open`]: sled, one process at a time)
//! or, with the `postgres` feature, in a PostgreSQL database shared by any number of processes
//! ([`Vault::create_at`], [`Vault::open_at`] with a [`Location`]).
#![forbid(unsafe_code)]

/// HMAC-SHA256, the MAC of every keyed digest the vault keeps (API-key hashes, record MACs, the
/// audit chain, idempotency fingerprints).
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

mod admin;
mod api_key_cache;
mod audit;
mod audit_log;
mod backup;
mod clock;
mod error;
mod health;
mod idempotency;
mod idempotency_state;
mod key_follow;
mod maintenance;
mod masked_form_guard;
mod masked_forms;
mod model;
mod os_rng;
mod record_mac;
#[cfg(test)]
mod test_support;
mod txn;
mod vault;
mod write;

pub use admin::{
    ApiKeyInfo, Caller, Merchant, NewApiKey, Operator, Principal, Scope, ScopeBit, Scopes,
};
pub use api_key_cache::SHARED_KEY_CACHE_TTL;
pub use audit::{
    Actor, AuditAction, AuditCode, AuditEntry, AuditOutcome, AuditReport, AuditThrottle,
    RevealAudit,
};
pub use audit_log::{ArchivedChain, AuditArchived, MAX_ARCHIVE_BLOCKS};
pub use backup::{BackupReport, RestoreReport, backup_path_problem};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{FieldError, VaultConflict, VaultError};
pub use health::Health;
pub use idempotency::{
    ClaimRenewal, IDEMPOTENCY_LEASE, IDEMPOTENCY_RENEWAL, IDEMPOTENCY_TTL, IdempotencyGuard,
    IdempotencyKey, IdempotencyStart, IdempotentResponse,
};
pub use key_follow::KEY_FOLLOW_INTERVAL;
pub use maintenance::VaultStats;
pub use masked_forms::{MASKED_FORM_LIMIT, MASKED_FORM_WINDOW, MAX_TRACKED_FORMS};
pub use model::{
    NewCard, RevealedCard, RewrapProgress, TokenInfo, TokenizeOptions, TokenizeRequest,
    UpdateOptions,
};
pub use record_mac::{RecordKind, RecordMac};
pub use txn::{LiveToken, PreparedTokenize, Txn, Update};
pub use vault::{MAX_QUEUED_AUDIT, Vault, VaultOptions};
pub use write::MAX_BATCH;

pub use vault_core::{
    Brand, CardError, CardholderName, CustomerId, DekId, DekState, Expiry, Fingerprint, KdfParams,
    KeyError, KeySource, MaskedPan, MerchantId, Metadata, Pan, Passphrase, SecretKey, Token,
};
pub use vault_store::{
    Codec, ConflictKind, DatabaseUrl, Durability, KeySpace, Location, StoreError, StoreStats,
    Structure, Table, TableKey, Unavailable, Versioned,
};
