//! The request contract over a real socket: bodies must be JSON objects (never read by position),
//! `card` takes no unknown fields, `Idempotency-Key` is one non-empty value, and backup paths
//! are checked before anything is written.

use vault_testkit::daemon::{SEED_003, TestDaemon, raw};

const KEY: &str = "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b";

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_array_is_never_read_as_an_object() {
    let d = TestDaemon::start().await;
    let card = r#"{"pan":"4242424242424242","expiration_date":"2802"}"#;
    let r = d
        .tokenize(&d.keys.tokenize, &format!(r#"["card",{card}]"#))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_fields(), pairs(&[("body", "invalid_type")]));
    let r = d
        .tokenize(
            &d.keys.tokenize,
            r#"{"type":"card","card":["4242424242424242","2802"]}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_fields(), pairs(&[("card", "invalid_type")]));
    let r = d
        .send(
            "POST",
            "/admin/merchants",
            Some(&d.keys.admin),
            Some(r#"[123456,"Array shop"]"#),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(d.vault.stats().records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_card_fields_are_refused_by_name() {
    let d = TestDaemon::start().await;
    let r = d
        .tokenize(
            &d.keys.tokenize,
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802","cvv":"123"}}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_fields(), pairs(&[("card.cvv", "unknown_field")]));
    assert!(!r.text().contains("123\""), "{}", r.text());
    // Unknown top-level fields stay ignored.
    let body =
        r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"note":"x"}"#;
    assert_eq!(d.tokenize(&d.keys.tokenize, body).await.status, 201);
}

async fn tokenize_with_headers(d: &TestDaemon, extra: &str) -> vault_testkit::daemon::Resp {
    let head = format!(
        "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        d.keys.tokenize,
        SEED_003.len()
    );
    raw(&d.sock, format!("{head}{SEED_003}").as_bytes())
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_repeated_idempotency_key_is_400() {
    let d = TestDaemon::start().await;
    for extra in [
        "Idempotency-Key: \r\n".to_owned(),
        format!("Idempotency-Key: \r\nIdempotency-Key: {KEY}\r\n"),
        format!("Idempotency-Key: {KEY}\r\nIdempotency-Key: \r\n"),
        format!("Idempotency-Key: {KEY}\r\nIdempotency-Key: {KEY}\r\n"),
    ] {
        let r = tokenize_with_headers(&d, &extra).await;
        assert_eq!(r.status, 400, "{extra:?}: {}", r.text());
        assert_eq!(r.error_fields()[0].0, "Idempotency-Key");
    }
    assert_eq!(d.vault.stats().records, 0, "nothing was stored");
    // One valid key: a retry is a replay, not a second card.
    let one = format!("Idempotency-Key: {KEY}\r\n");
    assert_eq!(tokenize_with_headers(&d, &one).await.status, 201);
    assert_eq!(tokenize_with_headers(&d, &one).await.status, 201);
    assert_eq!(d.vault.stats().records, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_paths_are_400_naming_the_problem() {
    let d = TestDaemon::start().await;
    let file = d.dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let missing = d.dir.path().join("no-such-dir").join("b.cvbk");
    let under_file = file.join("b.cvbk");
    let dot = format!("{}/new/.", d.dir.path().display());
    let dot_after_file = format!("{}/.", file.display());
    for (path, code) in [
        // `Path::file_name` skips a trailing `.`: still a directory, not a file.
        (dot.as_str(), "not_a_file"),
        (dot_after_file.as_str(), "not_a_file"),
        (missing.to_str().unwrap(), "missing_directory"),
        ("/tmp/a\\u0000b.cvbk", "invalid"),
        ("relative.cvbk", "relative"),
        ("", "required"),
        ("/", "not_a_file"),
        (under_file.to_str().unwrap(), "not_a_directory"),
        (file.to_str().unwrap(), "exists"),
        // A file system that takes no new files.
        ("/proc/b.cvbk", "cannot_create"),
    ] {
        let body = format!(r#"{{"path":"{path}"}}"#);
        let r = d
            .send("POST", "/admin/backup", Some(&d.keys.admin), Some(&body))
            .await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.error_fields(), pairs(&[("path", code)]), "{path}");
    }
    // The audit archive alike.
    let body = r#"{"before":"2099-01-01T00:00:00Z","path":"/proc/a.cvar"}"#;
    let r = d
        .send(
            "POST",
            "/admin/audit/archive",
            Some(&d.keys.admin),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_fields(), pairs(&[("path", "cannot_create")]));
    let ok = d.dir.path().join("b.cvbk");
    let body = format!(r#"{{"path":"{}"}}"#, ok.display());
    let r = d
        .send("POST", "/admin/backup", Some(&d.keys.admin), Some(&body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_path_is_not_a_token() {
    let d = TestDaemon::start().await;
    for method in ["GET", "PUT", "DELETE"] {
        let r = d
            .send(method, "/v2/tokens/batch", Some(&d.keys.tokenize), None)
            .await;
        assert_eq!(r.status, 405, "{method}: {}", r.text());
        assert_eq!(r.header("allow"), Some("POST"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_labels_are_counted_in_characters() {
    let d = TestDaemon::start().await;
    let name = "é".repeat(100);
    let body = format!(r#"{{"merchant_id":"4242","name":"{name}"}}"#);
    let r = d
        .send("POST", "/admin/merchants", Some(&d.keys.admin), Some(&body))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = format!(r#"{{"merchant_id":"4242","scopes":["tokenize"],"label":"{name}"}}"#);
    let r = d
        .send("POST", "/admin/apikeys", Some(&d.keys.admin), Some(&body))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = format!(r#"{{"merchant_id":"4243","name":"{name}é"}}"#);
    let r = d
        .send("POST", "/admin/merchants", Some(&d.keys.admin), Some(&body))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_authorization_or_content_type_headers_are_refused() {
    let d = TestDaemon::start().await;
    let body = SEED_003;
    let request = |headers: String| {
        format!(
            "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let send = |req: String| {
        let sock = d.sock.clone();
        async move { raw(&sock, req.as_bytes()).await.unwrap() }
    };
    let good = format!("Authorization: Bearer {}\r\n", d.keys.tokenize);
    let bad = "Authorization: Bearer cv_0000000000000000_0000\r\n";
    let json = "Content-Type: application/json\r\n";
    // The valid key first or second: neither is picked.
    for auth in [
        format!("{good}{bad}"),
        format!("{bad}{good}"),
        format!("{good}{good}"),
    ] {
        let r = send(request(format!("{auth}{json}"))).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    // Two Content-Types, JSON first or not: 415.
    for types in [
        format!("{json}Content-Type: text/plain\r\n"),
        format!("Content-Type: text/plain\r\n{json}"),
    ] {
        let r = send(request(format!("{good}{types}"))).await;
        assert_eq!(r.status, 415, "{}", r.text());
    }
    let r = send(request(format!("{good}{json}"))).await;
    assert_eq!(r.status, 201, "{}", r.text());
}
