//! One writer per directory, across processes: while this process holds the vault open, a second
//! process gets a clear "vault is in use" error; once it closes, the other process can open it.
#![cfg(test)]

#[path = "it/common/mod.rs"]
mod common;

use std::process::Command;

use common::*;
use vault_service::{StoreError, Vault, VaultError};

const CHILD_DIR: &str = "CARDVAULT_LOCK_CHILD_DIR";

/// The child, started by `a_second_process_is_refused` (with `--ignored` and [`CHILD_DIR`] set);
/// run any other way it fails rather than passing by doing nothing.
#[test]
#[ignore = "started as a child process by a_second_process_is_refused"]
fn lock_child() {
    let dir = std::env::var(CHILD_DIR)
        .expect("run by a_second_process_is_refused, which sets CARDVAULT_LOCK_CHILD_DIR");
    let clock = std::sync::Arc::new(vault_service::ManualClock::new(T0));
    match Vault::open(&dir, &passphrase("test passphrase"), options(clock)) {
        Ok(_) => println!("RESULT opened"),
        Err(VaultError::Store(StoreError::InUse(_))) => println!("RESULT in-use"),
        Err(e) => println!("RESULT other: {e}"),
    }
}

fn run_child(dir: &std::path::Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints "test lock_child ... " on the same line before the child's own output.
    stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_owned()))
        .unwrap_or_else(|| "no result".into())
}

#[test]
fn a_second_process_is_refused_while_the_vault_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    assert_eq!(run_child(dir.path()), "in-use");
    drop(vault);
    assert_eq!(run_child(dir.path()), "opened");
}
