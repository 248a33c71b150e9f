//! Blocks of many entries: how reveals are packed, and that verify still names the first bad
//! entry inside a block. (The single-entry layout is covered by `tests/audit.rs`.)

use std::{path::Path, sync::Arc};

use time::macros::datetime;
use vault_core::{Expiry, KdfParams, KeySource, Pan, SecretKey, Token};
use vault_store::Durability;

use crate::audit::codec::Chain;

fn entry_key(seq: u64) -> Vec<u8> {
    Chain::LOCAL.entry_key(seq)
}
use crate::{
    AuditAction, ManualClock, MerchantId, NewCard, RevealAudit, TokenizeOptions, Vault, VaultError,
    VaultOptions,
};

/// Size of one reveal entry of the local actor: body 48 + two hashes.
const REVEAL_ENTRY: usize = 112;

fn options() -> VaultOptions {
    VaultOptions {
        durability: Durability::Flush,
        kdf: KdfParams::insecure_for_tests(),
        clock: Arc::new(ManualClock::new(datetime!(2026-11-21 12:00:00 UTC))),
        cache_capacity: 16 * 1024 * 1024,
    }
}

fn key() -> KeySource {
    KeySource::KeyFile(SecretKey::from_bytes([9; 32]))
}

fn merchant() -> MerchantId {
    MerchantId::new(42).unwrap()
}

fn vault_with_card(dir: &Path) -> (Vault, Token) {
    let vault = Vault::create(dir, &key(), options()).unwrap();
    let card = NewCard::new(
        Pan::parse("4111111111111111").unwrap(),
        Expiry::parse_yymm("3001").unwrap(),
    );
    let t = vault
        .tokenize(merchant(), card, TokenizeOptions::default())
        .unwrap()
        .token;
    (vault, t)
}

/// Holds the committer on a job until the returned sender is dropped.
fn hold_committer(vault: &Vault) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    vault.inner.store.submit(
        move |_| {
            let _ = rx.recv();
            Ok::<(), VaultError>(())
        },
        |_| {},
    );
    tx
}

/// `n` reveals queued while the committer is held: one drain job appends all of them.
fn packed_log(dir: &Path, n: usize) -> Vault {
    let (vault, t) = vault_with_card(dir);
    vault.set_reveal_audit(RevealAudit::Queued);
    let hold = hold_committer(&vault);
    for _ in 0..n {
        vault.reveal(merchant(), &t, None).unwrap();
    }
    drop(hold);
    vault.barrier().unwrap();
    vault
}

fn block_keys(dir: &Path) -> Vec<(u64, usize)> {
    let db = sled::open(dir.join("sled")).unwrap();
    db.scan_prefix(b"A")
        .map(|r| {
            let (k, v) = r.unwrap();
            let seq = u64::from_be_bytes(k[1..].try_into().unwrap());
            (seq, v.len())
        })
        .collect()
}

/// Builds a packed log of `n` entries, closes it, applies `f` to its tree, reopens, verifies.
fn verify_after(n: usize, f: impl FnOnce(&sled::Db)) -> crate::AuditReport {
    let dir = tempfile::tempdir().unwrap();
    let vault = packed_log(dir.path(), n);
    assert!(vault.audit_verify().unwrap().is_ok());
    drop(vault);
    {
        let db = sled::open(dir.path().join("sled")).unwrap();
        f(&db);
        db.flush().unwrap();
    }
    let vault = Vault::open(dir.path(), &key(), options()).unwrap();
    vault.audit_verify().unwrap()
}

#[test]
fn queued_reveals_of_one_group_share_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let vault = packed_log(dir.path(), 100);
    assert_eq!(
        vault
            .inner
            .audit_in_flight
            .load(std::sync::atomic::Ordering::Acquire),
        0
    );
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 100);
    let tail = vault.audit_tail(50).unwrap();
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (51..=100).collect::<Vec<_>>()
    );
    assert!(tail.iter().all(|e| e.action == AuditAction::Reveal));
    assert!(tail.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    drop(vault);
    // 4 KiB blocks of 112-byte entries: 37 + 37 + 26.
    assert_eq!(
        block_keys(dir.path()),
        [
            (1, 37 * REVEAL_ENTRY),
            (38, 37 * REVEAL_ENTRY),
            (75, 26 * REVEAL_ENTRY)
        ]
    );
}

