//! The PostgreSQL engine (feature `postgres`): any number of daemons share one database, each
//! with its own store and committer.
//!
//! - `config.rs`: the URL and cardvault's own parameters in it (TLS mode, pool, timeouts);
//! - `tls.rs`: rustls (ring) connectors for each `sslmode`;
//! - `bridge.rs`: the engine's own tokio runtime, and the bounded wait of every synchronous call
//!   (which hands a tokio worker's other tasks to another thread while it waits);
//! - `direct.rs`: the committer's own connection, driven on the committer's thread;
//! - `point_reads.rs`: concurrent point reads coalesced into one statement per table;
//! - `errors.rs`: PostgreSQL failures as typed store errors (no server text);
//! - `schema.rs`: the embedded migrations and the schema version;
//! - `tables.rs`: which table holds which key (one per key space) and the scan order;
//! - `sql.rs`: the statements; `reads.rs`: point reads, scans, the expiry index;
//! - `commit.rs`: one statement (so one transaction, one round trip) per group with its checks; `snapshot.rs`: backups from one
//!   consistent snapshot; `restore.rs`: a backup file into an empty database; `held.rs`: a
//!   connection held for a transaction spanning several calls.
//!
//! The URL's parameters, the time bounds and durability are documented on [`PgEngine`].

/// Runs `$body` (an expression using the pooled connection `$c`) with the operation bound, once
/// more on another connection when the first one was lost before anything could have been
/// committed.
macro_rules! with_client {
    ($inner:expr, |$c:ident| $body:expr) => {{
        let inner: &Inner = $inner;
        let mut attempt = 0u32;
        loop {
            let $c = inner.client().await?;
            let outcome = tokio::time::timeout(inner.op_limit, async { $body }).await;
            match inner.settle($c, outcome, &mut attempt) {
                Ok(Some(v)) => break Ok(v),
                Ok(None) => continue,
                Err(e) => break Err(e),
            }
        }
    }};
}

mod bridge;
mod commit;
mod config;
mod direct;
mod errors;
mod held;
mod point_reads;
mod reads;
pub(crate) mod restore;
mod schema;
mod snapshot;
mod sql;
mod tables;
mod tls;

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    ops::Bound,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};

use self::{
    bridge::Bridge,
    config::Settings,
    direct::{Direct, Use},
    errors::Fail,
    point_reads::PointReads,
    reads::Pairs,
    tables::{Route, TableId, route},
};
use crate::{
    DatabaseUrl, Location, LookupId, STORE_FORMAT_VERSION, StoreError, StoreOptions, Structure,
    Unavailable,
    engine::{Engine, EngineStats, Group, ReadDone, Snapshot},
};

