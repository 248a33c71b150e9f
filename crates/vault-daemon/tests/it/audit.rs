//! The daemon names the caller (merchant, API key id, socket peer uid) in audit entries.

use std::os::unix::fs::MetadataExt;

use vault_service::AuditAction;
use vault_testkit::daemon::{SEED_003, TestDaemon};

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

/// A reveal refused for a missing scope, a malformed token or a bad body, and a card hand-over
/// refused for a missing scope or a malformed payment id, each leave a denied audit entry naming
/// the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reveals_are_audited() {
    let d = TestDaemon::start().await;
    let token = d.tokenize(&d.keys.both, SEED_003).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = d.vault.audit_tail(usize::MAX).unwrap().len();
    let path = format!("/v2/tokens/{token}/reveal");
    let r = d.send("POST", &path, Some(&d.keys.tokenize), None).await;
    assert_eq!(r.status, 403);
    let r = d
        .send(
            "POST",
            "/v2/tokens/not-a-token/reveal",
            Some(&d.keys.reveal),
            None,
        )
        .await;
    assert!(r.status == 404 || r.status == 400, "{}", r.status);
    let r = d
        .send(
            "POST",
            &path,
            Some(&d.keys.reveal),
            Some("{\"customer_id\":"),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = d
        .send("POST", "/payments/nope/card", Some(&d.keys.tokenize), None)
        .await;
    assert_eq!(r.status, 403);
    let r = d
        .send("POST", "/payments/nope/card", Some(&d.keys.reveal), None)
        .await;
    assert_eq!(r.status, 404);

    let log = d.vault.audit_tail(usize::MAX).unwrap();
    let new = &log[before..];
    let seen: Vec<(AuditAction, String, Option<String>, Option<String>)> = new
        .iter()
        .map(|e| {
            (
                e.action,
                e.outcome.to_string(),
                e.actor.key_id.clone(),
                e.token.map(|t| t.to_string()),
            )
        })
        .collect();
    let tk = Some(key_id(&d.keys.tokenize));
    let rv = Some(key_id(&d.keys.reveal));
    assert_eq!(
        seen,
        [
            (
                AuditAction::Reveal,
                "denied:missing_scope".into(),
                tk.clone(),
                Some(token.clone())
            ),
            (
                AuditAction::Reveal,
                "denied:invalid_target".into(),
                rv.clone(),
                None
            ),
            (
                AuditAction::Reveal,
                "denied:invalid_body".into(),
                rv.clone(),
                Some(token.clone())
            ),
            (
                vault_gateway::audit::PAYMENT_CARD,
                "denied:missing_scope".into(),
                tk,
                None
            ),
            (
                vault_gateway::audit::PAYMENT_CARD,
                "denied:invalid_target".into(),
                rv,
                None
            ),
        ]
    );
    assert!(
        new.iter()
            .all(|e| e.actor.merchant.map(|m| m.get()) == Some(890_490))
    );

    // An operator key (it acts for no merchant) asking for a card: refused, and the entry names
    // the operator key and the token.
    let r = d.send("POST", &path, Some(&d.keys.admin), None).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let log = d.vault.audit_tail(1).unwrap();
    let e = &log[0];
    assert_eq!(e.action, AuditAction::Reveal);
    assert_eq!(e.outcome.to_string(), "denied:missing_scope");
    assert_eq!(e.actor.key_id, Some(key_id(&d.keys.admin)), "{e:?}");
    assert_eq!(e.token.map(|t| t.to_string()), Some(token));
    assert!(d.vault.audit_verify().unwrap().is_ok());
}

/// `GET /admin/audit` pages through the log (admin scope only) and `POST /admin/audit/verify`
/// checks the chain, through the running daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_routes_read_and_verify_the_log() {
    let d = TestDaemon::start().await;
    for _ in 0..3 {
        let r = d
            .send("POST", "/admin/keys/rotate", Some(&d.keys.admin), None)
            .await;
        assert_eq!(r.status, 200);
    }
    let all = d.vault.audit_tail(usize::MAX).unwrap();
    let end = all.last().unwrap().seq;
    let r = d
        .send("GET", "/admin/audit?limit=2", Some(&d.keys.admin), None)
        .await;
    assert_eq!(r.status, 200);
    let page = r.json();
    let seqs: Vec<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [end - 1, end]);
    assert_eq!(page["entries"][1]["action"], "key.rotate");
    assert_eq!(page["entries"][1]["hash"], hex(&all.last().unwrap().hash));
    let after = format!("/admin/audit?after={}&limit=2", end - 3);
    let r = d.send("GET", &after, Some(&d.keys.admin), None).await;
    let seqs: Vec<u64> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [end - 2, end - 1]);
    let r = d
        .send("GET", "/admin/audit?limit=0", Some(&d.keys.admin), None)
        .await;
    assert_eq!(r.status, 400);
    let r = d
        .send("GET", "/admin/audit", Some(&d.keys.reveal), None)
        .await;
    assert_eq!(r.status, 403);
    let r = d
        .send(
            "POST",
            "/admin/audit/verify",
            Some(&d.keys.admin),
            Some("{}"),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["ok"], true);
    assert!(v["entries"].as_u64().unwrap() >= end);
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A flood of bad API keys from one socket peer adds one `auth.failed` entry per minute, each
/// carrying how many failures it stands for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_auth_flood_is_aggregated_per_peer_per_minute() {
    let d = TestDaemon::start().await;
    let before = d.vault.audit_tail(usize::MAX).unwrap().len();
    let bad = format!("cvk_{}_{}", key_id(&d.keys.reveal), "0".repeat(64));
    for _ in 0..1000 {
        let r = d.send("GET", "/v2/tokens/x", Some(&bad), None).await;
        assert_eq!(r.status, 401);
    }
    // The minute ends; the daemon's minute task (here called directly) writes the count.
    d.clock.advance(time::Duration::seconds(61));
    d.vault.flush_audit_counts();
    let log = d.vault.audit_tail(usize::MAX).unwrap();
    let failed: Vec<_> = log[before..]
        .iter()
        .filter(|e| e.action == AuditAction::AuthFailed)
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    let counts: Vec<&str> = failed
        .iter()
        .map(|e| e.detail.as_deref().unwrap())
        .collect();
    assert_eq!(counts, ["count=1", "count=999"]);
    assert!(failed.iter().all(|e| e.actor.peer_uid.is_some()));
    assert!(d.vault.audit_verify().unwrap().is_ok());
}

