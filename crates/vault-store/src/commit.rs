//! The group committer: one thread applies every write. Engine-neutral: it talks to the database
//! only through [`Engine`](crate::Engine).
//!
//! Callers hand it a closure. The thread takes the first queued closure, drains whatever else is
//! queued (up to `max_group`), runs each closure against a [`WriteTx`] that sees the store plus the
//! group's earlier writes, and hands all surviving writes to [`Engine::commit`] as one group, to
//! be made durable at once. With the sled engine (`sled_engine.rs`): under `Durability::Sync` one
//! append to the write-ahead log and one `fdatasync` of it (`wal.rs`), then the writes applied to
//! sled without a sled flush; under `Durability::Flush` one `apply_batch` and one sled `flush`.
//! Only then does it answer each caller. While it syncs, new callers queue up and form the next
//! group, so the sync is shared by everyone who arrived meanwhile. Between groups, and after a
//! second without jobs, it lets the engine checkpoint ([`Engine::checkpoint`]; sled: `flush`,
//! `fdatasync` of its data file, log restarted under a new epoch).
//!
//! Running every read-modify-write on this one thread also serialises them within the process:
//! de-duplication ("same card, same token") and "update only if unchanged" need no further
//! locking on a vault directory. On an engine shared by several processes
//! ([`Engine::shared`](crate::Engine::shared)) the same decisions are carried to the database as
//! conditions ([`Check`](crate::engine::Check)), each key read once per group; a group the database
//! refuses as raced by another writer runs again on fresh reads (jobs are `FnMut` for that), and one
//! that lost [`MAX_RACE_RETRIES`] times over runs each job alone, so that only the jobs that keep
//! losing fail. A job submitted alone (`Store::submit_alone`: one that changes state outside the
//! transaction which the jobs run with it would see on a run again) gets a group of its own: met
//! while a group is gathered, it is held back to start the next one.

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, TryRecvError},
    },
    time::Duration,
};

use crate::{
    ConflictKind, DedupeKey, KeySpace, LookupId, StoreError, StoredRecord, Structure,
    engine::{Check, Engine, Group, Op, RecordGuard},
    layout::{self, COUNT_KEY, GENERATION_KEY},
};
/// An idle store checkpoints a non-empty log after this long without a job.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// A unit of work for the committer: a closure run against the group's transaction, and what to
/// do once the group's fate (committed, or failed) is known. A job may be **run more than once**:
/// when an engine shared with other writers refuses a group as
/// [`ConflictKind::Raced`](crate::ConflictKind::Raced), the committer runs the whole group again
/// on fresh reads; only the last run's result is reported.
pub(crate) trait Job: Send {
    /// Runs the closure against `tx` (again, after a race), keeping its result.
    fn run(&mut self, tx: &mut WriteTx<'_>);
    /// Reports the kept result, given the group's outcome.
    fn finish(self: Box<Self>, outcome: Result<(), StoreError>);
    /// Whether the job is committed in a group of its own (`Store::submit_alone`).
    fn alone(&self) -> bool;
}

/// Most times one group is run again after the engine refused it as raced by another writer.
const MAX_RACE_RETRIES: u32 = 16;

/// Counters shared between the committer and readers.
#[derive(Debug, Default)]
pub(crate) struct CommitStats {
    pub(crate) groups: AtomicU64,
    pub(crate) jobs: AtomicU64,
    pub(crate) live_records: AtomicU64,
    /// Jobs submitted and not yet in a group (the bounded queue; a job held back to start the next
    /// group still counts).
    pub(crate) queued: std::sync::atomic::AtomicUsize,
    /// Groups run again because another writer of a shared database raced them.
    pub(crate) races: AtomicU64,
    /// Groups committed with guarded reads, and groups refused because a guard did not hold
    /// (see [`WriteTx::read_as_committed`]).
    pub(crate) guarded: AtomicU64,
    pub(crate) guard_misses: AtomicU64,
    /// Set once a group commit failed in the database (I/O error, disk full). sled 0.34 treats its
    /// first write error as permanent: every later operation fails until the database is reopened.
    pub(crate) failed: std::sync::atomic::AtomicBool,
}

/// The writes of one group, as seen by one job.
///
/// Reads see, in order: this job's own writes, the earlier jobs of the group, then the tree.
/// A job whose closure fails has its writes discarded; the rest of the group is unaffected.
pub struct WriteTx<'a> {
    engine: &'a dyn Engine,
    group: HashMap<Vec<u8>, Option<Vec<u8>>>,
    job: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Conditions of the group's kept jobs, and of the running job.
    checks: Vec<Check>,
    job_checks: Vec<Check>,
    count: u64,
    job_count: u64,
    /// The key header to write before the group: (the header it replaces, if the job said, new).
    header: Option<(Option<Vec<u8>>, Vec<u8>)>,
    job_header: Option<(Option<Vec<u8>>, Vec<u8>)>,
    /// The engine is shared with other writers: the token record and de-duplication writes
    /// carry conditions on what they read, so a group that raced another writer is run again.
    shared: bool,
    /// On a shared engine, the first value the group read of each key from the engine: later
    /// reads of the group see the same value, and a condition states what the decision was
    /// based on (a fresh read could already show another writer's commit and let it pass).
    reads: std::cell::RefCell<HashMap<Vec<u8>, Option<Vec<u8>>>>,
    /// On a shared engine, what this committer last committed of the keys only it writes (see
    /// [`get_own_raw`](Self::get_own_raw)); the committer keeps it across groups.
    own: &'a HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The keys this group read through `get_own_raw`, with what it read.
    own_read: std::cell::RefCell<HashMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Records read as the group commits (see [`read_as_committed`](Self::read_as_committed)):
    /// the kept jobs', and the running job's.
    guards: Vec<(Vec<RecordGuard>, GuardedReads)>,
    job_guards: Vec<(Vec<RecordGuard>, GuardedReads)>,
}

