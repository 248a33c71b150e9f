//! The Vault as a payment service links it: round trips, restarts, keys, isolation, expiry,
//! corruption, concurrency and rotation.

use crate::common;

use std::{collections::BTreeMap, thread};

use common::*;
use time::{Duration, macros::datetime};
use vault_service::{
    CustomerId, DekState, KeyError, Metadata, StoreError, Token, TokenizeOptions, TokenizeRequest,
    UpdateOptions, Vault, VaultError,
};

#[test]
fn tokenize_get_reveal_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(890490);
    let mut meta = BTreeMap::new();
    meta.insert(
        "description".to_owned(),
        "Card description - optional value".to_owned(),
    );
    let opts = TokenizeOptions {
        metadata: Metadata::new(meta.clone()).unwrap(),
        ..Default::default()
    };
    let info = vault
        .tokenize(m, card("4242424242424242", "2802"), opts)
        .unwrap();
    assert_eq!(info.token.to_string().len(), 48);
    assert!(
        info.token
            .to_string()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(info.masked_pan.as_str(), "424242****4242");
    assert_eq!(info.keep_until, datetime!(2028-03-01 00:00:00 UTC));
    assert_eq!(info.expiry.to_yymm(), "2802");

    let got = vault.get(m, &info.token).unwrap();
    assert_eq!(got.masked_pan, info.masked_pan);
    assert_eq!(got.metadata.entries(), &meta);
    assert_eq!(got.fingerprint, info.fingerprint);

    let card = vault.reveal(m, &info.token, None).unwrap();
    assert_eq!(card.pan.expose_digits(), "4242424242424242");
    assert_eq!(card.expiry.to_yymm(), "2802");
    assert!(!format!("{card:?}").contains("4242424242424242"));
}

#[test]
fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let mut rng = rand::rng();
    let mut cards = Vec::new();
    for _ in 0..200 {
        let pan = random_pan(&mut rng, "4", 16);
        let info = vault
            .tokenize(m, card(&pan, "3012"), TokenizeOptions::default())
            .unwrap();
        cards.push((info.token, pan));
    }
    let deleted = cards.pop().unwrap();
    vault.delete(m, &deleted.0).unwrap();
    let rotated = vault.rotate_key().unwrap();
    drop(vault);

    let vault = reopen(dir.path(), clock);
    for (token, pan) in &cards {
        assert_eq!(
            vault.reveal(m, token, None).unwrap().pan.expose_digits(),
            pan
        );
    }
    assert!(matches!(
        vault.get(m, &deleted.0),
        Err(VaultError::NotFound)
    ));
    assert_eq!(vault.stats().records, 199);
    assert_eq!(vault.stats().current_dek, rotated);
}

#[test]
fn wrong_key_is_reported_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(7);
    let t = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    drop(vault);
    let before = snapshot(dir.path());
    let err = Vault::open(
        dir.path(),
        &passphrase("not the passphrase"),
        options(clock.clone()),
    )
    .unwrap_err();
    assert!(
        matches!(err, VaultError::Key(KeyError::WrongKey)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "key error: wrong passphrase or key file for this vault"
    );
    assert_eq!(
        before,
        snapshot(dir.path()),
        "a failed open changed the data directory"
    );
    let vault = reopen(dir.path(), clock);
    assert_eq!(
        vault.reveal(m, &t, None).unwrap().pan.expose_digits(),
        "4111111111111111"
    );
}

fn snapshot(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        if entry.file_name().is_some_and(|n| n == "cardvault.lock") {
            continue;
        }
        out.insert(entry.display().to_string(), std::fs::read(&entry).unwrap());
    }
    out
}

