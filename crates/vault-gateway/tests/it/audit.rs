//! The audit entries of the vault's and the gateway's actions, in one log: what is recorded, by
//! whom, with which outcome (moved from vault-service's audit tests with the terminals).

use vault_gateway::{Gateway, TerminalId};
use vault_service::{
    Actor, AuditAction, AuditOutcome, CustomerId, KdfParams, Scopes, TokenizeOptions, VaultError,
};
use vault_testkit::vault::{card, merchant, new_vault, passphrase};

#[test]
fn each_audited_action_is_recorded_with_actor_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(dir.path());
    let vault = Gateway::new(vault);
    let m = merchant(42);
    vault.add_merchant(m, "Shop").unwrap();
    let key = vault
        .create_api_key(m, Scopes::parse("reveal").unwrap(), "k")
        .unwrap();
    vault
        .add_terminal(m, TerminalId::parse("term-1").unwrap())
        .unwrap();
    let customer = CustomerId::parse("cust-1").unwrap();
    let t = vault
        .tokenize(
            m,
            card("4111111111111111", "3001"),
            TokenizeOptions {
                customer: Some(customer.clone()),
                ..Default::default()
            },
        )
        .unwrap()
        .token;
    let principal = vault.authenticate(key.expose()).unwrap();
    let actor = Actor::principal(&principal).with_peer_uid(Some(1000));
    vault
        .as_actor(&actor)
        .reveal(m, &t, Some(&customer))
        .unwrap();
    assert!(matches!(
        vault.as_actor(&actor).reveal(m, &t, None),
        Err(VaultError::CustomerMismatch)
    ));
    vault.reveal(m, &t, Some(&customer)).unwrap();
    assert!(matches!(
        vault.authenticate(&format!("cvk_{}_{}", key.info.id, "0".repeat(64))),
        Err(VaultError::Unauthorized)
    ));
    assert!(vault.authenticate("garbage").is_err());
    vault.revoke_api_key(&key.info.id).unwrap();
    vault.rotate_key().unwrap();
    vault.rewrap(|_| {}).unwrap();
    vault.retire_unused_keys().unwrap();
    clock.advance(time::Duration::days(3650));
    assert_eq!(vault.sweep_expired(vault.now()).unwrap(), 1);
    vault
        .rekey(
            &passphrase("another passphrase"),
            KdfParams::insecure_for_tests(),
        )
        .unwrap();
    assert!(vault.add_merchant(m, "Again").is_err());
    vault
        .as_actor(&actor)
        .audit(
            vault_gateway::audit::SESSION_CREATE,
            Some(&t),
            AuditOutcome::Ok,
        )
        .unwrap();

    let log = vault.audit_tail(100).unwrap();
    let got: Vec<(AuditAction, String, String)> = log
        .iter()
        .map(|e| (e.action, e.actor.to_string(), e.outcome.to_string()))
        .collect();
    let who = format!("merchant=42,key={},uid=1000", key.info.id);
    let want = vec![
        (AuditAction::AdminMerchantAdd, "local".into(), "ok".into()),
        (AuditAction::AdminApiKeyCreate, "local".into(), "ok".into()),
        (
            vault_gateway::audit::ADMIN_TERMINAL_ADD,
            "local".into(),
            "ok".into(),
        ),
        (AuditAction::Reveal, who.clone(), "ok".into()),
        (
            AuditAction::Reveal,
            who.clone(),
            "denied:customer_mismatch".into(),
        ),
        (AuditAction::Reveal, "local".into(), "ok".into()),
        (
            AuditAction::AuthFailed,
            format!("key={}", key.info.id),
            "denied:unauthorized".into(),
        ),
        // The second failed authentication, from the same peer within the minute, is only
        // counted (failed authentications are aggregated per peer per minute).
        (AuditAction::AdminApiKeyRevoke, "local".into(), "ok".into()),
        (AuditAction::KeyRotate, "local".into(), "ok".into()),
        (AuditAction::KeyRewrap, "local".into(), "ok".into()),
        (AuditAction::KeyRetire, "local".into(), "ok".into()),
        (AuditAction::Sweep, "local".into(), "ok".into()),
        (AuditAction::Rekey, "local".into(), "ok".into()),
        (
            AuditAction::AdminMerchantAdd,
            "local".into(),
            "denied:exists".into(),
        ),
        (vault_gateway::audit::SESSION_CREATE, who, "ok".into()),
    ];
    assert_eq!(got, want);
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>());
    assert_eq!(log[3].token, Some(t));
    assert_eq!(
        log[1].detail.as_deref().map(|d| d.contains(&key.info.id)),
        Some(true)
    );
    assert_eq!(log[6].detail.as_deref(), Some("count=1"));
    assert_eq!(log[11].detail.as_deref(), Some("removed=1"));
    assert!(log.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    assert_eq!(vault.audit_tail(2).unwrap().len(), 2);
    assert_eq!(vault.audit_tail(2).unwrap()[0].seq, 14);
    let report = vault.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 15);
}

#[test]
fn the_sessions_scope_is_named_and_listed_before_admin() {
    vault_gateway::register();
    let all = Scopes::parse("admin,sessions,fingerprint,reveal,tokenize").unwrap();
    assert_eq!(
        all.to_string(),
        "tokenize,reveal,fingerprint,sessions,admin"
    );
    assert_eq!(
        Scopes::parse("sessions").unwrap(),
        Scopes::of(&[vault_gateway::SESSIONS])
    );
    let Err(VaultError::Invalid(f)) = Scopes::parse("root") else {
        panic!("root is no scope");
    };
    assert_eq!(
        f.message,
        "scopes are tokenize, reveal, fingerprint, sessions, admin"
    );
}
