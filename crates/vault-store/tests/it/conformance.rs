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
