//! Point reads coalesced: the reads that callers make at the same time (the daemon's handlers,
//! the committer) are answered together, one `SELECT key, value FROM t WHERE key = ANY($1)` per
//! batch.
//!
//! A caller queues its key with a reply slot (a channel it waits on, bounded like every call, or
//! a callback). One task on the engine's runtime takes the queue and keeps one lane per table:
//! a lane with no batch running starts one at once with whatever is queued for its table, up to
//! [`MAX_BATCH`] keys; while it runs, the table's next reads gather for the next batch. Under
//! light load a read is its own batch at once; under load many reads share one round trip and
//! one statement, and the server runs fewer, larger statements. A lane whose batch has been
//! running for [`STALLED`] (a slow statement, a locked row, a lost connection being replaced)
//! starts another beside it, up to [`MAX_PER_LANE`], so one slow table, or one slow batch, does
//! not hold up the reads behind it; lanes never wait on each other.
//!
//! Every batch's statement starts after each of its reads was queued, and each statement reads
//! one committed snapshot, so a read never sees less than a read that returned before it was
//! made, and sees a group commit whole or not at all (as [`Engine::get`](crate::Engine::get)
//! promises).

use std::{
    collections::HashMap,
    sync::{Arc, mpsc},
    time::Duration,
};

use deadpool_postgres::ClientWrapper;
use tokio::sync::mpsc as tmpsc;

use super::{Inner, errors::Fail, reads::fail, sql, tables::TableId};
use crate::{StoreError, engine::ReadDone};

/// Most keys in one batch.
const MAX_BATCH: usize = 256;
/// How long a lane's batch may run before the lane starts another beside it.
const STALLED: Duration = Duration::from_millis(5);
/// Most batches of one lane running at once (each on its own connection).
const MAX_PER_LANE: usize = 4;

/// An answer to one read.
pub(crate) type Answer = Result<Option<Vec<u8>>, StoreError>;

/// One queued read: the table, the key as stored there, where the answer goes.
struct Read {
    table: TableId,
    key: Vec<u8>,
    reply: Reply,
}

/// Where one read's answer goes.
enum Reply {
    /// A caller waiting on a channel (a dropped sender reads as closed).
    Waiting(mpsc::SyncSender<Answer>),
    /// A callback, called exactly once: with [`StoreError::Closed`] if the read is dropped
    /// unanswered (the engine's runtime shut down).
    Then(Option<ReadDone>),
}

