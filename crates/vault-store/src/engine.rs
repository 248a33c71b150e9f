//! The engine seam: what the engine-neutral part of the store (group committer, typed records and
//! tables, backup capture, counters) needs from the database underneath.
//!
//! The committer (`commit.rs`) gathers jobs into a group, runs each against a [`WriteTx`]
//! (read-your-writes over [`Engine::point_get`]), and hands the surviving writes to
//! [`Engine::commit`] as one [`Group`]: the engine makes them durable and visible atomically, then
//! the committer answers the callers. Readers outside the committer use [`Engine::get`] and
//! [`Engine::scan`], which see whole groups. Two engines implement it, both tested by the same
//! conformance suite (`vault_store::conformance`, feature `conformance`):
//!
//! - the sled engine (`sled_engine.rs`, with its write-ahead log in `wal.rs`): one process owns a
//!   vault directory;
//! - the PostgreSQL engine (`pg/`, feature `postgres`): any number of daemons share one database.
//!   Each group is one SQL transaction that checks the group's [`Check`]s itself, so it is
//!   [`shared`](Engine::shared); it adds an indexed expiry scan ([`Engine::scan_expired`]) and
//!   consistent snapshots for backups ([`Engine::snapshot`]).
//!
//! [`WriteTx`]: crate::WriteTx

use std::{fmt, ops::Bound, path::Path};

use crate::{KeySpace, Location, LookupId, StoreError, StoredRecord, Structure, layout};

/// One write of a group: `Some(value)` puts, `None` deletes.
pub type Op = (Vec<u8>, Option<Vec<u8>>);

/// A condition a job's decision rests on: `key` held `expected` (`None`: absent) in the committed
/// state when the group was built. The sled engine has one writer (the committer thread), so its
/// conditions hold by construction and it checks them only as a guard; an engine shared by
/// several writers (several daemons on one database) must check them inside its transaction and
/// refuse the group with [`StoreError::Conflict`] when one fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The key read.
    pub key: Vec<u8>,
    /// What the job saw there.
    pub expected: Option<Vec<u8>>,
}

/// A token record a group reads **as it commits** and on which its writes depend: the group
/// commits only if the record under `key` is `token`'s, belongs to `merchant`, is bound to
/// `customer` (or to none) and is live at `now` (keep-until later than `now`); the engine then
/// hands back the stored value. A job that knows what it will write when the record is as
/// expected (a reveal's audit entry, which names the outcome) so needs no read before the group:
/// the read and the commit are one round trip on PostgreSQL. When a guard does not hold the engine
/// refuses the whole group with [`StoreError::Conflict`]`(`[`ConflictKind::Guard`]`)`, writing
/// nothing, and the committer runs it again (its jobs then read first).
///
/// An engine may pass a value that [`StoredRecord::decode`] would refuse (PostgreSQL compares
/// fields at their offsets and does not parse the rest): the caller decides again on the value
/// it gets back.
///
/// [`ConflictKind::Guard`]: crate::ConflictKind::Guard
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordGuard {
    /// The record's key (`R` and the lookup id).
    pub key: Vec<u8>,
    /// The merchant the record must belong to.
    pub merchant: u64,
    /// The token the record must be.
    pub token: [u8; 24],
    /// The customer the record must be bound to (`None`: bound to none).
    pub customer: Option<String>,
    /// Unix seconds: the record's keep-until must be later.
    pub now: i64,
}

impl RecordGuard {
    /// A guard on the record under `id`.
    pub fn new(
        id: &LookupId,
        merchant: u64,
        token: [u8; 24],
        customer: Option<String>,
        now: i64,
    ) -> Self {
        Self {
            key: layout::record_key(id).to_vec(),
            merchant,
            token,
            customer,
            now,
        }
    }

    /// Whether a stored `value` satisfies the guard (what an engine that decodes records checks).
    pub fn holds(&self, value: &[u8]) -> bool {
        StoredRecord::decode(value).is_ok_and(|r| {
            r.merchant == self.merchant
                && r.token == self.token
                && r.customer == self.customer
                && r.keep_until > self.now
        })
    }
}

