//! The `Store`: a vault data directory opened for reading and (through the committer) writing.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
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
    KeySpace, LookupId, StoreError, StoredRecord, Structure, WalPart,
    commit::{self, CommitStats, Committer, GroupHistogram, Job},
    layout::{self, COUNT_KEY, GENERATION_KEY, VERSION_KEY},
    lock::DirLock,
};

/// Version of the store layout (key space, record codec, files). Bumped on incompatible change;
/// a vault written by a newer version is refused at open. `2` added the write-ahead log
/// (`<dir>/wal`), which a build that does not know it would ignore, losing acknowledged writes
/// after a crash; a version-1 vault is upgraded when opened (it has no log to replay).
pub const STORE_FORMAT_VERSION: u16 = 2;

pub(crate) const SLED_DIR: &str = "sled";

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// The default. A write returns only after its group was appended to the vault's write-ahead
    /// log (`<dir>/wal`) and that file was `fdatasync`ed: one device sync per group. It survives
    /// `kill -9` and power loss (as far as the disk honours flushes); the log is replayed on open.
    /// The group is then applied to sled without a flush; sled's own data becomes durable at the
    /// next checkpoint (see `docs/durability.md`).
    #[default]
    Sync,
    /// A write returns after its group was applied and `flush`ed by sled. On Linux sled's flush is
    /// `pwrite` + `sync_file_range`: the bytes reach the device, so the write survives `kill -9`
    /// of the process, but neither the device's cache nor the file's size is synced, so a power
    /// loss can lose up to sled's background fsync interval (1 s). Faster than `Sync`.
    Flush,
    /// A write returns once applied in memory; sled flushes in the background every
    /// `interval_ms`. Fastest, but even a process crash can lose the writes of the last interval.
    Deferred {
        /// Background flush interval in milliseconds.
        interval_ms: u64,
    },
}

/// Tuning for [`Store::open`] and [`Store::create`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// When writes are acknowledged.
    pub durability: Durability,
    /// sled page cache size in bytes.
    pub cache_capacity: u64,
    /// Most jobs in one group commit.
    pub max_group: usize,
    /// Most jobs waiting for the committer. A write submitted while this many wait fails at once
    /// with [`StoreError::Busy`] instead of queueing: the queue's memory is bounded.
    pub max_queue: usize,
}

/// Default [`StoreOptions::max_queue`]: four full groups.
pub const DEFAULT_MAX_QUEUE: usize = 4096;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            cache_capacity: 256 * 1024 * 1024,
            max_group: 1024,
            max_queue: DEFAULT_MAX_QUEUE,
        }
    }
}

/// Counters for `stats` and metrics.
#[derive(Clone, Debug)]
pub struct StoreStats {
    /// Records currently stored (live or expired but not yet swept).
    pub records: u64,
    /// Group commits performed since open.
    pub groups: u64,
    /// Write jobs committed since open.
    pub jobs: u64,
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

/// An open vault data directory.
pub struct Store {
    db: sled::Db,
    pub(crate) tree: sled::Tree,
    sender: Option<Sender<Job>>,
    max_queue: std::sync::atomic::AtomicUsize,
    committer: Option<JoinHandle<()>>,
    stats: Arc<CommitStats>,
    group_sizes: Arc<Mutex<GroupHistogram>>,
    pub(crate) capture: Arc<Mutex<Option<crate::backup::Capture>>>,
    pub(crate) dir: PathBuf,
    /// Read-held by the reads below that may look at several keys (raw keys of the layers above,
    /// scans): a logged group is applied key by key under its write side (see `commit.rs`), and
    /// such a read sees all of a group or none of it. `record` reads one key and skips it.
    apply_lock: Arc<parking_lot::RwLock<()>>,
    _lock: DirLock,
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
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let lock = DirLock::acquire(dir)?;
        if dir.join(SLED_DIR).exists() {
            return Err(StoreError::AlreadyExists(dir.to_path_buf()));
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        crate::header_file::write(dir, header)?;
        let db = open_sled(dir, &options)?;
        let tree: sled::Tree = (*db).clone();
        let mut batch = sled::Batch::default();
        batch.insert(VERSION_KEY, &STORE_FORMAT_VERSION.to_be_bytes());
        batch.insert(COUNT_KEY, &0u64.to_be_bytes());
        batch.insert(GENERATION_KEY, &0u64.to_be_bytes());
        tree.apply_batch(batch)?;
        db.flush()?;
        crate::generation::write(dir, 0, true)?;
        Self::start(db, tree, dir, lock, 0, 0, &options)
    }