#[test]
fn a_second_opener_is_refused_while_the_vault_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let err = Vault::open(
        dir.path(),
        &passphrase("test passphrase"),
        options(clock.clone()),
    )
    .unwrap_err();
    assert!(
        matches!(err, VaultError::Store(StoreError::InUse(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("in use"));
    drop(vault);
    reopen(dir.path(), clock);
}

#[test]
fn creating_over_an_existing_vault_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    drop(vault);
    let err = Vault::create(dir.path(), &passphrase("other"), options(clock)).unwrap_err();
    assert!(
        matches!(err, VaultError::Store(StoreError::AlreadyExists(_))),
        "{err:?}"
    );
}

#[test]
fn other_merchants_tokens_are_indistinguishable_from_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let (a, b) = (merchant(1), merchant(2));
    let t = vault
        .tokenize(
            a,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    let unknown = Token::mint(&mut rand::rng());
    for (m, tok) in [(b, t), (a, unknown)] {
        assert!(matches!(vault.get(m, &tok), Err(VaultError::NotFound)));
        assert!(matches!(
            vault.reveal(m, &tok, None),
            Err(VaultError::NotFound)
        ));
        assert!(matches!(vault.delete(m, &tok), Err(VaultError::NotFound)));
        let up = vault.update(
            m,
            &tok,
            card("5555555555554444", "3102"),
            UpdateOptions::default(),
        );
        assert!(matches!(up, Err(VaultError::NotFound)));
    }
    // Still there for its owner.
    assert!(vault.get(a, &t).is_ok());
}

#[test]
fn customer_binding_is_enforced_on_reveal() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(1);
    let alice = CustomerId::parse("alice").unwrap();
    let bob = CustomerId::parse("bob").unwrap();
    let opts = TokenizeOptions {
        customer: Some(alice.clone()),
        ..Default::default()
    };
    let t = vault
        .tokenize(m, card("4111111111111111", "3001"), opts)
        .unwrap()
        .token;
    assert!(matches!(
        vault.reveal(m, &t, Some(&bob)),
        Err(VaultError::CustomerMismatch)
    ));
    assert!(matches!(
        vault.reveal(m, &t, None),
        Err(VaultError::CustomerMismatch)
    ));
    assert_eq!(
        vault.reveal(m, &t, Some(&alice)).unwrap().customer,
        Some(alice.clone())
    );
    let unbound = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    assert!(matches!(
        vault.reveal(m, &unbound, Some(&alice)),
        Err(VaultError::CustomerMismatch)
    ));
}

#[test]
fn expired_tokens_vanish_at_once_and_the_sweep_reclaims_them() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let short = TokenizeOptions {
        keep_until: Some(T0 + Duration::days(1)),
        ..Default::default()
    };
    let t1 = vault
        .tokenize(m, card("4111111111111111", "3001"), short)
        .unwrap()
        .token;
    let t2 = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    clock.advance(Duration::days(1));
    assert!(matches!(vault.get(m, &t1), Err(VaultError::NotFound)));
    assert!(matches!(
        vault.reveal(m, &t1, None),
        Err(VaultError::NotFound)
    ));
    assert_eq!(vault.stats().records, 2);
    assert_eq!(vault.sweep_expired(vault.now()).unwrap(), 1);
    assert_eq!(vault.stats().records, 1);
    assert!(vault.get(m, &t2).is_ok());
    assert_eq!(vault.sweep_expired(vault.now()).unwrap(), 0);
}

#[test]
fn keep_until_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(1);
    // Exactly the card's own keep-until is allowed; one second later is not.
    let exact = TokenizeOptions {
        keep_until: Some(datetime!(2030-02-01 00:00:00 UTC)),
        ..Default::default()
    };
    assert!(
        vault
            .tokenize(m, card("4111111111111111", "3001"), exact)
            .is_ok()
    );
    let late = TokenizeOptions {
        keep_until: Some(datetime!(2030-02-01 00:00:01 UTC)),
        ..Default::default()
    };
    let err = vault
        .tokenize(m, card("4111111111111111", "3001"), late)
        .unwrap_err();
    assert!(
        matches!(err, VaultError::Invalid(ref f) if f.field == "keep_until"),
        "{err:?}"
    );
    let past = TokenizeOptions {
        keep_until: Some(T0 - Duration::seconds(1)),
        ..Default::default()
    };
    assert!(matches!(
        vault.tokenize(m, card("4111111111111111", "3001"), past),
        Err(VaultError::Invalid(_))
    ));
    let expired = vault
        .tokenize(
            m,
            card("4111111111111111", "2510"),
            TokenizeOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(expired, VaultError::Invalid(ref f) if f.field == "card.expiration_date"),
        "{expired:?}"
    );
}

