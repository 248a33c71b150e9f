//! Crash safety: a child process tokenizes and deletes under load and is killed with SIGKILL at a
//! random moment; after reopening, every acknowledged token reveals its exact card and every
//! acknowledged delete stays deleted. `CARDVAULT_CRASH_RUNS` sets the number of kills (default 5).
#![cfg(test)]

#[path = "it/common/mod.rs"]
mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use common::*;
use rand::RngExt;
use vault_service::{
    KdfParams, SystemClock, Token, TokenizeOptions, Vault, VaultError, VaultOptions,
};

const CHILD_DIR: &str = "CARDVAULT_CRASH_CHILD_DIR";

fn child_options() -> VaultOptions {
    VaultOptions {
        kdf: KdfParams::insecure_for_tests(),
        clock: Arc::new(SystemClock),
        ..VaultOptions::default()
    }
}

/// The child, started by `crash_recovery` (with `--ignored` and [`CHILD_DIR`] set); run any
/// other way it fails rather than passing by doing nothing.
#[test]
#[ignore = "started as a child process by crash_recovery"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR)
        .expect("run by crash_recovery, which sets CARDVAULT_CRASH_CHILD_DIR");
    let vault = Vault::open(&dir, &passphrase("crash"), child_options()).unwrap();
    // libtest has printed "test crash_child ... " without a newline: end that line first.
    println!();
    let m = merchant(42);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let vault = vault.clone();
            thread::spawn(move || {
                let mut rng = rand::rng();
                let mut mine: Vec<Token> = Vec::new();
                loop {
                    if !mine.is_empty() && rng.random_range(0..5) == 0 {
                        let t = mine.swap_remove(rng.random_range(0..mine.len()));
                        // Announce the delete first: if the kill lands while it is in flight, the
                        // parent knows the token may legitimately be gone.
                        writeln!(std::io::stdout().lock(), "d {t}").unwrap();
                        vault.delete(m, &t).unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "D {t}").unwrap();
                    } else {
                        let pan = random_pan(&mut rng, "4", 16);
                        let t = vault
                            .tokenize(m, card(&pan, "3106"), TokenizeOptions::default())
                            .unwrap()
                            .token;
                        mine.push(t);
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "T {t} {pan}").unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

#[test]
fn crash_recovery_loses_no_acknowledged_write() {
    let runs: usize = std::env::var("CARDVAULT_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    drop(Vault::create(dir.path(), &passphrase("crash"), child_options()).unwrap());
    let m = merchant(42);
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut order: Vec<(String, String)> = Vec::new();
    let mut in_flight: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut rng = rand::rng();
    for run in 0..runs {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let reader = {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("T ") {
                        let _ = first_tx.send(());
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        // Kill at a random moment of the write load, not of the open (which replays the previous
        // run's log and can take long on a loaded machine).
        let _ = first_rx.recv_timeout(Duration::from_secs(120));
        thread::sleep(Duration::from_millis(rng.random_range(100..700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let lines = std::mem::take(&mut *lines.lock().unwrap());
        let mut n = 0;
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["T", t, pan] => {
                    acked.insert((*t).to_owned(), (*pan).to_owned());
                    order.push(((*t).to_owned(), (*pan).to_owned()));
                    n += 1;
                }
                ["d", t] => {
                    // Delete in flight: until its "D" line, the token may be present or gone.
                    in_flight.insert((*t).to_owned());
                }
                ["D", t] => {
                    in_flight.remove(*t);
                    acked.remove(*t);
                    deleted.push((*t).to_owned());
                    n += 1;
                }
                _ => {}
            }
        }
        assert!(
            n > 0,
            "run {run}: the child acknowledged nothing before it was killed"
        );
        let vault = Vault::open(dir.path(), &passphrase("crash"), child_options()).unwrap();
        let mut lost = Vec::new();
        for (i, (t, pan)) in order.iter().enumerate() {
            if !acked.contains_key(t) {
                continue;
            }
            let token = Token::parse(t).unwrap();
            match vault.reveal(m, &token, None) {
                Ok(card) => assert_eq!(
                    card.pan.expose_digits(),
                    pan,
                    "run {run}: wrong card behind an acknowledged token"
                ),
                // A delete was in flight at the kill: gone is a correct outcome too.
                Err(VaultError::NotFound) if in_flight.contains(t) => {}
                Err(e) => lost.push((i, e.to_string())),
            }
        }
        assert!(
            lost.is_empty(),
            "run {run}: {} of {} acknowledged tokens lost (positions {:?})",
            lost.len(),
            order.len(),
            &lost[..lost.len().min(20)]
        );
        for t in &deleted {
            let token = Token::parse(t).unwrap();
            assert!(
                matches!(vault.get(m, &token), Err(VaultError::NotFound)),
                "run {run}: a deleted token came back"
            );
        }
        // Settle the in-flight deletes: whatever recovery chose is now the truth.
        for t in in_flight.drain() {
            if vault.get(m, &Token::parse(&t).unwrap()).is_err() {
                acked.remove(&t);
            }
        }
        println!(
            "crash run {run}: {n} acknowledged writes, {} live tokens verified",
            acked.len()
        );
    }
}