/// The values of the records a job guarded (see [`WriteTx::read_as_committed`]), filled in once
/// its group has committed.
#[derive(Clone, Debug, Default)]
pub struct GuardedReads(Arc<parking_lot::Mutex<Option<Vec<Vec<u8>>>>>);

impl GuardedReads {
    /// The stored values, in the order of the guards, once the group has committed (`None`
    /// before, or when it failed); taken, so a second call gets `None`.
    pub fn take(&self) -> Option<Vec<Vec<u8>>> {
        self.0.lock().take()
    }

    fn fill(&self, values: Vec<Vec<u8>>) {
        *self.0.lock() = Some(values);
    }
}

impl<'a> WriteTx<'a> {
    fn new(engine: &'a dyn Engine, count: u64, own: &'a HashMap<Vec<u8>, Option<Vec<u8>>>) -> Self {
        Self {
            shared: engine.shared(),
            reads: std::cell::RefCell::default(),
            own,
            own_read: std::cell::RefCell::default(),
            guards: Vec::new(),
            job_guards: Vec::new(),
            engine,
            checks: Vec::new(),
            job_checks: Vec::new(),
            group: HashMap::new(),
            job: HashMap::new(),
            count,
            job_count: count,
            header: None,
            job_header: None,
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.job.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(key) {
            return Ok(v.clone());
        }
        self.committed(key)
    }

    /// `key` in the committed state as this group first saw it (see `reads`).
    fn committed(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.shared {
            return self.engine.point_get(key);
        }
        if let Some(v) = self.reads.borrow().get(key) {
            return Ok(v.clone());
        }
        let v = self.engine.point_get(key)?;
        self.reads.borrow_mut().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.job.insert(key.to_vec(), value);
    }

    /// Whether `key` is written by this group (job or earlier jobs), without reading the tree.
    fn pending(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.job.get(key).or_else(|| self.group.get(key))
    }

    /// The record stored under `id`, including this group's pending writes.
    pub fn record(&self, id: &LookupId) -> Result<Option<StoredRecord>, StoreError> {
        StoredRecord::from_read(self.get(&layout::record_key(id)))
    }

    /// The records stored under `ids`, in their order, including this group's pending writes: the
    /// ones not read yet by this group are read together ([`Engine::get_many`]: one round trip
    /// on PostgreSQL). The outer error is the read's; each record's own is its decoding's.
    #[allow(clippy::type_complexity)]
    pub fn records(
        &self,
        ids: &[LookupId],
    ) -> Result<Vec<Result<Option<StoredRecord>, StoreError>>, StoreError> {
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| layout::record_key(id).to_vec())
            .collect();
        // Pending writes first, then what this group already read (shared engines keep it).
        let mut found: Vec<Option<Option<Vec<u8>>>> = keys
            .iter()
            .map(|k| match self.pending(k) {
                Some(v) => Some(v.clone()),
                None if self.shared => self.reads.borrow().get(k).cloned(),
                None => None,
            })
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if !missing.is_empty() {
            let wanted: Vec<Vec<u8>> = missing.iter().map(|&i| keys[i].clone()).collect();
            for (i, value) in missing.into_iter().zip(self.engine.get_many(&wanted)?) {
                if self.shared {
                    self.reads
                        .borrow_mut()
                        .insert(keys[i].clone(), value.clone());
                }
                found[i] = Some(value);
            }
        }
        Ok(found
            .into_iter()
            .map(|v| StoredRecord::from_read(Ok(v.flatten())))
            .collect())
    }

