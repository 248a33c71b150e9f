//! The engine conformance suite: what any [`Engine`](crate::Engine) under a [`Store`] must do for
//! the vault and the gateway. It drives the store's public API (the one the layers above use), so
//! a new engine passes it through [`Store::with_engine`] exactly as it will be used.
//!
//! An engine's tests implement [`Harness`] (how to create, reopen and crash-reopen a store on it)
//! and call [`run_all`]; each check is also public on its own. The sled engine runs it in
//! `vault-store`'s own tests. Behind the `conformance` cargo feature.
//!
//! The checks: every operation ([`operations`]), read-your-writes inside a job
//! ([`read_your_writes`]), atomicity of a job and of a group ([`atomicity`]), acknowledged writes
//! surviving a clean reopen and a crash ([`reopen`], [`crash`]), ordered range scans
//! ([`ordering`]), conditional writes, raced from several threads ([`conditional_writes`]), the
//! group counter ([`group_counter`]) and a consistent backup capture under concurrent writes
//! ([`backup_capture`]).

use std::{sync::Arc, thread};

use crate::{
    ConflictKind, DedupeKey, LookupId, Store, StoreError, StoreOptions, StoredRecord, Structure,
};

/// How the suite gets stores of the engine under test.
pub trait Harness {
    /// A new, empty vault with `header` as its key header. Every call makes a different vault.
    fn create(&mut self, header: &[u8], options: StoreOptions) -> Store;
    /// Closes `store` cleanly and opens the same vault again.
    fn reopen(&mut self, store: Store, options: StoreOptions) -> Store;
    /// Abandons `store` the way a crash (`kill -9`, power loss) would, without closing it, and
    /// opens what the crash left behind.
    fn crash_and_reopen(&mut self, store: Store, options: StoreOptions) -> Store;
}

/// Runs every check.
pub fn run_all(h: &mut impl Harness) {
    operations(h);
    read_your_writes(h);
    atomicity(h);
    reopen(h);
    crash(h);
    ordering(h);
    conditional_writes(h);
    guarded_reads(h);
    group_counter(h);
    backup_capture(h);
}

fn opts() -> StoreOptions {
    StoreOptions::default()
}

/// A sample record whose token and keep-until follow `i`.
pub fn record(i: u64) -> StoredRecord {
    StoredRecord {
        merchant: 7,
        token: [u8::try_from(i % 251).expect("small"); 24],
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        keep_until: 1_900_000_000 + i64::try_from(i).expect("small"),
        dedupe: DedupeKey([u8::try_from(i % 256).expect("small"); 16]),
        dedupe_indexed: true,
        customer: None,
        sealed: vec![0x5A; 48],
    }
}

/// A lookup id ordered like `i`.
pub fn id(i: u64) -> LookupId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&i.to_be_bytes());
    LookupId(b)
}

fn small(n: u64) -> u32 {
    u32::try_from(n).expect("small")
}

fn small8(n: u64) -> u8 {
    u8::try_from(n).expect("small")
}