/// A vault in a PostgreSQL database: the engine under [`Store::create_at`] and
/// [`Store::open_at`] for a [`Location::Database`], shared by any number of processes.
///
/// # Connection URL
///
/// `postgres://user[:password]@host[:port]/database?param=value&...` (or the key-value form
/// `host=... user=... dbname=...`). Besides what tokio-postgres reads (`connect_timeout` in
/// seconds, `application_name`, `options`, `keepalives`, ...), the engine takes:
///
/// | parameter | default | meaning |
/// |-----------|---------|---------|
/// | `sslmode` | `prefer` | `disable`; `prefer` (TLS if the server offers it, certificate not verified); `require` (TLS, not verified, as libpq); `verify-ca` (chain verified); `verify-full` (chain and host name verified) |
/// | `sslrootcert` | system roots | PEM file of the roots `verify-ca` / `verify-full` trust |
/// | `connect_timeout` | 5 | seconds a connection attempt may take |
/// | `pool_max_size` | 16 | connections this engine keeps at most (one of them the committer's own, see below, when more than one) |
/// | `pool_timeout_ms` | 5000 | how long a caller waits for a free connection ([`Unavailable::PoolExhausted`]) |
/// | `statement_timeout_ms` | 5000 | the server's `statement_timeout` of every connection ([`Unavailable::StatementTimeout`]) |
///
/// Every wait is bounded: the pool wait, the connection attempt, each statement (server side,
/// and client side at twice the statement timeout plus a second, after which the connection is
/// dropped), and the caller's wait for the whole operation. A connection found broken is dropped
/// and the pool makes a new one when needed, so the engine recovers by itself when the server
/// comes back; a read that lost its connection is tried once more on another.
///
/// # Connections
///
/// The committer commits on a connection of its own, driven on its own thread (no hand-off to
/// the engine's runtime); its reads of the committed state go there too. Other reads go through a
/// queue that answers the reads made at the same time with one statement per table (`key =
/// ANY($1)`), on pooled connections. A synchronous call made on a worker thread of a
/// multi-threaded tokio runtime (the daemon's handlers) lets the runtime move the worker's other
/// tasks to another thread while it waits, so concurrent requests keep being served and their
/// reads can share a statement.
///
/// # Tables
///
/// One per key space (`cardvault_record`, `cardvault_dedupe`, `cardvault_audit_entry`, ...:
/// `key bytea` primary key without the prefix byte, `value bytea`; token records also an indexed
/// `keep_until bigint`), `cardvault_other` for keys of unregistered prefixes, `cardvault_meta`
/// (key header, store format), `cardvault_writers` (per-writer group and record counts: the
/// `G` and `C` keys read as their sums) and `cardvault_schema_version` (migrations applied, under
/// a transaction-level advisory lock).
///
/// # Durability
///
/// A group is one statement, acknowledged once the server reported it done, i.e. once its
/// (implicit) transaction committed: as durable as the server's `synchronous_commit` makes it
/// (the store's [`Durability`](crate::Durability) is not used).
/// The key header is its own transaction, committed before the group that needs it.
///
/// [`Store::create_at`]: crate::Store::create_at
/// [`Store::open_at`]: crate::Store::open_at
pub struct PgEngine {
    inner: Arc<Inner>,
    bridge: Arc<Bridge>,
    /// The queue that coalesces point reads.
    point_reads: PointReads,
    /// The connection the committer drives on its own thread.
    direct: Direct,
    url: DatabaseUrl,
    /// This instance's row in `cardvault_writers` (`None`: a read-only engine).
    writer: Option<i64>,
    commits: AtomicU64,
}

/// What the engine's futures share.
pub(crate) struct Inner {
    pool: Pool,
    /// The bound on one operation's database work (see [`Settings::op_limit`]).
    op_limit: Duration,
    /// The bound on a caller's wait (see [`Settings::call_limit`]).
    call_limit: Duration,
}

impl fmt::Debug for PgEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgEngine")
            .field("url", &self.url)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl Inner {
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(errors::from_pool)
    }

    /// What an attempt's outcome means: a value, another attempt (`None`), or the error. A
    /// connection that may be mid-transaction or broken is dropped, not pooled.
    fn settle<T>(
        &self,
        client: Object,
        outcome: Result<Result<T, Fail>, tokio::time::error::Elapsed>,
        attempt: &mut u32,
    ) -> Result<Option<T>, StoreError> {
        match outcome {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(Fail::Retry)) => {
                drop(Object::take(client));
                // Other pooled connections to a restarted server are broken too.
                self.pool.retain(|c, _| !c.is_closed());
                *attempt += 1;
                if *attempt < 2 {
                    Ok(None)
                } else {
                    Err(StoreError::Unavailable(Unavailable::ConnectionLost))
                }
            }
            Ok(Err(Fail::Stop { error, discard })) => {
                if discard {
                    drop(Object::take(client));
                }
                Err(error)
            }
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(Unavailable::StatementTimeout))
            }
        }
    }
}

/// What `create`, `open` and `read_header_of` do once connected.
enum Start {
    Create(Vec<u8>),
    Open,
    ReadHeader,
}

/// What a start found.
enum Started {
    Writer(i64),
    Header(Vec<u8>),
}

impl PgEngine {
    /// Creates the schema in the database of `url` if it has none (or upgrades it), and a new
    /// vault there holding `header`. Fails with [`StoreError::AlreadyExistsAt`] if the database
    /// holds a vault already.
    pub fn create(
        url: &DatabaseUrl,
        header: &[u8],
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let _ = options;
        Self::start(url, Start::Create(header.to_vec()))
    }

    /// Opens the vault in the database of `url`, upgrading its schema if this build has newer
    /// migrations. Fails with [`StoreError::NotFoundAt`] if it holds none, and refuses a schema
    /// or store format newer than this build's.
    pub fn open(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        let _ = options;
        Self::start(url, Start::Open)
    }

