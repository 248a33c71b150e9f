//! The store's error type.

use std::{fmt, io, path::PathBuf};

use crate::{KeySpace, Location};

/// Which stored structure failed to decode (never its content). `Display` gives the name used in
/// messages ("stored {name} is corrupt").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Structure {
    /// A value in one key space (a token record, a session, a merchant, an audit entry, ...).
    Value(KeySpace),
    /// A key in one key space that does not have the kind's shape.
    Key(KeySpace),
    /// A key outside every kind the layers above may write (empty, or a prefix the store owns).
    ReservedKey,
    /// A key of the vault's own key spaces written through the vault's seam by a layer above.
    VaultKey,
    /// The key-header file.
    KeyHeaderFile,
    /// A key header too large to store or back up.
    KeyHeaderTooLarge,
    /// A key too large for a backup file.
    KeyTooLarge,
    /// A value too large for a backup file.
    ValueTooLarge,
    /// The store's format version entry.
    StoreVersion,
    /// The group-commit counter.
    Generation,
    /// The live record count.
    RecordCount,
    /// The write-ahead log, in the part shown.
    Wal(WalPart),
    /// A backup file, in the part shown.
    Backup(BackupPart),
    /// A restore target path without a directory name.
    RestoreTarget,
    /// sled's own files, damaged: sled cannot open them, or found a damaged page while reading.
    SledFiles,
    /// A failure a test (or a caller's own job) reports as corruption.
    Other,
}

/// The part of the write-ahead log that is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WalPart {
    /// An acknowledged entry (bad checksum, bad length, undecodable).
    Entry,
    /// The file header.
    Header,
    /// An unknown log version.
    UnknownVersion,
    /// Entries whose generations do not follow each other.
    GenerationGap,
    /// An entry too large to write.
    EntryTooLarge,
    /// A log that ends before the database's generation.
    EndsBeforeDatabase,
}

/// The part of a backup file that is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackupPart {
    /// Not a backup file (magic).
    Magic,
    /// Format version 0.
    FormatVersion0,
    /// Store version 0.
    StoreVersion0,
    /// The store version entry.
    StoreVersionEntry,
    /// The key header length.
    KeyHeaderLength,
    /// The key header.
    KeyHeader,
    /// An entry's length.
    EntryLength,
    /// A length field.
    Length,
    /// Keys not strictly increasing.
    KeyOrder,
    /// A record key.
    RecordKey,
    /// A record.
    Record,
    /// A de-duplication entry.
    DedupeEntry,
    /// The record count.
    RecordCount,
    /// The store version value.
    StoreVersion,
    /// The trailer.
    Trailer,
    /// The entry count.
    EntryCount,
    /// The checksum.
    ChecksumMismatch,
    /// Bytes after the trailer.
    BytesAfterTrailer,
    /// The file ends early.
    Truncated,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(kind) => f.write_str(kind.name()),
            Self::Key(kind) => write!(f, "{} key", kind.name()),
            Self::ReservedKey => f.write_str("key (reserved prefix)"),
            Self::VaultKey => f.write_str("key (vault prefix)"),
            Self::KeyHeaderFile => f.write_str("key header file"),
            Self::KeyHeaderTooLarge => f.write_str("key header (too large)"),
            Self::KeyTooLarge => f.write_str("key (too large)"),
            Self::ValueTooLarge => f.write_str("value (too large)"),
            Self::StoreVersion => f.write_str("store version"),
            Self::Generation => f.write_str("generation"),
            Self::RecordCount => f.write_str("record count"),
            Self::Wal(part) => f.write_str(match part {
                WalPart::Entry => "write-ahead log",
                WalPart::Header => "write-ahead log (header)",
                WalPart::UnknownVersion => {
                    "write-ahead log (unknown version: written by a newer cardvault?)"
                }
                WalPart::GenerationGap => "write-ahead log (generation gap)",
                WalPart::EntryTooLarge => "write-ahead log entry (too large)",
                WalPart::EndsBeforeDatabase => "write-ahead log (ends before the database)",
            }),
            Self::Backup(part) => write!(
                f,
                "backup file ({})",
                match part {
                    BackupPart::Magic => "not a cardvault backup",
                    BackupPart::FormatVersion0 => "format version 0",
                    BackupPart::StoreVersion0 => "store version 0",
                    BackupPart::StoreVersionEntry => "store version entry",
                    BackupPart::KeyHeaderLength => "key header length",
                    BackupPart::KeyHeader => "key header",
                    BackupPart::EntryLength => "entry length",
                    BackupPart::Length => "length",
                    BackupPart::KeyOrder => "key order",
                    BackupPart::RecordKey => "record key",
                    BackupPart::Record => "record",
                    BackupPart::DedupeEntry => "dedupe entry",
                    BackupPart::RecordCount => "record count",
                    BackupPart::StoreVersion => "store version",
                    BackupPart::Trailer => "trailer",
                    BackupPart::EntryCount => "entry count",
                    BackupPart::ChecksumMismatch => "checksum mismatch",
                    BackupPart::BytesAfterTrailer => "bytes after the trailer",
                    BackupPart::Truncated => "truncated",
                }
            ),
            Self::RestoreTarget => f.write_str("restore target (no directory name)"),
            Self::SledFiles => f.write_str("database (sled's files; restore from a backup)"),
            Self::Other => f.write_str("value"),
        }
    }
}

