//! Backups: a consistent, still-encrypted, checksummed copy of a vault (`CVBK` file), and its
//! restoration into a fresh directory.
//!
//! **Consistency.** Every change to the sled tree and to the key-header file is made by the
//! committer thread (see `commit.rs`), one group at a time. sled 0.34 has no snapshots, so
//! [`Store::backup`] builds one: its first committer job (between two groups, i.e. at one instant
//! T0) reads the key header and installs a [`Capture`]. From then on, before applying a group's
//! batch, the committer saves the current (= T0) value, or its absence, of every key the batch
//! changes that the export has not reached yet and has not saved already. The export then walks
//! the tree in key order, 4,096 keys per committer job; each job merges the tree with the saved
//! T0 values for its key range (a saved value replaces the tree's; a saved absence drops the key;
//! a saved value of a key deleted since is put back) and advances the cursor. Keys at or below the
//! cursor are never saved again, so memory holds one chunk plus the T0 values of keys changed
//! during the backup. Writers are held for one step (a few milliseconds) at a time instead of
//! for a whole pass; encoding, hashing and writing happen on the caller's thread between steps.
//!
//! **Several writers.** An engine that other processes write too (PostgreSQL, several daemons)
//! offers a snapshot ([`Engine::snapshot`]: one `REPEATABLE READ READ ONLY` transaction); the
//! export then reads everything from it, in chunks, and holds no writer at all (the committer's
//! capture would miss the other daemons' writes).
//!
//! **File format** (all integers big-endian; documented in `docs/record-format.md`, *Backup file*):
//!
//! ```text
//! "CVBK" | u16 format (1) | u16 store format | u32 header len | header
//! entry*: u32 key len (>= 1) | u32 value len | key | value     (keys strictly increasing)
//! u32 0 (end of entries)
//! "CVBT" | u64 entry count | SHA-256 of every byte before the digest (32)
//! ```
//!
//! **Restore** streams the file once into a fresh sled database in a hidden sibling directory,
//! checking everything (magic, versions, lengths, key order, counts, the record counter, that every
//! record decodes, the checksum, end of file) and renames the directory into place only when all
//! checks passed. On any error the temporary directory is removed: nothing is left behind.
//! [`Store::restore_at`] also restores into an empty PostgreSQL database, in one transaction
//! committed after the same checks.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read, Write},
    ops::Bound,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::{
    BACKUP_FORMAT_VERSION, BackupPart, Engine, Location, STORE_FORMAT_VERSION, Store, StoreError,
    StoredRecord, Structure,
    capture::Capture,
    engine::Snapshot,
    layout::{COUNT_KEY, DEDUPE_PREFIX, RECORD_PREFIX, VERSION_KEY},
};

/// Magic bytes at the start of a backup file.
pub const BACKUP_MAGIC: &[u8; 4] = b"CVBK";
/// Magic bytes of the trailer.
const TRAILER_MAGIC: &[u8; 4] = b"CVBT";

const MAX_HEADER: usize = 16 * 1024 * 1024;
const MAX_KEY: usize = 64 * 1024;
const MAX_VALUE: usize = 64 * 1024 * 1024;
/// Entries per `apply_batch` while restoring.
const RESTORE_BATCH: usize = 16 * 1024;
/// Restore progress is reported every this many entries.
const PROGRESS_EVERY: u64 = 4096;

/// Entries exported per committer job.
const CHUNK: usize = 4096;

static BACKUP_IDS: AtomicU64 = AtomicU64::new(1);

/// What a written backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Key/value entries in the file (records, index entries, counters, admin data).
    pub entries: u64,
    /// Token records among them.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The SHA-256 in the trailer.
    pub sha256: [u8; 32],
    /// The longest time writers were held by one backup step.
    pub longest_pause: Duration,
    /// The total time writers were held by the backup's steps.
    pub held: Duration,
    /// Committer steps the export took.
    pub steps: u64,
}

/// What a restore imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Key/value entries imported.
    pub entries: u64,
    /// Token records among them.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// The verified SHA-256 of the file.
    pub sha256: [u8; 32],
    /// The encoded key header now in the restored directory.
    pub header: Vec<u8>,
}

/// Uninstalls an abandoned backup's capture (error or panic half-way).
struct CaptureGuard<'a> {
    capture: &'a Mutex<Option<Capture>>,
    id: u64,
}

impl Drop for CaptureGuard<'_> {
    fn drop(&mut self) {
        let mut c = self.capture.lock();
        if c.as_ref().is_some_and(|c| c.id == self.id) {
            *c = None;
        }
    }
}

