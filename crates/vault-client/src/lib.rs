//! `vault-client`: a typed async client of the cardvault daemon over its Unix socket.
//!
//! HTTP/1.1 with keep-alive on one connection per [`Client`] (hyper), request and response bodies
//! from [`vault_wire`]. It does not link the vault itself (no store, no keys).
//!
//! ```no_run
//! use vault_client::{ApiKey, Client};
//! use vault_wire::{CardInput, RevealRequest, TokenizeRequest};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let key = ApiKey::new(std::env::var("CARDVAULT_API_KEY")?)?;
//! let client = Client::connect("/run/cardvault/cardvault.sock", Some(&key)).await?;
//! let t = client
//!     .tokenize(&TokenizeRequest::card(CardInput::new("4242424242424242", "2802")))
//!     .await?;
//! assert_eq!(t.card.masked_pan, "424242****4242");
//! let card = client.reveal(&t.token, &RevealRequest::default()).await?;
//! # drop(card);
//! # Ok(()) }
//! ```
//!
//! Errors are [`ClientError`]; a non-success answer is [`ClientError::Http`] with the status and
//! the daemon's structured error body. No error ever contains a card number or the API key.
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod client;
mod error;
mod key;
mod payments;
mod tokens;

pub use client::Client;
pub use error::ClientError;
pub use key::ApiKey;
pub use vault_wire as wire;
