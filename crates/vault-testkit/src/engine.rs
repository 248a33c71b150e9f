//! Which storage engine a test vault lives on: `CARDVAULT_TEST_ENGINE=sled` (the default: a
//! directory) or `CARDVAULT_TEST_ENGINE=postgres` (a fresh database on the test server of
//! [`crate::postgres`], dropped with the test). Any other value fails the test at once.
//!
//! Tests that are about the sled directory itself (files on disk, its lock, its write-ahead log)
//! say so with [`sled_only!`](crate::sled_only): on PostgreSQL they print why they do not apply
//! and return, so a skip is never silent.

use std::{io::Write, path::Path, sync::Arc};

use vault_service::{DatabaseUrl, Location, ManualClock, Vault};

use crate::postgres::TestDatabase;

/// The environment variable naming the engine.
pub const ENGINE_VAR: &str = "CARDVAULT_TEST_ENGINE";

/// A storage engine the tests can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A vault directory (sled and its write-ahead log).
    Sled,
    /// A PostgreSQL database on the test server (`CARDVAULT_TEST_PG_URL`).
    Postgres,
}

impl Engine {
    /// The engine `CARDVAULT_TEST_ENGINE` names; sled when it is unset or empty.
    ///
    /// # Panics
    ///
    /// On any other value than `sled` or `postgres` (or one that is not UTF-8).
    pub fn from_env() -> Self {
        match std::env::var(ENGINE_VAR) {
            Err(std::env::VarError::NotPresent) => Self::Sled,
            Ok(v) if v.is_empty() || v == "sled" => Self::Sled,
            Ok(v) if v == "postgres" => Self::Postgres,
            Ok(v) => {
                panic!("{ENGINE_VAR}={v:?} names no engine: use `sled` (default) or `postgres`")
            }
            Err(e) => panic!("{ENGINE_VAR} cannot be read ({e}): use `sled` or `postgres`"),
        }
    }

    /// `sled` or `postgres`, as `CARDVAULT_TEST_ENGINE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Postgres => "postgres",
        }
    }
}

/// Where a test vault lives on an engine: `dir/vault` on sled, a database of its own on
/// PostgreSQL (dropped with this value: keep it until the vault is closed).
#[derive(Debug)]
pub struct VaultHome {
    location: Location,
    database: Option<TestDatabase>,
}

impl VaultHome {
    /// A home for a vault on the engine of `CARDVAULT_TEST_ENGINE`; `dir` holds it on sled.
    ///
    /// # Panics
    ///
    /// On an unknown engine, or if the PostgreSQL test server cannot be reached.
    pub fn new(dir: &Path) -> Self {
        Self::on(Engine::from_env(), dir)
    }

    /// A home for a vault on `engine`; `dir` holds it on sled.
    ///
    /// # Panics
    ///
    /// If the PostgreSQL test server cannot be reached.
    pub fn on(engine: Engine, dir: &Path) -> Self {
        match engine {
            Engine::Sled => Self {
                location: Location::Dir(dir.join("vault")),
                database: None,
            },
            Engine::Postgres => {
                let db = TestDatabase::new();
                Self {
                    location: Location::Database(DatabaseUrl::new(db.url())),
                    database: Some(db),
                }
            }
        }
    }

    /// The vault's location (`Vault::create_at`, `Vault::open_at`).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The engine it is on.
    pub fn engine(&self) -> Engine {
        match self.database {
            Some(_) => Engine::Postgres,
            None => Engine::Sled,
        }
    }

    /// The database, on PostgreSQL.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }
}

/// Whether the calling test is skipped because it runs on PostgreSQL and is about the sled
/// directory; if so, says so on stderr with `reason` (written past the test harness's capture,
/// so the skip shows in every run). Use through [`sled_only!`](crate::sled_only).
pub fn skipped_on_postgres(reason: &str) -> bool {
    match Engine::from_env() {
        Engine::Sled => false,
        Engine::Postgres => {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("a test");
            // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED on {ENGINE_VAR}=postgres: {test}: sled only: {reason}"
            );
            true
        }
    }
}

/// Returns from the calling test (which returns `()`) when the tests run on PostgreSQL, after
/// printing `reason`: for a test about the sled directory (its files, lock, log or disk use).
///
/// ```ignore
/// vault_testkit::sled_only!("counts the files in the vault directory");
/// ```
#[macro_export]
macro_rules! sled_only {
    ($reason:expr) => {
        if $crate::engine::skipped_on_postgres($reason) {
            return;
        }
    };
}

/// Two daemons' vaults on one fresh test database, simulated in one process: `a` created the vault
/// with `passphrase`, `b` opened it, each with its own manual clock (both at
/// [`T0`](crate::clock::T0)), caches and in-flight state. The fields drop in order: the vaults
/// close before the database is dropped.
pub struct SharedVaults {
    /// The vault that created the database's vault.
    pub a: Vault,
    /// A second open of it.
    pub b: Vault,
    /// `a`'s clock.
    pub clock_a: Arc<ManualClock>,
    /// `b`'s clock.
    pub clock_b: Arc<ManualClock>,
    /// The database, dropped last.
    pub db: TestDatabase,
}

impl SharedVaults {
    /// Creates the database and both vaults on it.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or a vault does not open (a test set-up failure).
    pub fn new(passphrase: &str) -> Self {
        let db = TestDatabase::new();
        let location = Location::Database(DatabaseUrl::new(db.url()));
        let clock_a = crate::clock::manual_clock();
        let clock_b = crate::clock::manual_clock();
        let key = crate::vault::passphrase(passphrase);
        let a = Vault::create_at(&location, &key, crate::vault::options(clock_a.clone()))
            .expect("create the vault in the test database");
        let b = Vault::open_at(&location, &key, crate::vault::options(clock_b.clone()))
            .expect("open it a second time");
        assert!(a.shared() && b.shared());
        Self {
            a,
            b,
            clock_a,
            clock_b,
            db,
        }
    }
}
