//! The store against a real sled directory: format version refusal, the directory lock, and group
//! commits that share one fsync between concurrent writers.

use std::{sync::Arc, thread};

use vault_store::{DedupeKey, LookupId, Store, StoreError, StoreOptions, StoredRecord};
use vault_testkit::files::copy_dir_except;

fn record(i: u64) -> StoredRecord {
    StoredRecord {
        merchant: 1,
        token: [u8::try_from(i % 251).unwrap(); 24],
        created_at: 0,
        updated_at: 0,
        keep_until: 1_900_000_000 + i64::try_from(i).unwrap(),
        dedupe: DedupeKey([0; 16]),
        dedupe_indexed: false,
        customer: None,
        sealed: vec![0xAA; 80],
    }
}

/// The lookup id of record `i`.
pub(crate) fn id(i: u64) -> LookupId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&i.to_be_bytes());
    LookupId(b)
}

#[test]
fn a_vault_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::create(dir.path(), b"hdr", StoreOptions::default()).unwrap());
    {
        let db = sled::open(dir.path().join("sled")).unwrap();
        db.insert(b"V", &3u16.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::NewerFormat(3)), "{err:?}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn missing_and_locked_directories_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(StoreError::NotFound(_))
    ));
    let store = Store::create(dir.path(), b"hdr", StoreOptions::default()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(StoreError::InUse(_))
    ));
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.header().unwrap(), b"hdr");
}

#[test]
fn concurrent_writers_share_group_commits_and_everything_persists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::create(dir.path(), b"hdr", StoreOptions::default()).unwrap());
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..200u64 {
                    let n = t * 1000 + i;
                    store
                        .write(move |tx| {
                            tx.put_record(&id(n), &record(n))?;
                            Ok::<_, StoreError>(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.records, 1600);
    assert_eq!(stats.jobs, 1600);
    assert!(
        stats.flushes < stats.jobs,
        "no group commit happened: {} flushes for {} jobs",
        stats.flushes,
        stats.jobs
    );
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.stats().records, 1600);
    for t in 0..8u64 {
        for i in (0..200u64).step_by(37) {
            assert_eq!(
                store.record(&id(t * 1000 + i)).unwrap(),
                Some(record(t * 1000 + i))
            );
        }
    }
    // The expiry scan (no index: a bounded walk of the records) finds exactly the records due.
    // keep_until = 1_900_000_000 + n; only n = 0..=5 (thread 0) are due at +5, found across
    // several bounded scan steps.
    let (mut due, mut cursor) = (Vec::new(), None);
    loop {
        let (found, next) = store.scan_expired(cursor, 1_900_000_000 + 5, 100).unwrap();
        due.extend(found);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    due.sort();
    let mut expected: Vec<LookupId> = (0..=5).map(id).collect();
    expected.sort();
    assert_eq!(due, expected);
}

#[test]
fn a_failed_job_leaves_no_trace_and_does_not_sink_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), b"hdr", StoreOptions::default()).unwrap();
    let r: Result<(), StoreError> = store.write(|tx| {
        tx.put_record(&id(1), &record(1))?;
        Err(StoreError::Corrupt(vault_store::Structure::Other))
    });
    assert!(r.is_err());
    assert_eq!(store.record(&id(1)).unwrap(), None);
    assert_eq!(store.stats().records, 0);
    store.write(|tx| tx.put_record(&id(2), &record(2))).unwrap();
    assert_eq!(store.stats().records, 1);
    // Reserved prefixes are refused for raw keys.
    assert!(store.write(|tx| tx.put_raw(b"Rxx", vec![1])).is_err());
}

/// Stalls the committer on a job that runs until the returned sender is dropped.
fn stall(store: &Store) -> std::sync::mpsc::Sender<()> {
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    store.submit(
        move |_| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
            Ok::<(), StoreError>(())
        },
        |_| {},
    );
    started_rx.recv().unwrap();
    release_tx
}