impl Store {
    /// Writes a consistent backup of the vault to `out` while it keeps serving.
    ///
    /// The backup is the state at one instant T0, between two group commits: the first committer
    /// step reads the key header and starts a capture; from then on the committer saves the T0
    /// value of every key a group changes before the export has reached it. The export proceeds
    /// in steps of 4,096 keys in key order, each step one committer job (so no group is applied
    /// while it reads), merging the tree with the saved T0 values. Writers are held only for one
    /// step at a time. `progress(done, estimate)` is called after each step. `out` is flushed,
    /// not synced.
    pub fn backup(
        &self,
        out: impl Write,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<BackupSummary, StoreError> {
        if let Some(snapshot) = self.engine().snapshot()? {
            return from_snapshot(snapshot, out, progress, self.stats().records);
        }
        let id = BACKUP_IDS.fetch_add(1, Ordering::Relaxed);
        let (engine, capture) = (self.engine().clone(), self.capture.clone());
        let (header, store_version, first_pause) =
            self.write(move |_tx| -> Result<(Vec<u8>, u16, Duration), StoreError> {
                let started = Instant::now();
                let mut c = capture.lock();
                if c.is_some() {
                    return Err(StoreError::BackupRunning);
                }
                let header = engine.read_header()?;
                let version = engine
                    .point_get(VERSION_KEY)?
                    .ok_or(StoreError::Corrupt(Structure::StoreVersion))?;
                let version = u16_value(&version, Structure::StoreVersion)?;
                *c = Some(Capture {
                    id,
                    cursor: None,
                    before: BTreeMap::new(),
                });
                Ok((header, version, started.elapsed()))
            })?;
        let _guard = CaptureGuard {
            capture: &self.capture,
            id,
        };
        let estimate = self.stats().records;
        let mut w = HashWriter::start(out, &header, store_version)?;
        let (mut entries, mut records, mut steps) = (0u64, 0u64, 1u64);
        let (mut longest, mut held) = (first_pause, first_pause);
        loop {
            let (engine, capture) = (self.engine().clone(), self.capture.clone());
            let (chunk, done, pause) = self.write(move |_tx| next_chunk(&*engine, &capture, id))?;
            steps += 1;
            longest = longest.max(pause);
            held += pause;
            records += w.entries(&chunk)?;
            entries += chunk.len() as u64;
            progress(entries, estimate.max(entries));
            if done {
                break;
            }
        }
        let (bytes, sha256) = w.finish(entries)?;
        Ok(BackupSummary {
            entries,
            records,
            bytes,
            sha256,
            longest_pause: longest,
            held,
            steps,
        })
    }

    /// Restores the backup read from `input` into `location`: a directory (as
    /// [`restore`](Self::restore)) or an empty PostgreSQL database (feature `postgres`; its schema
    /// is created if missing). Into a database the import is one transaction, committed only
    /// once the whole file is verified; a database that holds a vault is refused with
    /// [`StoreError::AlreadyExistsAt`].
    pub fn restore_at(
        input: impl Read,
        location: &Location,
        check_header: impl FnOnce(&[u8]) -> Result<(), StoreError>,
        progress: impl FnMut(u64),
    ) -> Result<RestoreSummary, StoreError> {
        match location {
            Location::Dir(dir) => Self::restore(input, dir, check_header, progress),
            #[cfg(feature = "postgres")]
            Location::Database(url) => {
                let (summary, sink) = import(input, check_header, progress, || {
                    crate::pg::restore::PgRestore::begin(url)
                })?;
                sink.commit(&summary.header)?;
                Ok(summary)
            }
            #[cfg(not(feature = "postgres"))]
            Location::Database(_) => Err(StoreError::Unsupported(
                "a PostgreSQL vault (build with the `postgres` feature)",
            )),
        }
    }

    /// Restores the backup read from `input` into `dir`, which must not exist or be an empty
    /// directory. `check_header` vets the key header bytes (the store does not decode them).
    /// Everything is verified before the directory appears; on error nothing is left behind.
    /// `progress` is called with the entries imported so far.
    pub fn restore(
        input: impl Read,
        dir: &Path,
        check_header: impl FnOnce(&[u8]) -> Result<(), StoreError>,
        progress: impl FnMut(u64),
    ) -> Result<RestoreSummary, StoreError> {
        if dir.exists() {
            let empty = dir.is_dir() && fs::read_dir(dir)?.next().is_none();
            if !empty {
                return Err(StoreError::AlreadyExists(dir.to_path_buf()));
            }
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dir
            .file_name()
            .ok_or(StoreError::Corrupt(Structure::RestoreTarget))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = parent.join(format!(
            ".{}.restoring-{}-{nanos}",
            name.to_string_lossy(),
            std::process::id()
        ));
        fs::DirBuilder::new().mode(0o700).create(&tmp)?;
        let result = import(input, check_header, progress, || SledSink::open(&tmp))
            .and_then(|(summary, sink)| {
                sink.finish(&tmp, &summary.header)?;
                Ok(summary)
            })
            .and_then(|summary| {
                // An empty target directory is replaced by the rename (rename(2) allows it).
                fs::rename(&tmp, dir)?;
                fs::File::open(&parent)?.sync_all()?;
                Ok(summary)
            });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }
}

/// One export step, run as a committer job: the T0 entries of the next `CHUNK` keys after the
/// cursor. Returns them in key order, whether the export is complete, and the time it took.
#[allow(clippy::type_complexity)]
fn next_chunk(
    engine: &dyn Engine,
    capture: &Mutex<Option<Capture>>,
    id: u64,
) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, bool, Duration), StoreError> {
    let started = Instant::now();
    let mut guard = capture.lock();
    let cap = match guard.as_mut() {
        Some(c) if c.id == id => c,
        _ => return Err(StoreError::Closed),
    };
    let start = match &cap.cursor {
        Some(c) => Bound::Excluded(c.clone()),
        None => Bound::Unbounded,
    };
    let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut last = None;
    let from = match &start {
        Bound::Excluded(c) => Bound::Excluded(&c[..]),
        _ => Bound::Unbounded,
    };
    for (k, v) in engine.scan(from, Bound::Unbounded, CHUNK)? {
        last = Some(k.clone());
        merged.insert(k, v);
    }
    let done = merged.len() < CHUNK;
    let end = match (&last, done) {
        (Some(l), false) => Bound::Included(l.clone()),
        _ => Bound::Unbounded,
    };
    let changed: Vec<Vec<u8>> = cap
        .before
        .range::<Vec<u8>, _>((start, end))
        .map(|(k, _)| k.clone())
        .collect();
    for k in changed {
        match cap.before.remove(&k).flatten() {
            Some(v) => merged.insert(k, v),
            None => merged.remove(&k),
        };
    }
    if done {
        *guard = None;
    } else {
        cap.cursor = last;
    }
    Ok((merged.into_iter().collect(), done, started.elapsed()))
}

struct HashWriter<W: Write> {
    inner: io::BufWriter<W>,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    /// Writes the file's head: magic, versions, key header.
    fn start(out: W, header: &[u8], store_version: u16) -> Result<Self, StoreError> {
        let mut w = Self {
            inner: io::BufWriter::with_capacity(1 << 20, out),
            hash: Sha256::new(),
            bytes: 0,
        };
        let header_len = u32::try_from(header.len())
            .map_err(|_| StoreError::Corrupt(Structure::KeyHeaderTooLarge))?;
        w.write_all(BACKUP_MAGIC)?;
        w.write_all(&BACKUP_FORMAT_VERSION.to_be_bytes())?;
        w.write_all(&store_version.to_be_bytes())?;
        w.write_all(&header_len.to_be_bytes())?;
        w.write_all(header)?;
        Ok(w)
    }

