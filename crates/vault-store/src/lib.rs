//! `vault-store`: cardvault's persistence on [sled](https://docs.rs/sled/0.34.7).
//!
//! The store knows bytes and layouts, not HTTP and not cryptography. It offers:
//! - a data directory with a lock file, so only one process at a time can write a vault;
//! - one sled tree whose keys carry a one-byte prefix per kind (records, de-duplication index,
//!   counters), so that a token, its index entry and the counters always change together in one
//!   atomic `apply_batch`; the key header lives in its own atomically replaced file;
//! - a **group committer**: every write is a closure run on one committer thread, which gathers
//!   whatever closures are queued (a bounded queue: `StoreError::Busy` when full), makes their
//!   writes durable once for the whole group (by default one append to a write-ahead log and one
//!   `fdatasync`, `wal.rs`), applies them to sled, and only then answers the callers;
//! - a versioned, explicit byte layout for stored records ([`StoredRecord`]).
//!
//! See `docs/record-format.md` and `docs/durability.md` in the repository.
#![forbid(unsafe_code)]

mod backup;
mod commit;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod engine;
mod error;
mod generation;
mod header_file;
mod keyspace;
mod layout;
mod lock;
mod record;
mod sled_engine;
mod store;
mod table;
mod wal;

pub use backup::{BACKUP_FORMAT_VERSION, BACKUP_MAGIC, BackupSummary, RestoreSummary};
pub use commit::WriteTx;
pub use engine::Engine;
pub use error::{BackupPart, ConflictKind, StoreError, Structure, WalPart};
pub use keyspace::KeySpace;
pub use layout::{DedupeKey, LookupId};
pub use record::StoredRecord;
pub use store::{
    DEFAULT_MAX_QUEUE, Durability, STORE_FORMAT_VERSION, Store, StoreOptions, StoreStats,
};
pub use table::{Codec, Table, TableKey, Versioned};
