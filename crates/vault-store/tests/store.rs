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