    /// Writes entries (in key order); returns how many are token records.
    fn entries(&mut self, chunk: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, StoreError> {
        let mut records = 0;
        for (k, v) in chunk {
            let kl =
                u32::try_from(k.len()).map_err(|_| StoreError::Corrupt(Structure::KeyTooLarge))?;
            let vl = u32::try_from(v.len())
                .map_err(|_| StoreError::Corrupt(Structure::ValueTooLarge))?;
            self.write_all(&kl.to_be_bytes())?;
            self.write_all(&vl.to_be_bytes())?;
            self.write_all(k)?;
            self.write_all(v)?;
            if k.first() == Some(&RECORD_PREFIX) {
                records += 1;
            }
        }
        Ok(records)
    }

    /// Writes the end of the entries and the trailer, flushes; returns the bytes written and
    /// the digest.
    fn finish(mut self, entries: u64) -> Result<(u64, [u8; 32]), StoreError> {
        self.write_all(&0u32.to_be_bytes())?;
        self.write_all(TRAILER_MAGIC)?;
        self.write_all(&entries.to_be_bytes())?;
        let sha256: [u8; 32] = self.hash.clone().finalize().into();
        self.inner.write_all(&sha256)?;
        self.inner.flush()?;
        Ok((self.bytes + 32, sha256))
    }

    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.hash.update(b);
        self.bytes += b.len() as u64;
        self.inner.write_all(b)
    }
}

/// A backup of an engine that other processes write too: everything read from one snapshot of
/// the engine (see [`Engine::snapshot`]); writers are never held.
fn from_snapshot(
    mut snapshot: Box<dyn Snapshot>,
    out: impl Write,
    mut progress: impl FnMut(u64, u64),
    estimate: u64,
) -> Result<BackupSummary, StoreError> {
    let header = snapshot.header()?;
    let version = snapshot
        .get(VERSION_KEY)?
        .ok_or(StoreError::Corrupt(Structure::StoreVersion))?;
    let version = u16_value(&version, Structure::StoreVersion)?;
    let mut w = HashWriter::start(out, &header, version)?;
    let (mut entries, mut records, mut steps) = (0u64, 0u64, 0u64);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = snapshot.scan_after(after.as_deref(), CHUNK)?;
        steps += 1;
        records += w.entries(&chunk)?;
        entries += chunk.len() as u64;
        progress(entries, estimate.max(entries));
        if chunk.len() < CHUNK {
            break;
        }
        after = chunk.last().map(|(k, _)| k.clone());
    }
    drop(snapshot);
    let (bytes, sha256) = w.finish(entries)?;
    Ok(BackupSummary {
        entries,
        records,
        bytes,
        sha256,
        longest_pause: Duration::ZERO,
        held: Duration::ZERO,
        steps,
    })
}

