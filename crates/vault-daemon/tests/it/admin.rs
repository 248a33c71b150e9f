//! Admin and operations routes over a real Unix socket.

use serde_json::json;
use vault_testkit::daemon::{SEED_003, TestDaemon};

/// A whole-vault pass (here a rewrap held behind a commit) is answered when it is done, not 503
/// at the request timeout: `keys rewrap --retire` goes on to its retire, and the operator gets the
/// count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_longer_than_the_request_timeout_is_answered_when_done() {
    let d = TestDaemon::start_with(vault_daemon::DaemonConfig {
        request_timeout: std::time::Duration::from_millis(300),
        ..vault_daemon::DaemonConfig::default()
    })
    .await;
    let admin = Some(d.keys.admin.as_str());
    assert_eq!(d.tokenize(&d.keys.both, SEED_003).await.status, 201);
    assert_eq!(
        d.send("POST", "/admin/keys/rotate", admin, None)
            .await
            .status,
        200
    );
    let release = crate::idempotency::hold_token_commits(&d);
    let (r, ()) = tokio::join!(d.send("POST", "/admin/keys/rewrap", admin, None), async {
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
        release();
    });
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rewrapped"], 1);
}

/// A second backup while one runs is 409 `backup_in_progress`, not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_while_one_runs_is_409() {
    let d = TestDaemon::start().await;
    if d.home.database().is_some() {
        // The hold below stops a directory vault's committer, where a backup's steps run.
        eprintln!("skipped on PostgreSQL: the hold is a directory vault's");
        return;
    }
    let admin = Some(d.keys.admin.as_str());
    let body = |n: &str| format!(r#"{{"path":"{}"}}"#, d.dir.path().join(n).display());
    let (a, b) = (body("a.cvbk"), body("b.cvbk"));
    let release = crate::idempotency::hold_token_commits(&d);
    let (first, second, ()) = tokio::join!(
        d.send("POST", "/admin/backup", admin, Some(&a)),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            d.send("POST", "/admin/backup", admin, Some(&b)).await
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
            release();
        }
    );
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(second.status, 409, "{}", second.text());
    assert_eq!(
        second.error_fields()[0],
        ("path".to_owned(), "backup_in_progress".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let d = TestDaemon::start().await;
    let r = d.send("GET", "/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let token = d.tokenize(&d.keys.tokenize, SEED_003).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    d.send(
        "GET",
        &format!("/v2/tokens/{token}"),
        Some(&d.keys.tokenize),
        None,
    )
    .await;
    d.send("GET", "/nope", None, None).await;
    let r = d.send("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let m = r.text();
    for want in [
        r#"cardvault_http_requests_total{method="POST",route="/v2/tokens",status="201"} 1"#,
        r#"cardvault_http_requests_total{method="GET",route="/v2/tokens/{token}",status="200"} 1"#,
        r#"cardvault_http_requests_total{method="",route="unmatched",status="404"} 1"#,
        r#"cardvault_http_request_duration_seconds_bucket{method="POST",route="/v2/tokens",le="+Inf"} 1"#,
        "cardvault_tokens_stored 1",
        r#"cardvault_store_group_size_bucket{le="+Inf"}"#,
        "cardvault_store_group_size_count",
        "cardvault_store_races_total ",
        "cardvault_store_guarded_groups_total ",
        "cardvault_store_guard_misses_total ",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    assert!(!m.contains(&token) && !m.contains("4242"));
    assert_eq!(d.send("POST", "/health", None, None).await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchants_keys_and_terminals() {
    let d = TestDaemon::start().await;
    let admin = Some(d.keys.admin.as_str());
    let r = d
        .send(
            "POST",
            "/admin/merchants",
            admin,
            Some(r#"{"merchant_id":"123456","name":"Shop"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["merchant_id"], "123456");
    let r = d.send("GET", "/admin/merchants", admin, None).await;
    let ids: Vec<String> = r.json()["merchants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["merchant_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"123456".to_owned()) && ids.contains(&"890490".to_owned()));
    let r = d
        .send(
            "POST",
            "/admin/merchants",
            admin,
            Some(r#"{"merchant_id":"12x","name":5}"#),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_fields(), [("name".into(), "invalid_type".into())]);
    let r = d
        .send(
            "POST",
            "/admin/merchants",
            admin,
            Some(r#"{"merchant_id":"12x","name":"n"}"#),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_fields()[0].0, "merchant_id");

    // API keys: create, use, list, revoke.
    let r = d
        .send(
            "POST",
            "/admin/apikeys",
            admin,
            Some(r#"{"merchant_id":"123456","scopes":["tokenize"],"label":"web"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["api_key"]["scopes"], json!(["tokenize"]));
    assert_eq!(d.tokenize(&key, SEED_003).await.status, 201);
    let r = d
        .send("GET", "/admin/apikeys?merchant_id=123456", admin, None)
        .await;
    let keys = r.json()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert!(!r.text().contains(&key));
    // An Idempotency-Key on a key's creation is refused (its secret cannot be replayed), and
    // no key is made.
    let r = crate::idempotency::post(
        &d,
        "/admin/apikeys",
        &d.keys.admin,
        Some("6f7cd5a4-1c2b-4d3e-8f90-a1b2c3d4e5f6"),
        r#"{"merchant_id":"123456","scopes":["tokenize"]}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.error_fields()[0],
        ("Idempotency-Key".to_owned(), "unsupported".to_owned())
    );
    let r = d
        .send("GET", "/admin/apikeys?merchant_id=123456", admin, None)
        .await;
    assert_eq!(r.json()["api_keys"].as_array().unwrap().len(), 1);
    // A mistyped or repeated filter is refused, never read as "every merchant".
    for (query, field, code) in [
        ("merchant=123456", "query", "invalid"),
        (
            "merchant_id=123456&merchant_id=890490",
            "merchant_id",
            "duplicate",
        ),
    ] {
        let r = d
            .send("GET", &format!("/admin/apikeys?{query}"), admin, None)
            .await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert_eq!(
            r.error_fields()[0],
            (field.to_owned(), code.to_owned()),
            "{query}"
        );
    }
    // Routes that take no query parameters refuse any, as the ones above refuse unknown ones.
    for path in ["/admin/merchants", "/admin/keys", "/admin/stats"] {
        let r = d.send("GET", &format!("{path}?x=1"), admin, None).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(
            r.error_fields()[0],
            ("query".to_owned(), "invalid".to_owned())
        );
        assert_eq!(d.send("GET", path, admin, None).await.status, 200, "{path}");
    }
    let r = d
        .send("POST", &format!("/admin/apikeys/{id}/revoke"), admin, None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(d.tokenize(&key, SEED_003).await.status, 401);
    let r = d
        .send(
            "POST",
            "/admin/apikeys",
            admin,
            Some(r#"{"merchant_id":"123456","scopes":["root"]}"#),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_fields()[0].0, "scopes");
    let r = d
        .send("POST", "/admin/apikeys/zz/revoke", admin, None)
        .await;
    assert_eq!(r.status, 400);
    // An unknown key id: the 404 names the key, not a token.
    let r = d
        .send(
            "POST",
            "/admin/apikeys/0000000000000000/revoke",
            admin,
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_fields(), [("key_id".into(), "not_found".into())]);

    // Terminals.
    let r = d
        .send(
            "POST",
            "/admin/terminals",
            admin,
            Some(r#"{"merchant_id":"123456","terminal_id":"term-0001"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d
        .send("GET", "/admin/terminals?merchant_id=123456", admin, None)
        .await;
    assert_eq!(r.json()["terminals"][0]["terminal_id"], "term-0001");
    let r = d
        .send(
            "POST",
            "/admin/terminals",
            admin,
            Some(r#"{"merchant_id":"123456","terminal_id":"x"}"#),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_fields()[0].0, "terminal_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sweep_and_stats() {
    let d = TestDaemon::start().await;
    let admin = Some(d.keys.admin.as_str());
    let token = d.tokenize(&d.keys.both, SEED_003).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = d.send("GET", "/admin/keys", admin, None).await;
    assert_eq!(r.status, 200);
    let before = r.json()["current_dek"].as_u64().unwrap();
    let r = d.send("POST", "/admin/keys/rotate", admin, None).await;
    assert_eq!(r.status, 200);
    let after = r.json()["current_dek"].as_u64().unwrap();
    assert_ne!(before, after);
    let r = d.send("POST", "/admin/keys/rewrap", admin, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["rewrapped"], 1);
    let r = d.send("POST", "/admin/keys/retire", admin, None).await;
    assert_eq!(r.json()["retired"], json!([before]));
    let r = d.send("GET", "/admin/keys", admin, None).await;
    assert_eq!(r.json()["deks"].as_array().unwrap().len(), 1);
    // The token still reveals after rotation and rewrap.
    let r = d
        .send(
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            Some(&d.keys.both),
            None,
        )
        .await;
    assert_eq!(r.json()["pan"], "4242424242424242");
    // Sweep after the card's keep-until.
    d.clock
        .set(time::macros::datetime!(2028-03-01 00:00:01 UTC));
    let r = d.send("POST", "/admin/sweep", admin, None).await;
    assert_eq!(r.json()["removed"], 1);
    let r = d.send("GET", "/admin/stats", admin, None).await;
    assert_eq!(r.status, 200);
    let s = r.json();
    assert_eq!(s["records"], 0);
    assert!(s["groups"].as_u64().unwrap() >= 1);
    for path in ["/admin/keys", "/admin/stats"] {
        assert_eq!(
            d.send("GET", path, Some(&d.keys.both), None).await.status,
            403
        );
        assert_eq!(d.send("GET", path, None, None).await.status, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_password() {
    use vault_gateway::{GatewayError, LoginPolicy, MerchantPassword};
    use vault_service::{MerchantId, VaultError};

    let d = TestDaemon::start().await;
    d.vault.set_login_policy(LoginPolicy {
        memory_kib: 256,
        iterations: 1,
        ..LoginPolicy::default()
    });
    let admin = Some(d.keys.admin.as_str());
    let path = "/admin/merchants/890490/password";
    let secret = "u16q9rZ02bW0jqTjxH8t";
    let body = format!(r#"{{"password":"{secret}"}}"#);

    let r = d.send("POST", path, admin, Some(&body)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    let m = MerchantId::new(890_490).unwrap();
    let login = |p: &str| {
        d.vault
            .login(m, &MerchantPassword::new(p.to_owned()).unwrap())
            .map_err(|e| match e {
                GatewayError::Vault(e) => e,
                other => panic!("unexpected {other:?}"),
            })
    };
    assert!(login(secret).is_ok());
    assert!(matches!(login("nope"), Err(VaultError::Unauthorized)));

    // Replacing it.
    let r = d
        .send(
            "POST",
            path,
            admin,
            Some(r#"{"password":"second-password"}"#),
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(login("second-password").is_ok());
    assert!(matches!(login(secret), Err(VaultError::Unauthorized)));

    // Refusals name the field and never echo the password.
    let long = format!(r#"{{"password":"{}"}}"#, "p".repeat(65));
    for (p, b, field, code) in [
        (path, long.as_str(), "password", "too_long"),
        (path, r#"{"password":""}"#, "password", "required"),
        (path, r#"{}"#, "password", "required"),
        (path, r#"{"password":12}"#, "password", "invalid_type"),
        (path, r#"[1]"#, "body", "invalid_type"),
        (path, r#"{"password":"#, "body", "invalid_json"),
        (
            "/admin/merchants/999/password",
            body.as_str(),
            "merchantId",
            "unknown",
        ),
        (
            "/admin/merchants/12ab/password",
            body.as_str(),
            "merchantId",
            "invalid",
        ),
    ] {
        let r = d.send("POST", p, admin, Some(b)).await;
        assert_eq!(r.status, 400, "{b}: {}", r.text());
        let fields = r.error_fields();
        assert_eq!(fields[0].0, field, "{b}: {fields:?}");
        if field != "merchantId" || code == "unknown" {
            assert_eq!(fields[0].1, code, "{b}: {fields:?}");
        }
        assert!(!r.text().contains(secret) && !r.text().contains("ppppp"));
    }
    // Both refused at once: both named.
    let r = d
        .send("POST", "/admin/merchants/x/password", admin, Some("{}"))
        .await;
    let fields: Vec<String> = r.error_fields().into_iter().map(|f| f.0).collect();
    assert_eq!(fields, ["merchantId", "password"]);

    // Admin scope only; GET is 405.
    let tok = Some(d.keys.tokenize.as_str());
    assert_eq!(d.send("POST", path, tok, Some(&body)).await.status, 403);
    assert_eq!(d.send("POST", path, None, Some(&body)).await.status, 401);
    let r = d.send("GET", path, admin, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    // Still the second password: nothing refused above changed it.
    assert!(login("second-password").is_ok());

    let audit = d.vault.audit_tail(50).unwrap();
    let set = audit
        .iter()
        .filter(|e| e.action == vault_gateway::audit::ADMIN_MERCHANT_PASSWORD)
        .count();
    assert!(set >= 2, "{audit:?}");
}

#[tokio::test]
async fn admin_creates_honour_idempotency_keys() {
    let d = TestDaemon::start().await;
    let send = |key: Option<&'static str>, path: &'static str, body: &'static str| {
        let admin = d.keys.admin.clone();
        let sock = d.sock.clone();
        async move {
            let mut head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
            if let Some(k) = key {
                head.push_str(&format!("Idempotency-Key: {k}\r\n"));
            }
            head.push_str("\r\n");
            head.push_str(body);
            vault_testkit::daemon::raw(&sock, head.as_bytes())
                .await
                .unwrap()
        }
    };
    let merchant = r#"{"merchant_id":"424242","name":"Retry Shop"}"#;
    let key = Some("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d");
    let first = send(key, "/admin/merchants", merchant).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = send(key, "/admin/merchants", merchant).await;
    assert_eq!(again.status, 201, "a retry with the key is the same answer");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    // Without a key a second add is refused: the merchant exists.
    assert_eq!(send(None, "/admin/merchants", merchant).await.status, 400);
    let terminal = r#"{"merchant_id":"424242","terminal_id":"retry-0001"}"#;
    let key = Some("1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e");
    assert_eq!(send(key, "/admin/terminals", terminal).await.status, 201);
    let again = send(key, "/admin/terminals", terminal).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}
