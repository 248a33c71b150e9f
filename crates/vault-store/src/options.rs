//! What a store is opened with, and the format versions it writes (store, backup): a leaf module, so the engine
//! below the store and the store's error messages can name them without pointing up.

/// Version of the store layout (key space, record codec, files). Bumped on incompatible change;
/// a vault written by a newer version is refused at open. `2` added the write-ahead log
/// (`<dir>/wal`), which a build that does not know it would ignore, losing acknowledged writes
/// after a crash; a version-1 vault is upgraded when opened (it has no log to replay).
pub const STORE_FORMAT_VERSION: u16 = 2;

/// Version of the PostgreSQL engine's schema (its tables; feature `postgres`): the number of
/// migrations this build applies. A database migrated further by a newer cardvault is refused
/// ([`StoreError::NewerSchema`](crate::StoreError::NewerSchema)).
pub const POSTGRES_SCHEMA_VERSION: u32 = 1;

/// Backup file format version written (and the newest one read).
pub const BACKUP_FORMAT_VERSION: u16 = 1;

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

/// Tuning for [`Store::open`](crate::Store::open) and [`Store::create`](crate::Store::create).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// When writes are acknowledged.
    pub durability: Durability,
    /// sled page cache size in bytes.
    pub cache_capacity: u64,
    /// Most jobs in one group commit.
    pub max_group: usize,
    /// Most jobs waiting for the committer. A write submitted while this many wait fails at once
    /// with [`StoreError::Busy`](crate::StoreError::Busy) instead of queueing: the queue's memory is bounded.
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