struct HashReader<R: Read> {
    inner: io::BufReader<R>,
    hash: Sha256,
    bytes: u64,
}

const TRUNCATED: StoreError = StoreError::Corrupt(Structure::Backup(BackupPart::Truncated));

impl<R: Read> HashReader<R> {
    /// Reads exactly `buf.len()` bytes, hashing them; a short file is `TRUNCATED`.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.read_unhashed(buf)?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn read_unhashed(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.bytes += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(TRUNCATED),
            Err(e) => Err(e.into()),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut b = [0u8; N];
        self.read_exact(&mut b)?;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<usize, StoreError> {
        usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| StoreError::Corrupt(Structure::Backup(BackupPart::Length)))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn vec(&mut self, len: usize) -> Result<Vec<u8>, StoreError> {
        // Grow while reading rather than trusting `len` for the allocation: a damaged length
        // then fails as truncation instead of allocating up to the cap.
        let mut out = Vec::with_capacity(len.min(64 * 1024));
        let mut chunk = [0u8; 8192];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            self.read_exact(&mut chunk[..n])?;
            out.extend_from_slice(&chunk[..n]);
            left -= n;
        }
        Ok(out)
    }
}

fn u16_value(v: &[u8], what: Structure) -> Result<u16, StoreError> {
    Ok(u16::from_be_bytes(
        v.try_into().map_err(|_| StoreError::Corrupt(what))?,
    ))
}

/// Where a restore puts the entries it reads (before the whole file is verified: the caller makes
/// them visible only after `import` returned).
trait Sink: Sized {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError>;
}

/// A fresh sled database in the restore's temporary directory.
struct SledSink {
    db: sled::Db,
    batch: sled::Batch,
    in_batch: usize,
}

impl SledSink {
    fn open(tmp: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(tmp.join(crate::store::SLED_DIR))
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(Self {
            db,
            batch: sled::Batch::default(),
            in_batch: 0,
        })
    }

    /// Applies the rest, makes the database durable and writes the header file beside it.
    fn finish(mut self, tmp: &Path, header: &[u8]) -> Result<(), StoreError> {
        if self.in_batch > 0 {
            self.db.apply_batch(std::mem::take(&mut self.batch))?;
        }
        self.db.flush()?;
        drop(self.db);
        // sled's flush does not fsync on Linux (see docs/durability.md): sync its files ourselves
        // before the directory is renamed into place.
        sync_tree(&tmp.join(crate::store::SLED_DIR))?;
        crate::header_file::write(tmp, header)
    }
}