    /// Reads the records `guards` name **as the group commits**, without a read now: the group
    /// commits only if every guard holds, and `GuardedReads` then holds their stored values (see
    /// [`RecordGuard`]). For a job that knows what it writes when the records are as expected;
    /// when one is not, the engine refuses the group, writing nothing, and the committer runs it
    /// again ([`ConflictKind::Guard`]): a job must then read instead (its second run). `None`
    /// when a guarded record is among this group's pending writes (the engine would not see
    /// them): read instead.
    pub fn read_as_committed(&mut self, guards: Vec<RecordGuard>) -> Option<GuardedReads> {
        if guards.iter().any(|g| self.pending(&g.key).is_some()) {
            return None;
        }
        let reads = GuardedReads::default();
        self.job_guards.push((guards, reads.clone()));
        Some(reads)
    }

    /// The record stored under `id`, read for a decision the job takes without writing the
    /// record (see [`get_checked`](Self::get_checked)).
    pub fn record_checked(&mut self, id: &LookupId) -> Result<Option<StoredRecord>, StoreError> {
        StoredRecord::from_read(self.get_checked(&layout::record_key(id)))
    }

    /// Inserts or replaces the record under `id`, keeping the live count in step.
    pub fn put_record(&mut self, id: &LookupId, record: &StoredRecord) -> Result<(), StoreError> {
        let key = layout::record_key(id);
        let current = self.get(&key)?;
        if current.is_none() {
            self.job_count += 1;
        }
        self.condition_shared(&key, current);
        self.set(&key, Some(record.encode()));
        Ok(())
    }

    /// Inserts the record of a **freshly minted** token. Unlike [`put_record`](Self::put_record)
    /// it does not read the tree to look for an existing record: a new token is 192 random bits,
    /// so one cannot exist (only this group's own pending writes are checked). Saves a B-tree read
    /// per token on the committer thread.
    pub fn insert_new_record(
        &mut self,
        id: &LookupId,
        record: &StoredRecord,
    ) -> Result<(), StoreError> {
        let key = layout::record_key(id);
        if matches!(self.pending(&key), Some(Some(_))) {
            return self.put_record(id, record);
        }
        self.job_count += 1;
        self.set(&key, Some(record.encode()));
        Ok(())
    }

    /// Removes the record under `id`; returns the removed record. Its de-duplication entry is
    /// removed too when the record was indexed and the entry still points at its token.
    pub fn delete_record(&mut self, id: &LookupId) -> Result<Option<StoredRecord>, StoreError> {
        let key = layout::record_key(id);
        let Some(bytes) = self.get(&key)? else {
            return Ok(None);
        };
        self.set(&key, None);
        self.job_count = self.job_count.saturating_sub(1);
        let old = StoredRecord::decode(&bytes)?;
        self.condition_shared(&key, Some(bytes));
        if old.dedupe_indexed && self.dedupe(&old.dedupe)? == Some(old.token) {
            let dkey = layout::dedupe_key(&old.dedupe);
            self.condition_shared(&dkey, Some(old.token.to_vec()));
            self.set(&dkey, None);
        }
        Ok(Some(old))
    }

    /// Removes the record under `id` without decoding it (for records that no longer decode).
    pub fn delete_raw(&mut self, id: &LookupId) -> Result<bool, StoreError> {
        let key = layout::record_key(id);
        let Some(current) = self.get(&key)? else {
            return Ok(false);
        };
        self.condition_shared(&key, Some(current));
        self.set(&key, None);
        self.job_count = self.job_count.saturating_sub(1);
        Ok(true)
    }

