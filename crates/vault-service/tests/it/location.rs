//! Where a vault lives (`Location`): `create_at` / `open_at` on a directory are `create` /
//! `open`; a database location never shows its password. (A build without the `postgres`
//! feature refusing a database: `tests/no_postgres.rs` at the repository root, which `.ci/run`
//! runs in such a build.)

use crate::common;

use common::{card, merchant, options, passphrase};
use vault_service::{
    DatabaseUrl, Health, KeyError, Location, StoreError, TokenizeOptions, Vault, VaultError,
};
use vault_testkit::clock::manual_clock;

const PASSWORD: &str = "s3cr3t-db-pw";

fn database() -> Location {
    Location::Database(DatabaseUrl::new(format!(
        "postgres://vault:{PASSWORD}@127.0.0.1:5432/cardvault_location_test"
    )))
}

#[test]
fn open_at_a_directory_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let at = Location::Dir(path.clone());
    let clock = manual_clock();
    let key = passphrase("location test passphrase");
    let m = merchant(890490);

    // Created through `create_at`, reopened through `open`: the same vault.
    let vault = Vault::create_at(&at, &key, options(clock.clone())).unwrap();
    assert!(matches!(vault.location(), Location::Dir(d) if *d == path));
    let info = vault
        .tokenize(
            m,
            card("4242424242424242", "2802"),
            TokenizeOptions::default(),
        )
        .unwrap();
    assert_eq!(
        format!("{vault:?}"),
        format!("Vault {{ location: {}, .. }}", path.display())
    );
    assert_eq!(vault.health(), Health::Ok);
    drop(vault);
    let vault = Vault::open(&path, &key, options(clock.clone())).unwrap();
    assert_eq!(vault.get(m, &info.token).unwrap().token, info.token);
    // While one handle holds it, `open_at` on the same directory is refused as `open` is.
    let held = Vault::open_at(&at, &key, options(clock.clone())).unwrap_err();
    assert!(
        matches!(held, VaultError::Store(StoreError::InUse(_))),
        "{held:?}"
    );
    drop(vault);

    // Created through `create`, reopened through `open_at`.
    let other = dir.path().join("other");
    let vault = Vault::create(&other, &key, options(clock.clone())).unwrap();
    let second = vault
        .tokenize(
            m,
            card("5555555555554444", "2802"),
            TokenizeOptions::default(),
        )
        .unwrap();
    drop(vault);
    let vault =
        Vault::open_at(&Location::Dir(other.clone()), &key, options(clock.clone())).unwrap();
    let shown = vault.reveal(m, &second.token, None).unwrap();
    assert_eq!(shown.pan.expose_digits(), "5555555555554444");
    drop(vault);

    // A wrong key through `open_at` is the same refusal as through `open`.
    let wrong = Vault::open_at(
        &Location::Dir(other),
        &passphrase("not the right passphrase"),
        options(clock),
    )
    .unwrap_err();
    assert!(
        matches!(wrong, VaultError::Key(KeyError::WrongKey)),
        "{wrong:?}"
    );

    // `create_at` refuses a directory that holds a vault, as `create` does.
    let again = Vault::create_at(&at, &key, options(manual_clock())).unwrap_err();
    assert!(
        matches!(again, VaultError::Store(StoreError::AlreadyExists(_))),
        "{again:?}"
    );
}

#[test]
fn a_database_location_never_shows_its_password() {
    let at = database();
    for shown in [format!("{at}"), format!("{at:?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(
            shown.contains("postgres://vault:***@127.0.0.1:5432/cardvault_location_test"),
            "{shown}"
        );
    }
}

#[test]
fn restore_at_a_directory_is_restore() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let key = passphrase("location test passphrase");
    let vault = Vault::create(dir.path().join("vault"), &key, options(clock.clone())).unwrap();
    let m = merchant(1);
    let info = vault
        .tokenize(
            m,
            card("4242424242424242", "2802"),
            TokenizeOptions::default(),
        )
        .unwrap();
    let file = dir.path().join("b.cvbk");
    vault.backup_to_file(&file, |_, _| {}).unwrap();
    drop(vault);
    let target = Location::Dir(dir.path().join("restored"));
    let r = Vault::restore_at(std::fs::File::open(&file).unwrap(), &target, |_| {}).unwrap();
    assert_eq!(r.records, 1);
    let restored = Vault::open_at(&target, &key, options(clock)).unwrap();
    assert_eq!(restored.get(m, &info.token).unwrap().token, info.token);
}