fn key(prefix: u8, i: u32) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// Point get, put and delete of raw keys, records and de-duplication entries, the record count,
/// and the refusal of reserved prefixes.
pub fn operations(h: &mut impl Harness) {
    let store = h.create(b"hdr", opts());
    assert_eq!(store.header().expect("header"), b"hdr");
    store
        .write(|tx| {
            tx.put_raw(b"Mone", b"1".to_vec())?;
            tx.put_raw(b"Mtwo", b"2".to_vec())?;
            tx.put_record(&id(1), &record(1))?;
            tx.insert_new_record(&id(2), &record(2))?;
            tx.put_dedupe(&record(1).dedupe, &record(1).token)?;
            Ok::<_, StoreError>(())
        })
        .expect("write");
    assert_eq!(store.get_raw(b"Mone").expect("get"), Some(b"1".to_vec()));
    assert_eq!(store.get_raw(b"Mnone").expect("get"), None);
    assert_eq!(store.record(&id(1)).expect("record"), Some(record(1)));
    assert_eq!(store.record(&id(2)).expect("record"), Some(record(2)));
    assert_eq!(store.record(&id(3)).expect("record"), None);
    assert_eq!(store.stats().records, 2);
    // Replacing a record keeps the count; deleting it removes its de-duplication entry.
    store
        .write(|tx| tx.put_record(&id(1), &record(1)))
        .expect("replace");
    assert_eq!(store.stats().records, 2);
    let removed = store
        .write(|tx| {
            let old = tx.delete_record(&id(1))?;
            assert_eq!(tx.dedupe(&record(1).dedupe)?, None);
            tx.delete_raw_key(b"Mone")?;
            assert!(tx.delete_raw(&id(2))?);
            assert!(!tx.delete_raw(&id(2))?);
            Ok::<_, StoreError>(old)
        })
        .expect("delete");
    assert_eq!(removed, Some(record(1)));
    assert_eq!(store.record(&id(1)).expect("record"), None);
    assert_eq!(store.get_raw(b"Mone").expect("get"), None);
    assert_eq!(store.get_raw(b"Mtwo").expect("get"), Some(b"2".to_vec()));
    assert_eq!(store.stats().records, 0);
    // The header is replaced with its group.
    store
        .write(|tx| {
            tx.put_header(b"hdr2".to_vec());
            tx.put_raw(b"Mthree", b"3".to_vec())
        })
        .expect("header");
    assert_eq!(store.header().expect("header"), b"hdr2");
    // The store's own key spaces are not writable or readable raw.
    for reserved in [&b"R1"[..], b"D1", b"C", b"G", b"V", b"E", b""] {
        let r = store.write(move |tx| tx.put_raw(reserved, vec![1]));
        assert!(
            matches!(r, Err(StoreError::Corrupt(Structure::ReservedKey))),
            "{reserved:?}: {r:?}"
        );
        assert!(store.get_raw(reserved).is_err());
    }
    let store = h.reopen(store, opts());
    assert_eq!(store.header().expect("header"), b"hdr2");
    assert_eq!(store.get_raw(b"Mthree").expect("get"), Some(b"3".to_vec()));
}

/// A job reads its own pending writes, and a later job of the store reads an earlier one's.
pub fn read_your_writes(h: &mut impl Harness) {
    let store = h.create(b"hdr", opts());
    store
        .write(|tx| {
            tx.put_raw(b"Mk", b"a".to_vec())?;
            assert_eq!(tx.get_raw(b"Mk")?, Some(b"a".to_vec()));
            tx.put_raw(b"Mk", b"b".to_vec())?;
            assert_eq!(tx.get_raw(b"Mk")?, Some(b"b".to_vec()));
            tx.put_record(&id(5), &record(5))?;
            assert_eq!(tx.record(&id(5))?, Some(record(5)));
            tx.put_dedupe(&DedupeKey([9; 16]), &[1; 24])?;
            assert_eq!(tx.dedupe(&DedupeKey([9; 16]))?, Some([1; 24]));
            tx.delete_raw_key(b"Mk")?;
            assert_eq!(tx.get_raw(b"Mk")?, None);
            Ok::<_, StoreError>(())
        })
        .expect("write");
    // Jobs queued together (one group, or consecutive groups) see each other in order.
    let store = Arc::new(store);
    let (tx1, rx) = std::sync::mpsc::channel();
    for i in 0..50u32 {
        let done = tx1.clone();
        store.submit(
            move |tx| {
                let prev = match i {
                    0 => None,
                    _ => tx.get_raw(&key(b'M', i - 1))?,
                };
                tx.put_raw(&key(b'M', i), vec![u8::from(prev.is_some() || i == 0)])?;
                Ok::<_, StoreError>(())
            },
            move |r| {
                let _ = done.send(r);
            },
        );
    }
    for _ in 0..50 {
        rx.recv().expect("answer").expect("job");
    }
    for i in 0..50u32 {
        assert_eq!(
            store.get_raw(&key(b'M', i)).expect("get"),
            Some(vec![1]),
            "job {i} did not see job {}",
            i.saturating_sub(1)
        );
    }
}

