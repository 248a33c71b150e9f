//! Records that decide access (API keys, merchant passwords, terminals) carry a MAC bound to
//! their store key: a tampered one is refused, and records written before MACs are migrated once
//! at open (after which an unMAC'd record is refused).

use crate::common;

use std::path::Path;

use common::*;
use vault_gateway::TerminalId;
use vault_gateway::{Gateway, GatewayError, MerchantPassword};
use vault_service::{Scopes, VaultError};

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
    let v = Gateway::new(v);
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

    let v = Gateway::new(reopen(&path, clock));
    assert!(matches!(
        v.authenticate(k.expose()),
        Err(VaultError::Integrity)
    ));
    assert!(matches!(
        v.login(m, &pw),
        Err(GatewayError::Vault(VaultError::Integrity))
    ));
    assert!(matches!(
        v.terminal(&TerminalId::parse("term-0001").unwrap()),
        Err(GatewayError::Vault(VaultError::Integrity))
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
