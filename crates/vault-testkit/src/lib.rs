//! `vault-testkit`: what cardvault's tests, benches and fuzz targets share (rustls-test style).
//! A dev-dependency only, never published.
//!
//! - [`clock`]: the fixed test instant and a manual clock on it.
//! - [`vault`]: a test vault (fast KDF, flushed writes, small cache) and its merchants and cards.
//! - [`daemon`]: a daemon on a Unix socket in a temp dir, with merchants and API keys, and a
//!   raw HTTP/1.1 client; its vault on the engine of `CARDVAULT_TEST_ENGINE`.
//! - [`engine`] (features `vault` and `postgres`): which engine a test vault lives on (sled or
//!   PostgreSQL, `CARDVAULT_TEST_ENGINE`), a home for one there, and [`sled_only!`] for tests
//!   about the sled directory.
//! - [`cards`]: Luhn-valid test PANs.
//! - [`files`]: every file under a directory; copying a vault's directory.
//! - [`model`]: the reference model of the token lifecycle (proptest model test and fuzz target).
//! - [`scan`]: byte scanners for leak tests (does any file under a directory hold these bytes).
//! - `postgres` (feature `postgres`): throw-away PostgreSQL databases for the PostgreSQL
//!   engine's tests.
#![forbid(unsafe_code)]

pub mod cards;
#[cfg(feature = "vault")]
pub mod clock;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(all(feature = "vault", feature = "postgres"))]
pub mod engine;
pub mod files;
#[cfg(feature = "vault")]
pub mod model;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "vault")]
pub mod records;
pub mod scan;
#[cfg(feature = "vault")]
pub mod vault;
