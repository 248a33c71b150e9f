//! Merchants and API keys (scopes, revocation, persistence).

use crate::common;

use common::*;
use vault_service::{MerchantId, Scope, Scopes, VaultError};

#[test]
fn api_keys_authenticate_with_their_scopes_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let m = merchant(890490);
    vault.add_merchant(m, "Shop").unwrap();
    assert!(
        matches!(vault.add_merchant(m, "Again"), Err(VaultError::Invalid(f)) if f.code == "exists")
    );
    let key = vault
        .create_api_key(m, Scopes::parse("tokenize,reveal").unwrap(), "backend")
        .unwrap();
    assert!(key.expose().starts_with("cvk_"));
    assert!(
        !format!("{key:?}").contains(&key.expose()[21..]),
        "Debug shows the secret"
    );
    let p = vault.authenticate(key.expose()).unwrap();
    assert_eq!(p.merchant, m);
    assert!(p.require(Scope::Reveal).is_ok());
    assert!(matches!(
        p.require(Scope::Admin),
        Err(VaultError::Forbidden)
    ));

    // Wrong secret, malformed, unknown id: all the same error.
    let mut wrong = key.expose().to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    for bad in [
        wrong.as_str(),
        "",
        "cvk_",
        "Bearer x",
        "cvk_0000000000000000_00",
    ] {
        assert!(
            matches!(vault.authenticate(bad), Err(VaultError::Unauthorized)),
            "{bad:?}"
        );
    }
    let unknown = format!("cvk_{}_{}", "0123456789abcdef", "0".repeat(64));
    assert!(matches!(
        vault.authenticate(&unknown),
        Err(VaultError::Unauthorized)
    ));

    // Listed without the secret, persisted across restarts, revocable.
    let listed = vault.api_keys(Some(m)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scopes.to_string(), "tokenize,reveal");
    drop(vault);
    let vault = reopen(dir.path(), clock.clone());
    assert!(vault.authenticate(key.expose()).is_ok());
    vault.revoke_api_key(&listed[0].id).unwrap();
    assert!(matches!(
        vault.authenticate(key.expose()),
        Err(VaultError::Unauthorized)
    ));
    drop(vault);
    let vault = reopen(dir.path(), clock);
    assert!(matches!(
        vault.authenticate(key.expose()),
        Err(VaultError::Unauthorized)
    ));
    assert!(vault.api_keys(None).unwrap()[0].revoked);
}

#[test]
fn keys_need_an_existing_merchant() {
    // The terminals half of this test is vault-gateway's `terminals_need_an_existing_merchant`.
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let m = merchant(5);
    assert!(
        vault
            .create_api_key(m, Scopes::of(&[Scope::Tokenize]), "")
            .is_err()
    );
    vault.add_merchant(m, "Five").unwrap();
    // The largest id is the daemon's namespace for operator requests' idempotency keys.
    assert!(matches!(
        vault.add_merchant(MerchantId::LARGEST, "Nines"),
        Err(VaultError::Invalid(f)) if f.code == "reserved"
    ));
    assert!(Scopes::parse("").is_err());
    assert!(Scopes::parse("tokenize,root").is_err());
    assert_eq!(vault.merchants().unwrap().len(), 1);
}

