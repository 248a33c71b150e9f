//! The store against a real sled directory: format version refusal, the directory lock, and group
//! commits that share one fsync between concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, thread};

use vault_store::{DedupeKey, LookupId, Store, StoreError, StoreOptions, StoredRecord};

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

fn id(i: u64) -> LookupId {
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
        db.insert(b"V", &2u16.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::NewerFormat(2)), "{err:?}");
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
    // The expiry index finds exactly the records due.
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
        Err(StoreError::Corrupt("test"))
    });
    assert!(r.is_err());
    assert_eq!(store.record(&id(1)).unwrap(), None);
    assert_eq!(store.stats().records, 0);
    store.write(|tx| tx.put_record(&id(2), &record(2))).unwrap();
    assert_eq!(store.stats().records, 1);
    // Reserved prefixes are refused for raw keys.
    assert!(store.write(|tx| tx.put_raw(b"Rxx", vec![1])).is_err());
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
    // Stall the committer on a job that waits for `release`.
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
