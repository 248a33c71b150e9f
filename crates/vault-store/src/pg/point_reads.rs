//! Point reads coalesced: the reads that callers make at the same time (the daemon's handlers,
//! the committer) are answered together, one `SELECT key, value FROM t WHERE key = ANY($1)` per
//! table, pipelined on one connection.
//!
//! A caller queues its key with a reply slot and waits (bounded, like every call). One task on
//! the engine's runtime takes the queue: it starts a batch with whatever is queued, up to
//! [`MAX_BATCH`] keys, while fewer than [`IN_FLIGHT`] batches are running; while they run, the
//! next reads gather. Under light load a read is its own batch at once; under load many reads
//! share one round trip and one statement.
//!
//! Every batch's statements start after each of its reads was queued, and each statement reads
//! one committed snapshot, so a read never sees less than a read that returned before it was
//! made, and sees a group commit whole or not at all (as [`Engine::get`](crate::Engine::get)
//! promises).

use std::{
    collections::HashMap,
    sync::{Arc, mpsc},
};

use deadpool_postgres::ClientWrapper;
use futures_util::future::join_all;
use tokio::sync::{Semaphore, mpsc as tmpsc};
use tokio_postgres::types::ToSql;

use super::{Inner, errors::Fail, reads::fail, sql, tables::TableId};
use crate::StoreError;

/// Most keys in one batch.
const MAX_BATCH: usize = 256;
/// Most batches running at once (each on its own connection).
const IN_FLIGHT: usize = 2;

/// An answer to one read.
pub(crate) type Answer = Result<Option<Vec<u8>>, StoreError>;

/// One queued read: the table, the key as stored there, where the answer goes.
struct Read {
    table: TableId,
    key: Vec<u8>,
    reply: mpsc::SyncSender<Answer>,
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
        let _ = self.queue.send(Read { table, key, reply });
        rx
    }
}

async fn serve(inner: Arc<Inner>, mut rx: tmpsc::UnboundedReceiver<Read>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // What queued while the earlier batches ran joins this one.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            answer(&inner, batch).await;
            drop(permit);
        });
    }
}

/// Runs one batch and answers each read.
async fn answer(inner: &Inner, batch: Vec<Read>) {
    let mut keys: Vec<(TableId, Vec<Vec<u8>>)> = Vec::new();
    for r in &batch {
        match keys.iter_mut().find(|(t, _)| *t == r.table) {
            Some((_, ks)) => ks.push(r.key.clone()),
            None => keys.push((r.table, vec![r.key.clone()])),
        }
    }
    let found: Result<_, StoreError> =
        async { with_client!(inner, |c| fetch(&c, &keys).await) }.await;
    match found {
        Ok(found) => {
            for r in batch {
                let v = found.get(&r.table).and_then(|m| m.get(&r.key).cloned());
                let _ = r.reply.send(Ok(v));
            }
        }
        Err(e) => {
            for r in batch {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
    }
}

/// The rows of `keys`, per table: one statement per table, pipelined.
async fn fetch(
    c: &ClientWrapper,
    keys: &[(TableId, Vec<Vec<u8>>)],
) -> Result<HashMap<TableId, HashMap<Vec<u8>, Vec<u8>>>, Fail> {
    let prepared = join_all(
        keys.iter()
            .map(|(t, _)| c.prepare_cached(&sql::of(*t).get_many)),
    )
    .await;
    let mut statements = Vec::with_capacity(prepared.len());
    for p in prepared {
        statements.push(p.map_err(|e| fail(&e))?);
    }
    let params: Vec<&(dyn ToSql + Sync)> = keys
        .iter()
        .map(|(_, ks)| ks as &(dyn ToSql + Sync))
        .collect();
    let results = join_all(
        statements
            .iter()
            .zip(&params)
            .map(|(stmt, p)| c.query(stmt, std::slice::from_ref(p))),
    )
    .await;
    let mut out = HashMap::with_capacity(keys.len());
    for (rows, (t, _)) in results.into_iter().zip(keys) {
        let rows = rows.map_err(|e| fail(&e))?;
        let mut m = HashMap::with_capacity(rows.len());
        for row in rows {
            let k: Vec<u8> = row.try_get(0).map_err(|e| fail(&e))?;
            let v: Vec<u8> = row.try_get(1).map_err(|e| fail(&e))?;
            m.insert(k, v);
        }
        out.insert(*t, m);
    }
    Ok(out)
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

    #[test]
    fn reads_made_at_once_from_a_runtime_each_get_their_own_row() {
        let db = TestDatabase::new();
        let url = DatabaseUrl::new(db.url());
        let engine =
            Arc::new(PgEngine::create(&url, b"hdr", &StoreOptions::default()).expect("create"));
        // Even numbers are stored, odd ones are not; each value names its key.
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
                records_delta: 0,
            })
            .expect("commit");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
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
}
