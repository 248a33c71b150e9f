//! The audit log: what is recorded, by whom, and that the chain catches tampering.

use crate::common;

use std::path::Path;

use common::*;
use vault_service::{Actor, AuditAction, RevealAudit, Scopes, TokenizeOptions, Vault};

const PANS: [&str; 3] = ["4111111111111111", "5555555555554444", "378282246310005"];

/// A vault with a merchant, an API key, a second merchant (one more admin entry) and three
/// revealed cards, plus the key.
fn busy_vault(dir: &Path) -> (Vault, std::sync::Arc<vault_service::ManualClock>, String) {
    let (vault, clock) = new_vault(dir);
    let m = merchant(890490);
    vault.add_merchant(m, "Shop").unwrap();
    let key = vault
        .create_api_key(m, Scopes::parse("tokenize,reveal").unwrap(), "k")
        .unwrap();
    vault.add_merchant(merchant(890491), "Other").unwrap();
    for pan in PANS {
        let t = vault
            .tokenize(m, card(pan, "3001"), TokenizeOptions::default())
            .unwrap()
            .token;
        let actor = Actor {
            merchant: Some(m),
            key_id: Some(key.info.id.clone()),
            peer_uid: Some(1000),
        };
        assert_eq!(
            vault
                .as_actor(&actor)
                .reveal(m, &t, None)
                .unwrap()
                .pan
                .expose_digits(),
            pan
        );
    }
    (vault, clock, key.expose().to_owned())
}

fn sled_entries(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = sled::open(dir.join("sled")).unwrap();
    db.scan_prefix(b"A")
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Opens the closed vault's sled tree, lets `f` change it, flushes.
fn tamper(dir: &Path, f: impl FnOnce(&sled::Db)) {
    let db = sled::open(dir.join("sled")).unwrap();
    f(&db);
    db.flush().unwrap();
}

fn key(seq: u64) -> Vec<u8> {
    let mut k = vec![b'A'];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[test]
fn no_pan_or_secret_reaches_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _, secret) = busy_vault(dir.path());
    assert!(
        vault
            .authenticate(&format!("{}x", &secret[..secret.len() - 1]))
            .is_err()
    );
    assert!(vault.authenticate(&secret).is_ok());
    drop(vault);
    let entries = sled_entries(dir.path());
    assert_eq!(entries.len(), 3 + 3 + 1);
    let secret_part = secret.rsplit('_').next().unwrap().to_owned();
    let mut needles: Vec<Vec<u8>> = PANS.iter().map(|p| p.as_bytes().to_vec()).collect();
    needles.push(secret_part.as_bytes().to_vec());
    needles.push(b"test passphrase".to_vec());
    for pan in PANS {
        // Also the PAN as packed digits / big-endian integer, in case an encoding packs it.
        let n: u64 = pan.parse().unwrap();
        needles.push(n.to_be_bytes()[2..].to_vec());
        needles.push(pan.as_bytes()[pan.len() - 10..].to_vec());
    }
    for (k, v) in &entries {
        for n in &needles {
            assert!(
                !v.windows(n.len()).any(|w| w == n.as_slice()),
                "entry {k:?} holds a secret"
            );
        }
    }
}

#[test]
fn the_log_survives_a_reopen_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock, _) = busy_vault(dir.path());
    drop(vault);
    let vault = reopen(dir.path(), clock);
    vault.rotate_key().unwrap();
    let log = vault.audit_tail(usize::MAX).unwrap();
    assert_eq!(log.len(), 7);
    assert_eq!(log.last().unwrap().seq, 7);
    assert_eq!(log.last().unwrap().action, AuditAction::KeyRotate);
    assert!(vault.audit_verify().unwrap().is_ok());
}

#[test]
fn concurrent_reveals_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(1);
    let t = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..10 {
                    vault.reveal(m, &t, None).unwrap();
                }
            });
        }
    });
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 80);
}

#[test]
fn queued_reveal_audit_still_records_every_reveal() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    vault.set_reveal_audit(RevealAudit::Queued);
    let m = merchant(1);
    let t = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    for _ in 0..50 {
        vault.reveal(m, &t, None).unwrap();
    }
    drop(vault);
    let vault = reopen(dir.path(), clock);
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 50);
}

