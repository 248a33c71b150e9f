//! The engine conformance suite (`vault_store::conformance`) on the PostgreSQL engine, against the
//! test server (`CARDVAULT_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`):
//! every vault is a database of its own, dropped at the end.

use vault_store::{DatabaseUrl, Location, Store, StoreOptions, conformance};
use vault_testkit::postgres::TestDatabase;

/// Vaults in throw-away databases. A crash abandons the store without closing it (its committer,
/// engine and connections are leaked, as a killed process leaves them) and opens the database
/// anew, as another process would.
#[derive(Default)]
struct Postgres {
    databases: Vec<TestDatabase>,
}

impl conformance::Harness for Postgres {
    fn create(&mut self, header: &[u8], options: StoreOptions) -> Store {
        let db = TestDatabase::new();
        let location = Location::Database(DatabaseUrl::new(db.url()));
        self.databases.push(db);
        Store::create_at(&location, header, options).expect("create")
    }

    fn reopen(&mut self, store: Store, options: StoreOptions) -> Store {
        let location = store.location();
        drop(store);
        Store::open_at(&location, options).expect("reopen")
    }

    fn crash_and_reopen(&mut self, store: Store, options: StoreOptions) -> Store {
        let location = store.location();
        std::mem::forget(store);
        Store::open_at(&location, options).expect("reopen after a crash")
    }
}

#[test]
fn the_postgres_engine_passes_the_conformance_suite() {
    conformance::run_all(&mut Postgres::default());
}
