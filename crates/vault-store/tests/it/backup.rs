//! The backup's point-in-time capture, deterministically: writes made between export steps (from
//! the progress callback) to keys already exported and to keys not yet exported never show in the
//! backup, which restores to exactly the state at the start.

use vault_store::{DedupeKey, LookupId, Store, StoreError, StoreOptions, StoredRecord};

use crate::store::id;

fn record(i: u64, tag: u8) -> StoredRecord {
    StoredRecord {
        merchant: 1,
        token: [tag; 24],
        created_at: 0,
        updated_at: 0,
        keep_until: 1_900_000_000 + i64::try_from(i).unwrap(),
        dedupe: DedupeKey([0; 16]),
        dedupe_indexed: false,
        customer: None,
        sealed: vec![tag; 40],
    }
}

fn put(store: &Store, ids: Vec<u64>, tag: u8) {
    store
        .write(move |tx| -> Result<(), StoreError> {
            for &i in &ids {
                tx.put_record(&id(i), &record(i, tag))?;
            }
            Ok(())
        })
        .unwrap();
}

fn delete(store: &Store, ids: Vec<u64>) {
    store
        .write(move |tx| -> Result<(), StoreError> {
            for &i in &ids {
                tx.delete_record(&id(i))?;
            }
            Ok(())
        })
        .unwrap();
}

/// Every record as (id, token tag), in key order.
fn contents(store: &Store) -> Vec<(LookupId, u8)> {
    store
        .scan_records(None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(id, r)| (id, r.unwrap().token[0]))
        .collect()
}

#[test]
fn writes_between_steps_do_not_reach_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let options = || StoreOptions {
        durability: vault_store::Durability::Flush,
        ..StoreOptions::default()
    };
    let store = Store::create(&dir.path().join("a"), b"header v1", options()).unwrap();
    // Even ids 0..40,000: ~20k records, five export steps.
    for chunk in (0..40_000u64).step_by(2).collect::<Vec<_>>().chunks(1000) {
        put(&store, chunk.to_vec(), 1);
    }
    let before = contents(&store);
    let mut out = Vec::new();
    let mut step = 0;
    let summary = store
        .backup(&mut out, |_, _| {
            step += 1;
            if step == 2 {
                // Ids below ~8,000 are exported by now; ids above are not.
                // Changes on both sides: updates, deletes, inserts (odd ids are new).
                put(&store, vec![2, 30_000, 39_998], 2);
                delete(&store, vec![4, 6, 20_000, 36_000]);
                put(&store, vec![1, 3, 25_001, 39_999, 50_001], 3);
                // Changed twice: the first saved value (the original) must win.
                put(&store, vec![30_002], 4);
                delete(&store, vec![30_002]);
                put(&store, vec![30_002], 5);
                // One backup at a time.
                assert!(matches!(
                    store.backup(Vec::new(), |_, _| {}),
                    Err(StoreError::BackupRunning)
                ));
            }
        })
        .unwrap();
    assert!(step > 3, "{step} steps");
    assert_eq!(summary.records, 20_000);
    // Once done, another backup can start.
    let mut again = Vec::new();
    store.backup(&mut again, |_, _| {}).unwrap();
    assert_ne!(contents(&store), before, "the writes did happen");
    drop(store);

    let target = dir.path().join("b");
    let r = Store::restore(
        &out[..],
        &target,
        |h| {
            assert_eq!(h, b"header v1");
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(r.records, 20_000);
    let restored = Store::open(&target, options()).unwrap();
    assert_eq!(restored.stats().records, 20_000);
    assert_eq!(contents(&restored), before);
    assert_eq!(restored.header().unwrap(), b"header v1");
}
