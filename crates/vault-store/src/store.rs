//! The `Store`: a vault data directory opened for reading and (through the committer) writing.

use std::{
    ops::Bound,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{self, Sender},
    },
    thread::JoinHandle,
};

use parking_lot::Mutex;

use crate::{
    KeySpace, Location, LookupId, StoreError, StoreOptions, StoredRecord, Structure,
    commit::{self, CommitStats, Committer, GroupHistogram, Job},
    engine::Engine,
    layout::{self, COUNT_KEY, GENERATION_KEY},
    sled_engine::SledEngine,
};

pub(crate) use crate::sled_engine::SLED_DIR;

#[cfg(not(feature = "postgres"))]
const NO_POSTGRES: &str = "a PostgreSQL vault (build with the `postgres` feature)";

/// Counters for `stats` and metrics.
#[derive(Clone, Debug)]
pub struct StoreStats {
    /// Records currently stored (live or expired but not yet swept).
    pub records: u64,
    /// Group commits performed since open.
    pub groups: u64,
    /// Write jobs committed since open.
    pub jobs: u64,
    /// Groups run again since open because another writer of a shared database changed what
    /// they had read (always 0 on a directory vault).
    pub races: u64,
    /// Groups committed since open that read token records as they committed (a shared vault's
    /// reveals: read and audit entries in one round trip).
    pub guarded: u64,
    /// Groups refused since open because such a record was not as expected (a reveal refused),
    /// the statement reading it failed, or the group also changed the key header: each ran again,
    /// reading first.
    pub guard_misses: u64,
    /// Device syncs performed by group commits since open (one log `fdatasync` per group under
    /// `Sync`, one sled flush per group under `Flush`).
    pub flushes: u64,
    /// Checkpoints since open (sled flush + sync, write-ahead log reset; `Sync` only).
    pub checkpoints: u64,
    /// Time spent in those checkpoints, in microseconds (the committer waits meanwhile).
    pub checkpoint_micros: u64,
    /// Distribution of jobs per group.
    pub group_sizes: GroupHistogram,
    /// Bytes used on disk by the database.
    pub size_on_disk: u64,
}

/// An open vault: the engine-neutral group committer and typed reads over an [`Engine`].
pub struct Store {
    engine: Arc<dyn Engine>,
    sender: Option<Sender<Box<dyn Job>>>,
    max_queue: std::sync::atomic::AtomicUsize,
    committer: Option<JoinHandle<()>>,
    stats: Arc<CommitStats>,
    group_sizes: Arc<Mutex<GroupHistogram>>,
    pub(crate) capture: Arc<Mutex<Option<crate::capture::Capture>>>,
    pub(crate) dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Creates a new vault directory holding `header` (the encoded key header). Fails with
    /// [`StoreError::AlreadyExists`] if `dir` already holds a vault.
    pub fn create(dir: &Path, header: &[u8], options: StoreOptions) -> Result<Self, StoreError> {
        let engine = SledEngine::create(dir, header, &options)?;
        Self::with_engine(Arc::new(engine), &options)
    }

