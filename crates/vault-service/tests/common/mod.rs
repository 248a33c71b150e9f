//! Helpers shared by the Vault's integration tests: the test vault, clock, cards and file
//! scanners come from `vault-testkit`; what only these tests need is here.
// Each test binary uses a subset (rustc lints, not test allowances).
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::Path;

pub use vault_testkit::{
    cards::{luhn_check_digit, random_pan},
    clock::T0,
    files::{copy_dir, walk},
    scan::files_contain,
    vault::{card, merchant, new_vault, options, passphrase, reopen},
};

/// `sled::open`, retried while the dropped vault's sled threads still hold the file lock (as the
/// store itself does when it reopens).
pub fn open_sled(path: &Path) -> sled::Db {
    for _ in 0..500 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("sled: {e}"),
        }
    }
    panic!("sled lock still held after 5 s");
}
