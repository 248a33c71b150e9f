//! The engine conformance suite (`vault_store::conformance`) on the sled engine.

use std::path::PathBuf;

use vault_store::{Store, StoreOptions, conformance};
use vault_testkit::files::copy_dir_except;

/// Vaults in one temporary directory; a crash is a copy of a vault's directory taken while its
/// store is leaked (never closed), as the crash tests in `store.rs` do.
struct Sled {
    root: tempfile::TempDir,
    next: u32,
}

impl Sled {
    fn fresh(&mut self) -> PathBuf {
        self.next += 1;
        self.root.path().join(format!("vault-{}", self.next))
    }
}

impl conformance::Harness for Sled {
    fn create(&mut self, header: &[u8], options: StoreOptions) -> Store {
        Store::create(&self.fresh(), header, options).expect("create")
    }

    fn reopen(&mut self, store: Store, options: StoreOptions) -> Store {
        let dir = store.dir().to_path_buf();
        drop(store);
        Store::open(&dir, options).expect("reopen")
    }

    fn crash_and_reopen(&mut self, store: Store, options: StoreOptions) -> Store {
        let from = store.dir().to_path_buf();
        std::mem::forget(store);
        let to = self.fresh();
        copy_dir_except(&from, &to, Some("cardvault.lock"));
        Store::open(&to, options).expect("reopen after a crash")
    }
}

#[test]
fn the_sled_engine_passes_the_conformance_suite() {
    let mut sled = Sled {
        root: tempfile::tempdir().expect("tempdir"),
        next: 0,
    };
    conformance::run_all(&mut sled);
}

/// Negative controls: engines with one fault each fail the suite, so it is not vacuous.
mod faulty {
    use std::{panic, sync::Arc};

    use vault_store::{
        Engine, SledEngine, Store, StoreError, StoreOptions, conformance, engine::Group,
    };

    use crate::wrapped::{Twist, Wrapped};

    #[derive(Debug, Clone, Copy)]
    enum Fault {
        /// Range scans come back in descending order.
        Reversed,
        /// Commits report success and write nothing.
        Forgetful,
    }

    impl Twist for Fault {
        fn scan(&self, mut rows: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
            if matches!(self, Fault::Reversed) {
                rows.reverse();
            }
            rows
        }
        fn commit(&self, sled: &SledEngine, group: Group) -> Result<Vec<Vec<u8>>, StoreError> {
            match self {
                Fault::Forgetful => Ok(Vec::new()),
                Fault::Reversed => sled.commit(group),
            }
        }
    }

    struct Harness(tempfile::TempDir, u32, Fault);

    impl Harness {
        fn wrap(&self, engine: SledEngine, options: &StoreOptions) -> Store {
            Store::with_engine(Arc::new(Wrapped(engine, self.2)), options).expect("store")
        }
    }

    impl conformance::Harness for Harness {
        fn create(&mut self, header: &[u8], options: StoreOptions) -> Store {
            self.1 += 1;
            let dir = self.0.path().join(self.1.to_string());
            let engine = SledEngine::create(&dir, header, &options).expect("create");
            self.wrap(engine, &options)
        }
        fn reopen(&mut self, store: Store, options: StoreOptions) -> Store {
            let dir = store.dir().to_path_buf();
            drop(store);
            let engine = SledEngine::open(&dir, &options).expect("open");
            self.wrap(engine, &options)
        }
        fn crash_and_reopen(&mut self, store: Store, options: StoreOptions) -> Store {
            self.reopen(store, options)
        }
    }

    fn fails(fault: Fault, check: fn(&mut Harness)) -> bool {
        let mut h = Harness(tempfile::tempdir().expect("tempdir"), 0, fault);
        panic::catch_unwind(panic::AssertUnwindSafe(|| check(&mut h))).is_err()
    }

    #[test]
    fn an_engine_that_scans_out_of_order_fails() {
        assert!(fails(Fault::Reversed, conformance::ordering));
    }

    #[test]
    fn an_engine_that_forgets_commits_fails() {
        assert!(fails(Fault::Forgetful, conformance::operations));
        assert!(fails(Fault::Forgetful, conformance::group_counter));
    }
}