/// Builds the busy vault (6 entries), closes it, applies `f` to its tree, reopens, verifies.
fn verify_after(f: impl FnOnce(&sled::Db)) -> vault_service::AuditReport {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock, _) = busy_vault(dir.path());
    assert!(vault.audit_verify().unwrap().is_ok());
    drop(vault);
    tamper(dir.path(), f);
    let vault = reopen(dir.path(), clock);
    vault.audit_verify().unwrap()
}

#[test]
fn an_edited_entry_is_found() {
    let report = verify_after(|db| {
        let mut v = db.get(key(4)).unwrap().unwrap().to_vec();
        // The outcome byte sits before the two hashes: make a refusal look like success, or
        // the other way round; any flipped byte must be caught.
        let at = v.len() - 65;
        v[at] ^= 0x01;
        db.insert(key(4), v).unwrap();
    });
    assert_eq!(report.first_bad, Some(4), "{report:?}");
    assert_eq!(report.entries, 3);
}

#[test]
fn an_edited_timestamp_is_found() {
    let report = verify_after(|db| {
        let mut v = db.get(key(2)).unwrap().unwrap().to_vec();
        v[16] ^= 0x01; // low byte of the unix seconds
        db.insert(key(2), v).unwrap();
    });
    assert_eq!(report.first_bad, Some(2), "{report:?}");
}

#[test]
fn a_deleted_middle_entry_is_found() {
    let report = verify_after(|db| {
        db.remove(key(3)).unwrap();
    });
    assert_eq!(report.first_bad, Some(3), "{report:?}");
}

#[test]
fn a_deleted_last_entry_is_found() {
    let report = verify_after(|db| {
        db.remove(key(6)).unwrap();
    });
    assert_eq!(report.first_bad, Some(6), "{report:?}");
}

#[test]
fn a_deleted_tail_with_a_forged_head_is_found() {
    // Deleting entries 5 and 6 and pointing the head at entry 4 (copying its hash) does not
    // verify: the head is tagged with the audit key.
    let report = verify_after(|db| {
        let e4 = db.get(key(4)).unwrap().unwrap().to_vec();
        db.remove(key(5)).unwrap();
        db.remove(key(6)).unwrap();
        let mut head = db.get(b"a").unwrap().unwrap().to_vec();
        head[1..9].copy_from_slice(&4u64.to_be_bytes());
        head[9..41].copy_from_slice(&e4[e4.len() - 32..]);
        db.insert(b"a", head).unwrap();
    });
    assert_eq!(report.first_bad, Some(5), "{report:?}");
}

#[test]
fn swapped_entries_are_found() {
    let report = verify_after(|db| {
        let a = db.get(key(2)).unwrap().unwrap();
        let b = db.get(key(5)).unwrap().unwrap();
        db.insert(key(2), b).unwrap();
        db.insert(key(5), a).unwrap();
    });
    assert_eq!(report.first_bad, Some(2), "{report:?}");
}

#[test]
fn a_renumbered_entry_is_found() {
    // Moving entry 6 into the place of a deleted entry 5, its seq rewritten.
    let report = verify_after(|db| {
        let mut v = db.get(key(6)).unwrap().unwrap().to_vec();
        v[1..9].copy_from_slice(&5u64.to_be_bytes());
        db.remove(key(6)).unwrap();
        db.insert(key(5), v).unwrap();
    });
    assert_eq!(report.first_bad, Some(5), "{report:?}");
}

#[test]
fn an_inserted_entry_is_found() {
    // A copy of a valid entry appended after the last one, head untouched.
    let report = verify_after(|db| {
        let v = db.get(key(6)).unwrap().unwrap();
        db.insert(key(7), v).unwrap();
    });
    assert_eq!(report.first_bad, Some(7), "{report:?}");
}

#[test]
fn a_missing_head_is_found() {
    let report = verify_after(|db| {
        db.remove(b"a").unwrap();
    });
    assert_eq!(report.first_bad, Some(7), "{report:?}");
}

