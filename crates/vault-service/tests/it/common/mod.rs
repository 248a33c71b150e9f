//! Helpers shared by the Vault's integration tests, from `vault-testkit`: the test vault, clock,
//! cards, file scanners and the sled opener.
// Each test binary uses a subset (rustc lints, not test allowances).
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use vault_testkit::{
    cards::{luhn_check_digit, random_pan},
    clock::T0,
    files::{copy_dir, open_sled, walk},
    scan::files_contain,
    vault::{card, merchant, new_vault, new_vault_at, options, passphrase, reopen, reopen_at},
};
