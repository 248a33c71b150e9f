//! `vault-core`: the pure heart of cardvault.
//!
//! Everything here is deterministic given its inputs: no files, no sockets, no clock and no OS
//! randomness. A random number generator (`rand_core::CryptoRng`) and the current time
//! (`time::OffsetDateTime`) are passed in by the caller, which keeps the core testable and
//! keeps I/O in the crates above it.
//!
//! What lives here:
//! - card data: [`Pan`], [`Expiry`], [`CardholderName`], [`Metadata`], [`CardRecord`];
//! - identifiers: [`Token`] (48 hex chars, 192 random bits), [`MerchantId`], [`CustomerId`];
//! - keys: the key-encrypting key ([`Kek`]) from a passphrase (Argon2id) or a key file, data keys
//!   wrapped by it, and the public, serialisable [`KeyHeader`] that holds them;
//! - record sealing with XAES-256-GCM ([`seal_record`], [`open_record`]);
//! - keyed fingerprints of card numbers ([`Fingerprint`]);
//! - small opaque blobs sealed under a purpose key ([`seal_blob`], [`open_blob`]).
//!
//! Secret types ([`Pan`], [`CardholderName`], [`SecretKey`], [`Passphrase`], [`Kek`])
//! zeroize on drop, derive neither `Debug` nor `Clone`, and hand out their secret only through a
//! method whose name says so (`expose_*`).
#![forbid(unsafe_code)]

mod aead;
mod blob;
mod card;
mod card_record;
mod error;
mod expiry;
mod fingerprint;
mod header;
mod ids;
mod kek;
mod keyring;
mod metadata;
mod seal;
mod secret;
mod token;

pub use blob::{BLOB_OVERHEAD, open_blob, seal_blob};
pub use card::{Brand, CardholderName, MaskedPan, Pan};
pub use card_record::CardRecord;
pub use error::{CardError, DecodeError, KeyError, OpenError, TokenError};
pub use expiry::Expiry;
pub use fingerprint::{Fingerprint, FingerprintKey, LookupKey};
pub use header::{DekState, FORMAT_VERSION, KeyHeader};
pub use ids::{CustomerId, MerchantId};
pub use kek::{KdfParams, Kek, KeySource};
pub use keyring::{DekId, DekStamp, Keyring};
pub use metadata::Metadata;
pub use seal::{RecordBinding, open_record, seal_record, sealed_dek_id};
pub use secret::{Passphrase, SecretKey};
pub use token::Token;

/// Re-exported so callers can name the RNG bound without a direct `rand_core` dependency.
pub use rand_core::CryptoRng;
/// Re-exported: the time type the core takes and returns.
pub use time::OffsetDateTime;