/// After an archive, the remaining log verifies from its keyed anchor; removing or forging the
/// anchor, or editing a remaining entry, is still found; the archive verifies on its own.
#[test]
fn a_backup_is_audited_with_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _, _) = busy_vault(dir.path());
    let before = vault.audit_verify().unwrap().entries;
    let mut out = Vec::new();
    let r = vault.backup(&mut out, |_, _| {}).unwrap();
    let last = vault.audit_tail(1).unwrap().remove(0);
    assert_eq!(last.action, AuditAction::Backup);
    assert_eq!(last.seq, before + 1);
    assert_eq!(
        last.detail.as_deref(),
        Some(format!("records={},bytes={}", r.records, r.bytes).as_str())
    );
    assert!(r.records > 0 && r.bytes == out.len() as u64, "{r:?}");
    assert!(vault.audit_verify().unwrap().is_ok());
}

#[test]
fn an_archived_log_still_verifies_and_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock, _) = busy_vault(dir.path());
    let end = vault.audit_verify().unwrap().entries;
    let file = dir.path().join("archive.bin");
    let cut = vault_service::Clock::now(&*clock) + time::Duration::seconds(1);
    let a = vault.audit_archive(cut, &file).unwrap();
    assert_eq!(a.chains.len(), 1, "{a:?}");
    let c = &a.chains[0];
    assert!(a.entries > 0 && c.last_seq < end && !a.more, "{a:?}");
    assert_eq!((c.chain.as_deref(), c.first_seq), (None, 1));
    assert_eq!(a.entries, c.last_seq);
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    // The archive's own entry follows in the live log.
    assert_eq!(report.entries, end + 1);
    let last = vault.audit_tail(1).unwrap().remove(0);
    assert_eq!(last.action, AuditAction::AuditArchive);
    assert_eq!(
        last.detail.as_deref(),
        Some(format!("entries={}", a.entries).as_str())
    );
    let bytes = std::fs::read(&file).unwrap();
    let archived = vault.audit_verify_archive(&bytes);
    assert!(archived.is_ok(), "{archived:?}");
    assert_eq!(archived.entries, a.entries);
    // Paging counts only the entries still held: from 0 (or from inside the archived range) it
    // starts at the first of them, `limit` entries long.
    for _ in 0..3 {
        vault
            .audit(AuditAction::Reveal, None, vault_service::AuditOutcome::Ok)
            .unwrap();
    }
    let held = c.last_seq + 1;
    let now_end = vault.audit_verify().unwrap().entries;
    assert!(now_end >= held + 3, "{now_end} {held}");
    let seqs = |after, limit| -> Vec<u64> {
        vault
            .audit_after(after, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(0, 2), [held, held + 1]);
    assert_eq!(seqs(c.last_seq - 1, 2), [held, held + 1]);
    assert_eq!(seqs(held, 1), [held + 1]);
    assert_eq!(seqs(now_end, 5), Vec::<u64>::new());
    // New entries continue the chain after the archive.
    vault.rotate_key().unwrap();
    assert!(vault.audit_verify().unwrap().is_ok());
    drop(vault);

    // The anchor removed: the archived entries look missing.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    tamper(copy.path(), |db| {
        db.remove(b"a.anchor").unwrap();
    });
    let v = reopen(copy.path(), clock.clone());
    let report = v.audit_verify().unwrap();
    assert_eq!(report.first_bad, Some(1), "{report:?}");
    drop(v);
    // An entry after the anchor edited.
    let next = c.last_seq + 1;
    tamper(dir.path(), |db| {
        let mut v = db.get(key(next)).unwrap().unwrap().to_vec();
        let at = v.len() - 65;
        v[at] ^= 0x01;
        db.insert(key(next), v).unwrap();
    });
    let v = reopen(dir.path(), clock);
    assert_eq!(v.audit_verify().unwrap().first_bad, Some(next));
}

/// A log being appended to while it is verified (an admin checking a serving daemon's log) is
/// reported intact: every check holds against the head as it was before and after the walk.
#[test]
fn verify_while_entries_are_appended_reports_the_log_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _, _) = busy_vault(dir.path());
    let initial = vault.audit_verify().unwrap().entries;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (vault, stop) = (vault.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            // Bounded, so the walks stay short on a slow machine.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2_000 {
                vault
                    .audit(AuditAction::Reveal, None, vault_service::AuditOutcome::Ok)
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let mut last = initial;
    for _ in 0..200 {
        let report = vault.audit_verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert!(report.entries >= last, "{report:?} after {last}");
        last = report.entries;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = writer.join().unwrap();
    assert!(appended > 0);
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, initial + appended, "{report:?}");
}