#[test]
fn a_full_write_queue_refuses_at_once_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path(),
        b"hdr",
        StoreOptions {
            max_queue: 4,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let release_tx = stall(&store);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for i in 0..4u64 {
        let done = done_tx.clone();
        store.submit(
            move |tx| tx.put_record(&id(i), &record(i)),
            move |r: Result<(), StoreError>| done.send(r).unwrap(),
        );
    }
    assert_eq!(store.queued_jobs(), 4);
    // A flood: every further submit is refused on the caller's thread, nothing more is queued.
    for i in 4..1004u64 {
        let done = done_tx.clone();
        store.submit(
            move |tx| tx.put_record(&id(i), &record(i)),
            move |r: Result<(), StoreError>| done.send(r).unwrap(),
        );
        assert!(matches!(done_rx.try_recv(), Ok(Err(StoreError::Busy))));
    }
    assert_eq!(store.queued_jobs(), 4);
    // The blocking form is refused the same way, without waiting for the stalled committer.
    let err = store
        .write(|tx| tx.put_record(&id(9999), &record(9999)))
        .unwrap_err();
    assert!(matches!(err, StoreError::Busy), "{err:?}");
    assert!(err.to_string().contains("try again"), "{err}");
    drop(release_tx);
    for _ in 0..4 {
        done_rx.recv().unwrap().unwrap();
    }
    assert_eq!(store.queued_jobs(), 0);
    store
        .write(|tx| tx.put_record(&id(5000), &record(5000)))
        .unwrap();
    assert_eq!(store.stats().records, 5);
}

#[test]
fn a_job_submitted_alone_is_committed_in_a_group_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), b"hdr", StoreOptions::default()).unwrap();
    // Everything below is queued before the next group forms.
    let release_tx = stall(&store);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for i in 0..5u64 {
        let done = done_tx.clone();
        let job = move |tx: &mut vault_store::WriteTx<'_>| tx.put_record(&id(i), &record(i));
        let report = move |r: Result<(), StoreError>| done.send(r).unwrap();
        if i == 2 {
            store.submit_alone(job, report);
        } else {
            store.submit(job, report);
        }
    }
    let groups_before = store.stats().groups;
    drop(release_tx);
    for _ in 0..5 {
        done_rx.recv().unwrap().unwrap();
    }
    // Without it, the five queued jobs would make one group.
    assert_eq!(
        store.stats().groups - groups_before,
        4,
        "stall, [0 1], [2], [3 4]"
    );
    assert_eq!(store.stats().records, 5);
}

/// Copies a vault directory as a crash would leave it: the store is leaked (never closed), so
/// what is on disk is what its writes made durable.
fn crashed_copy(store: Store, to: &std::path::Path) {
    let from = store.dir().to_path_buf();
    std::mem::forget(store);
    copy_dir_except(&from, to, Some("cardvault.lock"));
}

/// Where the log's entries end (its tail is zeros).
fn log_end(log: &[u8]) -> usize {
    let mut at = 16;
    loop {
        let len = u32::from_be_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            return at;
        }
        at += 8 + len;
    }
}

/// The default options: `Durability::Sync`, so writes go through the write-ahead log.
fn wal_options() -> StoreOptions {
    StoreOptions::default()
}

#[test]
fn acknowledged_writes_survive_a_crash_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("v"), b"hdr", wal_options()).unwrap();
    for i in 0..200u64 {
        store
            .write(move |tx| tx.put_record(&id(i), &record(i)))
            .unwrap();
    }
    store
        .write(|tx| tx.delete_record(&id(7)).map(|_| ()))
        .unwrap();
    let stats = store.stats();
    assert_eq!(stats.flushes, 201, "one log sync per group");
    let log = std::fs::read(dir.path().join("v/wal")).unwrap();
    assert_ne!(log[16..20], [0; 4], "the log holds the groups");
    let copy = dir.path().join("crashed");
    crashed_copy(store, &copy);
    let reopened = Store::open(&copy, wal_options()).unwrap();
    assert_eq!(reopened.stats().records, 199);
    for i in 0..200u64 {
        assert_eq!(
            reopened.record(&id(i)).unwrap().is_some(),
            i != 7,
            "record {i}"
        );
    }
    // Replayed into sled and synced: the log starts empty, and a second open needs none of it.
    assert_eq!(std::fs::read(copy.join("wal")).unwrap()[16..20], [0; 4]);
    drop(reopened);
    let again = Store::open(&copy, wal_options()).unwrap();
    assert_eq!(again.stats().records, 199);
}

