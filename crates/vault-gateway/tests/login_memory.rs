//! Memory under a login flood: Argon2 buffers are pooled, so 100 failed logins at the default
//! cost (19 MiB per hash) keep the process's resident memory near `slots x 19 MiB`. A memory
//! bound, read from /proc/self/status (its own test binary, so no other test shares the
//! process).
#![cfg(test)]

mod common {
    //! The test helpers, from `vault-testkit`.
    #![allow(unused_imports)]
    pub(crate) use vault_testkit::{
        cards::{luhn_check_digit, random_pan},
        clock::T0,
        files::{copy_dir, open_sled, walk},
        scan::files_contain,
        vault::{card, merchant, new_vault, options, passphrase, reopen},
    };
}

use common::*;

/// The common test vault, with the gateway over it.
fn new_vault(dir: &std::path::Path) -> (Gateway, std::sync::Arc<vault_service::ManualClock>) {
    let (v, clock) = common::new_vault(dir);
    (Gateway::new(v), clock)
}

/// The common reopened vault, with the gateway over it.
#[allow(dead_code)]
fn reopen(dir: &std::path::Path, clock: std::sync::Arc<vault_service::ManualClock>) -> Gateway {
    Gateway::new(common::reopen(dir, clock))
}
use vault_gateway::{Gateway, GatewayError, LoginPolicy, MerchantPassword};
use vault_service::VaultError;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn a_hundred_failed_logins_stay_within_the_slot_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _clock) = new_vault(dir.path());
    let slots = 2;
    let policy = LoginPolicy {
        max_concurrent_hashes: slots,
        merchant_failures: 10_000,
        peer_failures: 10_000,
        ..LoginPolicy::default()
    };
    let per_hash_kib = u64::from(policy.memory_kib);
    vault.set_login_policy(policy);
    let m = merchant(890490);
    vault.add_merchant(m, "Shop").unwrap();
    vault
        .set_merchant_password(
            m,
            &MerchantPassword::new("the-right-password".into()).unwrap(),
        )
        .unwrap();
    let before = rss_kib();
    std::thread::scope(|s| {
        for t in 0..4 {
            let vault = &vault;
            s.spawn(move || {
                for i in 0..25 {
                    // Known and unknown merchants: both cost one hash.
                    let who = if i % 2 == 0 { m } else { merchant(1000 + t) };
                    let wrong = MerchantPassword::new(format!("wrong-{t}-{i}")).unwrap();
                    assert!(matches!(
                        vault.login(who, &wrong),
                        Err(GatewayError::Vault(VaultError::Unauthorized))
                    ));
                }
            });
        }
    });
    let after = rss_kib();
    let bound = slots as u64 * per_hash_kib + 32 * 1024;
    assert!(
        after.saturating_sub(before) <= bound,
        "RSS grew {} KiB (from {before} to {after}); bound {bound} KiB",
        after.saturating_sub(before)
    );
}