    /// The key header of the vault in the database of `url`, without registering a writer or
    /// changing anything.
    pub fn read_header_of(url: &DatabaseUrl) -> Result<Vec<u8>, StoreError> {
        let engine = Self::connect(url, Some(1))?;
        let location = engine.location();
        let started = engine.bridge.run(engine.inner.call_limit, {
            let inner = engine.inner.clone();
            async move { begin(&inner, Start::ReadHeader, location).await }
        })?;
        match started {
            Started::Header(h) => Ok(h),
            Started::Writer(_) => Err(StoreError::Closed),
        }
    }

    fn start(url: &DatabaseUrl, what: Start) -> Result<Self, StoreError> {
        let mut engine = Self::connect(url, None)?;
        let location = engine.location();
        let inner = engine.inner.clone();
        let started = engine.bridge.run(engine.inner.call_limit, async move {
            begin(&inner, what, location).await
        })?;
        if let Started::Writer(id) = started {
            engine.writer = Some(id);
        }
        Ok(engine)
    }

    /// The engine, connected to nothing yet (connections are made on first use).
    fn connect(url: &DatabaseUrl, pool_max_size: Option<usize>) -> Result<Self, StoreError> {
        let settings = Settings::parse(url)?;
        let tls = tls::connector(settings.tls, settings.root_cert.as_deref())?;
        // The committer's own connection is one of the `pool_max_size` the engine may have
        // (none when that is one: the pool's connection is then all).
        let pool_max_size = pool_max_size.unwrap_or(settings.pool_max_size);
        let direct_enabled = pool_max_size > 1;
        let direct = Direct::new(
            settings.pg.clone(),
            tls.clone(),
            settings.connect_timeout,
            direct_enabled,
        )?;
        let manager = Manager::from_config(
            settings.pg.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_max_size - usize::from(direct_enabled))
            .wait_timeout(Some(settings.pool_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|_| StoreError::InvalidDatabaseUrl("the connection pool cannot be built"))?;
        let inner = Arc::new(Inner {
            pool,
            op_limit: settings.op_limit(),
            call_limit: settings.call_limit(),
        });
        let bridge = Arc::new(Bridge::new()?);
        Ok(Self {
            point_reads: PointReads::start(inner.clone(), bridge.handle()),
            direct,
            inner,
            bridge,
            url: url.clone(),
            writer: None,
            commits: AtomicU64::new(0),
        })
    }

    /// Runs `work` (given the shared state) on the engine's runtime, within the call bound.
    fn call<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.bridge
            .run(self.inner.call_limit, work(self.inner.clone()))
    }

    fn writer(&self) -> Result<i64, StoreError> {
        self.writer.ok_or(StoreError::Closed)
    }
}

/// Connects and does what `create`, `open` or `read_header_of` needs.
async fn begin(inner: &Inner, what: Start, location: Location) -> Result<Started, StoreError> {
    // Migrations may take long on a large database: not bounded by the operation limit.
    let client = inner.client().await?;
    let outcome = start_on(&client, what, location).await;
    match outcome {
        Ok(s) => Ok(s),
        Err(Fail::Retry) => {
            drop(Object::take(client));
            Err(StoreError::Unavailable(Unavailable::ConnectionLost))
        }
        Err(Fail::Stop { error, discard }) => {
            if discard {
                drop(Object::take(client));
            }
            Err(error)
        }
    }
}

