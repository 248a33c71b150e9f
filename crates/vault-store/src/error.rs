//! The store's error type.

use std::{fmt, io, path::PathBuf};

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
    /// Bytes on disk do not decode; `what` names the structure (never its content).
    Corrupt(&'static str),
    /// The underlying database failed (I/O, disk full, ...).
    Db(sled::Error),
    /// A file-system operation outside the database failed.
    Io(io::Error),
    /// The committer has stopped (the store is shutting down or a previous write failed hard).
    Closed,
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
            Self::Db(e) => write!(f, "database error: {e}"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Closed => f.write_str("store is closed"),
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
            Self::Db(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Db(e)
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Clone for StoreError {
    /// Group commits hand one outcome to many callers. `sled::Error` and `io::Error` are not
    /// `Clone`, so the copy keeps the kind and message.
    fn clone(&self) -> Self {
        match self {
            Self::InUse(p) => Self::InUse(p.clone()),
            Self::AlreadyExists(p) => Self::AlreadyExists(p.clone()),
            Self::NotFound(p) => Self::NotFound(p.clone()),
            Self::NewerFormat(v) => Self::NewerFormat(*v),
            Self::NewerBackup(v) => Self::NewerBackup(*v),
            Self::BackupRunning => Self::BackupRunning,
            Self::Corrupt(w) => Self::Corrupt(w),
            Self::Db(e) => Self::Io(io::Error::other(e.to_string())),
            Self::Io(e) => Self::Io(io::Error::new(e.kind(), e.to_string())),
            Self::Closed => Self::Closed,
            Self::Busy => Self::Busy,
            Self::LostWrites { stored, expected } => Self::LostWrites {
                stored: *stored,
                expected: *expected,
            },
        }
    }
}