    /// Opens an existing vault directory. Refuses a directory written by a newer store format.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        if !dir.join(SLED_DIR).is_dir() {
            return Err(StoreError::NotFound(dir.to_path_buf()));
        }
        let lock = DirLock::acquire(dir)?;
        let db = open_sled(dir, &options)?;
        let tree: sled::Tree = (*db).clone();
        let Some(version) = tree.get(VERSION_KEY)? else {
            // An empty tree where commits were made: the data file is gone or unreadable.
            crate::generation::check(dir, 0)?;
            return Err(StoreError::Corrupt(Structure::StoreVersion));
        };
        let version: [u8; 2] = version
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt(Structure::StoreVersion))?;
        let version = u16::from_be_bytes(version);
        if version > STORE_FORMAT_VERSION {
            return Err(StoreError::NewerFormat(version));
        }
        if version == 0 {
            return Err(StoreError::Corrupt(Structure::StoreVersion));
        }
        // Stores made before the generation count have none: they start at 0 (and have no
        // `generation` file, so nothing to compare with).
        let generation = match tree.get(GENERATION_KEY)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(Structure::Generation))?,
            ),
            None => 0,
        };
        let generation = replay_log(dir, &db, &tree, generation)?;
        let count = read_count(&tree)?;
        crate::generation::check(dir, generation)?;
        if version < STORE_FORMAT_VERSION {
            // Upgrade before any write can reach the log: from now on an older build refuses
            // this vault instead of ignoring its log.
            tree.insert(VERSION_KEY, &STORE_FORMAT_VERSION.to_be_bytes())?;
            sync_sled(dir, &db)?;
        }
        Self::start(db, tree, dir, lock, count, generation, &options)
    }

    fn start(
        db: sled::Db,
        tree: sled::Tree,
        dir: &Path,
        lock: DirLock,
        count: u64,
        generation: u64,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let (sender, rx) = mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        stats.live_records.store(count, Ordering::Release);
        let group_sizes = Arc::new(Mutex::new(GroupHistogram::default()));
        let capture = Arc::new(Mutex::new(None));
        let apply_lock = Arc::new(parking_lot::RwLock::new(()));
        let committer = Committer {
            apply_lock: apply_lock.clone(),
            dir: dir.to_path_buf(),
            tree: tree.clone(),
            db: db.clone(),
            rx,
            durable: matches!(options.durability, Durability::Sync | Durability::Flush),
            // sled's own flush does not fsync on Linux; for `Sync` checkpoints we fdatasync its
            // data file ourselves (any descriptor of the file will do: fdatasync acts on the inode).
            sync_file: match options.durability {
                Durability::Sync => Some(fs::File::open(dir.join(SLED_DIR).join("db"))?),
                _ => None,
            },
            // A fresh, empty log: whatever the old one held was replayed and synced into sled by
            // `open`. Without `Sync` there is no log at all.
            wal: match options.durability {
                Durability::Sync => Some(crate::wal::Wal::create(dir)?),
                _ => {
                    remove_log(dir)?;
                    None
                }
            },
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
            db,
            tree,
            sender: Some(sender),
            max_queue: std::sync::atomic::AtomicUsize::new(options.max_queue.max(1)),
            committer: Some(handle),
            stats,
            group_sizes,
            capture,
            dir: dir.to_path_buf(),
            apply_lock,
            _lock: lock,
        })
    }

    /// The vault directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The encoded key header.
    pub fn header(&self) -> Result<Vec<u8>, StoreError> {
        crate::header_file::read(&self.dir)
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
        match self.tree.get(layout::record_key(id))? {
            Some(bytes) => StoredRecord::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` records in key order, starting after `after`. A record that does not decode is
    /// returned as its error so callers can report it and carry on.
    #[allow(clippy::type_complexity)]
    pub fn scan_records(
        &self,
        after: Option<LookupId>,
        limit: usize,
    ) -> Result<Vec<(LookupId, Result<StoredRecord, StoreError>)>, StoreError> {
        let start: Vec<u8> = match after {
            Some(id) => {
                let mut k = layout::record_key(&id).to_vec();
                k.push(0);
                k
            }
            None => vec![layout::RECORD_PREFIX],
        };
        let end = [layout::RECORD_PREFIX + 1];
        let mut out = Vec::new();
        let _g = self.apply_lock.read();
        for item in self.tree.range(start..end[..].to_vec()).take(limit) {
            let (k, v) = item?;
            let id = layout::lookup_from_record_key(&k)
                .ok_or(StoreError::Corrupt(Structure::Key(KeySpace::Record)))?;
            out.push((id, StoredRecord::decode(&v)));
        }
        Ok(out)
    }

    /// Scans up to `max_scan` records after `after` (in key order) and returns the ids of those
    /// whose keep-until is at or before `now`, plus where to continue (`None` at the end).
    /// There is no expiry index: one index entry per token costs more (write throughput, disk,
    /// open time) than an occasional linear sweep. Records that do not decode are skipped (they
    /// are reported as integrity errors when read).
    pub fn scan_expired(
        &self,
        after: Option<LookupId>,
        now: i64,
        max_scan: usize,
    ) -> Result<(Vec<LookupId>, Option<LookupId>), StoreError> {
        let start: Vec<u8> = match after {
            Some(id) => {
                let mut k = layout::record_key(&id).to_vec();
                k.push(0);
                k
            }
            None => vec![layout::RECORD_PREFIX],
        };
        let end = vec![layout::RECORD_PREFIX + 1];
        let mut due = Vec::new();
        let mut scanned = 0;
        let _g = self.apply_lock.read();
        for item in self.tree.range(start..end) {
            let (k, v) = item?;
            let id = layout::lookup_from_record_key(&k)
                .ok_or(StoreError::Corrupt(Structure::Key(KeySpace::Record)))?;
            scanned += 1;
            if let Ok(rec) = StoredRecord::decode(&v)
                && rec.keep_until <= now
            {
                due.push(id);
            }
            if scanned == max_scan {
                return Ok((due, Some(id)));
            }
        }
        Ok((due, None))
    }

    /// Reads a key outside the reserved prefixes (for layers above).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        commit::check_free_prefix(key)?;
        let _g = self.apply_lock.read();
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// All `(key, value)` pairs whose key starts with `prefix` (outside the reserved prefixes).
    #[allow(clippy::type_complexity)]
    pub fn scan_raw(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        commit::check_free_prefix(prefix)?;
        let mut out = Vec::new();
        let _g = self.apply_lock.read();
        for item in self.tree.scan_prefix(prefix).take(limit) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Runs `f` on the committer thread as part of the next group and blocks until the group is
    /// applied and (per durability) flushed. `f`'s writes are discarded if it returns an error.
    pub fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
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
        F: FnOnce(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
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
        self.send(commit::job(f, done));
    }

    /// Like [`submit`](Self::submit) but never refused as [`StoreError::Busy`]: for a job of which
    /// at most one is ever queued at a time (the reveal audit drain, which carries the entries of
    /// every reveal waiting on it), so it cannot grow the queue without bound. The job still
    /// counts against the bound while queued.
    pub fn submit_exempt<T, E, F, D>(&self, f: F, done: D)
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut crate::WriteTx<'_>) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, E>) + Send + 'static,
    {
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        self.send(commit::job(f, done));
    }

    /// Changes [`StoreOptions::max_queue`] (at least 1) for this open store.
    pub fn set_max_queue(&self, jobs: usize) {
        self.max_queue.store(jobs.max(1), Ordering::Relaxed);
    }

    /// Jobs waiting for the committer right now (at most about `max_queue`).
    pub fn queued_jobs(&self) -> usize {
        self.stats.queued.load(Ordering::Acquire)
    }

    fn send(&self, job: Job) {
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
        self.db.flush()?;
        Ok(())
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
        StoreStats {
            records: self.stats.live_records.load(Ordering::Acquire),
            groups: self.stats.groups.load(Ordering::Relaxed),
            jobs: self.stats.jobs.load(Ordering::Relaxed),
            flushes: self.stats.flushes.load(Ordering::Relaxed),
            checkpoints: self.stats.checkpoints.load(Ordering::Relaxed),
            checkpoint_micros: self.stats.checkpoint_micros.load(Ordering::Relaxed),
            group_sizes: self.group_sizes.lock().clone(),
            size_on_disk: self.db.size_on_disk().unwrap_or(0),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel lets the committer finish the queued groups, flush and exit.
        self.sender.take();
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
        let _ = self.db.flush();
    }
}

fn read_count(tree: &sled::Tree) -> Result<u64, StoreError> {
    match tree.get(COUNT_KEY)? {
        Some(v) => {
            Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(Structure::RecordCount)
            })?))
        }
        None => Err(StoreError::Corrupt(Structure::RecordCount)),
    }
}

/// `sled::Db::flush`, then `fdatasync` of sled's data file (sled's flush does not sync on Linux).
fn sync_sled(dir: &Path, db: &sled::Db) -> Result<(), StoreError> {
    db.flush()?;
    fs::File::open(dir.join(SLED_DIR).join("db"))?.sync_data()?;
    Ok(())
}

/// Applies every entry of the write-ahead log again, in order, and makes the result durable in
/// sled; returns the generation reached.
///
/// The log holds every group since the last checkpoint, whose state sled holds durably; sled may
/// also hold any part of the later groups (they were applied key by key and flushed in the
/// background). Each entry sets the final value of the keys it writes, so applying all of them in
/// order over that state gives exactly the state after the last one, whatever part sled kept.
/// A log that starts after `generation + 1` means sled lost checkpointed groups: refused as lost
/// writes. A log that ends before `generation` is behind the database (its acknowledged tail was
/// damaged): applying it would move keys back, so it is refused too.
fn replay_log(
    dir: &Path,
    db: &sled::Db,
    tree: &sled::Tree,
    generation: u64,
) -> Result<u64, StoreError> {
    let Some(entries) = crate::wal::read(dir)? else {
        return Ok(generation);
    };
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(generation);
    };
    if first.generation > generation + 1 {
        return Err(StoreError::LostWrites {
            stored: generation,
            expected: first.generation - 1,
        });
    }
    if last.generation < generation {
        return Err(StoreError::Corrupt(Structure::Wal(
            WalPart::EndsBeforeDatabase,
        )));
    }
    let reached = last.generation;
    for entry in entries {
        let mut batch = sled::Batch::default();
        for (k, v) in entry.ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        tree.apply_batch(batch)?;
    }
    sync_sled(dir, db)?;
    Ok(reached)
}

/// Removes the log of a store opened without `Sync` (after `open` replayed it).
fn remove_log(dir: &Path) -> Result<(), StoreError> {
    match fs::remove_file(dir.join(crate::wal::FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Opens sled. The caller already holds `cardvault.lock`, so no other process can be using the
/// database; if sled's own file lock is still held, it is by a handle of this process that is
/// being torn down (sled's background threads can keep the file open briefly after the last `Db`
/// is dropped; sled's source says as much). Retry for a short while instead of failing.
fn open_sled(dir: &Path, options: &StoreOptions) -> Result<sled::Db, StoreError> {
    const ATTEMPTS: u32 = 250;
    let flush_every = match options.durability {
        Durability::Sync | Durability::Flush => Some(1000),
        Durability::Deferred { interval_ms } => Some(interval_ms.max(1)),
    };
    let mut attempt = 0;
    loop {
        let result = sled::Config::new()
            .path(dir.join(SLED_DIR))
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(flush_every)
            .mode(sled::Mode::HighThroughput)
            .open();
        match result {
            Err(sled::Error::Io(e))
                if attempt < ATTEMPTS && e.to_string().contains("could not acquire lock") =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}