#[test]
fn update_replaces_the_card_behind_the_same_token() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(1);
    let info = vault
        .tokenize(
            m,
            card("4111111111111111", "2802"),
            TokenizeOptions::default(),
        )
        .unwrap();
    let up = vault
        .update(
            m,
            &info.token,
            card("5555555555554444", "3112"),
            UpdateOptions::default(),
        )
        .unwrap();
    assert_eq!(up.token, info.token);
    assert_eq!(up.masked_pan.as_str(), "555555****4444");
    assert_eq!(up.keep_until, datetime!(2032-01-01 00:00:00 UTC));
    assert_eq!(up.created_at, info.created_at);
    assert_eq!(
        vault
            .reveal(m, &info.token, None)
            .unwrap()
            .pan
            .expose_digits(),
        "5555555555554444"
    );
}

#[test]
fn batch_commits_every_valid_item_and_reports_each_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let mut rng = rand::rng();
    let mut items = Vec::new();
    let mut pans = Vec::new();
    for i in 0..100 {
        let pan = random_pan(&mut rng, "5", 16);
        let yymm = if i == 50 { "2001" } else { "2905" };
        items.push(TokenizeRequest {
            card: card(&pan, yymm),
            options: TokenizeOptions::default(),
        });
        pans.push(pan);
    }
    let flushes_before = vault.stats().store.flushes;
    let results = vault.tokenize_batch(m, items).unwrap();
    assert_eq!(
        vault.stats().store.flushes - flushes_before,
        1,
        "a batch is one durable commit"
    );
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 99);
    assert!(
        matches!(&results[50], Err(VaultError::Invalid(f)) if f.field == "card.expiration_date")
    );
    let tokens: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|i| i.token))
        .collect();
    drop(vault);
    let vault = reopen(dir.path(), clock);
    for (tok, pan) in tokens.iter().zip(&pans) {
        if let Some(tok) = tok {
            assert_eq!(vault.reveal(m, tok, None).unwrap().pan.expose_digits(), pan);
        }
    }
    assert!(matches!(
        vault.tokenize_batch(m, Vec::new()),
        Err(VaultError::Invalid(_))
    ));
}