impl Sink for SledSink {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.batch.insert(key, value);
        self.in_batch += 1;
        if self.in_batch == RESTORE_BATCH {
            self.db.apply_batch(std::mem::take(&mut self.batch))?;
            self.in_batch = 0;
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
impl Sink for crate::pg::restore::PgRestore {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        crate::pg::restore::PgRestore::put(self, key, value)
    }
}

/// Reads and checks the whole backup, handing its entries to the sink `open` makes (once the
/// header passed `check_header`). Returns the summary and the sink, whose entries the caller
/// makes visible.
fn import<S: Sink>(
    input: impl Read,
    check_header: impl FnOnce(&[u8]) -> Result<(), StoreError>,
    mut progress: impl FnMut(u64),
    open: impl FnOnce() -> Result<S, StoreError>,
) -> Result<(RestoreSummary, S), StoreError> {
    let mut r = HashReader {
        inner: io::BufReader::with_capacity(1 << 20, input),
        hash: Sha256::new(),
        bytes: 0,
    };
    if &r.array::<4>()? != BACKUP_MAGIC {
        return Err(StoreError::Corrupt(Structure::Backup(BackupPart::Magic)));
    }
    match r.u16()? {
        0 => {
            return Err(StoreError::Corrupt(Structure::Backup(
                BackupPart::FormatVersion0,
            )));
        }
        v if v > BACKUP_FORMAT_VERSION => return Err(StoreError::NewerBackup(v)),
        _ => {}
    }
    let store_version = r.u16()?;
    if store_version == 0 {
        return Err(StoreError::Corrupt(Structure::Backup(
            BackupPart::StoreVersion0,
        )));
    }
    if store_version > STORE_FORMAT_VERSION {
        return Err(StoreError::NewerFormat(store_version));
    }
    let header_len = r.u32()?;
    if header_len == 0 || header_len > MAX_HEADER {
        return Err(StoreError::Corrupt(Structure::Backup(
            BackupPart::KeyHeaderLength,
        )));
    }
    let header = r.vec(header_len)?;
    check_header(&header)?;

    let mut sink = open()?;
    let mut last: Option<Vec<u8>> = None;
    let (mut records, mut count, mut version) = (0u64, None, None);
    let mut imported = 0u64;
    loop {
        let kl = r.u32()?;
        if kl == 0 {
            break;
        }
        let vl = r.u32()?;
        if kl > MAX_KEY || vl > MAX_VALUE {
            return Err(StoreError::Corrupt(Structure::Backup(
                BackupPart::EntryLength,
            )));
        }
        let k = r.vec(kl)?;
        let v = r.vec(vl)?;
        if last.as_deref().is_some_and(|l| l >= k.as_slice()) {
            return Err(StoreError::Corrupt(Structure::Backup(BackupPart::KeyOrder)));
        }
        match k.first() {
            Some(&RECORD_PREFIX) => {
                if k.len() != 17 {
                    return Err(StoreError::Corrupt(Structure::Backup(
                        BackupPart::RecordKey,
                    )));
                }
                StoredRecord::decode(&v)
                    .map_err(|_| StoreError::Corrupt(Structure::Backup(BackupPart::Record)))?;
                records += 1;
            }
            Some(&DEDUPE_PREFIX) if k.len() != 17 || v.len() != 24 => {
                return Err(StoreError::Corrupt(Structure::Backup(
                    BackupPart::DedupeEntry,
                )));
            }
            _ if k == VERSION_KEY => {
                version = Some(u16_value(&v, Structure::Backup(BackupPart::StoreVersion))?)
            }
            _ if k == COUNT_KEY => {
                count = Some(u64::from_be_bytes(v.as_slice().try_into().map_err(
                    |_| StoreError::Corrupt(Structure::Backup(BackupPart::RecordCount)),
                )?));
            }
            _ => {}
        }
        sink.put(k.clone(), v)?;
        last = Some(k);
        imported += 1;
        if imported.is_multiple_of(PROGRESS_EVERY) {
            progress(imported);
        }
    }
    if &r.array::<4>()? != TRAILER_MAGIC {
        return Err(StoreError::Corrupt(Structure::Backup(BackupPart::Trailer)));
    }
    if r.u64()? != imported {
        return Err(StoreError::Corrupt(Structure::Backup(
            BackupPart::EntryCount,
        )));
    }
    let expected: [u8; 32] = r.hash.clone().finalize().into();
    let mut sha256 = [0u8; 32];
    r.read_unhashed(&mut sha256)?;
    if sha256 != expected {
        return Err(StoreError::Corrupt(Structure::Backup(
            BackupPart::ChecksumMismatch,
        )));
    }
    let mut extra = [0u8; 1];
    if r.inner.read(&mut extra)? != 0 {
        return Err(StoreError::Corrupt(Structure::Backup(
            BackupPart::BytesAfterTrailer,
        )));
    }
    if version != Some(store_version) {
        return Err(StoreError::Corrupt(Structure::Backup(
            BackupPart::StoreVersionEntry,
        )));
    }
    if count != Some(records) {
        return Err(StoreError::Corrupt(Structure::Backup(
            BackupPart::RecordCount,
        )));
    }
    progress(imported);
    let summary = RestoreSummary {
        entries: imported,
        records,
        bytes: r.bytes,
        sha256,
        header,
    };
    Ok((summary, sink))
}

/// fsyncs every file under `dir`, then the directories themselves.
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}