impl Reply {
    fn send(mut self, answer: Answer) {
        match &mut self {
            Reply::Waiting(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Then(done) => {
                if let Some(done) = done.take() {
                    done(answer);
                }
            }
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Reply::Then(done) = self
            && let Some(done) = done.take()
        {
            done(Err(StoreError::Closed));
        }
    }
}

/// The queue of point reads (its task runs on the engine's runtime).
pub(crate) struct PointReads {
    queue: tmpsc::UnboundedSender<Read>,
}

impl PointReads {
    /// Starts the task that serves the queue on `runtime`.
    pub(crate) fn start(inner: Arc<Inner>, runtime: &tokio::runtime::Handle) -> Self {
        let (queue, rx) = tmpsc::unbounded_channel();
        runtime.spawn(serve(inner, rx));
        Self { queue }
    }

    /// Queues a read of `key` (as stored in `table`); the answer arrives on the returned channel.
    /// A dropped sender (the runtime shut down) reads as closed.
    pub(crate) fn queue(&self, table: TableId, key: Vec<u8>) -> mpsc::Receiver<Answer> {
        let (reply, rx) = mpsc::sync_channel(1);
        // A send fails only once the task is gone: `reply` is then dropped with the message.
        let _ = self.queue.send(Read {
            table,
            key,
            reply: Reply::Waiting(reply),
        });
        rx
    }

    /// Queues a read of `key` (as stored in `table`); `done` receives the answer on the engine's
    /// runtime, after the batch's connection went back to the pool.
    pub(crate) fn queue_then(&self, table: TableId, key: Vec<u8>, done: ReadDone) {
        // A failed send drops the read, and so answers `done` with `Closed`.
        let _ = self.queue.send(Read {
            table,
            key,
            reply: Reply::Then(Some(done)),
        });
    }
}

/// One table's reads: those waiting for a batch (their keys and where each answer goes, in the
/// same order), and the batches running.
#[derive(Default)]
struct Lane {
    keys: Vec<Vec<u8>>,
    replies: Vec<Reply>,
    running: usize,
    /// Of the running batches, those that have run for [`STALLED`] or more.
    stalled: usize,
}

impl Lane {
    fn push(&mut self, read: Read) {
        self.keys.push(read.key);
        self.replies.push(read.reply);
    }

    /// Whether the lane may start a batch now: none running but stalled ones, and fewer than
    /// [`MAX_PER_LANE`] running in all.
    fn may_start(&self) -> bool {
        self.running == self.stalled && self.running < MAX_PER_LANE
    }
}

/// What a batch tells the task that serves the queue.
enum Event {
    /// It has run for [`STALLED`].
    Stalled(TableId),
    /// It ended (and had stalled, or not).
    Ended(TableId, bool),
}

async fn serve(inner: Arc<Inner>, mut rx: tmpsc::UnboundedReceiver<Read>) {
    let mut lanes: HashMap<TableId, Lane> = HashMap::new();
    let (events_tx, mut events) = tmpsc::unbounded_channel::<Event>();
    loop {
        for (table, lane) in &mut lanes {
            if !lane.keys.is_empty() && lane.may_start() {
                let take = lane.keys.len().min(MAX_BATCH);
                let keys: Vec<Vec<u8>> = lane.keys.drain(..take).collect();
                let replies: Vec<Reply> = lane.replies.drain(..take).collect();
                lane.running += 1;
                let (inner, events_tx, table) = (inner.clone(), events_tx.clone(), *table);
                tokio::spawn(async move { answer(&inner, table, keys, replies, &events_tx).await });
            }
        }
        tokio::select! {
            read = rx.recv() => {
                let Some(first) = read else { return };
                lanes.entry(first.table).or_default().push(first);
                // Whatever else is queued joins now.
                while let Ok(r) = rx.try_recv() {
                    lanes.entry(r.table).or_default().push(r);
                }
            }
            Some(event) = events.recv() => {
                let mut next = Some(event);
                while let Some(event) = next {
                    match event {
                        Event::Stalled(t) => {
                            if let Some(lane) = lanes.get_mut(&t) {
                                lane.stalled += 1;
                            }
                        }
                        Event::Ended(t, stalled) => {
                            if let Some(lane) = lanes.get_mut(&t) {
                                lane.running -= 1;
                                lane.stalled -= usize::from(stalled);
                            }
                        }
                    }
                    next = events.try_recv().ok();
                }
            }
        }
    }
}

/// Runs one batch of `table` (telling the serving task if it stalls), reports its end (so the
/// lane may start the next), then answers each read (so that an answer's callback may read
/// again).
async fn answer(
    inner: &Inner,
    table: TableId,
    keys: Vec<Vec<u8>>,
    replies: Vec<Reply>,
    events: &tmpsc::UnboundedSender<Event>,
) {
    let fetch = async { with_client!(inner, |c| fetch(&c, table, &keys).await) };
    tokio::pin!(fetch);
    let mut stalled = false;
    let found: Result<_, StoreError> = tokio::select! {
        biased;
        found = &mut fetch => found,
        () = tokio::time::sleep(STALLED) => {
            stalled = true;
            let _ = events.send(Event::Stalled(table));
            fetch.await
        }
    };
    let _ = events.send(Event::Ended(table, stalled));
    match found {
        Ok(found) => {
            for (key, reply) in keys.iter().zip(replies) {
                reply.send(Ok(found.get(key).cloned()));
            }
        }
        Err(e) => {
            for reply in replies {
                reply.send(Err(e.clone()));
            }
        }
    }
}

/// The rows of `keys` in `table`: one statement.
pub(crate) async fn fetch(
    c: &ClientWrapper,
    table: TableId,
    keys: &Vec<Vec<u8>>,
) -> Result<HashMap<Vec<u8>, Vec<u8>>, Fail> {
    let statement = c
        .prepare_cached(&sql::of(table).get_many)
        .await
        .map_err(|e| fail(&e))?;
    let rows = c.query(&statement, &[keys]).await.map_err(|e| fail(&e))?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let k: Vec<u8> = row.try_get(0).map_err(|e| fail(&e))?;
        let v: Vec<u8> = row.try_get(1).map_err(|e| fail(&e))?;
        found.insert(k, v);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vault_testkit::postgres::TestDatabase;

    use crate::{
        DatabaseUrl, Engine, PgEngine, StoreOptions,
        engine::{Group, Op},
    };

    /// A key of table `t` (merchants, API keys, an unclaimed prefix) numbered `i`.
    fn key(t: u8, i: u32) -> Vec<u8> {
        let mut k = vec![[b'M', b'K', b'~' + 1][usize::from(t % 3)]];
        k.extend_from_slice(&i.to_be_bytes());
        k
    }

    /// A new engine holding the even-numbered keys below 40 of tables 0-2, each valued with its
    /// own key, and a runtime to read them from.
    fn stored() -> (TestDatabase, Arc<PgEngine>, tokio::runtime::Runtime) {
        let db = TestDatabase::new();
        let url = DatabaseUrl::new(db.url());
        let engine =
            Arc::new(PgEngine::create(&url, b"hdr", &StoreOptions::default()).expect("create"));
        let mut ops: Vec<Op> = vec![(b"G".to_vec(), Some(1u64.to_be_bytes().to_vec()))];
        for t in 0..3 {
            for i in (0..40).step_by(2) {
                let k = key(t, i);
                ops.push((k.clone(), Some(k)));
            }
        }
        engine
            .commit(Group {
                generation: 1,
                previous: 0,
                ops,
                checks: Vec::new(),
                guards: Vec::new(),
                records_delta: 0,
            })
            .expect("commit");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        (db, engine, runtime)
    }

    #[test]
    fn reads_made_at_once_from_a_runtime_each_get_their_own_row() {
        let (_db, engine, runtime) = stored();
        runtime.block_on(async {
            let readers: Vec<_> = (0..32u32)
                .map(|r| {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        for n in 0..60u32 {
                            let (t, i) =
                                (u8::try_from((r + n) % 3).expect("small"), (r * 7 + n) % 40);
                            let k = key(t, i);
                            let want = (i % 2 == 0).then(|| k.clone());
                            assert_eq!(engine.get(&k).expect("get"), want, "{t} {i}");
                        }
                    })
                })
                .collect();
            for r in readers {
                r.await.expect("reader");
            }
        });
    }

