//! The vault's public write seam, as the gateway uses it: a prepared tokenize, the caller's own
//! records, per-token marks and audit entries commit together or not at all.

use crate::common;

use common::*;
use vault_service::{Actor, AuditOutcome, TokenizeOptions, UpdateOptions, VaultError};

#[test]
fn a_job_commits_its_card_records_and_audit_entry_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _clock) = new_vault(&dir.path().join("v"));
    let m = merchant(890490);
    let before = v.audit_tail(100).unwrap().len();

    // Refused after staging everything: nothing of it is written.
    let prepared = v
        .prepare_tokenize(
            m,
            card("4242424242424242", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap();
    let r: Result<(), VaultError> = v.transact(move |txn| {
        let info = txn.commit_new(&prepared)?;
        txn.put(b"Zone", b"record".to_vec())?;
        let ok = AuditOutcome::Ok;
        txn.audit(
            &Actor::local(),
            vault_gateway::audit::CARD_CAPTURE,
            Some(&info.token),
            None,
            ok,
        )?;
        Err(VaultError::Forbidden)
    });
    assert!(matches!(r, Err(VaultError::Forbidden)));
    assert_eq!(v.read(b"Zone").unwrap(), None);
    assert_eq!(v.audit_tail(100).unwrap().len(), before);
    assert_eq!(v.stats().records, 0);

    // Accepted: all of it is.
    let prepared = v
        .prepare_tokenize(
            m,
            card("4242424242424242", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap();
    let token = v
        .transact(move |txn| -> Result<_, VaultError> {
            let info = txn.commit_new(&prepared)?;
            txn.put(b"Zone", b"record".to_vec())?;
            let ok = AuditOutcome::Ok;
            txn.audit(
                &Actor::local(),
                vault_gateway::audit::CARD_CAPTURE,
                Some(&info.token),
                None,
                ok,
            )?;
            Ok(info.token)
        })
        .unwrap();
    assert_eq!(v.read(b"Zone").unwrap(), Some(b"record".to_vec()));
    let log = v.audit_tail(100).unwrap();
    assert_eq!(log.len(), before + 1);
    assert_eq!(
        log.last().unwrap().action,
        vault_gateway::audit::CARD_CAPTURE
    );
    assert!(v.get(m, &token).is_ok());
}

#[test]
fn the_vault_keeps_its_own_prefixes_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _clock) = new_vault(&dir.path().join("v"));
    for key in [
        &b"A1"[..],
        b"a",
        b"K1",
        b"M1",
        b"I1",
        b"O1",
        b"~record-macs",
        b"R1",
        b"V",
    ] {
        let owned = key.to_vec();
        let r: Result<(), VaultError> = v.transact(move |txn| txn.put(&owned, vec![1]));
        assert!(r.is_err(), "{key:?}");
    }
}

#[test]
fn token_marks_go_with_the_card_behind_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _clock) = new_vault(&dir.path().join("v"));
    let m = merchant(890490);
    let mark = |v: &vault_service::Vault, t: vault_service::Token| {
        v.transact(move |txn| -> Result<(), VaultError> { txn.put_token_mark(&t, vec![2, 1]) })
            .unwrap();
    };
    let a = v
        .tokenize(
            m,
            card("4242424242424242", "3001"),
            TokenizeOptions::default(),
        )
        .unwrap()
        .token;
    mark(&v, a);
    assert_eq!(v.token_mark(m, &a).unwrap(), Some(vec![2, 1]));
    assert_eq!(
        v.token_mark(merchant(1), &a).unwrap(),
        None,
        "another merchant's"
    );

    // The same card again keeps the mark; another card clears it.
    let same = card("4242424242424242", "3001");
    v.update(m, &a, same, UpdateOptions::default()).unwrap();
    assert!(v.token_mark(m, &a).unwrap().is_some());
    let other = card("5555555555554444", "3001");
    v.update(m, &a, other, UpdateOptions::default()).unwrap();
    assert_eq!(v.token_mark(m, &a).unwrap(), None);

    // Deleting the token clears it too.
    mark(&v, a);
    v.delete(m, &a).unwrap();
    assert_eq!(v.token_mark(m, &a).unwrap(), None);
    let t = a;
    let r = v.transact(move |txn| txn.token_mark(&t)).unwrap();
    assert_eq!(r, None);
}