/// A job that fails (or panics) leaves nothing and does not sink the other jobs of its group.
pub fn atomicity(h: &mut impl Harness) {
    let store = Arc::new(h.create(b"hdr", opts()));
    let r: Result<(), StoreError> = store.write(|tx| {
        tx.put_record(&id(1), &record(1))?;
        tx.put_raw(b"Mfail", vec![1])?;
        tx.put_header(b"never".to_vec());
        Err(StoreError::Corrupt(Structure::Other))
    });
    assert!(r.is_err());
    assert_eq!(store.record(&id(1)).expect("record"), None);
    assert_eq!(store.get_raw(b"Mfail").expect("get"), None);
    assert_eq!(store.header().expect("header"), b"hdr");
    assert_eq!(store.stats().records, 0);
    // Many jobs at once, every third failing after writing: exactly the others are stored.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for i in 0..300u32 {
        let done = done_tx.clone();
        store.submit(
            move |tx| {
                tx.put_raw(&key(b'M', i), vec![1])?;
                tx.put_record(&id(u64::from(i) + 100), &record(u64::from(i)))?;
                if i % 3 == 0 {
                    return Err(StoreError::Corrupt(Structure::Other));
                }
                Ok(())
            },
            move |r: Result<(), StoreError>| {
                let _ = done.send((i, r.is_ok()));
            },
        );
    }
    let mut kept = 0;
    for _ in 0..300 {
        let (i, ok) = done_rx.recv().expect("answer");
        assert_eq!(ok, i % 3 != 0, "job {i}");
        kept += u64::from(ok);
    }
    for i in 0..300u32 {
        let present = store.get_raw(&key(b'M', i)).expect("get").is_some();
        assert_eq!(present, i % 3 != 0, "key {i}");
        let rec = store.record(&id(u64::from(i) + 100)).expect("record");
        assert_eq!(rec.is_some(), i % 3 != 0, "record {i}");
    }
    assert_eq!(store.stats().records, kept);
    // A panicking job is refused as `Closed`, leaves nothing, and the store carries on.
    let r: Result<(), StoreError> = store.write(|tx| {
        tx.put_raw(b"Mpanic", vec![1])?;
        std::panic::resume_unwind(Box::new("a job that panics"))
    });
    assert!(matches!(r, Err(StoreError::Closed)), "{r:?}");
    assert_eq!(store.get_raw(b"Mpanic").expect("get"), None);
    store
        .write(|tx| tx.put_raw(b"Mafter", vec![1]))
        .expect("after a panic");
}

/// Everything acknowledged is there after a clean close and reopen.
pub fn reopen(h: &mut impl Harness) {
    let store = h.create(b"hdr", opts());
    for i in 0..20u64 {
        store
            .write(move |tx| tx.put_record(&id(i), &record(i)))
            .expect("write");
    }
    let generation = store.generation().expect("generation");
    let store = h.reopen(store, opts());
    assert_eq!(store.stats().records, 20);
    assert_eq!(store.generation().expect("generation"), generation);
    for i in 0..20u64 {
        assert_eq!(store.record(&id(i)).expect("record"), Some(record(i)));
    }
}

