//! **cardvault**: a card tokenization vault.
//!
//! Payment services hand it a card number and get back a 48-character token they can store, log
//! and pass around freely; the vault keeps the card encrypted (XAES-256-GCM under data keys wrapped
//! by an Argon2id-derived key) and gives it back only to callers allowed to see it.
//!
//! This crate is the facade: it re-exports the [`Vault`] API from `vault-service` and the card and
//! key types from `vault-core`.
//! It has none of the `cardvault` command's dependencies: the command (daemon, admin commands,
//! load tool) is the `cardvault-cli` package, which links this crate.
//!
//! ```no_run
//! use cardvault::{Expiry, KeySource, MerchantId, NewCard, Pan, Passphrase, TokenizeOptions, Vault, VaultOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = KeySource::Passphrase(Passphrase::new(std::env::var("CARDVAULT_PASSPHRASE")?)?);
//! let vault = Vault::open("/var/lib/cardvault", &key, VaultOptions::default())?;
//! let merchant = MerchantId::parse("890490")?;
//! let card = NewCard::new(Pan::parse("4242424242424242")?, Expiry::parse_yymm("2802")?);
//! let info = vault.tokenize(merchant, card, TokenizeOptions::default())?;
//! println!("{} {} {}", info.token, info.masked_pan, info.keep_until);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub use vault_service::*;

/// The payment gateway above the vault: sessions, card capture, payments, one-click, CVVs.
pub use vault_gateway as gateway;

/// The pure core: card parsing, tokens, keys, sealing, fingerprints.
pub use vault_core as core;

/// The README's Rust examples compile and run as doc tests, so the README cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
