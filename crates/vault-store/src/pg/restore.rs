//! Restoring a backup file into an empty database: the whole import is one transaction (under
//! the schema's advisory lock), committed only after the backup layer has verified the whole
//! file, so a damaged file leaves the database as it was. The backup's `V`, `G` and `C` entries
//! become the `store_format` meta row and the counts of writer row 0.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use deadpool_postgres::Object;
use futures_util::future::join_all;
use tokio_postgres::types::ToSql;

use super::{
    PgEngine,
    errors::{Fail, from_pg},
    held::Held,
    reads, schema, sql,
    tables::{Derived, OTHER, Route, TableId, route, tables},
};
use crate::{DatabaseUrl, Engine, StoreError, StoredRecord, Structure};

/// Entries sent to the server per round trip.
const BATCH: usize = 8192;

/// A restore under way (see the module documentation). Dropping it unfinished rolls it back.
pub(crate) struct PgRestore {
    held: Held,
    /// Keeps the runtime and pool of `held` alive.
    _engine: PgEngine,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    version: Option<Vec<u8>>,
    generation: i64,
    count: i64,
}

impl PgRestore {
    /// Migrates the schema, then opens the restore's transaction; refuses a database that holds
    /// a vault ([`StoreError::AlreadyExistsAt`]).
    pub(crate) fn begin(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let engine = PgEngine::connect(url, Some(1))?;
        let location = engine.location();
        let held = Held::begin(
            engine.inner.clone(),
            engine.bridge.clone(),
            |c| async move {
                schema::migrate(&c).await?;
                let in_tx = |e: tokio_postgres::Error| Fail::Stop {
                    error: from_pg(&e),
                    discard: true,
                };
                c.batch_execute(
                    "BEGIN;
                 SET LOCAL idle_in_transaction_session_timeout = '10min';",
                )
                .await
                .map_err(in_tx)?;
                c.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK])
                    .await
                    .map_err(in_tx)?;
                if reads::meta(&c, sql::STORE_FORMAT).await?.is_some() {
                    return Err(Fail::stop(StoreError::AlreadyExistsAt(location)));
                }
                Ok(())
            },
        )?;
        Ok(Self {
            held,
            _engine: engine,
            pending: Vec::with_capacity(BATCH),
            version: None,
            generation: 0,
            count: 0,
        })
    }

    /// Adds one entry of the backup (keys arrive in strictly increasing order).
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        match route(&key) {
            (Route::Derived(d), _) => {
                let n = || -> Result<i64, StoreError> {
                    let bytes: [u8; 8] = value
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt(Structure::Generation))?;
                    i64::try_from(u64::from_be_bytes(bytes))
                        .map_err(|_| StoreError::Corrupt(Structure::Generation))
                };
                match d {
                    Derived::Version => self.version = Some(value.clone()),
                    Derived::Generation => self.generation = n()?,
                    Derived::Count => self.count = n()?,
                }
                Ok(())
            }
            (Route::Table(t), _) if t == OTHER && key.len() > 1 => {
                if matches!(route(&key[..1]).0, Route::Derived(_)) {
                    return Err(StoreError::Corrupt(Structure::ReservedKey));
                }
                self.push(key, value)
            }
            _ => self.push(key, value),
        }
    }

    fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.pending.push((key, value));
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the pending entries: one multi-row insert per table, pipelined.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut by_table: BTreeMap<TableId, Columns> = BTreeMap::new();
        for (key, value) in self.pending.drain(..) {
            if let (Route::Table(t), k) = route(&key) {
                let c = by_table.entry(t).or_default();
                c.keep_until
                    .push(StoredRecord::decode(&value).ok().map(|r| r.keep_until));
                c.keys.push(k.to_vec());
                c.values.push(value);
            }
        }
        self.held.run(|c| insert_all(c, by_table))
    }

    /// Writes the header, the store format and the counts, and commits.
    pub(crate) fn commit(mut self, header: &[u8]) -> Result<(), StoreError> {
        self.flush()?;
        let version = self
            .version
            .take()
            .ok_or(StoreError::Corrupt(Structure::StoreVersion))?;
        let (header, generation, count) = (header.to_vec(), self.generation, self.count);
        self.held.run(|c| async move {
            let in_tx = |e: tokio_postgres::Error| Fail::Stop {
                error: from_pg(&e),
                discard: true,
            };
            c.execute(sql::META_PUT, &[&sql::HEADER, &header])
                .await
                .map_err(in_tx)?;
            c.execute(sql::META_PUT, &[&sql::STORE_FORMAT, &version])
                .await
                .map_err(in_tx)?;
            c.execute(
                "UPDATE cardvault_writers SET groups = $1, records = $2 WHERE id = 0",
                &[&generation, &count],
            )
            .await
            .map_err(in_tx)?;
            c.batch_execute("COMMIT").await.map_err(in_tx)
        })
    }
}

/// One table's rows, column-wise.
#[derive(Default)]
struct Columns {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    keep_until: Vec<Option<i64>>,
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

async fn insert_all(c: Arc<Object>, by_table: BTreeMap<TableId, Columns>) -> Result<(), Fail> {
    let in_tx = |e: &tokio_postgres::Error| Fail::Stop {
        error: from_pg(e),
        discard: true,
    };
    let mut params: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    for (t, cols) in &by_table {
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![&cols.keys, &cols.values];
        if tables()[t.0].keep_until {
            p.push(&cols.keep_until);
        }
        params.push((&sql::of(*t).insert, p));
    }
    let mut statements = Vec::with_capacity(params.len());
    for p in join_all(params.iter().map(|(text, _)| c.prepare_cached(text))).await {
        statements.push(p.map_err(|e| in_tx(&e))?);
    }
    let pending: Vec<Pending<'_>> = statements
        .iter()
        .zip(&params)
        .map(|(s, (_, p))| -> Pending<'_> { Box::pin(c.execute(s, p)) })
        .collect();
    for r in join_all(pending).await {
        r.map_err(|e| in_tx(&e))?;
    }
    Ok(())
}