    /// The token the de-duplication index maps `key` to, if any.
    pub fn dedupe(&self, key: &DedupeKey) -> Result<Option<[u8; 24]>, StoreError> {
        match self.get(&layout::dedupe_key(key))? {
            Some(v) => v
                .as_slice()
                .try_into()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(Structure::Value(KeySpace::Dedupe))),
            None => Ok(None),
        }
    }

    /// Points the de-duplication index entry `key` at `token`. On a shared engine the write is
    /// conditional on the entry the job read (two daemons de-duplicating one card at once: one
    /// commits, the other's group runs again and finds the first one's token).
    pub fn put_dedupe(&mut self, key: &DedupeKey, token: &[u8; 24]) -> Result<(), StoreError> {
        let key = layout::dedupe_key(key);
        if self.shared && self.pending(&key).is_none() {
            let current = self.committed(&key)?;
            self.condition(&key, current);
        }
        self.set(&key, Some(token.to_vec()));
        Ok(())
    }

    /// Removes a de-duplication entry (conditional on a shared engine, like
    /// [`put_dedupe`](Self::put_dedupe)).
    pub fn delete_dedupe(&mut self, key: &DedupeKey) -> Result<(), StoreError> {
        let key = layout::dedupe_key(key);
        if self.shared && self.pending(&key).is_none() {
            let current = self.committed(&key)?;
            self.condition(&key, current);
        }
        self.set(&key, None);
        Ok(())
    }

    /// Replaces the encoded key header (rotation, re-key, retirement). The header file is
    /// replaced atomically and made durable **before** the group's batch is applied, so no record
    /// sealed under a new data key can reach the disk ahead of the header that holds the key.
    pub fn put_header(&mut self, header: Vec<u8>) {
        self.job_header = Some((None, header));
    }

    /// Like [`put_header`](Self::put_header), on the condition that the stored header is still
    /// `previous` (the one the job's change started from). On a database shared with other
    /// writers a header replaced meanwhile makes the group run again
    /// (see [`Engine::replace_header`]).
    pub fn replace_header(&mut self, previous: Vec<u8>, header: Vec<u8>) {
        self.job_header = Some((Some(previous), header));
    }

    /// The key header as stored now (not this group's pending replacement): for a job that
    /// must start from what other writers of a shared database may have changed.
    pub fn stored_header(&self) -> Result<Vec<u8>, StoreError> {
        self.engine.read_header()
    }

    /// Writes an arbitrary key outside the reserved prefixes (`V C R E D`). For the layers
    /// above (sessions, audit, credentials), each with a prefix of its own.
    pub fn put_raw(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        check_free_prefix(key)?;
        self.set(key, Some(value));
        Ok(())
    }

    /// Removes an arbitrary key outside the reserved prefixes.
    pub fn delete_raw_key(&mut self, key: &[u8]) -> Result<(), StoreError> {
        check_free_prefix(key)?;
        self.set(key, None);
        Ok(())
    }

    /// Reads an arbitrary key (pending writes included).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(key)
    }

    /// Reads `key`, a key that no other writer of a shared engine ever writes (this process's own
    /// audit chain head): pending writes included, then what this committer last committed of it,
    /// so that after its first read it costs no round trip to the database. On a single writer
    /// it is [`get_raw`](Self::get_raw). A key another writer may change must not be read so.
    pub fn get_own_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.shared {
            return self.get(key);
        }
        if let Some(v) = self.pending(key) {
            return Ok(v.clone());
        }
        let v = match self.own.get(key) {
            Some(v) => v.clone(),
            None => self.committed(key)?,
        };
        self.own_read.borrow_mut().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    /// What the keys read by [`get_own_raw`](Self::get_own_raw) hold once this group commits.
    fn own_after(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.own_read
            .borrow()
            .iter()
            .map(|(k, read)| (k.clone(), self.group.get(k).unwrap_or(read).clone()))
            .collect()
    }

    /// Reads `key` (pending writes included, any key space) for a decision the job takes without
    /// writing the key itself: on a shared engine the group's commit is then conditional on the
    /// key still holding what was read (another writer changing it meanwhile makes the group run
    /// again). On a single writer it is [`get_raw`](Self::get_raw).
    pub fn get_checked(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let current = self.get(key)?;
        self.condition_shared(key, current.clone());
        Ok(current)
    }

    /// Writes `value` under `key` (outside the reserved prefixes) only if the key is absent,
    /// pending writes included; returns whether it wrote. The condition is checked again by the
    /// engine when the group commits (see [`Check`]).
    pub fn put_if_absent(&mut self, key: &[u8], value: Vec<u8>) -> Result<bool, StoreError> {
        check_free_prefix(key)?;
        if self.get(key)?.is_some() {
            return Ok(false);
        }
        self.condition(key, None);
        self.set(key, Some(value));
        Ok(true)
    }

    /// Replaces the value under `key` (outside the reserved prefixes; `None` deletes) only if it
    /// is `expected` now (`None`: absent), pending writes included; otherwise refuses with
    /// [`StoreError::Conflict`] and writes nothing.
    pub fn compare_and_set(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        check_free_prefix(key)?;
        let current = self.get(key)?;
        if current.as_deref() != expected {
            return Err(StoreError::Conflict(if expected.is_none() {
                ConflictKind::Exists
            } else {
                ConflictKind::Changed
            }));
        }
        self.condition(key, current);
        self.set(key, new);
        Ok(())
    }

    /// Records that the running job relies on `key` holding `expected` in the committed state,
    /// unless the group has written the key already (then it is the group's own write).
    fn condition(&mut self, key: &[u8], expected: Option<Vec<u8>>) {
        if self.pending(key).is_none() {
            self.job_checks.push(Check {
                key: key.to_vec(),
                expected,
            });
        }
    }

    /// [`condition`](Self::condition), on a shared engine only (a single writer's reads cannot
    /// go stale before its own commit).
    fn condition_shared(&mut self, key: &[u8], expected: Option<Vec<u8>>) {
        if self.shared {
            self.condition(key, expected);
        }
    }

    fn begin_job(&mut self) {
        self.job_checks.clear();
        self.job_guards.clear();
        self.job.clear();
        self.job_header = None;
        self.job_count = self.count;
    }

    fn end_job(&mut self, keep: bool) {
        if keep {
            self.checks.append(&mut self.job_checks);
            self.guards.append(&mut self.job_guards);
            self.group.extend(self.job.drain());
            self.count = self.job_count;
            if let Some(h) = self.job_header.take() {
                self.header = Some(h);
            }
        } else {
            self.job_checks.clear();
            self.job_guards.clear();
            self.job.clear();
            self.job_header = None;
        }
    }
}

