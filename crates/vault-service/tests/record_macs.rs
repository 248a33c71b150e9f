//! Records that decide access (API keys, merchant passwords, terminals) carry a MAC bound to
//! their store key: a tampered one is refused, and records written before MACs are migrated once
//! at open (after which an unMAC'd record is refused).
#![cfg(test)]

mod common;

use std::path::Path;

use common::*;
use vault_service::{Actor, MerchantPassword, Scopes, TerminalId, VaultError};

/// Edits the raw value under `key` in the closed vault at `path`.
fn edit(path: &Path, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
    let db = open_sled(&path.join("sled"));
    let mut v = db.get(key).unwrap().expect("record present").to_vec();
    f(&mut v);
    db.insert(key, v).unwrap();
    db.flush().unwrap();
}

fn key_of(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(rest);
    k
}

#[test]
fn tampered_access_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let (v, clock) = new_vault(&path);
    let m = merchant(890490);
    v.add_merchant(m, "Shop").unwrap();
    let k = v
        .create_api_key(m, Scopes::parse("tokenize").unwrap(), "k")
        .unwrap();
    let pw = MerchantPassword::new("the-right-password".into()).unwrap();
    v.set_merchant_password(m, &pw).unwrap();
    v.add_terminal(m, TerminalId::parse("term-0001").unwrap())
        .unwrap();
    let id = hex::decode(&k.info.id).unwrap();
    v.flush().unwrap();
    drop(v);

    // Grant `reveal` to the tokenize-only key by setting its scope bit.
    edit(&path, &key_of(b'K', &id), |r| {
        let i = 1 + 3; // v (1 byte) + merchant 890490 as a 3-byte varint
        r[i] |= 2;
    });
    edit(&path, &key_of(b'P', &m.get().to_be_bytes()), |r| {
        let last = r.len() - 40;
        r[last] ^= 1;
    });
    edit(&path, &key_of(b'T', b"term-0001"), |r| r[1] ^= 1);

    let v = reopen(&path, clock);
    assert!(matches!(
        v.authenticate(k.expose()),
        Err(VaultError::Integrity)
    ));
    assert!(matches!(
        v.login(&Actor::local(), m, &pw),
        Err(VaultError::Integrity)
    ));
    assert!(matches!(
        v.terminal(&TerminalId::parse("term-0001").unwrap()),
        Err(VaultError::Integrity)
    ));
}

#[test]
fn records_from_before_macs_are_migrated_once_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let (v, clock) = new_vault(&path);
    let m = merchant(890490);
    v.add_merchant(m, "Shop").unwrap();
    let k = v
        .create_api_key(m, Scopes::parse("tokenize").unwrap(), "k")
        .unwrap();
    let id = hex::decode(&k.info.id).unwrap();
    v.flush().unwrap();
    drop(v);

    // Make it look like a vault written before MACs: version 1, no MAC, no marker.
    let to_v1 = |r: &mut Vec<u8>| {
        r.truncate(r.len() - 32);
        r[0] = 1;
    };
    edit(&path, &key_of(b'K', &id), to_v1);
    {
        let db = open_sled(&path.join("sled"));
        db.remove(b"~record-macs").unwrap();
        db.flush().unwrap();
    }
    // Opening migrates it: the key works, and the record now carries a MAC.
    let v = reopen(&path, clock.clone());
    let p = v.authenticate(k.expose()).unwrap();
    assert_eq!(p.merchant, m);
    drop(p);
    v.flush().unwrap();
    drop(v);
    {
        let db = open_sled(&path.join("sled"));
        let r = db.get(key_of(b'K', &id)).unwrap().unwrap();
        assert_eq!(r[0], 2);
        assert!(db.get(b"~record-macs").unwrap().is_some());
    }

    // A version-1 record written after the migration is refused, not migrated again.
    edit(&path, &key_of(b'K', &id), to_v1);
    let v = reopen(&path, clock);
    assert!(matches!(
        v.authenticate(k.expose()),
        Err(VaultError::Integrity)
    ));
}

/// A one-click mark lets a card be paid without a CVV: a mark moved to another token's key (or
/// altered) counts as absent, so the payment needs its CVV again.
#[test]
fn moved_one_click_marks_count_as_absent() {
    use vault_service::{
        CustomerId, Cvv, PaymentRequest, SessionKind, SessionOptions, TokenizeOptions,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let (v, clock) = new_vault(&path);
    let m = merchant(890490);
    v.add_merchant(m, "Shop").unwrap();
    let customer = CustomerId::parse("cust-1").unwrap();
    let pay_once = |v: &vault_service::Vault, pan: &str| {
        let token = v
            .tokenize(
                m,
                card(pan, "3001"),
                TokenizeOptions {
                    customer: Some(customer.clone()),
                    ..TokenizeOptions::default()
                },
            )
            .unwrap()
            .token;
        let s = v
            .create_session(
                &Actor::local(),
                m,
                SessionKind::Purchase,
                SessionOptions::default(),
            )
            .unwrap();
        let p = v
            .start_payment(
                &Actor::local(),
                &s.token,
                None,
                PaymentRequest {
                    merchant: Some(m),
                    card_token: Some(token),
                    customer: Some(customer.clone()),
                    cvv: Some(Cvv::parse("123").unwrap()),
                    one_click: true,
                    customer_ip: Some("203.0.113.9".parse().unwrap()),
                    payment_solution_id: Some(500),
                    ..PaymentRequest::default()
                },
            )
            .unwrap();
        assert!(
            v.report_payment(&Actor::local(), m, &p.id, true)
                .unwrap()
                .one_click_saved
        );
        token
    };
    let a = pay_once(&v, "4242424242424242");
    let b = pay_once(&v, "5555555555554444");
    assert!(v.is_one_click(m, &a).unwrap() && v.is_one_click(m, &b).unwrap());
    v.flush().unwrap();
    drop(v);

    // Swap the two marks' values: each now sits under the other token's key.
    {
        let db = open_sled(&path.join("sled"));
        let marks: Vec<(sled::IVec, sled::IVec)> =
            db.scan_prefix(b"O").map(|r| r.unwrap()).collect();
        assert_eq!(marks.len(), 2);
        db.insert(&marks[0].0, marks[1].1.clone()).unwrap();
        db.insert(&marks[1].0, marks[0].1.clone()).unwrap();
        db.flush().unwrap();
    }
    let v = reopen(&path, clock);
    assert!(!v.is_one_click(m, &a).unwrap());
    assert!(!v.is_one_click(m, &b).unwrap());
}