#[test]
fn concurrent_dedupe_of_one_card_yields_exactly_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(1);
    let customer = CustomerId::parse("cust-1").unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let vault = vault.clone();
            let customer = customer.clone();
            thread::spawn(move || {
                (0..25)
                    .map(|_| {
                        let opts = TokenizeOptions {
                            customer: Some(customer.clone()),
                            dedupe: true,
                            ..Default::default()
                        };
                        vault
                            .tokenize(m, card("4111111111111111", "3001"), opts)
                            .map(|i| i.token)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(results.len(), 200);
    let tokens: std::collections::HashSet<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(tokens.len(), 1, "dedupe produced {} tokens", tokens.len());
    assert_eq!(vault.stats().records, 1);
    // Another customer, or dedupe off, gets a new token.
    let other = TokenizeOptions {
        customer: Some(CustomerId::parse("cust-2").unwrap()),
        dedupe: true,
        ..Default::default()
    };
    let t2 = vault
        .tokenize(m, card("4111111111111111", "3001"), other)
        .unwrap()
        .token;
    assert!(!tokens.contains(&t2));
    // Another merchant never shares a token.
    let opts = TokenizeOptions {
        customer: Some(customer),
        dedupe: true,
        ..Default::default()
    };
    let t3 = vault
        .tokenize(merchant(2), card("4111111111111111", "3001"), opts)
        .unwrap();
    assert!(!t3.deduplicated);
}

#[test]
fn a_flipped_byte_in_one_record_is_an_integrity_error_for_that_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let a = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    let b = vault
        .tokenize(
            m,
            card("5555555555554444", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    drop(vault);
    {
        let db = open_sled(&dir.path().join("sled"));
        let mut flipped = 0;
        for item in db.scan_prefix(b"R") {
            let (k, v) = item.unwrap();
            if v[10..34] == a.as_bytes()[..] {
                let mut v = v.to_vec();
                let last = v.len() - 1;
                v[last] ^= 0x01;
                db.insert(k, v).unwrap();
                flipped += 1;
            }
        }
        assert_eq!(flipped, 1);
        db.flush().unwrap();
    }
    let vault = reopen(dir.path(), clock);
    assert!(matches!(vault.get(m, &a), Err(VaultError::Integrity)));
    assert!(matches!(
        vault.reveal(m, &a, None),
        Err(VaultError::Integrity)
    ));
    assert_eq!(
        vault.reveal(m, &b, None).unwrap().pan.expose_digits(),
        "5555555555554444"
    );
}

#[test]
fn rotation_then_rewrap_keeps_every_card_and_frees_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let mut rng = rand::rng();
    let mut cards = Vec::new();
    for _ in 0..300 {
        let pan = random_pan(&mut rng, "37", 15);
        cards.push((
            vault
                .tokenize(m, card(&pan, "2907"), TokenizeOptions::default())
                .unwrap()
                .token,
            pan,
        ));
    }
    let old = vault.stats().current_dek;
    let new = vault.rotate_key().unwrap();
    assert_ne!(old, new);
    assert!(
        vault
            .stats()
            .deks
            .iter()
            .any(|(id, s, _)| *id == old && *s == DekState::DecryptOnly)
    );
    // Nothing can be retired while old records use the old key.
    assert!(vault.retire_unused_keys().unwrap().is_empty());
    let mut seen = Vec::new();
    let report = vault.rewrap(|p| seen.push(p)).unwrap();
    assert_eq!(report.rewrapped, 300);
    assert_eq!(report.failed, 0);
    assert!(!seen.is_empty());
    assert_eq!(vault.retire_unused_keys().unwrap(), vec![old]);
    assert_eq!(vault.stats().deks.len(), 1);
    drop(vault);
    let vault = reopen(dir.path(), clock);
    for (t, pan) in &cards {
        assert_eq!(vault.reveal(m, t, None).unwrap().pan.expose_digits(), pan);
    }
}

#[test]
fn rekey_changes_the_passphrase_without_touching_records() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let t = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    vault
        .rekey(
            &passphrase("a brand new passphrase"),
            vault_service::KdfParams::insecure_for_tests(),
        )
        .unwrap();
    drop(vault);
    let err = Vault::open(
        dir.path(),
        &passphrase("test passphrase"),
        options(clock.clone()),
    )
    .unwrap_err();
    assert!(matches!(err, VaultError::Key(KeyError::WrongKey)));
    let vault = Vault::open(
        dir.path(),
        &passphrase("a brand new passphrase"),
        options(clock),
    )
    .unwrap();
    assert_eq!(
        vault.reveal(m, &t, None).unwrap().pan.expose_digits(),
        "4111111111111111"
    );
}

#[test]
fn retire_never_drops_a_key_rotated_out_during_its_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(1);
    let first = vault.stats().current_dek;
    // The scan finds no record at all; while it runs, a card is tokenized under the current key
    // and the key is rotated out. Retiring on the scan's word alone would drop the key that card
    // needs.
    let mut late = None;
    let retired = vault
        .retire_unused_keys_after_scan(|| {
            late = Some(
                vault
                    .tokenize(
                        m,
                        card("4111111111111111", "3001"),
                        TokenizeOptions::default(),
                    )
                    .unwrap()
                    .token,
            );
            vault.rotate_key().unwrap();
        })
        .unwrap();
    assert!(retired.is_empty(), "retired {retired:?}");
    assert!(vault.stats().deks.iter().any(|(id, _, _)| *id == first));
    let late = late.unwrap();
    assert_eq!(
        vault.reveal(m, &late, None).unwrap().pan.expose_digits(),
        "4111111111111111"
    );
    // Once a later scan has seen the card under the newer key, the old key goes.
    vault.rewrap(|_| {}).unwrap();
    assert_eq!(vault.retire_unused_keys().unwrap(), vec![first]);
    assert_eq!(
        vault.reveal(m, &late, None).unwrap().pan.expose_digits(),
        "4111111111111111"
    );
}

/// Makes the next key-header write fail: the header is replaced through `keyheader.tmp`, which
/// cannot be created while a non-empty directory of that name is in the way.
fn block_header_writes(dir: &std::path::Path) -> impl Drop {
    struct Unblock(std::path::PathBuf);
    impl Drop for Unblock {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).unwrap();
        }
    }
    let blocker = dir.join("keyheader.tmp");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("in-the-way"), b"x").unwrap();
    Unblock(blocker)
}