pub(crate) fn check_free_prefix(key: &[u8]) -> Result<(), StoreError> {
    match key.first().map(|&b| KeySpace::from_byte(b)) {
        None => Err(StoreError::Corrupt(Structure::ReservedKey)),
        Some(Some(kind)) if kind.is_reserved() => Err(StoreError::Corrupt(Structure::ReservedKey)),
        Some(_) => Ok(()),
    }
}

/// A typed closure and its completion as a [`Job`].
struct TypedJob<T, E, F, D> {
    f: F,
    done: D,
    result: Option<Result<T, E>>,
    alone: bool,
}

impl<T, E, F, D> Job for TypedJob<T, E, F, D>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    D: FnOnce(Result<T, E>) + Send + 'static,
{
    fn run(&mut self, tx: &mut WriteTx<'_>) {
        tx.begin_job();
        let result = match catch_unwind(AssertUnwindSafe(|| (self.f)(tx))) {
            Ok(Ok(value)) => {
                tx.end_job(true);
                Ok(value)
            }
            Ok(Err(e)) => {
                tx.end_job(false);
                Err(e)
            }
            Err(_) => {
                // A bug in a job must not take the committer down with it: drop its writes and
                // report the store as closed for this one call.
                tx.end_job(false);
                Err(E::from(StoreError::Closed))
            }
        };
        self.result = Some(result);
    }

    fn finish(self: Box<Self>, outcome: Result<(), StoreError>) {
        let Self { done, result, .. } = *self;
        match result {
            Some(Ok(value)) => done(outcome.map(|()| value).map_err(E::from)),
            Some(Err(e)) => done(Err(e)),
            None => done(Err(E::from(StoreError::Closed))),
        }
    }

    fn alone(&self) -> bool {
        self.alone
    }
}

