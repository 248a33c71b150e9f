//! Backups from one consistent snapshot: a connection of its own in a `REPEATABLE READ READ ONLY`
//! transaction, whose every read sees the database as of its first statement, whatever the other
//! daemons commit meanwhile. The connection is dropped with the snapshot (never pooled again
//! mid-transaction).

use std::{
    future::Future,
    ops::Bound,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use deadpool_postgres::Object;

use super::{Inner, ScanPairs, bridge::Bridge, errors, reads};
use crate::{StoreError, Unavailable, engine::Snapshot};

/// One snapshot of the database (see the module documentation).
pub(crate) struct PgSnapshot {
    inner: Arc<Inner>,
    bridge: Arc<Bridge>,
    /// `None` once dropped.
    client: Option<Arc<Object>>,
    /// Set when an operation failed or timed out: the transaction may be gone.
    broken: Arc<AtomicBool>,
}

impl PgSnapshot {
    pub(crate) fn begin(inner: Arc<Inner>, bridge: Arc<Bridge>) -> Result<Self, StoreError> {
        let limit = inner.call_limit;
        let started = inner.clone();
        let client = bridge.run(limit, async move {
            let client = started.client().await?;
            // The snapshot is taken by the first statement after BEGIN (the SELECT). The backup
            // writes its file between reads, so the session may idle in the transaction longer
            // than the engine's usual bound.
            let begun = tokio::time::timeout(
                started.op_limit,
                client.batch_execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                     SET LOCAL idle_in_transaction_session_timeout = '10min';
                     SELECT 1;",
                ),
            )
            .await;
            match begun {
                Ok(Ok(())) => Ok(Arc::new(client)),
                Ok(Err(e)) => {
                    drop(Object::take(client));
                    Err(errors::from_pg(&e))
                }
                Err(_) => {
                    drop(Object::take(client));
                    Err(StoreError::Unavailable(Unavailable::StatementTimeout))
                }
            }
        })?;
        Ok(Self {
            inner,
            bridge,
            client: Some(client),
            broken: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs one read of the snapshot.
    fn read<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Object>) -> Fut,
        Fut: Future<Output = Result<T, errors::Fail>> + Send + 'static,
    {
        if self.broken.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(Unavailable::ConnectionLost));
        }
        let client = self.client.clone().ok_or(StoreError::Closed)?;
        let (broken, op_limit) = (self.broken.clone(), self.inner.op_limit);
        let work = read(client);
        self.bridge.run(self.inner.call_limit, async move {
            let outcome = tokio::time::timeout(op_limit, work).await;
            let error = match outcome {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(errors::Fail::Retry)) => {
                    StoreError::Unavailable(Unavailable::ConnectionLost)
                }
                Ok(Err(errors::Fail::Stop { error, .. })) => error,
                Err(_) => StoreError::Unavailable(Unavailable::StatementTimeout),
            };
            broken.store(true, Ordering::Release);
            Err(error)
        })
    }
}

impl Snapshot for PgSnapshot {
    fn header(&mut self) -> Result<Vec<u8>, StoreError> {
        self.read(|c| async move { reads::header(&c).await })
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_vec();
        self.read(|c| async move { reads::get(&c, &key).await })
    }

    fn scan_after(&mut self, after: Option<&[u8]>, limit: usize) -> Result<ScanPairs, StoreError> {
        let after = after.map(<[u8]>::to_vec);
        self.read(|c| async move {
            let start = match &after {
                Some(a) => Bound::Excluded(a.as_slice()),
                None => Bound::Unbounded,
            };
            reads::scan(&c, start, Bound::Unbounded, limit, true).await
        })
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        // Closing the connection ends the read-only transaction.
        if let Some(client) = self.client.take().and_then(Arc::into_inner) {
            drop(Object::take(client));
        }
    }
}
