//! The daemon names the caller (merchant, API key id, socket peer uid) in audit entries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::MetadataExt;

use common::{SEED_003, TestDaemon};
use vault_service::AuditAction;

fn key_id(key: &str) -> String {
    key.split('_').nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_admin_and_failed_auth_name_the_caller() {
    let d = TestDaemon::start().await;
    let uid = std::fs::metadata(d.dir.path()).unwrap().uid();
    let before = d.vault.audit_tail(usize::MAX).unwrap().len();
    let token = d.tokenize(&d.keys.both, SEED_003).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v2/tokens/{token}/reveal");
    let r = d.send("POST", &path, Some(&d.keys.reveal), None).await;
    assert_eq!(r.status, 200);
    let bad = format!("cvk_{}_{}", key_id(&d.keys.reveal), "0".repeat(64));
    let r = d.send("POST", &path, Some(&bad), None).await;
    assert_eq!(r.status, 401);
    let r = d
        .send("POST", "/admin/keys/rotate", Some(&d.keys.admin), None)
        .await;
    assert_eq!(r.status, 200);

    let log = d.vault.audit_tail(usize::MAX).unwrap();
    let new = &log[before..];
    let actions: Vec<AuditAction> = new.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::Reveal,
            AuditAction::AuthFailed,
            AuditAction::KeyRotate
        ]
    );
    let reveal = &new[0];
    assert_eq!(reveal.actor.merchant.map(|m| m.get()), Some(890_490));
    assert_eq!(reveal.actor.key_id, Some(key_id(&d.keys.reveal)));
    assert_eq!(reveal.actor.peer_uid, Some(uid));
    assert_eq!(reveal.token.map(|t| t.to_string()), Some(token));
    assert_eq!(reveal.outcome.to_string(), "ok");
    assert_eq!(new[1].actor.key_id, Some(key_id(&d.keys.reveal)));
    assert_eq!(new[1].actor.merchant, None);
    assert_eq!(new[1].actor.peer_uid, Some(uid));
    assert_eq!(new[2].actor.key_id, Some(key_id(&d.keys.admin)));
    assert!(d.vault.audit_verify().unwrap().is_ok());
}