/// `POST /admin/audit/archive` moves the old blocks of the log (a directory vault's one chain, or
/// every chain of a vault on PostgreSQL) into a file while the daemon serves: the file verifies on its own, the log still verifies and keeps the entries
/// written after the cut. A path already there, a time that is not RFC 3339 and a key without
/// the `admin` scope are refused; with nothing old enough left it writes no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_archive_route_moves_old_entries_while_serving() {
    let d = TestDaemon::start().await;
    let rotate = async || {
        let r = d
            .send("POST", "/admin/keys/rotate", Some(&d.keys.admin), None)
            .await;
        assert_eq!(r.status, 200);
    };
    for _ in 0..4 {
        rotate().await;
    }
    d.clock.advance(time::Duration::hours(1));
    let cut = d
        .vault
        .vault()
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    d.clock.advance(time::Duration::minutes(1));
    rotate().await;
    let total = d.vault.audit_tail(usize::MAX).unwrap().len() as u64;

    let out = d.dir.path().join("audit-1.cva");
    let body = serde_json::json!({"before": cut, "path": out.to_str().unwrap()}).to_string();
    let archive = async |body: &str, key: &str| {
        d.send("POST", "/admin/audit/archive", Some(key), Some(body))
            .await
    };
    let r = archive(&body, &d.keys.admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json();
    let moved = a["entries"].as_u64().unwrap();
    assert!(moved >= 4, "{a}");
    assert_eq!(a["path"], out.to_str().unwrap());
    assert_eq!(a["more"], false);
    let chains = a["chains"].as_array().unwrap();
    let seq = |c: &serde_json::Value, f: &str| c[f].as_u64().unwrap();
    let shared = d.vault.vault().shared();
    if shared {
        // On PostgreSQL every process that opened the vault has a chain of its own, each named.
        assert!(chains.iter().all(|c| c["chain"].is_string()), "{a}");
    } else {
        assert_eq!(chains.len(), 1, "{a}");
        assert_eq!(chains[0]["chain"], serde_json::Value::Null);
    }
    let counted: u64 = chains
        .iter()
        .map(|c| seq(c, "last_seq") - seq(c, "first_seq") + 1)
        .sum();
    assert_eq!(counted, moved);
    assert_eq!(std::fs::metadata(&out).unwrap().mode() & 0o777, 0o600);
    let report = d
        .vault
        .vault()
        .audit_verify_archive(&std::fs::read(&out).unwrap());
    assert_eq!((report.first_bad, report.entries), (None, moved));
    // The log verifies from its anchor and keeps what came after the cut.
    assert!(d.vault.audit_verify().unwrap().is_ok());
    // Plus the archive's own entry, last.
    let left = d.vault.audit_tail(usize::MAX).unwrap();
    assert_eq!(left.len() as u64, total - moved + 1);
    if !shared {
        assert_eq!(left.first().unwrap().seq, moved + 1);
    }
    let last = &left[left.len() - 1];
    assert_eq!(last.action, AuditAction::AuditArchive);
    assert_eq!(
        last.detail.as_deref(),
        Some(format!("entries={moved}").as_str())
    );
    // Named: the operator key that archived, and its socket peer.
    assert!(
        last.actor.key_id.is_some() && last.actor.peer_uid.is_some(),
        "{:?}",
        last.actor
    );
    assert_eq!(left[left.len() - 2].action, AuditAction::KeyRotate);

    // The same path again: refused, the file untouched.
    let r = archive(&body, &d.keys.admin).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["code"], "exists");
    let bad_time = serde_json::json!({"before": "yesterday", "path": "/tmp/x.cva"}).to_string();
    let r = archive(&bad_time, &d.keys.admin).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["field"], "before");
    let r = archive(&body, &d.keys.reveal).await;
    assert_eq!(r.status, 403);
    // Nothing old enough is left: 200, no entries, no file.
    let out2 = d.dir.path().join("audit-2.cva");
    let body2 = serde_json::json!({"before": cut, "path": out2.to_str().unwrap()}).to_string();
    let r = archive(&body2, &d.keys.admin).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entries"], 0);
    assert!(!out2.exists());
}