    /// Opens an existing vault directory. Refuses a directory written by a newer store format.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let engine = SledEngine::open(dir, &options)?;
        Self::with_engine(Arc::new(engine), &options)
    }

    /// Creates a new vault at `location` holding `header`: a directory (as [`create`](Self::create))
    /// or an empty PostgreSQL database (its schema is created; feature `postgres`). Fails with
    /// [`StoreError::AlreadyExists`] if a vault is there already.
    pub fn create_at(
        location: &Location,
        header: &[u8],
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        match location {
            Location::Dir(dir) => Self::create(dir, header, options),
            #[cfg(feature = "postgres")]
            Location::Database(url) => {
                let engine = crate::pg::PgEngine::create(url, header, &options)?;
                Self::with_engine(Arc::new(engine), &options)
            }
            #[cfg(not(feature = "postgres"))]
            Location::Database(_) => Err(StoreError::Unsupported(NO_POSTGRES)),
        }
    }

    /// Opens the vault at `location` (see [`create_at`](Self::create_at)). Refuses a store written
    /// by a newer cardvault.
    pub fn open_at(location: &Location, options: StoreOptions) -> Result<Self, StoreError> {
        match location {
            Location::Dir(dir) => Self::open(dir, options),
            #[cfg(feature = "postgres")]
            Location::Database(url) => {
                let engine = crate::pg::PgEngine::open(url, &options)?;
                Self::with_engine(Arc::new(engine), &options)
            }
            #[cfg(not(feature = "postgres"))]
            Location::Database(_) => Err(StoreError::Unsupported(NO_POSTGRES)),
        }
    }

    /// Reads the key header of the vault at `location` without opening it for writing (see
    /// [`read_header`](Self::read_header)).
    pub fn read_header_at(location: &Location) -> Result<Vec<u8>, StoreError> {
        match location {
            Location::Dir(dir) => Self::read_header(dir),
            #[cfg(feature = "postgres")]
            Location::Database(url) => crate::pg::PgEngine::read_header_of(url),
            #[cfg(not(feature = "postgres"))]
            Location::Database(_) => Err(StoreError::Unsupported(NO_POSTGRES)),
        }
    }

    /// Where the vault lives (a database URL without its password).
    pub fn location(&self) -> Location {
        self.engine.location()
    }

    /// Whether other processes may write this vault concurrently (see [`Engine::shared`]).
    pub fn shared(&self) -> bool {
        self.engine.shared()
    }

    /// Runs the store over an open `engine` whose key space holds a created vault (the counters
    /// of [`KeySpace::Count`] and [`KeySpace::Generation`]). `options.max_group` and
    /// `options.max_queue` tune the committer; the rest is the engine's.
    pub fn with_engine(
        engine: Arc<dyn Engine>,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let count = read_u64(&*engine, COUNT_KEY, Structure::RecordCount)?
            .ok_or(StoreError::Corrupt(Structure::RecordCount))?;
        // Stores made before the group counter have none: they start at 0.
        let generation = read_u64(&*engine, GENERATION_KEY, Structure::Generation)?.unwrap_or(0);
        let (sender, rx) = mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        stats.live_records.store(count, Ordering::Release);
        let group_sizes = Arc::new(Mutex::new(GroupHistogram::default()));
        let capture = Arc::new(Mutex::new(None));
        let committer = Committer {
            engine: engine.clone(),
            rx,
            max_group: options.max_group.max(1),
            stats: stats.clone(),
            group_sizes: group_sizes.clone(),
            capture: capture.clone(),
            generation,
        };
        let handle = std::thread::Builder::new()
            .name("cardvault-commit".into())
            .spawn(move || committer.run())?;
        Ok(Self {
            dir: engine.dir().to_path_buf(),
            engine,
            sender: Some(sender),
            max_queue: std::sync::atomic::AtomicUsize::new(options.max_queue.max(1)),
            committer: Some(handle),
            stats,
            group_sizes,
            capture,
        })
    }

    /// The engine underneath.
    pub(crate) fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Group commits made so far (the [`KeySpace::Generation`] counter), as stored.
    pub fn generation(&self) -> Result<u64, StoreError> {
        Ok(read_u64(&*self.engine, GENERATION_KEY, Structure::Generation)?.unwrap_or(0))
    }

    /// The vault directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The encoded key header.
    pub fn header(&self) -> Result<Vec<u8>, StoreError> {
        self.engine.read_header()
    }

    /// A handle that reads the key header like [`header`](Self::header), for a job's completion
    /// on the committer thread (which must not hold the store itself: dropping the last handle of
    /// a store there would wait for that very thread).
    pub fn header_reader(&self) -> HeaderReader {
        HeaderReader(self.engine.clone())
    }

    /// Reads the key header of the vault in `dir` **without opening the database**, so a caller can
    /// check its key first and leave the directory untouched when the key is wrong.
    pub fn read_header(dir: &Path) -> Result<Vec<u8>, StoreError> {
        if !dir.join(SLED_DIR).is_dir() {
            return Err(StoreError::NotFound(dir.to_path_buf()));
        }
        crate::header_file::read(dir)
    }

    /// The record stored under `id`.
    ///
    /// One key, read without the group lock (the hot path of `get` and `reveal`): a record is
    /// whole in its key, and a single read sees it before or after a group, never in between.
    pub fn record(&self, id: &LookupId) -> Result<Option<StoredRecord>, StoreError> {
        StoredRecord::from_read(self.engine.point_get(&layout::record_key(id)))
    }

    /// [`record`](Self::record) without waiting: `done` receives it, on this thread or on one of
    /// the engine's (see [`Engine::point_get_then`]), and must be quick.
    pub fn record_then(
        &self,
        id: &LookupId,
        done: impl FnOnce(Result<Option<StoredRecord>, StoreError>) + Send + 'static,
    ) {
        self.engine.point_get_then(
            &layout::record_key(id),
            Box::new(move |read| done(StoredRecord::from_read(read))),
        );
    }

    /// Up to `limit` records in key order, starting after `after`. A record that does not decode is
    /// returned as its error so callers can report it and carry on.
    #[allow(clippy::type_complexity)]
    pub fn scan_records(
        &self,
        after: Option<LookupId>,
        limit: usize,
    ) -> Result<Vec<(LookupId, Result<StoredRecord, StoreError>)>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.scan_record_range(after, limit)? {
            let id = layout::lookup_from_record_key(&k)
                .ok_or(StoreError::Corrupt(Structure::Key(KeySpace::Record)))?;
            out.push((id, StoredRecord::decode(&v)));
        }
        Ok(out)
    }

    /// Up to `limit` raw records after `after`, in key order (`limit` 0: all).
    #[allow(clippy::type_complexity)]
    fn scan_record_range(
        &self,
        after: Option<LookupId>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let after_key = after.map(|id| layout::record_key(&id));
        let start = match &after_key {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Included(&[layout::RECORD_PREFIX][..]),
        };
        let end = [layout::RECORD_PREFIX + 1];
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.engine.scan(start, Bound::Excluded(&end[..]), limit)
    }

    /// Scans up to `max_scan` records after `after` (in key order) and returns the ids of those
    /// whose keep-until is at or before `now`, plus where to continue (`None` at the end).
    /// There is no expiry index in the key space: one index entry per token costs more (write
    /// throughput, disk, open time) than an occasional linear sweep. Records that do not decode
    /// are skipped (they are reported as integrity errors when read). An engine that indexes
    /// keep-until (PostgreSQL) returns up to `max_scan` due records instead (see
    /// [`Engine::scan_expired`]).
    pub fn scan_expired(
        &self,
        after: Option<LookupId>,
        now: i64,
        max_scan: usize,
    ) -> Result<(Vec<LookupId>, Option<LookupId>), StoreError> {
        self.engine.scan_expired(after, now, max_scan)
    }

    /// Reads a key outside the reserved prefixes (for layers above).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        commit::check_free_prefix(key)?;
        self.engine.get(key)
    }

    /// The first pair after `after` whose key starts with `prefix` (outside the reserved
    /// prefixes): for skipping through a key space one group at a time.
    #[allow(clippy::type_complexity)]
    pub fn first_raw_after(
        &self,
        prefix: &[u8],
        after: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        commit::check_free_prefix(prefix)?;
        let end = crate::engine::prefix_end(prefix);
        let end = match &end {
            Bound::Excluded(e) => Bound::Excluded(&e[..]),
            _ => Bound::Unbounded,
        };
        let start = if after < prefix {
            Bound::Included(prefix)
        } else {
            Bound::Excluded(after)
        };
        Ok(self.engine.scan(start, end, 1)?.into_iter().next())
    }

    /// All `(key, value)` pairs whose key starts with `prefix` (outside the reserved prefixes).
    #[allow(clippy::type_complexity)]
    pub fn scan_raw(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        commit::check_free_prefix(prefix)?;
        let end = crate::engine::prefix_end(prefix);
        let end = match &end {
            Bound::Excluded(e) => Bound::Excluded(&e[..]),
            _ => Bound::Unbounded,
        };
        self.engine.scan(Bound::Included(prefix), end, limit)
    }

    /// Runs `f` on the committer thread as part of the next group and blocks until the group is
    /// applied and (per durability) flushed. `f`'s writes are discarded if it returns an error.
    ///
    /// `f` may run more than once: on a database shared with other writers, a group refused
    /// because another writer changed what it read is run again on fresh reads. So `f` decides
    /// only from what it reads through the [`WriteTx`](crate::WriteTx) and its own captures.
    pub fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(E::from(StoreError::Closed)))
    }

    /// Like [`write`](Self::write) but does not block: `done` is called (on the committer thread)
    /// with the outcome once it is durable. `done` must be quick and must not call back into the
    /// store's write path.
    pub fn submit<T, E, F, D>(&self, f: F, done: D)
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, E>) + Send + 'static,
    {
        self.submit_bounded(false, f, done);
    }

    /// Like [`submit`](Self::submit), but the job is committed in a group of its own: for a job
    /// that changes state outside the transaction which other jobs read (the vault's in-memory
    /// keys, which a key rotation changes for the jobs after it) and which it puts back only
    /// when it runs again. A group run again after a race runs its jobs in order, so a job
    /// grouped before it would run again on that state as the first run left it.
    pub fn submit_alone<T, E, F, D>(&self, f: F, done: D)
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, E>) + Send + 'static,
    {
        self.submit_bounded(true, f, done);
    }

    fn submit_bounded<T, E, F, D>(&self, alone: bool, f: F, done: D)
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, E>) + Send + 'static,
    {
        // Back-pressure: the slot is taken before the job is built and given back by the committer
        // when it takes the job off the channel.
        let queued = &self.stats.queued;
        if queued.fetch_add(1, Ordering::AcqRel) >= self.max_queue.load(Ordering::Relaxed) {
            queued.fetch_sub(1, Ordering::AcqRel);
            done(Err(E::from(StoreError::Busy)));
            return;
        }
        self.send(commit::job(f, done, alone));
    }

    /// Like [`submit`](Self::submit) but never refused as [`StoreError::Busy`]: for a job of which
    /// at most one is ever queued at a time (the reveal audit drain, which carries the entries of
    /// every reveal waiting on it), so it cannot grow the queue without bound. The job still
    /// counts against the bound while queued.
    pub fn submit_exempt<T, E, F, D>(&self, f: F, done: D)
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, E>) + Send + 'static,
    {
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        self.send(commit::job(f, done, false));
    }

    /// Changes [`StoreOptions::max_queue`] (at least 1) for this open store.
    pub fn set_max_queue(&self, jobs: usize) {
        self.max_queue.store(jobs.max(1), Ordering::Relaxed);
    }

    /// Jobs waiting for the committer right now (at most about `max_queue`).
    pub fn queued_jobs(&self) -> usize {
        self.stats.queued.load(Ordering::Acquire)
    }

    fn send(&self, job: Box<dyn Job>) {
        // If the committer is gone the job (and with it `done`) is dropped unrun: a blocking
        // caller sees its channel close and reports `StoreError::Closed`; an async caller sees its
        // one-shot sender dropped.
        if let Some(sender) = &self.sender
            && sender.send(job).is_err()
        {
            self.stats.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Flushes everything written so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.engine.flush()
    }

    /// Whether a group commit has failed in the database (I/O error, disk full). sled 0.34 then
    /// refuses every later read and write until the database is reopened, even once the cause is
    /// gone: the process must be restarted (the daemon reports this on `/health`). Nothing that
    /// was acknowledged is lost; see `docs/durability.md`.
    pub fn has_failed(&self) -> bool {
        self.stats.failed.load(Ordering::Acquire)
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        let engine = self.engine.stats();
        StoreStats {
            records: self.stats.live_records.load(Ordering::Acquire),
            groups: self.stats.groups.load(Ordering::Relaxed),
            jobs: self.stats.jobs.load(Ordering::Relaxed),
            races: self.stats.races.load(Ordering::Relaxed),
            guarded: self.stats.guarded.load(Ordering::Relaxed),
            guard_misses: self.stats.guard_misses.load(Ordering::Relaxed),
            flushes: engine.flushes,
            checkpoints: engine.checkpoints,
            checkpoint_micros: engine.checkpoint_micros,
            group_sizes: self.group_sizes.lock().clone(),
            size_on_disk: engine.size_on_disk,
        }
    }
}

/// Reads the stored key header (see [`Store::header_reader`]).
#[derive(Clone)]
pub struct HeaderReader(Arc<dyn Engine>);

impl HeaderReader {
    /// The encoded key header as stored now.
    pub fn read(&self) -> Result<Vec<u8>, StoreError> {
        self.0.read_header()
    }
}

impl std::fmt::Debug for HeaderReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderReader").finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel lets the committer finish the queued groups, flush and exit.
        self.sender.take();
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
        let _ = self.engine.flush();
    }
}

/// A u64 BE counter of the key space, if present.
fn read_u64(engine: &dyn Engine, key: &[u8], what: Structure) -> Result<Option<u64>, StoreError> {
    match engine.get(key)? {
        Some(v) => Ok(Some(u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt(what))?,
        ))),
        None => Ok(None),
    }
}
