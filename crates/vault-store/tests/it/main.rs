//! vault-store's integration tests, one binary (rustls style): one module per theme.
//!
//! `#![cfg(test)]` (always true here) marks the whole binary as test code for clippy's
//! `allow-*-in-tests` (clippy.toml), helpers outside `#[test]` functions included.
#![cfg(test)]

mod backup;
mod conformance;
mod conformance_pg;
mod pg;
mod races;
mod store;
mod wrapped;