/// Why a conditional write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictKind {
    /// An insert-if-absent found the key present.
    Exists,
    /// A compare-and-set found a value other than the expected one.
    Changed,
    /// Another writer sharing the database changed a key this group's decisions rest on, between
    /// the group's reads and its commit (or the database aborted the transaction as a
    /// serialisation failure or deadlock). The committer runs the group again on fresh reads;
    /// callers see it only when that keeps failing.
    Raced,
    /// A token record a group read as it committed was not as its job expected (see
    /// [`RecordGuard`](crate::engine::RecordGuard)): missing, another merchant's or customer's,
    /// or expired. Nothing was written; the committer runs the group again, and its jobs then
    /// read before they decide.
    Guard,
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exists => "the key exists",
            Self::Changed => "the value changed",
            Self::Raced => "another writer changed the data concurrently; try again",
            Self::Guard => "a record read as the group committed was not as expected",
        })
    }
}

/// Why the database is unavailable (see [`StoreError::Unavailable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unavailable {
    /// No connection could be made (refused, unreachable, TLS or authentication failure).
    Connect,
    /// A connection was lost in the middle of an operation: its outcome is unknown to this
    /// process (a group commit so refused was not acknowledged; it may or may not have committed).
    ConnectionLost,
    /// Every pooled connection stayed busy for the pool's wait bound.
    PoolExhausted,
    /// A statement ran past the statement timeout.
    StatementTimeout,
    /// The server is starting up, shutting down or in recovery (a standby), or refuses
    /// connections for now (too many clients).
    ServerNotReady,
    /// The TLS handshake failed: the server's certificate is not trusted by the roots, or not
    /// valid for the host name in the URL (`verify-full`), or the server offers no TLS.
    Tls,
    /// The server refused authentication: the role, its password or a `pg_hba.conf` rule
    /// (SQLSTATE class 28).
    Authentication,
    /// The database named in the URL does not exist on the server (SQLSTATE 3D000).
    NoSuchDatabase,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "cannot connect to the database server",
            Self::ConnectionLost => "the connection to the database server was lost",
            Self::PoolExhausted => "every database connection is busy",
            Self::StatementTimeout => "a database statement timed out",
            Self::ServerNotReady => "the database server is not accepting work now",
            Self::Tls => {
                "the TLS handshake with the database server failed (its certificate is not \
                 trusted by the roots or not valid for the host name in the URL, or the server \
                 offers no TLS; see docs/operations.md, TLS)"
            }
            Self::Authentication => {
                "the database server refused the connection's authentication (the role, its \
                 password, or a pg_hba.conf rule)"
            }
            Self::NoSuchDatabase => "the database named in the URL does not exist on the server",
        })
    }
}

