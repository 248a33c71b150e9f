//! The engine seam: what the engine-neutral part of the store (group committer, typed records and
//! tables, backup capture, counters) needs from the database underneath.
//!
//! The committer (`commit.rs`) gathers jobs into a group, runs each against a [`WriteTx`]
//! (read-your-writes over [`Engine::point_get`]), and hands the surviving writes to
//! [`Engine::commit`] as one [`Group`]: the engine makes them durable and visible atomically, then
//! the committer answers the callers. Readers outside the committer use [`Engine::get`] and
//! [`Engine::scan`], which see whole groups. The sled engine (`sled_engine.rs`, with its
//! write-ahead log in `wal.rs`) is the one implementation today; a second engine is tested by the
//! same conformance suite (`vault_store::conformance`, feature `conformance`).
//!
//! [`WriteTx`]: crate::WriteTx

use std::{fmt, ops::Bound, path::Path};

use crate::{Location, StoreError};

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

/// One group commit as handed to [`Engine::commit`].
#[derive(Debug)]
pub struct Group {
    /// The group counter this group sets (the previous one plus one).
    pub generation: u64,
    /// The group counter before this group.
    pub previous: u64,
    /// The writes, each key at most once. The first is always the group counter's own key
    /// ([`KeySpace::Generation`](crate::KeySpace::Generation)); an engine that applies them one by
    /// one applies that one last, so a partial application never shows the new counter.
    pub ops: Vec<Op>,
    /// Conditions on the committed state (see [`Check`]).
    pub checks: Vec<Check>,
    /// How many token records this group adds (negative: removes). The ops carry the new
    /// absolute count under [`KeySpace::Count`](crate::KeySpace::Count) as this process counts
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
    /// [`Check`] fails.
    fn commit(&self, group: Group) -> Result<(), StoreError>;

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