/// One group commit as handed to [`Engine::commit`].
#[derive(Debug)]
pub struct Group {
    /// The group counter this group sets (the previous one plus one).
    pub generation: u64,
    /// The group counter before this group.
    pub previous: u64,
    /// The writes, each key at most once. The first is always the group counter's own key
    /// ([`KeySpace::Generation`]); an engine that applies them one by
    /// one applies that one last, so a partial application never shows the new counter.
    pub ops: Vec<Op>,
    /// Conditions on the committed state (see [`Check`]).
    pub checks: Vec<Check>,
    /// Token records read as the group commits (see [`RecordGuard`]); their values are what
    /// [`Engine::commit`] returns.
    pub guards: Vec<RecordGuard>,
    /// How many token records this group adds (negative: removes). The ops carry the new
    /// absolute count under [`KeySpace::Count`] as this process counts
    /// it; an engine shared by several writers keeps the count from the deltas instead (a row
    /// every group of every writer rewrote would serialise them).
    pub records_delta: i64,
}

/// Counters an engine keeps for [`StoreStats`](crate::StoreStats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Device syncs made by group commits.
    pub flushes: u64,
    /// Checkpoints made.
    pub checkpoints: u64,
    /// Time spent in checkpoints, microseconds.
    pub checkpoint_micros: u64,
    /// Bytes used on disk.
    pub size_on_disk: u64,
}

/// Where [`Engine::point_get_then`] hands its answer.
pub type ReadDone = Box<dyn FnOnce(Result<Option<Vec<u8>>, StoreError>) + Send>;