/// Failures of the persistence layer. Messages never contain record contents.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another `Store` in this process) holds the vault directory.
    InUse(PathBuf),
    /// `create` found an existing vault.
    AlreadyExists(PathBuf),
    /// `open` found no vault.
    NotFound(PathBuf),
    /// The vault was written by a newer cardvault (store format version shown).
    NewerFormat(u16),
    /// A backup file was written by a newer cardvault (backup format version shown).
    NewerBackup(u16),
    /// A backup of this vault is already running.
    BackupRunning,
    /// Bytes on disk do not decode; the [`Structure`] names what (never its content).
    Corrupt(Structure),
    /// A conditional write found the store not as the condition required.
    Conflict(ConflictKind),
    /// The embedded database failed (I/O, disk full, ...): the store stops taking writes (see
    /// [`Store::has_failed`](crate::Store::has_failed)). The engine's own error, held opaquely
    /// so that no engine's types are part of this enum.
    Db(std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// A database server engine failed (its own error, e.g. a lost connection). Unlike
    /// [`Db`](Self::Db) it does not fail the store: the next group tries again.
    Engine(std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// A file-system operation outside the database failed.
    Io(io::Error),
    /// The committer has stopped (the store is shutting down), or a job could not be run.
    Closed,
    /// A previous group commit failed in the database or its log (disk full, I/O error): the
    /// store takes no more writes until it is reopened (see
    /// [`Store::has_failed`](crate::Store::has_failed)). Nothing acknowledged is lost.
    Failed,
    /// The database server cannot be reached, or did not answer within its time bound (connect,
    /// statement or pool-wait timeout). Nothing was acknowledged; the engine reconnects by itself
    /// and the next request may succeed.
    Unavailable(Unavailable),
    /// This build cannot open the location (a PostgreSQL URL without the `postgres` feature).
    Unsupported(&'static str),
    /// `create_at` (or a restore) found a vault at a location that is not a directory (a
    /// PostgreSQL database, shown without its password).
    AlreadyExistsAt(Location),
    /// `open_at` found no vault at a location that is not a directory (a PostgreSQL database,
    /// shown without its password).
    NotFoundAt(Location),
    /// The database's schema was migrated by a newer cardvault (schema version shown): this build
    /// does not know its tables and refuses to touch them.
    NewerSchema(u32),
    /// A database URL this build cannot use; the text says which part (never its value).
    InvalidDatabaseUrl(&'static str),
    /// The committer's queue is full (`StoreOptions::max_queue` jobs waiting): the write was not
    /// queued. Back-pressure: try again shortly.
    Busy,
    /// The database holds fewer group commits than were acknowledged (`stored` < `expected`):
    /// its data file was truncated or damaged and sled recovered only a prefix of it. Restore
    /// from a backup.
    LostWrites {
        /// Group commits the database holds.
        stored: u64,
        /// Group commits acknowledged before the store was last closed (or later).
        expected: u64,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse(p) => write!(f, "vault is in use by another process: {}", p.display()),
            Self::AlreadyExists(p) => write!(f, "a vault already exists at {}", p.display()),
            Self::NotFound(p) => write!(f, "no vault at {}", p.display()),
            Self::NewerFormat(v) => write!(
                f,
                "vault store format {v} is newer than this build supports ({}); upgrade cardvault",
                crate::STORE_FORMAT_VERSION
            ),
            Self::NewerBackup(v) => write!(
                f,
                "backup file format {v} is newer than this build supports ({}); upgrade cardvault",
                crate::BACKUP_FORMAT_VERSION
            ),
            Self::BackupRunning => f.write_str("a backup of this vault is already running"),
            Self::Corrupt(what) => write!(f, "stored {what} is corrupt"),
            Self::Conflict(kind) => write!(f, "conditional write refused: {kind}"),
            Self::Db(e) => write!(f, "database error: {e}"),
            Self::Engine(e) => write!(f, "storage engine error: {e}"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Closed => f.write_str("store is closed"),
            Self::Failed => f.write_str(
                "the store stopped after a write failed (disk full or I/O error); restart once the cause is fixed",
            ),
            Self::Unavailable(why) => write!(f, "the database is unavailable: {why}"),
            Self::Unsupported(what) => write!(f, "not supported by this build: {what}"),
            Self::AlreadyExistsAt(at) => write!(f, "a vault already exists at {at}"),
            Self::NotFoundAt(at) => write!(f, "no vault at {at}"),
            Self::NewerSchema(v) => write!(
                f,
                "the database schema version {v} was written by a newer cardvault (this build knows up to {}); upgrade cardvault",
                crate::POSTGRES_SCHEMA_VERSION
            ),
            Self::InvalidDatabaseUrl(what) => write!(f, "invalid database URL: {what}"),
            Self::Busy => f.write_str("the store's write queue is full; try again shortly"),
            Self::LostWrites { stored, expected } => write!(
                f,
                "the database lost acknowledged writes (it holds {stored} group commits, {expected} were made): its data file was truncated or damaged; restore from a backup"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Db(e) => Some(&**e),
            Self::Engine(e) => Some(&**e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled's own text names a file offset and an empty backtrace: the operator needs to
            // know the files are damaged and what to do.
            sled::Error::Corruption { .. } => Self::Corrupt(Structure::SledFiles),
            e => Self::Db(std::sync::Arc::new(e)),
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Clone for StoreError {
    /// Group commits hand one outcome to many callers. `io::Error` is not `Clone`, so its copy
    /// keeps the kind and message.
    fn clone(&self) -> Self {
        match self {
            Self::InUse(p) => Self::InUse(p.clone()),
            Self::AlreadyExists(p) => Self::AlreadyExists(p.clone()),
            Self::NotFound(p) => Self::NotFound(p.clone()),
            Self::NewerFormat(v) => Self::NewerFormat(*v),
            Self::NewerBackup(v) => Self::NewerBackup(*v),
            Self::BackupRunning => Self::BackupRunning,
            Self::Corrupt(w) => Self::Corrupt(*w),
            Self::Conflict(k) => Self::Conflict(*k),
            Self::Db(e) => Self::Db(e.clone()),
            Self::Engine(e) => Self::Engine(e.clone()),
            Self::Io(e) => Self::Io(io::Error::new(e.kind(), e.to_string())),
            Self::Closed => Self::Closed,
            Self::Failed => Self::Failed,
            Self::Unavailable(u) => Self::Unavailable(*u),
            Self::Unsupported(w) => Self::Unsupported(w),
            Self::AlreadyExistsAt(at) => Self::AlreadyExistsAt(at.clone()),
            Self::NotFoundAt(at) => Self::NotFoundAt(at.clone()),
            Self::NewerSchema(v) => Self::NewerSchema(*v),
            Self::InvalidDatabaseUrl(w) => Self::InvalidDatabaseUrl(w),
            Self::Busy => Self::Busy,
            Self::LostWrites { stored, expected } => Self::LostWrites {
                stored: *stored,
                expected: *expected,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sled_corruption_names_the_damaged_files_not_sleds_internals() {
        let e = StoreError::from(sled::Error::Corruption { at: None, bt: () });
        assert!(
            matches!(e, StoreError::Corrupt(Structure::SledFiles)),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(message.contains("restore from a backup"), "{message}");
        assert!(!message.contains("backtrace"), "{message}");
    }
}
