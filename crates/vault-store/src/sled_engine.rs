//! The sled engine: one sled tree holding the whole key space, a write-ahead log in front of it
//! under `Durability::Sync` (`wal.rs`), the key header in its own file (`header_file.rs`), the
//! group counter mirrored beside the database (`generation.rs`), and the directory lock
//! (`lock.rs`).
//!
//! A group is made durable by one append to the log and one `fdatasync` (`Sync`), or applied as
//! one `apply_batch` and flushed by sled (`Flush`), or only applied (`Deferred`). The log is
//! replayed when the vault is opened and reset by checkpoints (sled `flush`, `fdatasync` of its
//! data file) when it has grown past `CHECKPOINT_BYTES` or the store has been idle.

use std::{
    fs,
    ops::Bound,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use parking_lot::{Mutex, RwLock};

use crate::{
    ConflictKind, Durability, STORE_FORMAT_VERSION, StoreError, StoreOptions, Structure, WalPart,
    engine::{Engine, EngineStats, Group},
    layout::{COUNT_KEY, GENERATION_KEY, VERSION_KEY},
    lock::DirLock,
    wal::Wal,
};

pub(crate) const SLED_DIR: &str = "sled";

/// Log size past which the committer checkpoints (sled flush + sync, log reset) after a group.
const CHECKPOINT_BYTES: u64 = 32 << 20;

/// A vault directory's sled database, open: the engine under [`Store::create`] and
/// [`Store::open`] (which wrap it with [`Store::with_engine`]).
///
/// [`Store::create`]: crate::Store::create
/// [`Store::open`]: crate::Store::open
/// [`Store::with_engine`]: crate::Store::with_engine
pub struct SledEngine {
    db: sled::Db,
    tree: sled::Tree,
    dir: PathBuf,
    /// Whether groups are durable when committed (`Sync` or `Flush`).
    durable: bool,
    /// sled's data file (`sled/db`), synced by checkpoints under `Durability::Sync`.
    sync_file: Option<fs::File>,
    /// The write-ahead log: present under `Durability::Sync`.
    wal: Mutex<Option<Wal>>,
    refresh: Mutex<crate::generation::Refresh>,
    /// Held for writing while a logged group is applied to sled key by key, so that readers
    /// (which hold it for reading) see whole groups, as `apply_batch` would give them.
    apply_lock: RwLock<()>,
    flushes: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_micros: AtomicU64,
    _lock: DirLock,
}

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SledEngine {
    /// Creates a new vault directory holding `header`.
    pub fn create(dir: &Path, header: &[u8], options: &StoreOptions) -> Result<Self, StoreError> {
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
        let db = open_sled(dir, options)?;
        let tree: sled::Tree = (*db).clone();
        let mut batch = sled::Batch::default();
        batch.insert(VERSION_KEY, &STORE_FORMAT_VERSION.to_be_bytes());
        batch.insert(COUNT_KEY, &0u64.to_be_bytes());
        batch.insert(GENERATION_KEY, &0u64.to_be_bytes());
        tree.apply_batch(batch)?;
        db.flush()?;
        crate::generation::write(dir, 0, true)?;
        Self::start(db, tree, dir, lock, options)
    }

    /// Opens an existing vault directory, replaying its log.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        if !dir.join(SLED_DIR).is_dir() {
            return Err(StoreError::NotFound(dir.to_path_buf()));
        }
        let lock = DirLock::acquire(dir)?;
        let db = open_sled(dir, options)?;
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
        read_count(&tree)?;
        crate::generation::check(dir, generation)?;
        if version < STORE_FORMAT_VERSION {
            // Upgrade before any write can reach the log: from now on an older build refuses
            // this vault instead of ignoring its log.
            tree.insert(VERSION_KEY, &STORE_FORMAT_VERSION.to_be_bytes())?;
            sync_sled(dir, &db)?;
        }
        Self::start(db, tree, dir, lock, options)
    }

    fn start(
        db: sled::Db,
        tree: sled::Tree,
        dir: &Path,
        lock: DirLock,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            durable: matches!(options.durability, Durability::Sync | Durability::Flush),
            // sled's own flush does not fsync on Linux; for `Sync` checkpoints we fdatasync its
            // data file ourselves (any descriptor of the file will do: fdatasync acts on the inode).
            sync_file: match options.durability {
                Durability::Sync => Some(fs::File::open(dir.join(SLED_DIR).join("db"))?),
                _ => None,
            },
            // A fresh, empty log: whatever the old one held was replayed and synced into sled by
            // `open`. Without `Sync` there is no log at all.
            wal: Mutex::new(match options.durability {
                Durability::Sync => Some(Wal::create(dir)?),
                _ => {
                    remove_log(dir)?;
                    None
                }
            }),
            refresh: Mutex::new(crate::generation::Refresh::new()),
            apply_lock: RwLock::new(()),
            flushes: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            checkpoint_micros: AtomicU64::new(0),
            db,
            tree,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Makes every applied group durable in sled (`flush`, then `fdatasync` of its data file,
    /// since sled's flush does not sync on Linux) and restarts the log under a new epoch.
    fn checkpoint_log(&self, wal: &mut Wal) -> Result<(), StoreError> {
        let started = Instant::now();
        self.db.flush()?;
        if let Some(f) = &self.sync_file {
            f.sync_data()?;
        }
        wal.reset()?;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

impl Engine for SledEngine {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _g = self.apply_lock.read();
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// One key, read without the group lock: a value is whole in its key, and a single read sees
    /// it before or after a group, never in between.
    fn point_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let _g = self.apply_lock.read();
        for item in self.tree.range::<&[u8], _>((start, end)) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn commit(&self, group: Group) -> Result<Vec<Vec<u8>>, StoreError> {
        // One writer (the committer thread): what the guards read now is what the group's
        // transaction sees, since nothing else writes before the group is applied.
        let mut guarded = Vec::with_capacity(group.guards.len());
        for guard in &group.guards {
            match self.tree.get(&guard.key)? {
                Some(v) if guard.holds(&v) => guarded.push(v.to_vec()),
                _ => return Err(StoreError::Conflict(ConflictKind::Guard)),
            }
        }
        // The conditions held when the jobs checked them and nothing has written since. Checked
        // anyway, as the conformance suite expects of any engine.
        for check in &group.checks {
            let now = self.tree.get(&check.key)?;
            if now.as_deref() != check.expected.as_deref() {
                return Err(StoreError::Conflict(if check.expected.is_none() {
                    ConflictKind::Exists
                } else {
                    ConflictKind::Changed
                }));
            }
        }
        let mut wal = self.wal.lock();
        match wal.as_mut() {
            None => {
                let mut batch = sled::Batch::default();
                for (k, v) in group.ops {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                self.tree.apply_batch(batch)?;
                if self.durable {
                    self.db.flush()?;
                    self.flushes.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(wal) => {
                // Durable from here on: the batch is in the log, synced.
                wal.append(group.generation, group.previous, &group.ops)?;
                self.flushes.fetch_add(1, Ordering::Relaxed);
                // sled gets it key by key, not as an `apply_batch`: sled's `apply_batch` seals
                // and writes its IO buffer twice (a `pwrite` and a `sync_file_range` each) to make
                // the batch atomic on its own, which the log makes unnecessary: after a crash the
                // log's entries are all applied again, in order, over whatever part of them sled
                // kept (see `replay_log`). The generation goes last, so a sled that kept a prefix
                // of these writes holds this generation only with all of the group.
                let _whole_groups = self.apply_lock.write();
                let mut ops = group.ops.into_iter();
                let generation_op = ops.next();
                for (k, v) in ops.chain(generation_op) {
                    match v {
                        Some(v) => self.tree.insert(k, v)?,
                        None => self.tree.remove(k)?,
                    };
                }
            }
        }
        if self.durable {
            self.refresh
                .lock()
                .after_durable_group(&self.dir, group.generation);
        }
        Ok(guarded)
    }

    fn read_header(&self) -> Result<Vec<u8>, StoreError> {
        crate::header_file::read(&self.dir)
    }

    fn write_header(&self, header: &[u8]) -> Result<(), StoreError> {
        crate::header_file::write(&self.dir, header)
    }

    fn checkpoint(&self, idle: bool) -> Result<(), StoreError> {
        let mut wal = self.wal.lock();
        let Some(w) = wal.as_mut() else {
            return Ok(());
        };
        let due = if idle {
            !w.is_empty()
        } else {
            w.len() >= CHECKPOINT_BYTES
        };
        if due { self.checkpoint_log(w) } else { Ok(()) }
    }

    /// Makes what was applied durable in sled (the log is then empty), and records exactly how far
    /// it got.
    fn close(&self, generation: u64) -> Result<(), StoreError> {
        let mut wal = self.wal.lock();
        match wal.as_mut() {
            Some(w) => self.checkpoint_log(w)?,
            None => self.db.flush().map(drop)?,
        }
        crate::generation::write(&self.dir, generation, true)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            checkpoint_micros: self.checkpoint_micros.load(Ordering::Relaxed),
            size_on_disk: self.db.size_on_disk().unwrap_or(0),
        }
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
        let config = sled::Config::new()
            .path(dir.join(SLED_DIR))
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(flush_every)
            .mode(sled::Mode::HighThroughput);
        // sled 0.34 panics on some damaged files (`tried to serialize Uninitialized` while it
        // reads its snapshot) instead of returning `Corruption`: bad input from disk is an error
        // here, never a panic.
        let result = crate::quiet_panic::catch(|| config.open())
            .map_err(|()| StoreError::Corrupt(Structure::SledFiles))?;
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
