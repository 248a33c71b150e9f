//! Helpers shared by the `cardvault` facade's integration tests (the CLI's are in
//! crates/cardvault-cli/tests/common).
// Each test binary uses a subset (rustc lints, not test allowances).
#![allow(dead_code, unreachable_pub, unused_imports)]

/// A random Luhn-valid PAN of `len` digits starting with `prefix`.
pub use vault_testkit::cards::random_pan as luhn_pan;