/// Every acknowledged write survives a crash; the store reopens with its counters in step.
pub fn crash(h: &mut impl Harness) {
    let store = Arc::new(h.create(b"hdr", opts()));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..50u64 {
                    let n = t * 1000 + i;
                    store
                        .write(move |tx| {
                            tx.put_record(&id(n), &record(n))?;
                            tx.put_raw(&key(b'M', small(n)), vec![small8(t)])
                        })
                        .expect("write");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    store
        .write(|tx| {
            tx.put_header(b"hdr-rotated".to_vec());
            tx.delete_record(&id(0)).map(drop)
        })
        .expect("write");
    let generation = store.generation().expect("generation");
    let store = Arc::into_inner(store).expect("one owner");
    let store = h.crash_and_reopen(store, opts());
    assert_eq!(store.header().expect("header"), b"hdr-rotated");
    assert_eq!(store.generation().expect("generation"), generation);
    assert_eq!(store.stats().records, 199);
    for t in 0..4u64 {
        for i in 0..50u64 {
            let n = t * 1000 + i;
            let expected = (n != 0).then(|| record(n));
            assert_eq!(
                store.record(&id(n)).expect("record"),
                expected,
                "record {n}"
            );
            assert_eq!(
                store.get_raw(&key(b'M', small(n))).expect("get"),
                Some(vec![small8(t)])
            );
        }
    }
    // And it keeps working.
    store
        .write(|tx| tx.put_raw(b"Mafter", vec![1]))
        .expect("after the crash");
    assert_eq!(store.generation().expect("generation"), generation + 1);
}

/// Range scans return keys in ascending byte order, within their prefix, paged by `after` and
/// `limit`.
pub fn ordering(h: &mut impl Harness) {
    let store = h.create(b"hdr", opts());
    // Written in a scrambled order, with edge bytes, beside neighbouring prefixes.
    let mut keys: Vec<Vec<u8>> = vec![
        b"T".to_vec(),
        vec![b'T', 0],
        vec![b'T', 0, 0],
        vec![b'T', 0xFF],
        vec![b'T', 0xFF, 0xFF],
        vec![b'T', 1],
        vec![b'T', 0x7F, 3],
    ];
    for i in (0..500u32).rev().step_by(7) {
        keys.push(key(b'T', i.wrapping_mul(2_654_435_761)));
    }
    let neighbours = [b"S\xFF".to_vec(), b"U".to_vec(), b"U\0".to_vec()];
    let all: Vec<Vec<u8>> = keys.iter().chain(&neighbours).cloned().collect();
    store
        .write(move |tx| {
            for k in &all {
                tx.put_raw(k, k.clone())?;
            }
            Ok::<_, StoreError>(())
        })
        .expect("write");
    let mut sorted = keys.clone();
    sorted.sort();
    let scanned = store.scan_raw(b"T", usize::MAX).expect("scan");
    let scanned_keys: Vec<Vec<u8>> = scanned.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(scanned_keys, sorted);
    assert!(scanned.iter().all(|(k, v)| k == v));
    let first = store.scan_raw(b"T", 3).expect("scan");
    assert_eq!(first.len(), 3);
    assert_eq!(first[..], scanned[..3]);
    let inner = store.scan_raw(&[b'T', 0xFF], usize::MAX).expect("scan");
    assert_eq!(inner.len(), 2);
    // Records: in lookup-id order, paged with `after`.
    let ids: Vec<u64> = (0..300u64).map(|i| (i * 7919) % 1000).collect();
    let to_write = ids.clone();
    store
        .write(move |tx| {
            for &i in &to_write {
                tx.put_record(&id(i), &record(i))?;
            }
            Ok::<_, StoreError>(())
        })
        .expect("write");
    let mut expected: Vec<LookupId> = ids.iter().map(|&i| id(i)).collect();
    expected.sort();
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = store.scan_records(after, 64).expect("scan");
        if page.is_empty() {
            break;
        }
        for (lookup, rec) in &page {
            assert_eq!(
                rec.as_ref().expect("decodes").token,
                record(lookup_n(lookup)).token
            );
            seen.push(*lookup);
        }
        after = page.last().map(|(l, _)| *l);
    }
    assert_eq!(seen, expected);
    // The expiry scan finds exactly those due, across bounded steps.
    let (mut due, mut cursor) = (Vec::new(), None);
    loop {
        let (found, next) = store
            .scan_expired(cursor, 1_900_000_000 + 100, 50)
            .expect("scan");
        due.extend(found);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected_due: Vec<LookupId> = expected
        .iter()
        .copied()
        .filter(|l| lookup_n(l) <= 100)
        .collect();
    assert_eq!(due, expected_due);
}

fn lookup_n(id: &LookupId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b)
}