#[test]
fn a_log_across_key_windows_reads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let vault = packed_log(dir.path(), 600);
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 600);
    let all = vault.audit_tail(usize::MAX).unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=600).collect::<Vec<_>>()
    );
    // A tail that starts inside a block that began in the window before.
    let tail = vault.audit_tail(600 - 255).unwrap();
    assert_eq!(tail.first().map(|e| e.seq), Some(256));
    assert_eq!(tail.len(), 345);
    // Later single-entry appends continue the chain after the blocks.
    vault.rotate_key().unwrap();
    assert_eq!(vault.audit_verify().unwrap().entries, 601);
}

#[test]
fn a_reveal_is_answered_only_once_its_entry_is_durable_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, t) = vault_with_card(dir.path());
    let before = vault.inner.store.stats().jobs;
    let hold = hold_committer(&vault);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let v = vault.clone();
    std::thread::spawn(move || {
        let r = v
            .reveal(merchant(), &t, None)
            .map(|c| c.pan.expose_digits().to_owned());
        done_tx.send(r).unwrap();
    });
    // The committer is held, so the entry cannot be durable: no answer may come.
    assert!(matches!(
        done_rx.recv_timeout(std::time::Duration::from_millis(300)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
    ));
    drop(hold);
    assert_eq!(done_rx.recv().unwrap().unwrap(), "4111111111111111");
    // Answered after its group committed: the entry is in the tree without waiting for a barrier,
    // and the group holding it has been counted (the held job plus the drain job).
    assert!(vault.inner.store.stats().jobs >= before + 2);
    let entries = vault.inner.store.scan_raw(b"A", usize::MAX).unwrap();
    assert!(!entries.is_empty());
    let tail = vault.audit_tail(1).unwrap();
    assert_eq!(tail.last().map(|e| e.action), Some(AuditAction::Reveal));
}

#[test]
fn durable_reveals_return_once_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, t) = vault_with_card(dir.path());
    vault.set_reveal_audit(RevealAudit::Durable);
    let hold = hold_committer(&vault);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for _ in 0..3 {
        let v = vault.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let r = v
                .reveal(merchant(), &t, None)
                .map(|c| c.pan.expose_digits().to_owned());
            done.send(r).unwrap();
        });
    }
    drop(hold);
    for _ in 0..3 {
        assert_eq!(done_rx.recv().unwrap().unwrap(), "4111111111111111");
    }
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 3);
}

#[test]
fn the_queue_bound_is_held_until_the_group_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, t) = vault_with_card(dir.path());
    vault.set_reveal_audit(RevealAudit::Queued);
    let hold = hold_committer(&vault);
    for _ in 0..crate::MAX_QUEUED_AUDIT {
        vault.reveal(merchant(), &t, None).unwrap();
    }
    let in_flight = || {
        vault
            .inner
            .audit_in_flight
            .load(std::sync::atomic::Ordering::Acquire)
    };
    assert_eq!(in_flight(), crate::MAX_QUEUED_AUDIT);
    drop(hold);
    vault.barrier().unwrap();
    assert_eq!(in_flight(), 0);
    assert_eq!(
        vault.audit_verify().unwrap().entries,
        u64::try_from(crate::MAX_QUEUED_AUDIT).unwrap()
    );
}

#[test]
fn an_edited_entry_inside_a_block_is_named() {
    // Entry 50 is the 13th of the block at 38; byte 20 is in its timestamp.
    let report = verify_after(100, |db| {
        let mut v = db.get(entry_key(38)).unwrap().unwrap().to_vec();
        v[12 * REVEAL_ENTRY + 20] ^= 0x01;
        db.insert(entry_key(38), v).unwrap();
    });
    assert_eq!(report.first_bad, Some(50), "{report:?}");
    assert_eq!(report.entries, 49);
}

#[test]
fn an_edited_entry_in_a_later_window_is_named() {
    let report = verify_after(600, |db| {
        // The block holding entry 300 starts at 297 (blocks of 37 from 1).
        let mut v = db.get(entry_key(297)).unwrap().unwrap().to_vec();
        v[3 * REVEAL_ENTRY + REVEAL_ENTRY - 65] ^= 0x01;
        db.insert(entry_key(297), v).unwrap();
    });
    assert_eq!(report.first_bad, Some(300), "{report:?}");
}

#[test]
fn a_truncated_block_is_found() {
    let report = verify_after(100, |db| {
        let v = db.get(entry_key(1)).unwrap().unwrap().to_vec();
        db.insert(entry_key(1), &v[..30 * REVEAL_ENTRY]).unwrap();
    });
    assert_eq!(report.first_bad, Some(31), "{report:?}");
}

