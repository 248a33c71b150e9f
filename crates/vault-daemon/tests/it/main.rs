//! The daemon's integration tests, one binary (rustls style): one module per theme. Helpers come
//! from `vault-testkit` (`vault_testkit::daemon`). `tests/malformed.rs` is its own binary: it
//! measures the process's resident set, which the other tests running alongside would grow.
//!
//! `#![cfg(test)]` (always true here) marks the whole binary as test code for clippy's
//! `allow-*-in-tests` (clippy.toml), helpers outside `#[test]` functions included.
#![cfg(test)]

mod admin;
mod audit;
mod browser;
mod card_links;
mod contract;
mod gateway;
mod hosted;
mod hosted_fields;
mod idempotency;
mod lifecycle;
mod openapi;
mod operator;
mod tokens;