#[test]
fn a_failed_rekey_leaves_the_old_key_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let t = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    {
        let _blocked = block_header_writes(dir.path());
        vault
            .rekey(
                &passphrase("a brand new passphrase"),
                vault_service::KdfParams::insecure_for_tests(),
            )
            .unwrap_err();
    }
    // A failed commit stops the store until it is reopened (docs/durability.md), so nothing can
    // be wrapped under the new key-encrypting key: the old passphrase is the one in force.
    assert!(vault.rotate_key().is_err());
    drop(vault);
    let err = Vault::open(
        dir.path(),
        &passphrase("a brand new passphrase"),
        options(clock.clone()),
    )
    .unwrap_err();
    assert!(matches!(err, VaultError::Key(KeyError::WrongKey)));
    let vault = reopen(dir.path(), clock);
    assert_eq!(
        vault.reveal(m, &t, None).unwrap().pan.expose_digits(),
        "4111111111111111"
    );
}

#[test]
fn a_failed_retire_keeps_the_keys_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(1);
    let old = vault.stats().current_dek;
    vault.rotate_key().unwrap();
    {
        let _blocked = block_header_writes(dir.path());
        vault.retire_unused_keys().unwrap_err();
    }
    assert!(
        vault.stats().deks.iter().any(|(id, _, _)| *id == old),
        "a retirement that never reached the disk removed the key from memory"
    );
    // The store takes no more writes until reopened; after that, the retirement goes through.
    drop(vault);
    let vault = reopen(dir.path(), clock.clone());
    assert!(vault.stats().deks.iter().any(|(id, _, _)| *id == old));
    let t = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    assert_eq!(vault.retire_unused_keys().unwrap(), vec![old]);
    drop(vault);
    let vault = reopen(dir.path(), clock);
    assert_eq!(vault.stats().deks.len(), 1);
    assert_eq!(
        vault.reveal(m, &t, None).unwrap().pan.expose_digits(),
        "4111111111111111"
    );
}

#[test]
fn no_pan_appears_anywhere_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(1);
    let mut rng = rand::rng();
    let mut pans = Vec::new();
    let mut items = Vec::new();
    for i in 0..3000 {
        let pan = random_pan(&mut rng, if i % 2 == 0 { "4" } else { "51" }, 16);
        items.push(TokenizeRequest {
            card: card(&pan, "3001"),
            options: TokenizeOptions::default(),
        });
        pans.push(pan);
        if items.len() == 500 {
            vault.tokenize_batch(m, std::mem::take(&mut items)).unwrap();
        }
    }
    vault.flush().unwrap();
    drop(vault);
    let files: Vec<Vec<u8>> = walk(dir.path())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(files.iter().map(Vec::len).sum::<usize>() > 0);
    // Every 16-digit PAN as ASCII, and as packed BCD (8 bytes); one linear pass per file.
    let ascii: std::collections::HashSet<Vec<u8>> =
        pans.iter().map(|p| p.as_bytes().to_vec()).collect();
    let bcd: std::collections::HashSet<Vec<u8>> = pans
        .iter()
        .map(|p| {
            p.as_bytes()
                .chunks(2)
                .map(|c| ((c[0] - b'0') << 4) | (c[1] - b'0'))
                .collect()
        })
        .collect();
    for f in &files {
        assert!(
            !f.windows(16).any(|w| ascii.contains(w)),
            "a PAN appears in clear in the data directory"
        );
        assert!(
            !f.windows(8).any(|w| bcd.contains(w)),
            "a PAN appears as BCD in the data directory"
        );
    }
    // The scan itself can find a PAN: plant one and look again.
    let planted = [files[0].clone(), pans[17].as_bytes().to_vec()].concat();
    assert!(planted.windows(16).any(|w| ascii.contains(w)));
}

/// Regression: a write job used to hold the last reference to the store, so dropping the vault
/// right after a write could drop the store on the committer thread (which then tried to join
/// itself) and leave the directory locked.
#[test]
fn a_vault_reopens_immediately_after_its_last_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    drop(vault);
    for _ in 0..20 {
        let vault = reopen(dir.path(), clock.clone());
        // The job is still queued when the handle goes away: it must not keep the store alive.
        vault.tokenize_then(
            merchant(1),
            card("4111111111111111", "3001"),
            TokenizeOptions::default(),
            |r| {
                assert!(r.is_ok());
            },
        );
        drop(vault);
    }
    // Every queued write was completed (and made durable) before the store closed.
    assert_eq!(reopen(dir.path(), clock).stats().records, 20);
}