#[test]
fn a_cut_inside_an_entry_is_found() {
    let report = verify_after(100, |db| {
        let v = db.get(entry_key(38)).unwrap().unwrap().to_vec();
        db.insert(entry_key(38), &v[..5 * REVEAL_ENTRY + 40])
            .unwrap();
    });
    assert_eq!(report.first_bad, Some(43), "{report:?}");
}

#[test]
fn a_deleted_block_is_found() {
    let report = verify_after(100, |db| {
        db.remove(entry_key(38)).unwrap();
    });
    assert_eq!(report.first_bad, Some(38), "{report:?}");
    assert_eq!(report.entries, 37);
}

#[test]
fn a_deleted_last_block_is_found() {
    let report = verify_after(100, |db| {
        db.remove(entry_key(75)).unwrap();
    });
    assert_eq!(report.first_bad, Some(75), "{report:?}");
}

#[test]
fn swapped_blocks_are_found() {
    let report = verify_after(100, |db| {
        let a = db.get(entry_key(1)).unwrap().unwrap();
        let b = db.get(entry_key(38)).unwrap().unwrap();
        db.insert(entry_key(1), b).unwrap();
        db.insert(entry_key(38), a).unwrap();
    });
    assert_eq!(report.first_bad, Some(1), "{report:?}");
}

#[test]
fn a_value_inserted_inside_a_block_is_found() {
    // A copy of entry 40 (cut from its block) stored under its own seq: the chain through the
    // block still verifies, the stray key does not.
    let report = verify_after(100, |db| {
        let v = db.get(entry_key(38)).unwrap().unwrap().to_vec();
        db.insert(entry_key(40), &v[2 * REVEAL_ENTRY..3 * REVEAL_ENTRY])
            .unwrap();
    });
    assert_eq!(report.first_bad, Some(40), "{report:?}");
}

#[test]
fn a_block_appended_after_the_head_is_found() {
    let report = verify_after(100, |db| {
        let v = db.get(entry_key(75)).unwrap().unwrap();
        db.insert(entry_key(101), v).unwrap();
    });
    assert_eq!(report.first_bad, Some(101), "{report:?}");
}

#[test]
fn a_full_write_queue_answers_busy_but_reveals_are_still_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, t) = vault_with_card(dir.path());
    vault.set_write_queue_limit(1);
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    vault.inner.store.submit(
        move |_| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
            Ok::<(), VaultError>(())
        },
        |_| {},
    );
    started_rx.recv().unwrap();
    // One job waits in the queue: the bound is reached.
    let filler = hold_committer(&vault);
    let card = NewCard::new(
        Pan::parse("5555555555554444").unwrap(),
        Expiry::parse_yymm("3001").unwrap(),
    );
    let err = vault
        .tokenize(merchant(), card, TokenizeOptions::default())
        .unwrap_err();
    assert!(matches!(err, VaultError::Busy), "{err:?}");
    // A reveal is not refused: its entry rides on the one drain job, and it is answered once the
    // committer moves again.
    let v = vault.clone();
    let reveal = std::thread::spawn(move || v.reveal(merchant(), &t, None).map(|_| ()));
    drop(filler);
    drop(release_tx);
    reveal.join().unwrap().unwrap();
    assert_eq!(vault.audit_verify().unwrap().entries, 1);
}

/// An archive takes at most its bound of blocks and says that older ones remain; the next run
/// goes on from the anchor the first left, and the log and both files verify.
#[test]
fn an_archive_stops_at_its_bound_and_the_next_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &key(), options()).unwrap();
    // One block per entry: each durable entry is a group of its own.
    for _ in 0..8 {
        vault
            .audit(AuditAction::Reveal, None, crate::AuditOutcome::Ok)
            .unwrap();
    }
    let end = vault.audit_verify().unwrap().entries;
    let cut = datetime!(2026-11-21 12:00:01 UTC);
    let first = dir.path().join("1.bin");
    let a = vault.audit_archive_at_most(cut, &first, 3).unwrap();
    assert!(a.more, "{a:?}");
    assert_eq!(a.entries, 3);
    assert_eq!((a.chains[0].first_seq, a.chains[0].last_seq), (1, 3));
    let second = dir.path().join("2.bin");
    let b = vault.audit_archive_at_most(cut, &second, 100).unwrap();
    assert!(!b.more, "{b:?}");
    // Everything but the newest block.
    assert_eq!((b.chains[0].first_seq, b.chains[0].last_seq), (4, end - 1));
    for (file, archived) in [(&first, &a), (&second, &b)] {
        let report = vault.audit_verify_archive(&std::fs::read(file).unwrap());
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.entries, archived.entries);
    }
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, end);
}
