//! A connection taken out of the pool for a transaction that spans several calls (a backup's
//! snapshot, a restore): each call runs on the engine's runtime within the operation bound. A
//! failed or timed-out call leaves the transaction in doubt, so every later call is refused; the
//! connection is dropped at the end, never pooled again mid-transaction.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use deadpool_postgres::Object;

use super::{Inner, bridge::Bridge, errors::Fail};
use crate::{StoreError, Unavailable};

/// A connection held for one long transaction.
pub(crate) struct Held {
    inner: Arc<Inner>,
    bridge: Arc<Bridge>,
    /// `None` once dropped.
    client: Option<Arc<Object>>,
    /// Set when a call failed or timed out.
    broken: Arc<AtomicBool>,
}

impl Held {
    /// Takes a connection and runs `begin` on it (the transaction's first statements).
    pub(crate) fn begin<F, Fut>(
        inner: Arc<Inner>,
        bridge: Arc<Bridge>,
        begin: F,
    ) -> Result<Self, StoreError>
    where
        F: FnOnce(Arc<Object>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Fail>> + Send + 'static,
    {
        let started = inner.clone();
        let client = bridge.run(inner.call_limit, async move {
            let client = Arc::new(started.client().await?);
            let outcome = tokio::time::timeout(started.op_limit, begin(client.clone())).await;
            let error = match outcome {
                Ok(Ok(())) => return Ok(client),
                Ok(Err(Fail::Retry)) => StoreError::Unavailable(Unavailable::ConnectionLost),
                Ok(Err(Fail::Stop { error, .. })) => error,
                Err(_) => StoreError::Unavailable(Unavailable::StatementTimeout),
            };
            discard(Some(client));
            Err(error)
        })?;
        Ok(Self {
            inner,
            bridge,
            client: Some(client),
            broken: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs one call of the transaction.
    pub(crate) fn run<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Object>) -> Fut,
        Fut: Future<Output = Result<T, Fail>> + Send + 'static,
    {
        if self.broken.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(Unavailable::ConnectionLost));
        }
        let client = self.client.clone().ok_or(StoreError::Closed)?;
        let (broken, op_limit) = (self.broken.clone(), self.inner.op_limit);
        let work = call(client);
        self.bridge.run(self.inner.call_limit, async move {
            let error = match tokio::time::timeout(op_limit, work).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(Fail::Retry)) => StoreError::Unavailable(Unavailable::ConnectionLost),
                Ok(Err(Fail::Stop { error, .. })) => error,
                Err(_) => StoreError::Unavailable(Unavailable::StatementTimeout),
            };
            broken.store(true, Ordering::Release);
            Err(error)
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Closing the connection ends (rolls back) a transaction still open.
        discard(self.client.take());
    }
}

fn discard(client: Option<Arc<Object>>) {
    if let Some(client) = client.and_then(Arc::into_inner) {
        drop(Object::take(client));
    }
}
