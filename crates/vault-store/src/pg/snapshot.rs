//! Backups from one consistent snapshot: a connection of its own in a `REPEATABLE READ READ ONLY`
//! transaction, whose every read sees the database as of its first statement, whatever the other
//! daemons commit meanwhile.

use std::{ops::Bound, sync::Arc};

use super::{Inner, ScanPairs, bridge::Bridge, held::Held, reads};
use crate::{StoreError, engine::Snapshot};

/// One snapshot of the database (see the module documentation).
pub(crate) struct PgSnapshot(Held);

impl PgSnapshot {
    pub(crate) fn begin(inner: Arc<Inner>, bridge: Arc<Bridge>) -> Result<Self, StoreError> {
        Held::begin(inner, bridge, |c| async move {
            // The snapshot is taken by the first statement after BEGIN (the SELECT). The backup
            // writes its file between reads, so the session may idle in the transaction longer
            // than the engine's usual bound.
            c.batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                 SET LOCAL idle_in_transaction_session_timeout = '10min';
                 SELECT 1;",
            )
            .await
            .map_err(|e| reads::fail(&e))
        })
        .map(Self)
    }
}

impl Snapshot for PgSnapshot {
    fn header(&mut self) -> Result<Vec<u8>, StoreError> {
        self.0.run(|c| async move { reads::header(&c).await })
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_vec();
        self.0.run(|c| async move { reads::get(&c, &key).await })
    }

    fn scan_after(&mut self, after: Option<&[u8]>, limit: usize) -> Result<ScanPairs, StoreError> {
        let after = after.map(<[u8]>::to_vec);
        self.0.run(|c| async move {
            let start = match &after {
                Some(a) => Bound::Excluded(a.as_slice()),
                None => Bound::Unbounded,
            };
            reads::scan(&c, start, Bound::Unbounded, limit, true).await
        })
    }
}