/// Conditional writes: insert-if-absent and compare-and-set, alone and raced by several threads
/// (exactly one insert wins).
pub fn conditional_writes(h: &mut impl Harness) {
    let store = Arc::new(h.create(b"hdr", opts()));
    assert!(
        store
            .write(|tx| tx.put_if_absent(b"Ia", b"1".to_vec()))
            .expect("insert")
    );
    assert!(
        !store
            .write(|tx| tx.put_if_absent(b"Ia", b"2".to_vec()))
            .expect("insert")
    );
    assert_eq!(store.get_raw(b"Ia").expect("get"), Some(b"1".to_vec()));
    let r = store.write(|tx| tx.compare_and_set(b"Ia", Some(b"9"), Some(b"3".to_vec())));
    assert!(
        matches!(r, Err(StoreError::Conflict(ConflictKind::Changed))),
        "{r:?}"
    );
    let r = store.write(|tx| tx.compare_and_set(b"Ia", None, Some(b"3".to_vec())));
    assert!(
        matches!(r, Err(StoreError::Conflict(ConflictKind::Exists))),
        "{r:?}"
    );
    assert_eq!(store.get_raw(b"Ia").expect("get"), Some(b"1".to_vec()));
    store
        .write(|tx| tx.compare_and_set(b"Ia", Some(b"1"), Some(b"3".to_vec())))
        .expect("cas");
    assert_eq!(store.get_raw(b"Ia").expect("get"), Some(b"3".to_vec()));
    store
        .write(|tx| tx.compare_and_set(b"Ia", Some(b"3"), None))
        .expect("cas delete");
    assert_eq!(store.get_raw(b"Ia").expect("get"), None);
    // Races: for each of 20 keys, 8 threads try to insert; exactly one wins each.
    for round in 0..20u32 {
        let k = key(b'I', round);
        let racers: Vec<_> = (0..8u8)
            .map(|t| {
                let (store, k) = (store.clone(), k.clone());
                thread::spawn(move || {
                    store
                        .write(move |tx| tx.put_if_absent(&k, vec![t]))
                        .expect("race")
                        .then_some(t)
                })
            })
            .collect();
        let winners: Vec<u8> = racers
            .into_iter()
            .filter_map(|r| r.join().expect("racer"))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(store.get_raw(&k).expect("get"), Some(vec![winners[0]]));
    }
    // Compare-and-set counters: 8 threads x 25 increments, each retried until it applies.
    store
        .write(|tx| tx.put_raw(b"Icounter", 0u64.to_be_bytes().to_vec()))
        .expect("counter");
    let incrementers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            thread::spawn(move || {
                for _ in 0..25 {
                    loop {
                        let now = store.get_raw(b"Icounter").expect("get").expect("counter");
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&now);
                        let next = (u64::from_be_bytes(n) + 1).to_be_bytes().to_vec();
                        match store.write(move |tx| {
                            tx.compare_and_set(b"Icounter", Some(&now), Some(next.clone()))
                        }) {
                            Ok(()) => break,
                            Err(e) => {
                                assert!(matches!(e, StoreError::Conflict(_)), "increment: {e}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in incrementers {
        t.join().expect("incrementer");
    }
    assert_eq!(
        store.get_raw(b"Icounter").expect("get"),
        Some(200u64.to_be_bytes().to_vec())
    );
}

/// Records read as the group commits ([`RecordGuard`](crate::RecordGuard)): a group whose guards
/// hold commits and hands back the stored values, in the guards' order; one guard that does not
/// hold (missing, another merchant's or token's, another customer, none where one is bound,
/// expired at its time) refuses the whole group as [`ConflictKind::Guard`] and writes nothing; so
/// does a guarded group that also changes the key header.
pub fn guarded_reads(h: &mut impl Harness) {
    use crate::RecordGuard;
    let store = h.create(b"hdr", opts());
    let plain = record(1);
    let mut bound = record(2);
    bound.customer = Some("cust-1".into());
    let stored = [(1, plain.clone()), (2, bound.clone())];
    store
        .write(move |tx| {
            stored
                .iter()
                .try_for_each(|(i, r)| tx.put_record(&id(*i), r))
        })
        .expect("records");
    let guard = |i: u64, r: &StoredRecord| {
        RecordGuard::new(
            &id(i),
            r.merchant,
            r.token,
            r.customer.clone(),
            r.keep_until - 1,
        )
    };
    // Every guard holds: the group writes, and the values come back in order.
    let holds = vec![guard(2, &bound), guard(1, &plain), guard(2, &bound)];
    let reads = store
        .write(move |tx| {
            let reads = tx.read_as_committed(holds.clone()).expect("not pending");
            tx.put_raw(b"Mguarded", vec![1])?;
            Ok::<_, StoreError>(reads)
        })
        .expect("guarded group");
    assert_eq!(
        reads.take(),
        Some(vec![bound.encode(), plain.encode(), bound.encode()])
    );
    assert_eq!(store.get_raw(b"Mguarded").expect("get"), Some(vec![1]));
    assert!(store.stats().guarded >= 1);

    let refused: Vec<(&str, RecordGuard)> = vec![
        ("missing", guard(3, &record(3))),
        (
            "merchant",
            RecordGuard {
                merchant: 8,
                ..guard(1, &plain)
            },
        ),
        (
            "token",
            RecordGuard {
                token: [9; 24],
                ..guard(1, &plain)
            },
        ),
        (
            "customer given, none bound",
            RecordGuard {
                customer: Some("cust-1".into()),
                ..guard(1, &plain)
            },
        ),
        (
            "none given, one bound",
            RecordGuard {
                customer: None,
                ..guard(2, &bound)
            },
        ),
        (
            "another customer",
            RecordGuard {
                customer: Some("cust-2".into()),
                ..guard(2, &bound)
            },
        ),
        (
            "a longer customer",
            RecordGuard {
                customer: Some("cust-10".into()),
                ..guard(2, &bound)
            },
        ),
        (
            "expired",
            RecordGuard {
                now: plain.keep_until,
                ..guard(1, &plain)
            },
        ),
    ];
    for (what, bad) in refused {
        let guards = vec![guard(1, &plain), bad];
        let r = store.write(move |tx| {
            let reads = tx.read_as_committed(guards.clone()).expect("not pending");
            tx.put_raw(b"Mrefused", vec![1])?;
            Ok::<_, StoreError>(reads)
        });
        assert!(
            matches!(r, Err(StoreError::Conflict(ConflictKind::Guard))),
            "{what}: {r:?}"
        );
        assert_eq!(store.get_raw(b"Mrefused").expect("get"), None, "{what}");
    }
    // A key header change is written before the group: never with guards, which could fail
    // after it (the group is refused before the header is touched, and runs again).
    let guards = vec![guard(1, &plain)];
    let r = store.write(move |tx| {
        let reads = tx.read_as_committed(guards.clone()).expect("not pending");
        tx.put_header(b"hdr2".to_vec());
        Ok::<_, StoreError>(reads)
    });
    assert!(
        matches!(r, Err(StoreError::Conflict(ConflictKind::Guard))),
        "{r:?}"
    );
    assert_eq!(store.header().expect("header"), b"hdr");
    // A record the group itself writes cannot be guarded: the job is told to read instead.
    let pending = store
        .write(move |tx| {
            tx.put_record(&id(4), &record(4))?;
            Ok::<_, StoreError>(tx.read_as_committed(vec![guard(4, &record(4))]).is_none())
        })
        .expect("group");
    assert!(pending);
}

/// The group counter advances by one per group that writes, not for groups that write nothing,
/// and survives reopening.
pub fn group_counter(h: &mut impl Harness) {
    let store = h.create(b"hdr", opts());
    assert_eq!(store.generation().expect("generation"), 0);
    for n in 1..=5u64 {
        store
            .write(move |tx| tx.put_raw(&key(b'M', small(n)), vec![1]))
            .expect("write");
        assert_eq!(store.generation().expect("generation"), n);
    }
    store.write(|_tx| Ok::<_, StoreError>(())).expect("empty");
    let _ = store.write(|tx| {
        tx.put_raw(b"Mx", vec![1])?;
        Err::<(), _>(StoreError::Corrupt(Structure::Other))
    });
    assert_eq!(store.generation().expect("generation"), 5);
    let store = h.reopen(store, opts());
    assert_eq!(store.generation().expect("generation"), 5);
    store.write(|tx| tx.put_raw(b"My", vec![1])).expect("write");
    assert_eq!(store.generation().expect("generation"), 6);
}

/// A backup is the state at one instant while writers carry on: with keys updated one group at a
/// time in descending order during the backup, the updated keys it holds are a suffix.
pub fn backup_capture(h: &mut impl Harness) {
    const N: u32 = 9000;
    let store = Arc::new(h.create(b"backup-hdr", opts()));
    store
        .write(|tx| {
            for i in 0..N {
                tx.put_raw(&key(b'M', i), vec![0])?;
            }
            for i in 0..10u64 {
                tx.put_record(&id(i), &record(i))?;
            }
            Ok::<_, StoreError>(())
        })
        .expect("write");
    let writer = {
        let store = store.clone();
        thread::spawn(move || {
            for i in (0..N).rev().step_by(3) {
                store
                    .write(move |tx| tx.put_raw(&key(b'M', i), vec![1]))
                    .expect("update");
            }
        })
    };
    let mut out = Vec::new();
    let summary = store.backup(&mut out, |_, _| {}).expect("backup");
    writer.join().expect("writer");
    let (header, entries) = parse_backup(&out);
    assert_eq!(header, b"backup-hdr");
    assert_eq!(summary.entries, entries.len() as u64);
    assert_eq!(summary.records, 10);
    assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "key order");
    let values: Vec<u8> = entries
        .iter()
        .filter(|(k, _)| k.first() == Some(&b'M'))
        .map(|(_, v)| v[0])
        .collect();
    assert_eq!(values.len(), N as usize);
    // Updated keys (1) form a suffix of the ones the writer touches (every third from the top).
    let touched: Vec<u8> = (0..N)
        .rev()
        .step_by(3)
        .map(|i| values[i as usize])
        .collect();
    let updated = touched.iter().take_while(|&&v| v == 1).count();
    assert!(
        touched[updated..].iter().all(|&v| v == 0),
        "not one instant: {updated} updated, then {:?}",
        &touched[updated..updated + 5.min(touched.len() - updated)]
    );
    // The counters in the file match its records.
    let count = entries
        .iter()
        .find(|(k, _)| k == b"C")
        .map(|(_, v)| v.clone());
    assert_eq!(count, Some(10u64.to_be_bytes().to_vec()));
}

/// The key header and the entries of a backup file (format in `backup.rs`), checked only as far
/// as the suite needs.
#[allow(clippy::type_complexity)]
fn parse_backup(b: &[u8]) -> (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>) {
    let u32_at = |at: usize| -> usize {
        let mut x = [0u8; 4];
        x.copy_from_slice(&b[at..at + 4]);
        u32::from_be_bytes(x) as usize
    };
    assert_eq!(&b[..4], crate::BACKUP_MAGIC);
    let header_len = u32_at(8);
    let header = b[12..12 + header_len].to_vec();
    let mut at = 12 + header_len;
    let mut entries = Vec::new();
    loop {
        let kl = u32_at(at);
        if kl == 0 {
            break;
        }
        let vl = u32_at(at + 4);
        at += 8;
        entries.push((b[at..at + kl].to_vec(), b[at + kl..at + kl + vl].to_vec()));
        at += kl + vl;
    }
    (header, entries)
}