/// Wraps a typed closure as a [`Job`]; `done` receives its result once durable (or the failure).
/// `f` may run more than once (see [`Job`]): it must decide from what it reads through the
/// transaction, and keep nothing else from an earlier run.
pub(crate) fn job<T, E, F, D>(f: F, done: D, alone: bool) -> Box<dyn Job>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnMut(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    D: FnOnce(Result<T, E>) + Send + 'static,
{
    Box::new(TypedJob {
        f,
        done,
        result: None,
        alone,
    })
}

pub(crate) struct Committer {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) rx: Receiver<Box<dyn Job>>,
    pub(crate) max_group: usize,
    pub(crate) stats: Arc<CommitStats>,
    pub(crate) group_sizes: Arc<parking_lot::Mutex<GroupHistogram>>,
    /// Set while a backup runs: keeps the pre-backup value of every key a group changes before
    /// the backup has exported it (see `backup.rs`).
    pub(crate) capture: Arc<parking_lot::Mutex<Option<crate::capture::Capture>>>,
    /// Group commits applied so far (key `G`).
    pub(crate) generation: u64,
}

/// Histogram of group sizes (jobs per commit), for metrics.
#[derive(Debug, Default, Clone)]
pub struct GroupHistogram {
    /// Bucket upper bounds are 1, 2, 4, ..., 512, +inf.
    pub buckets: [u64; 11],
    /// Total jobs committed.
    pub sum: u64,
    /// Number of groups.
    pub count: u64,
}

