//! vault-gateway's integration tests, one binary: one module per theme (`login_memory.rs`, which
//! measures the process's memory, stays a binary of its own).
//!
//! `#![cfg(test)]` (always true here) marks the whole binary as test code for clippy's
//! `allow-*-in-tests` (clippy.toml), helpers outside `#[test]` functions included.
#![cfg(test)]

mod common {
    //! The test helpers, from `vault-testkit`.
    #![allow(unused_imports)]
    pub(crate) use vault_testkit::{
        cards::{luhn_check_digit, random_pan},
        clock::T0,
        files::{copy_dir, open_sled, walk},
        scan::files_contain,
        vault::{card, merchant, new_vault, options, passphrase, reopen},
    };
}

mod audit;
mod credentials;
mod no_leak;
mod one_click_marks;
mod record_macs;
mod seam;
mod session_tokens;
mod sessions;
mod shared;
mod terminals;