#[test]
fn card_links_need_the_fingerprint_or_reveal_scope_and_masked_forms_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _clock) = new_vault(dir.path());
    let m = merchant(890490);
    vault.add_merchant(m, "Shop").unwrap();
    let auth = |scopes: &str| {
        let k = vault
            .create_api_key(m, Scopes::parse(scopes).unwrap(), "k")
            .unwrap();
        vault.authenticate(k.expose()).unwrap()
    };
    let tokenize = auth("tokenize");
    assert!(!tokenize.sees_card_links());
    assert!(auth("tokenize,fingerprint").sees_card_links());
    assert!(auth("reveal").sees_card_links());
    assert_eq!(
        Scopes::parse("fingerprint").unwrap().to_string(),
        "fingerprint"
    );

    // 10 distinct numbers with one masked form are admitted (repeats free), the 11th refused.
    let pans: Vec<vault_service::Pan> = (0..100_000u32)
        .map(|mid| format!("411111{mid:06}1111"))
        .filter_map(|p| vault_service::Pan::parse(&p).ok())
        .take(11)
        .collect();
    let guard = vault.as_actor(&vault_service::Actor::principal(&tokenize));
    for pan in &pans[..10] {
        guard.admit_card(&tokenize, pan).unwrap();
    }
    guard.admit_card(&tokenize, &pans[0]).unwrap();
    assert!(matches!(
        guard.admit_card(&tokenize, &pans[10]),
        Err(VaultError::TooManyCards { retry_after }) if retry_after.as_secs() >= 1
    ));
    vault.barrier().unwrap();
    let tail = vault.audit_tail(5).unwrap();
    assert!(
        tail.iter()
            .any(|e| e.action.as_str() == "tokenize.masked_form_limited")
    );
}

#[test]
fn operator_keys_belong_to_no_merchant_and_only_they_hold_admin() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _clock) = new_vault(dir.path());
    let m = merchant(890490);
    vault.add_merchant(m, "Shop").unwrap();
    assert!(matches!(
        vault.create_api_key(m, Scopes::parse("tokenize,admin").unwrap(), "k"),
        Err(VaultError::Invalid(f)) if f.code == "admin_needs_operator"
    ));
    assert!(matches!(
        vault.create_operator_key(Scopes::parse("admin,reveal").unwrap(), "k"),
        Err(VaultError::Invalid(f)) if f.code == "operator_scopes"
    ));
    let op = vault
        .create_operator_key(Scopes::parse("admin").unwrap(), "ops")
        .unwrap();
    assert_eq!(op.info.merchant, None);
    let actor = vault_service::Actor::local();
    match vault
        .as_actor(&actor)
        .authenticate_caller(op.expose())
        .unwrap()
    {
        vault_service::Caller::Operator(o) => {
            assert!(o.require(Scope::Admin).is_ok());
            // `admin` does not imply `tokenize` or `reveal`.
            assert!(o.require(Scope::Tokenize).is_err());
            assert!(o.require(Scope::Reveal).is_err());
        }
        other => panic!("{other:?}"),
    }
    // Not a merchant principal.
    assert!(matches!(
        vault.authenticate(op.expose()),
        Err(VaultError::Forbidden)
    ));
    let listed = vault.api_keys(None).unwrap();
    assert!(
        listed
            .iter()
            .any(|k| k.merchant.is_none() && k.id == op.info.id)
    );
    assert!(vault.api_keys(Some(m)).unwrap().is_empty());
}

#[test]
fn key_ids_are_case_insensitive_and_audited_lower_case() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _clock) = new_vault(dir.path());
    let m = merchant(890490);
    vault.add_merchant(m, "Shop").unwrap();
    let key = vault
        .create_api_key(m, Scopes::parse("tokenize").unwrap(), "k")
        .unwrap();
    let id = key.info.id.clone();
    // `cvk_` + upper-cased id + secret.
    let upper = format!("cvk_{}_{}", id.to_ascii_uppercase(), &key.expose()[21..]);
    assert_ne!(upper, key.expose());
    let p = vault.authenticate(&upper).unwrap();
    assert_eq!(p.key_id, id);
    // A failure with an upper-cased id is audited under the canonical id.
    let mut wrong = upper.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    assert!(vault.authenticate(&wrong).is_err());
    vault.barrier().unwrap();
    let tail = vault.audit_tail(1).unwrap();
    assert_eq!(tail[0].action.as_str(), "auth.failed");
    assert_eq!(tail[0].actor.key_id.as_deref(), Some(id.as_str()));
}