#[test]
fn a_torn_log_tail_opens_and_a_damaged_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("v"), b"hdr", wal_options()).unwrap();
    for i in 0..20u64 {
        store
            .write(move |tx| tx.put_record(&id(i), &record(i)))
            .unwrap();
    }
    let pristine = dir.path().join("pristine");
    crashed_copy(store, &pristine);
    let log = std::fs::read(pristine.join("wal")).unwrap();

    // An append cut by the crash (never acknowledged): half an entry at the end.
    let torn = dir.path().join("torn");
    copy_dir_except(&pristine, &torn, Some("cardvault.lock"));
    let mut b = log.clone();
    let end = log_end(&log);
    b[end..end + 40].copy_from_slice(&log[16..16 + 40]);
    std::fs::write(torn.join("wal"), &b).unwrap();
    let s = Store::open(&torn, wal_options()).unwrap();
    assert_eq!(s.stats().records, 20);
    for i in 0..20u64 {
        assert!(s.record(&id(i)).unwrap().is_some(), "record {i}");
    }
    drop(s);

    // A flipped byte in the first entry, intact acknowledged entries after it: refused, even
    // though sled may already hold that group.
    let middle = dir.path().join("middle");
    copy_dir_except(&pristine, &middle, Some("cardvault.lock"));
    let mut b = log.clone();
    b[40] ^= 0x10;
    std::fs::write(middle.join("wal"), &b).unwrap();
    let err = Store::open(&middle, wal_options()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt(vault_store::Structure::Wal(vault_store::WalPart::Entry))
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("write-ahead log"), "{err}");
}

#[test]
fn a_version_1_vault_without_a_log_opens_and_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    {
        let store = Store::create(&v, b"hdr", wal_options()).unwrap();
        for i in 0..10u64 {
            store
                .write(move |tx| tx.put_record(&id(i), &record(i)))
                .unwrap();
        }
    }
    // The layout written before the log: store version 1 and no `wal` file.
    std::fs::remove_file(v.join("wal")).unwrap();
    {
        let db = sled::open(v.join("sled")).unwrap();
        db.insert(b"V", &1u16.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(&v, wal_options()).unwrap();
    assert_eq!(store.stats().records, 10);
    store
        .write(|tx| tx.put_record(&id(10), &record(10)))
        .unwrap();
    drop(store);
    let db = sled::open(v.join("sled")).unwrap();
    assert_eq!(
        db.get(b"V").unwrap().unwrap().as_ref(),
        &2u16.to_be_bytes()[..]
    );
    assert!(
        db.get([b"R".as_slice(), &id(10).0].concat())
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_log_that_starts_past_the_tree_is_lost_writes() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let store = Store::create(&v, b"hdr", wal_options()).unwrap();
    for i in 0..5u64 {
        store
            .write(move |tx| tx.put_record(&id(i), &record(i)))
            .unwrap();
    }
    let early = dir.path().join("early");
    let crashed = dir.path().join("crashed");
    crashed_copy(store, &crashed);
    copy_dir_except(&crashed, &early, Some("cardvault.lock"));
    // Drop the first entry of the log: the log now starts at group 2 while the tree has 0.
    let log = std::fs::read(crashed.join("wal")).unwrap();
    let first_len = u32::from_be_bytes(log[16..20].try_into().unwrap()) as usize;
    let mut b = log[..16].to_vec();
    b.extend_from_slice(&log[16 + 8 + first_len..]);
    std::fs::write(early.join("wal"), &b).unwrap();
    match Store::open(&early, wal_options()) {
        Err(StoreError::LostWrites { stored, expected }) => assert!(stored < expected),
        // sled's background flusher may have made group 1 durable on its own before the copy.
        Ok(s) => assert_eq!(s.stats().records, 5),
        Err(e) => unreachable!("unexpected {e:?}"),
    }
}

#[test]
fn a_log_that_ends_before_the_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let store = Store::create(&v, b"hdr", wal_options()).unwrap();
    for i in 0..3u64 {
        store
            .write(move |tx| tx.put_record(&id(i), &record(i)))
            .unwrap();
    }
    let crashed = dir.path().join("crashed");
    crashed_copy(store, &crashed);
    let old_log = std::fs::read(crashed.join("wal")).unwrap();
    // Replay makes sled hold groups 1..=3 durably; then more groups are written and the store
    // closes cleanly.
    let store = Store::open(&crashed, wal_options()).unwrap();
    for i in 3..6u64 {
        store
            .write(move |tx| tx.put_record(&id(i), &record(i)))
            .unwrap();
    }
    drop(store);
    // The old log (groups 1..=3) put back: applying it would move keys back. Refused.
    std::fs::write(crashed.join("wal"), &old_log).unwrap();
    let err = Store::open(&crashed, wal_options()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt(vault_store::Structure::Wal(
                vault_store::WalPart::EndsBeforeDatabase
            ))
        ),
        "{err:?}"
    );
}