async fn start_on(client: &Object, what: Start, location: Location) -> Result<Started, Fail> {
    let broken = |e: &tokio_postgres::Error| Fail::Stop {
        error: errors::from_pg(e),
        discard: true,
    };
    match what {
        Start::ReadHeader => {
            if !schema::exists(client).await? {
                return Err(Fail::stop(StoreError::NotFoundAt(location)));
            }
            schema::version(client).await?;
            reads::meta(client, sql::STORE_FORMAT)
                .await?
                .ok_or(Fail::stop(StoreError::NotFoundAt(location)))?;
            Ok(Started::Header(reads::header(client).await?))
        }
        Start::Open => {
            if !schema::exists(client).await? {
                return Err(Fail::stop(StoreError::NotFoundAt(location)));
            }
            schema::migrate(client).await?;
            let format = reads::meta(client, sql::STORE_FORMAT)
                .await?
                .ok_or(Fail::stop(StoreError::NotFoundAt(location)))?;
            check_format(&format)?;
            let row = client
                .query_one(sql::WRITER_NEW, &[])
                .await
                .map_err(|e| Fail::stop(errors::from_pg(&e)))?;
            Ok(Started::Writer(
                row.try_get(0)
                    .map_err(|e| Fail::stop(errors::from_pg(&e)))?,
            ))
        }
        Start::Create(header) => {
            schema::migrate(client).await?;
            client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| broken(&e))?;
            let found = async {
                client
                    .execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK])
                    .await?;
                client.query_opt(sql::META_GET, &[&sql::STORE_FORMAT]).await
            }
            .await
            .map_err(|e| broken(&e))?;
            if found.is_some() {
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(|e| broken(&e))?;
                return Err(Fail::stop(StoreError::AlreadyExistsAt(location)));
            }
            let format = STORE_FORMAT_VERSION.to_be_bytes().to_vec();
            let id: i64 = async {
                client
                    .execute(sql::META_PUT, &[&sql::HEADER, &header])
                    .await?;
                client
                    .execute(sql::META_PUT, &[&sql::STORE_FORMAT, &format])
                    .await?;
                let row = client.query_one(sql::WRITER_NEW, &[]).await?;
                let id = row.try_get(0)?;
                client.batch_execute("COMMIT").await?;
                Ok::<_, tokio_postgres::Error>(id)
            }
            .await
            .map_err(|e| broken(&e))?;
            Ok(Started::Writer(id))
        }
    }
}

/// Refuses a store format newer than this build's (or a damaged one).
fn check_format(v: &[u8]) -> Result<(), Fail> {
    let v: [u8; 2] = v
        .try_into()
        .map_err(|_| Fail::stop(StoreError::Corrupt(Structure::StoreVersion)))?;
    match u16::from_be_bytes(v) {
        0 => Err(Fail::stop(StoreError::Corrupt(Structure::StoreVersion))),
        v if v > STORE_FORMAT_VERSION => Err(Fail::stop(StoreError::NewerFormat(v))),
        _ => Ok(()),
    }
}

impl Engine for PgEngine {
    fn dir(&self) -> &Path {
        Path::new("")
    }

    fn location(&self) -> Location {
        Location::Database(self.url.clone())
    }

    fn shared(&self) -> bool {
        true
    }

