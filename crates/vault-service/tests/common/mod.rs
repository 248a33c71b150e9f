//! Helpers shared by the Vault's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::{path::Path, sync::Arc};

use rand::RngExt;
use time::{OffsetDateTime, macros::datetime};
use vault_service::{
    Durability, Expiry, KdfParams, KeySource, ManualClock, MerchantId, NewCard, Pan, Passphrase,
    Vault, VaultOptions,
};

pub const T0: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

pub fn passphrase(s: &str) -> KeySource {
    KeySource::Passphrase(Passphrase::new(s.to_owned()).unwrap())
}

pub fn options(clock: Arc<ManualClock>) -> VaultOptions {
    VaultOptions {
        durability: Durability::Flush,
        kdf: KdfParams::insecure_for_tests(),
        clock,
        cache_capacity: 16 * 1024 * 1024,
    }
}

pub fn new_vault(dir: &Path) -> (Vault, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let v = Vault::create(dir, &passphrase("test passphrase"), options(clock.clone())).unwrap();
    (v, clock)
}

pub fn reopen(dir: &Path, clock: Arc<ManualClock>) -> Vault {
    Vault::open(dir, &passphrase("test passphrase"), options(clock)).unwrap()
}

pub fn merchant(n: u64) -> MerchantId {
    MerchantId::new(n).unwrap()
}

/// A random Luhn-valid PAN of `len` digits starting with `prefix`.
pub fn random_pan(rng: &mut impl rand::Rng, prefix: &str, len: usize) -> String {
    let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while d.len() < len - 1 {
        d.push(rng.random_range(0..10));
    }
    d.push(luhn_check_digit(&d));
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

pub fn luhn_check_digit(body: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &x) in body.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - sum % 10) % 10) as u8
}

pub fn card(pan: &str, yymm: &str) -> NewCard {
    NewCard::new(Pan::parse(pan).unwrap(), Expiry::parse_yymm(yymm).unwrap())
}

/// `sled::open`, retried while the dropped vault's sled threads still hold the file lock (as the
/// store itself does when it reopens).
pub fn open_sled(path: &Path) -> sled::Db {
    for _ in 0..500 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("sled: {e}"),
        }
    }
    panic!("sled lock still held after 5 s");
}
