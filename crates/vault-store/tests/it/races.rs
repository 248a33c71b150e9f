//! The committer under a writer that keeps losing races: a group the engine refuses as raced runs
//! again, and once it has lost `MAX_RACE_RETRIES` times over, each of its jobs runs alone, so only
//! the job that keeps losing fails and the others in its group commit.

use std::sync::{Arc, mpsc};

use vault_store::{
    ConflictKind, Engine, SledEngine, Store, StoreError, StoreOptions, engine::Group,
};

use crate::wrapped::{Twist, Wrapped};

/// The key every group that writes it is refused for (as if another writer always got there
/// first).
const HOT: &[u8] = b"x-hot";

/// Refuses every group writing [`HOT`] as raced.
#[derive(Debug)]
struct Contended;

impl Twist for Contended {
    fn commit(&self, sled: &SledEngine, group: Group) -> Result<Vec<Vec<u8>>, StoreError> {
        if group.ops.iter().any(|(k, _)| k == HOT) {
            return Err(StoreError::Conflict(ConflictKind::Raced));
        }
        sled.commit(group)
    }
}

#[test]
fn a_job_that_keeps_losing_races_fails_alone_and_its_group_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions::default();
    let engine = SledEngine::create(&dir.path().join("v"), b"hdr", &options).expect("create");
    let store = Store::with_engine(Arc::new(Wrapped(engine, Contended)), &options).expect("store");

    // Hold the committer in a first job until the three below are queued: they then form one
    // group, the hot write between two others (with the first job too, if the committer took
    // them all at once: it is then run again with them, and waits only the first time).
    let (release, held) = mpsc::channel::<()>();
    let (first_done, first) = mpsc::channel();
    store.submit(
        move |_tx| {
            let _ = held.recv();
            Ok::<(), StoreError>(())
        },
        move |r| {
            let _ = first_done.send(r);
        },
    );
    let mut answers = Vec::new();
    for key in [&b"x-before"[..], HOT, b"x-after"] {
        let (done, answer) = mpsc::channel();
        store.submit(
            move |tx| tx.put_raw(key, b"v".to_vec()),
            move |r: Result<(), StoreError>| {
                let _ = done.send(r);
            },
        );
        answers.push(answer);
    }
    release.send(()).expect("release");
    // Gone: a run again of the first job finds the channel closed and does not wait.
    drop(release);
    first.recv().expect("first job").expect("first job commits");

    let results: Vec<Result<(), StoreError>> = answers
        .iter()
        .map(|a| a.recv().expect("answered"))
        .collect();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::Conflict(ConflictKind::Raced))),
        "{results:?}"
    );
    assert!(results[2].is_ok(), "{results:?}");
    assert_eq!(
        store.get_raw(b"x-before").expect("read"),
        Some(b"v".to_vec())
    );
    assert_eq!(store.get_raw(HOT).expect("read"), None);
    assert_eq!(
        store.get_raw(b"x-after").expect("read"),
        Some(b"v".to_vec())
    );
    // The group of three lost 17 times, then the hot job alone 17 times more.
    assert_eq!(store.stats().races, 32);
}