    #[test]
    fn reads_handed_to_callbacks_from_a_runtime_are_answered_and_may_read_again() {
        let (_db, engine, runtime) = stored();
        runtime.block_on(async {
            let mut answers = Vec::new();
            for i in 0..40u32 {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let again = engine.clone();
                // Each callback also reads the next key, synchronously: the batch that answered
                // it has given its connection and its lane back by then.
                engine.point_get_then(
                    &key(0, i),
                    Box::new(move |found| {
                        let next = again.get(&key(0, i + 1));
                        let _ = tx.send((found, next));
                    }),
                );
                answers.push((i, rx));
            }
            for (i, rx) in answers {
                let (found, next) = rx.await.expect("answered");
                let want = |i: u32| (i.is_multiple_of(2) && i < 40).then(|| key(0, i));
                assert_eq!(found.expect("read"), want(i), "{i}");
                assert_eq!(next.expect("read again"), want(i + 1), "{i}");
            }
        });
        // From a plain thread the callback runs inline.
        let (tx, rx) = std::sync::mpsc::channel();
        engine.point_get_then(
            &key(0, 2),
            Box::new(move |found| {
                let _ = tx.send(found);
            }),
        );
        assert_eq!(
            rx.try_recv().expect("inline").expect("read"),
            Some(key(0, 2))
        );
    }
}
