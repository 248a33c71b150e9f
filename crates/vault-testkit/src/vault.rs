//! A test vault: the fast test KDF, flushed (not synced) writes, a 16 MiB page cache, a manual
//! clock at [`T0`](crate::clock::T0).

use std::{path::Path, sync::Arc};

use vault_service::{
    Durability, Expiry, KdfParams, KeySource, Location, ManualClock, MerchantId, NewCard, Pan,
    Passphrase, Vault, VaultOptions,
};

use crate::clock::manual_clock;

/// The passphrase of [`new_vault`] and [`reopen`].
pub const PASSPHRASE: &str = "test passphrase";

/// A passphrase key source.
pub fn passphrase(s: &str) -> KeySource {
    KeySource::Passphrase(Passphrase::new(s.to_owned()).expect("a valid test passphrase"))
}

/// The test vault options on `clock`.
pub fn options(clock: Arc<ManualClock>) -> VaultOptions {
    VaultOptions {
        durability: Durability::Flush,
        kdf: KdfParams::insecure_for_tests(),
        clock,
        cache_capacity: 16 * 1024 * 1024,
    }
}

/// A new vault in `dir` (passphrase [`PASSPHRASE`]) and its clock.
pub fn new_vault(dir: &Path) -> (Vault, Arc<ManualClock>) {
    let clock = manual_clock();
    let v = Vault::create(dir, &passphrase(PASSPHRASE), options(clock.clone()))
        .expect("create the test vault");
    (v, clock)
}

/// The vault of [`new_vault`] opened again.
pub fn reopen(dir: &Path, clock: Arc<ManualClock>) -> Vault {
    Vault::open(dir, &passphrase(PASSPHRASE), options(clock)).expect("reopen the test vault")
}

/// A new vault at `location` (a directory, or a database: see `crate::engine`), passphrase
/// [`PASSPHRASE`], and its clock.
pub fn new_vault_at(location: &Location) -> (Vault, Arc<ManualClock>) {
    let clock = manual_clock();
    let v = Vault::create_at(location, &passphrase(PASSPHRASE), options(clock.clone()))
        .unwrap_or_else(|e| panic!("create the test vault at {location}: {e}"));
    (v, clock)
}

/// The vault of [`new_vault_at`] opened again.
pub fn reopen_at(location: &Location, clock: Arc<ManualClock>) -> Vault {
    Vault::open_at(location, &passphrase(PASSPHRASE), options(clock))
        .unwrap_or_else(|e| panic!("reopen the test vault at {location}: {e}"))
}

/// Merchant `n`.
pub fn merchant(n: u64) -> MerchantId {
    MerchantId::new(n).expect("a valid merchant id")
}

/// A card from a PAN and a `YYMM` expiry.
pub fn card(pan: &str, yymm: &str) -> NewCard {
    NewCard::new(
        Pan::parse(pan).expect("a valid test PAN"),
        Expiry::parse_yymm(yymm).expect("a valid test expiry"),
    )
}
