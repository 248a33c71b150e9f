//! A vault in a PostgreSQL database needs the `postgres` feature. A build without it (the
//! library's default) refuses a database location with a clear `Unsupported`, before any key
//! work, and never shows the URL's password.
//!
//! `.ci/run` runs this test in such a build (`CARDVAULT_TEST_EXPECT_NO_POSTGRES=1 cargo test -p
//! cardvault --no-default-features --test no_postgres`): there it must find the feature absent.
//! In a build that has the feature (the workspace's own test run, where another crate's tests
//! turn it on) it has nothing to check and says so.
#![cfg(test)]

use cardvault::{DatabaseUrl, Location, StoreError, Vault, VaultError};
use vault_testkit::{
    clock::manual_clock,
    vault::{options, passphrase},
};

const PASSWORD: &str = "s3cr3t-db-pw";

#[test]
fn a_database_without_the_postgres_feature_is_unsupported() {
    let at = Location::Database(DatabaseUrl::new(format!(
        "postgres://vault:{PASSWORD}@127.0.0.1:5432/cardvault_location_test"
    )));
    if Vault::check_supported(&at).is_ok() {
        assert!(
            std::env::var_os("CARDVAULT_TEST_EXPECT_NO_POSTGRES").is_none(),
            "this build has the `postgres` feature, but the test was asked to check a build \
             without it"
        );
        eprintln!(
            "nothing to check: this build has the `postgres` feature (.ci/run runs this test \
             without it)"
        );
        return;
    }
    let key = passphrase("location test passphrase");
    let refusals = [
        Vault::check_supported(&at).unwrap_err(),
        Vault::create_at(&at, &key, options(manual_clock())).unwrap_err(),
        Vault::open_at(&at, &key, options(manual_clock())).unwrap_err(),
        Vault::restore_at(std::io::empty(), &at, |_| {}).unwrap_err(),
    ];
    for e in refusals {
        assert!(
            matches!(e, VaultError::Store(StoreError::Unsupported(_))),
            "{e:?}"
        );
        let shown = format!("{e} / {e:?}");
        assert!(shown.contains("not supported by this build"), "{shown}");
        assert!(shown.contains("PostgreSQL"), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    let e = Vault::open_at(&at, &key, options(manual_clock())).unwrap_err();
    assert!(e.to_string().contains("`postgres` feature"), "{e}");
}