/// A storage engine under the store: one ordered key space of byte keys and values.
///
/// Every method may be called from any thread; [`commit`](Self::commit),
/// [`write_header`](Self::write_header), [`checkpoint`](Self::checkpoint) and
/// [`close`](Self::close) are called only by the committer thread, one at a time.
pub trait Engine: Send + Sync + fmt::Debug + 'static {
    /// The vault's local directory (lock file, backups beside it); empty for an engine with no
    /// local directory (a database server).
    fn dir(&self) -> &Path;

    /// Where the vault lives (for messages: a database URL is shown without its password).
    fn location(&self) -> Location {
        Location::Dir(self.dir().to_path_buf())
    }

    /// Whether other processes may write the same data concurrently (several daemons on one
    /// database). The committer then re-runs a group refused with
    /// [`ConflictKind::Raced`](crate::ConflictKind::Raced), and the layers above must not
    /// cache what another writer may change without bounding how stale it may get.
    fn shared(&self) -> bool {
        false
    }

    /// Reads one key of the committed state, as a reader that also reads other keys needs it: once
    /// it has seen one write of a group, it and every later read see the whole group.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads one key of the committed state for a caller that reads nothing else with it (the hot
    /// path of `get` and `reveal`, and the committer itself): it may see one key of a group that
    /// is still being applied. Defaults to [`get`](Self::get).
    fn point_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(key)
    }

    /// [`point_get`](Self::point_get) of each of `keys`, answered in their order: an engine whose
    /// reads wait on a network answers them together (one round trip for the keys of one table).
    /// Defaults to one `point_get` per key.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.point_get(k)).collect()
    }

    /// [`point_get`](Self::point_get) without waiting: `done` receives the answer, on the
    /// caller's thread or on one of the engine's own. An engine whose reads wait on a network
    /// overrides it so that a caller on an async runtime never blocks its worker; `done` must be
    /// quick and must not wait on the engine. It is called exactly once (with
    /// [`StoreError::Closed`] if the engine shuts down first). Defaults to `point_get`, inline.
    fn point_get_then(&self, key: &[u8], done: ReadDone) {
        done(self.point_get(key));
    }

    /// Up to `limit` pairs of the committed state with keys in `(start, end)`, in ascending key
    /// order (bytewise), seeing whole groups.
    #[allow(clippy::type_complexity)]
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// Makes `group` durable (per the store's [`Durability`](crate::Durability)) and visible, all
    /// of it or none of it: after a crash, reopening shows every acknowledged group whole and no
    /// part of a group whose commit did not return. Refuses with [`StoreError::Conflict`] when a
    /// [`Check`] or a [`RecordGuard`] fails. Returns the value under each guard's key, in the
    /// order of [`Group::guards`], as the group's transaction read it (empty without guards).
    fn commit(&self, group: Group) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The encoded key header.
    fn read_header(&self) -> Result<Vec<u8>, StoreError>;

    /// Replaces the key header durably, before the group that needs it is committed.
    fn write_header(&self, header: &[u8]) -> Result<(), StoreError>;

    /// Replaces the key header durably if it is still `previous`: an engine shared by several
    /// writers refuses with [`StoreError::Conflict`]`(`[`ConflictKind::Raced`]`)` when another
    /// writer replaced it meanwhile (two daemons rotating keys at once must not drop each
    /// other's data keys). A single writer's header cannot change under it: the default writes.
    ///
    /// [`ConflictKind::Raced`]: crate::ConflictKind::Raced
    fn replace_header(&self, previous: &[u8], header: &[u8]) -> Result<(), StoreError> {
        let _ = previous;
        self.write_header(header)
    }

    /// Housekeeping between groups (the sled engine's log checkpoint): `idle` when no job has
    /// arrived for a while. An error fails the store.
    fn checkpoint(&self, idle: bool) -> Result<(), StoreError> {
        let _ = idle;
        Ok(())
    }

    /// The store is closing cleanly after `generation` groups: make everything durable.
    fn close(&self, generation: u64) -> Result<(), StoreError>;

    /// Flushes what was committed (the store's `flush`).
    fn flush(&self) -> Result<(), StoreError>;

    /// Counters.
    fn stats(&self) -> EngineStats;

    /// The token records whose keep-until is at or before `now`, in lookup-id order after
    /// `after`, plus where to continue (`None` at the end); records that do not decode are
    /// skipped. The default scans up to `max_scan` records linearly (there is no expiry index in
    /// the key space: one entry per token costs more than an occasional sweep); an engine that
    /// indexes keep-until (PostgreSQL) returns up to `max_scan` due records directly.
    #[allow(clippy::type_complexity)]
    fn scan_expired(
        &self,
        after: Option<LookupId>,
        now: i64,
        max_scan: usize,
    ) -> Result<(Vec<LookupId>, Option<LookupId>), StoreError> {
        let after_key = after.map(|id| layout::record_key(&id));
        let start = match &after_key {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Included(&[layout::RECORD_PREFIX][..]),
        };
        let end = [layout::RECORD_PREFIX + 1];
        let limit = if max_scan == 0 { usize::MAX } else { max_scan };
        let batch = self.scan(start, Bound::Excluded(&end[..]), limit)?;
        let full = max_scan != 0 && batch.len() == max_scan;
        let (mut due, mut last) = (Vec::new(), None);
        for (k, v) in batch {
            let id = layout::lookup_from_record_key(&k)
                .ok_or(StoreError::Corrupt(Structure::Key(KeySpace::Record)))?;
            if let Ok(rec) = StoredRecord::decode(&v)
                && rec.keep_until <= now
            {
                due.push(id);
            }
            last = Some(id);
        }
        Ok((due, if full { last } else { None }))
    }

    /// A consistent read-only view of the whole key space and the key header at one instant, for
    /// a backup of an engine that other processes write too (the committer's capture of
    /// pre-images sees only this process's groups). `None` (the default): the engine has one
    /// writer, and a backup captures pre-images in the committer instead.
    fn snapshot(&self) -> Result<Option<Box<dyn Snapshot>>, StoreError> {
        Ok(None)
    }
}

/// One consistent read-only view of an engine's data (see [`Engine::snapshot`]). Dropping it ends
/// the view.
pub trait Snapshot: Send {
    /// The encoded key header, as of the snapshot.
    fn header(&mut self) -> Result<Vec<u8>, StoreError>;

    /// One key, as of the snapshot.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` pairs with keys after `after` (from the first key: `None`), in ascending key
    /// order, as of the snapshot.
    #[allow(clippy::type_complexity)]
    fn scan_after(
        &mut self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;
}

/// The range of keys that start with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}
