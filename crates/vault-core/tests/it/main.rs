//! vault-core's integration tests, one binary (rustls style): one module per theme.
//!
//! `#![cfg(test)]` (always true here) marks the whole binary as test code for clippy's
//! `allow-*-in-tests` (clippy.toml), helpers outside `#[test]` functions included.
#![cfg(test)]

mod card_known;
mod card_props;
mod key_hierarchy;
mod no_leak;
mod record_golden;
mod seal_props;
mod token_props;
