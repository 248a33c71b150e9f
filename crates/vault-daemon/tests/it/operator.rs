//! Operator keys: admin routes need one; they act for no merchant.

use vault_testkit::daemon::{SEED_003, TestDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_an_operator_key_and_operators_cannot_tokenize() {
    let d = TestDaemon::start().await;
    // A merchant key (even one with every merchant scope) is refused on admin routes.
    let r = d
        .send("GET", "/admin/merchants", Some(&d.keys.both), None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.error_fields(),
        [("authorization".into(), "operator_key_required".into())]
    );
    let ok = d
        .send("GET", "/admin/merchants", Some(&d.keys.admin), None)
        .await;
    assert_eq!(ok.status, 200);
    // `admin` does not imply `tokenize`.
    let r = d.tokenize(&d.keys.admin, SEED_003).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.error_fields(),
        [("authorization".into(), "merchant_key_required".into())]
    );

    // Creating keys through the daemon.
    let r = d
        .send(
            "POST",
            "/admin/apikeys",
            Some(&d.keys.admin),
            Some(r#"{"merchant_id":"890490","scopes":["tokenize","admin"]}"#),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.error_fields(),
        [("scopes".into(), "admin_needs_operator".into())]
    );
    let r = d
        .send(
            "POST",
            "/admin/apikeys",
            Some(&d.keys.admin),
            Some(r#"{"operator":true,"scopes":["admin"],"label":"ops"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["api_key"]["kind"], "operator");
    assert!(v["api_key"].get("merchant_id").is_none());
    let new_key = v["key"].as_str().unwrap().to_owned();
    let list = d
        .send("GET", "/admin/apikeys", Some(&new_key), None)
        .await
        .json();
    let kinds: Vec<_> = list["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"operator".to_owned()) && kinds.contains(&"merchant".to_owned()));
    // An admin audit entry names no merchant, only the operator key.
    d.vault.barrier().unwrap();
    let tail = d.vault.audit_tail(1).unwrap();
    assert_eq!(tail[0].action.as_str(), "admin.apikey.create");
    assert_eq!(tail[0].actor.merchant, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_lockout_says_retry_after_and_an_operator_clears_it() {
    use vault_gateway::MerchantPassword;
    use vault_service::MerchantId;
    let d = TestDaemon::start().await;
    let m = MerchantId::new(890_490).unwrap();
    d.vault
        .set_merchant_password(
            m,
            &MerchantPassword::new("right-password-1".into()).unwrap(),
        )
        .unwrap();
    let ts = d.vault.now().unix_timestamp_nanos() / 1_000_000;
    let body = |pw: &str| {
        format!(
            "merchantId=890490&password={pw}&action=TOKENIZE&timestamp={ts}&allowOriginUrl=https%3A%2F%2Fshop.example"
        )
    };
    let sock = d.sock.clone();
    let login = |form: String| {
        let sock = sock.clone();
        async move {
            let req = format!(
                "POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            );
            vault_testkit::daemon::raw(&sock, req.as_bytes())
                .await
                .unwrap()
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(login(body("wrong-password")).await.status);
    }
    assert_eq!(statuses, [401; 5]);
    let r = login(body("right-password-1")).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);

    // Unlock through the daemon (operator key), then the right password works.
    let u = d
        .send(
            "POST",
            "/admin/merchants/890490/unlock",
            Some(&d.keys.admin),
            None,
        )
        .await;
    assert_eq!(u.status, 204, "{}", u.text());
    let r = login(body("right-password-1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A merchant key cannot unlock.
    let u = d
        .send(
            "POST",
            "/admin/merchants/890490/unlock",
            Some(&d.keys.both),
            None,
        )
        .await;
    assert_eq!(u.status, 403);
}