    /// A row is read through the queue of point reads (coalesced with concurrent reads); a
    /// derived key on its own.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match route(key) {
            (Route::Table(t), k) => {
                let direct = self
                    .direct
                    .run(&self.inner, Use::Read, async |c| reads::get(c, key).await);
                match direct {
                    Some(r) => r,
                    None => {
                        let rx = self.point_reads.queue(t, k.to_vec());
                        bridge::receive(&rx, self.inner.call_limit)
                    }
                }
            }
            (Route::Derived(_), _) => {
                let key = key.to_vec();
                self.call(
                    |inner| async move { with_client!(&inner, |c| reads::get(&c, &key).await) },
                )
            }
        }
    }

    /// On the committer's thread, one statement per table on its own connection (a reveal
    /// group's records: one round trip); elsewhere each key joins the queue of point reads, and
    /// the answers are awaited together.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys {
            match route(key) {
                (Route::Table(t), k) => rows.push((t, k)),
                // Not a row: each key on its own.
                (Route::Derived(_), _) => return keys.iter().map(|k| self.get(k)).collect(),
            }
        }
        let mut by_table: HashMap<TableId, Vec<Vec<u8>>> = HashMap::new();
        for (t, k) in &rows {
            by_table.entry(*t).or_default().push(k.to_vec());
        }
        let direct = self.direct.run(&self.inner, Use::Read, async |c| {
            let mut found = HashMap::with_capacity(by_table.len());
            for (t, ks) in &by_table {
                found.insert(*t, point_reads::fetch(c, *t, ks).await?);
            }
            Ok(found)
        });
        match direct {
            Some(found) => {
                let found = found?;
                Ok(rows
                    .iter()
                    .map(|(t, k)| found.get(t).and_then(|table| table.get(*k).cloned()))
                    .collect())
            }
            None => {
                let waiting: Vec<_> = rows
                    .iter()
                    .map(|(t, k)| self.point_reads.queue(*t, k.to_vec()))
                    .collect();
                waiting
                    .iter()
                    .map(|rx| bridge::receive(rx, self.inner.call_limit))
                    .collect()
            }
        }
    }

    /// From inside a tokio runtime (the daemon's handlers), a read of a table joins the queue of
    /// point reads and `done` runs on the engine's runtime: the caller's worker never waits.
    /// From a plain thread it is [`get`](Engine::get), inline (the committer's own connection).
    fn point_get_then(&self, key: &[u8], done: ReadDone) {
        match route(key) {
            (Route::Table(t), k) if tokio::runtime::Handle::try_current().is_ok() => {
                self.point_reads.queue_then(t, k.to_vec(), done);
            }
            _ => done(self.get(key)),
        }
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (start, end) = (start.map(<[u8]>::to_vec), end.map(<[u8]>::to_vec));
        self.call(|inner| async move {
            with_client!(&inner, |c| {
                reads::scan(&c, as_ref(&start), as_ref(&end), limit, false).await
            })
        })
    }

    /// On the committer's own connection when called outside a tokio runtime (the committer
    /// thread), through the engine's runtime otherwise.
    fn commit(&self, group: Group) -> Result<Vec<Vec<u8>>, StoreError> {
        let writer = self.writer()?;
        let plan = commit::Plan::new(group)?;
        let direct = self.direct.run(&self.inner, Use::Commit, async |c| {
            commit::run(c, &plan, writer).await
        });
        let guarded = match direct {
            Some(r) => r?,
            None => self.call(|inner| async move {
                with_client!(&inner, |c| commit::run(&c, &plan, writer).await)
            })?,
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(guarded)
    }

    fn read_header(&self) -> Result<Vec<u8>, StoreError> {
        self.call(|inner| async move { with_client!(&inner, |c| reads::header(&c).await) })
    }

    /// One statement, its own transaction, committed before the group that needs it.
    fn write_header(&self, header: &[u8]) -> Result<(), StoreError> {
        let header = header.to_vec();
        self.call(|inner| async move {
            with_client!(&inner, |c| {
                let stmt = c
                    .prepare_cached(sql::META_PUT)
                    .await
                    .map_err(|e| reads::fail(&e))?;
                // An UPSERT run twice leaves the same row: a retry after a lost connection is safe.
                c.execute(&stmt, &[&sql::HEADER, &header])
                    .await
                    .map_err(|e| reads::fail(&e))
                    .map(drop)
            })
        })
    }

    /// The compare-and-set of the header: another daemon's rotation since `previous` was read
    /// refuses this one as raced (its job then starts again from the stored header).
    fn replace_header(&self, previous: &[u8], header: &[u8]) -> Result<(), StoreError> {
        if previous == header {
            return Ok(());
        }
        let (previous, header) = (previous.to_vec(), header.to_vec());
        let replaced = self.call(|inner| async move {
            with_client!(&inner, |c| {
                let stmt = c
                    .prepare_cached(sql::META_REPLACE)
                    .await
                    .map_err(|e| reads::fail(&e))?;
                c.execute(&stmt, &[&sql::HEADER, &previous, &header])
                    .await
                    .map_err(|e| reads::fail(&e))
            })
        })?;
        if replaced == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(crate::ConflictKind::Raced))
        }
    }

    /// Folds this writer's counts into the base row (the sums do not change) and retires it.
    fn close(&self, generation: u64) -> Result<(), StoreError> {
        let _ = generation;
        let writer = self.writer()?;
        self.call(|inner| async move {
            with_client!(&inner, |c| {
                let stmt = c
                    .prepare_cached(sql::WRITER_FOLD)
                    .await
                    .map_err(|e| reads::fail(&e))?;
                c.execute(&stmt, &[&writer])
                    .await
                    .map_err(|e| reads::fail(&e))
                    .map(drop)
            })
        })
    }

    /// Every acknowledged group is committed already.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            flushes: self.commits.load(Ordering::Relaxed),
            ..EngineStats::default()
        }
    }

    fn scan_expired(
        &self,
        after: Option<LookupId>,
        now: i64,
        max_scan: usize,
    ) -> Result<(Vec<LookupId>, Option<LookupId>), StoreError> {
        self.call(|inner| async move {
            with_client!(&inner, |c| reads::expired(&c, after, now, max_scan).await)
        })
    }

    fn snapshot(&self) -> Result<Option<Box<dyn Snapshot>>, StoreError> {
        let snap = snapshot::PgSnapshot::begin(self.inner.clone(), self.bridge.clone())?;
        Ok(Some(Box::new(snap)))
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

/// Pairs of a scan, for the snapshot and restore modules.
pub(crate) type ScanPairs = Pairs;