impl GroupHistogram {
    fn observe(&mut self, n: usize) {
        let idx = (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize;
        self.buckets[idx.min(10)] += 1;
        self.sum += n as u64;
        self.count += 1;
    }
}

impl Committer {
    pub(crate) fn run(mut self) {
        let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(self.max_group);
        // What this committer last committed of the keys only it writes (see `get_own_raw`).
        let mut own: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        // A job to commit alone, taken off the channel while a group was being gathered: it
        // starts the next group.
        let mut next: Option<Box<dyn Job>> = None;
        loop {
            let first = match next.take() {
                Some(job) => job,
                None => match self.rx.recv_timeout(IDLE_CHECKPOINT) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        self.checkpoint(true);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let alone = first.alone();
            group.push(first);
            while !alone && group.len() < self.max_group {
                match self.rx.try_recv() {
                    Ok(j) if j.alone() => {
                        next = Some(j);
                        break;
                    }
                    Ok(j) => group.push(j),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let n = group.len();
            self.stats.queued.fetch_sub(n, Ordering::AcqRel);
            let outcome = self.commit_group(&mut group, &mut own);
            if matches!(outcome, Err(StoreError::Conflict(ConflictKind::Raced))) && n > 1 {
                // Raced MAX_RACE_RETRIES times over: another writer keeps changing what some job
                // read. Each job alone, in order, so only the jobs that keep losing fail (a
                // reveal's audit entries, which read nothing another writer changes, then
                // commit at once).
                for mut job in group.drain(..) {
                    let outcome = self.commit_group(std::slice::from_mut(&mut job), &mut own);
                    job.finish(outcome);
                }
            } else {
                for job in group.drain(..) {
                    job.finish(outcome.clone());
                }
            }
            self.checkpoint(false);
        }
        // Channel closed: every sender is gone. Make what was applied durable, and record exactly
        // how far it got (unless the store has failed: then it may not be).
        if self.stats.failed.load(Ordering::Acquire) {
            return;
        }
        let _ = self.engine.close(self.generation);
    }

    /// Runs `jobs` against one transaction and commits them as one group, running them again on
    /// fresh reads (every job decides anew; their earlier results are dropped) when another
    /// writer of a shared database got there first, up to [`MAX_RACE_RETRIES`] times.
    fn commit_group(
        &mut self,
        jobs: &mut [Box<dyn Job>],
        own: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        let engine = self.engine.clone();
        let mut races = 0;
        let mut guarded_again = false;
        let outcome = loop {
            let count = self.stats.live_records.load(Ordering::Acquire);
            let mut tx = WriteTx::new(&*engine, count, own);
            for job in jobs.iter_mut() {
                job.run(&mut tx);
            }
            let new_count = tx.count;
            let own_after = tx.own_after();
            let guarded = !tx.guards.is_empty();
            let next = self.generation + 1;
            let outcome = self.apply(tx, count, next).map(|applied| {
                if applied {
                    self.generation = next;
                }
            });
            match &outcome {
                Ok(()) => {
                    self.stats.live_records.store(new_count, Ordering::Release);
                    own.extend(own_after);
                    if guarded {
                        self.stats.guarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(StoreError::Conflict(ConflictKind::Raced)) if races < MAX_RACE_RETRIES => {
                    races += 1;
                    self.stats.races.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // A record read as the group committed was not as a job expected (or the server
                // refused the statement that read it): nothing was written. The jobs run again and
                // read first (a job guards only on its first run), so once is enough.
                Err(StoreError::Conflict(ConflictKind::Guard)) if !guarded_again => {
                    self.stats.guard_misses.fetch_add(1, Ordering::Relaxed);
                    guarded_again = true;
                    continue;
                }
                Err(StoreError::Db(_) | StoreError::Io(_)) => {
                    self.stats.failed.store(true, Ordering::Release)
                }
                Err(_) => {}
            }
            if outcome.is_err() {
                // The group may have committed or not (a connection lost after it was sent):
                // read the own keys from the database again.
                own.clear();
            }
            break outcome;
        };
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.stats
            .jobs
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        self.group_sizes.lock().observe(jobs.len());
        outcome
    }

    /// The engine's housekeeping between groups; a failure fails the store (for sled: its flush
    /// failing means sled has failed; a log that cannot be reset cannot take more entries).
    fn checkpoint(&self, idle: bool) {
        if self.stats.failed.load(Ordering::Acquire) {
            return;
        }
        if self.engine.checkpoint(idle).is_err() {
            self.stats.failed.store(true, Ordering::Release);
        }
    }

    /// Hands the group to the engine as group commit number `generation`; `Ok(false)` when it
    /// wrote nothing.
    fn apply(&self, tx: WriteTx<'_>, old_count: u64, generation: u64) -> Result<bool, StoreError> {
        if self.stats.failed.load(Ordering::Acquire) {
            // A write already failed in the database or the log: nothing more is accepted until
            // the store is reopened (which replays or cuts the log).
            return Err(StoreError::Failed);
        }
        if tx.header.is_some() && !tx.guards.is_empty() {
            // The header is written before the group, so a guard failing after it would run a
            // key change twice: such a group runs again without guards instead.
            return Err(StoreError::Conflict(ConflictKind::Guard));
        }
        match &tx.header {
            Some((Some(previous), header)) => self.engine.replace_header(previous, header)?,
            Some((None, header)) => self.engine.write_header(header)?,
            None => {}
        }
        if tx.group.is_empty() && tx.guards.is_empty() {
            return Ok(false);
        }
        if let Some(capture) = self.capture.lock().as_mut() {
            if tx.count != old_count {
                capture.before_change(&*self.engine, COUNT_KEY)?;
            }
            capture.before_change(&*self.engine, GENERATION_KEY)?;
            for k in tx.group.keys() {
                capture.before_change(&*self.engine, k)?;
            }
        }
        // The generation first (applied last by an engine that applies key by key), then the
        // count, then the group's writes.
        let mut ops: Vec<Op> = Vec::with_capacity(tx.group.len() + 2);
        ops.push((
            GENERATION_KEY.to_vec(),
            Some(generation.to_be_bytes().to_vec()),
        ));
        if tx.count != old_count {
            ops.push((COUNT_KEY.to_vec(), Some(tx.count.to_be_bytes().to_vec())));
        }
        ops.extend(tx.group);
        let (guards, slots): (Vec<Vec<RecordGuard>>, Vec<GuardedReads>) =
            tx.guards.into_iter().unzip();
        let sizes: Vec<usize> = guards.iter().map(Vec::len).collect();
        let mut values = self
            .engine
            .commit(Group {
                generation,
                previous: self.generation,
                ops,
                checks: tx.checks,
                guards: guards.into_iter().flatten().collect(),
                records_delta: i64::try_from(tx.count).unwrap_or(i64::MAX)
                    - i64::try_from(old_count).unwrap_or(i64::MAX),
            })?
            .into_iter();
        for (slot, n) in slots.iter().zip(sizes) {
            slot.fill(values.by_ref().take(n).collect());
        }
        Ok(true)
    }
}
