//! `vault-store`: cardvault's persistence, on [sled](https://docs.rs/sled/0.34.7) (one process
//! owns a vault directory) or on PostgreSQL (feature `postgres`: any number of daemons share one
//! database; [`Location::Database`], `PgEngine`).
//!
//! The store knows bytes and layouts, not HTTP and not cryptography. It offers:
//! - a vault at a [`Location`]: a data directory with a lock file, so only one process at a time
//!   can write it, or a PostgreSQL database written by several processes at once, each group one
//!   SQL transaction that checks the conditions its jobs read;
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
//!
//! # Layout
//!
//! The store is two halves joined by one trait, [`Engine`]:
//!
//! - **Engine-neutral, above the seam** (what the vault and the gateway use):
//!   - `store.rs`: [`Store`], the public face: typed reads of records, raw reads and scans of the
//!     other key spaces, [`Store::write`] / [`Store::submit`] for writes, counters. Built over any
//!     engine with [`Store::with_engine`]; [`Store::create`] / [`Store::open`] use sled,
//!     [`Store::create_at`] / [`Store::open_at`] pick the engine from the [`Location`].
//!   - `commit.rs`: the group committer (bounded queue, batching, one durable commit per group,
//!     answers after it) and [`WriteTx`], a job's view with read-your-writes, its conditional
//!     writes ([`WriteTx::put_if_absent`], [`WriteTx::compare_and_set`]) and the record count.
//!   - `keyspace.rs`: [`KeySpace`], the registry of every key prefix byte of every layer (a
//!     duplicate does not compile); `layout.rs`: the store's own keys.
//!   - `table.rs`: [`Table<K, V>`](Table), typed tables over a key space with the versioned codec
//!     ([`Versioned`], [`Codec`]) written once; `record.rs`: the token record's own codec.
//!   - `error.rs`: [`StoreError`] with typed [`Structure`] (what is corrupt) and [`ConflictKind`]
//!     (why a conditional write was refused).
//!   - `backup.rs`: consistent backups while writers go on (a capture of pre-images, `capture.rs`, kept by the
//!     committer, export in chunks through [`Engine::scan`]; or, for an engine other processes
//!     write too, one [`Engine::snapshot`]) and restore into a new sled vault or an empty
//!     PostgreSQL database ([`Store::restore_at`]).
//!   - `conformance.rs` (feature `conformance`): the suite every engine must pass.
//! - **The seam**: `engine.rs`, [`Engine`]: point reads ([`Engine::get`], [`Engine::point_get`]),
//!   ordered range scans ([`Engine::scan`]), one atomic durable commit per group
//!   ([`Engine::commit`] of an [`engine::Group`]: its writes, the group counter first, and the
//!   [`engine::Check`]s its conditional writes rest on), the key header, checkpoints and close.
//!   An engine with several writers (several daemons on one database, one SQL transaction per
//!   group) checks the conditions in the database and refuses with [`StoreError::Conflict`]
//!   ([`ConflictKind::Raced`]); it may also index keep-until ([`Engine::scan_expired`]).
//! - **The sled engine, below the seam**: `sled_engine.rs` (open, create, log replay,
//!   checkpoints, the key-by-key apply under the group lock), `wal.rs` (the write-ahead log),
//!   `header_file.rs` (the key header file), `generation.rs` (the group counter mirrored beside
//!   the database, to detect lost writes), `lock.rs` (one process per directory).
//! - **The PostgreSQL engine, below the seam** (feature `postgres`): `pg/`, `PgEngine`: a pool
//!   of tokio-postgres connections (rustls TLS) driven from the synchronous seam through a runtime
//!   of its own, one table per key space, per-writer counters, one pipelined transaction per
//!   group, versioned migrations; its URL parameters and time bounds are documented on the
//!   module (`pg/mod.rs`). `location.rs`: [`Location`], [`DatabaseUrl`] (never shows its
//!   password).
#![forbid(unsafe_code)]

mod backup;
mod capture;
mod commit;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod engine;
mod error;
mod generation;
mod header_file;
mod keyspace;
mod layout;
mod location;
mod lock;
mod options;
#[cfg(feature = "postgres")]
mod pg;
mod quiet_panic;
mod record;
mod sled_engine;
mod store;
mod table;
mod wal;

pub use backup::{BACKUP_MAGIC, BackupSummary, RestoreSummary};
pub use commit::{GuardedReads, WriteTx};
pub use engine::{Engine, ReadDone, RecordGuard, Snapshot};
pub use error::{BackupPart, ConflictKind, StoreError, Structure, Unavailable, WalPart};
pub use keyspace::{KeySpace, Owner};
pub use layout::{DedupeKey, LookupId};
pub use location::{DatabaseUrl, Location};
pub use options::{
    BACKUP_FORMAT_VERSION, DEFAULT_MAX_QUEUE, Durability, POSTGRES_SCHEMA_VERSION,
    STORE_FORMAT_VERSION, StoreOptions,
};
#[cfg(feature = "postgres")]
pub use pg::PgEngine;
pub use record::StoredRecord;
pub use sled_engine::SledEngine;
pub use store::{HeaderReader, Store, StoreStats};
pub use table::{Codec, Table, TableKey, Versioned};
