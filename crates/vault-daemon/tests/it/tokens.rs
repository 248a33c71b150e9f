//! The token routes over a real Unix socket: the token API example, every success and error status.

use serde_json::{Value, json};
use vault_testkit::daemon::{SEED_003, TestDaemon};

fn is_token(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 48
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_request_byte_for_byte() {
    let d = TestDaemon::start().await;
    let r = d.tokenize(&d.keys.tokenize, SEED_003).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(is_token(&v["token"]), "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["card"]["keep_until"], "2028-03-01T00:00:00Z");
    assert_eq!(v["card"]["masked_pan"], "424242****4242");
    assert_eq!(v["card"]["expiration_date"], "2802");
    assert_eq!(
        v["metadata"]["description"],
        "Card description - optional value"
    );
    assert!(!r.text().contains("4242424242424242"));

    // GET: the same shape, no PAN.
    let token = v["token"].as_str().unwrap();
    let g = d
        .send(
            "GET",
            &format!("/v2/tokens/{token}"),
            Some(&d.keys.tokenize),
            None,
        )
        .await;
    assert_eq!(g.status, 200);
    let gv = g.json();
    assert_eq!(gv["token"], v["token"]);
    assert_eq!(gv["status"], "approved");
    assert_eq!(gv["card"], v["card"]);
    assert!(gv.get("pan").is_none() && gv["card"].get("pan").is_none());
    assert!(!g.text().contains("4242424242424242"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_response_example_values() {
    let d = TestDaemon::start().await;
    let r = d
        .tokenize(
            &d.keys.tokenize,
            r#"{"type":"card","card":{"pan":"4111111111111111","expiration_date":"9602"}}"#,
        )
        .await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["card"]["keep_until"], "2096-03-01T00:00:00Z");
    assert_eq!(v["card"]["masked_pan"], "411111****1111");
    assert_eq!(v["card"]["expiration_date"], "9602");
    // A short PAN shows first four and last four; a 3-digit expiry had its leading zero dropped.
    let r = d
        .tokenize(
            &d.keys.tokenize,
            r#"{"type":"card","card":{"pan":"123456789007","expiration_date":"3012"}}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["card"]["masked_pan"], "1234****9007");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_scopes() {
    let d = TestDaemon::start().await;
    for key in [
        None,
        Some("cvk_nope"),
        Some(&*format!("{}x", &d.keys.tokenize)),
    ] {
        let r = d.send("POST", "/v2/tokens", key, Some(SEED_003)).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(r.json()["status"], "unauthorized");
        assert_eq!(r.error_fields()[0].0, "authorization");
    }
    // Not the Bearer scheme.
    let r = raw_with_auth(&d, &format!("Basic {}", d.keys.tokenize)).await;
    assert_eq!(r.status, 401);
    // Missing scope: 403.
    let r = d.tokenize(&d.keys.reveal, SEED_003).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.error_fields(),
        [("authorization".into(), "missing_scope".into())]
    );
    let token = d.tokenize(&d.keys.tokenize, SEED_003).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = d
        .send(
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            Some(&d.keys.tokenize),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    let r = d
        .send("GET", "/admin/merchants", Some(&d.keys.both), None)
        .await;
    assert_eq!(r.status, 403);
}

async fn raw_with_auth(d: &TestDaemon, auth: &str) -> vault_testkit::daemon::Resp {
    let req = format!(
        "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{SEED_003}",
        SEED_003.len()
    );
    vault_testkit::daemon::raw(&d.sock, req.as_bytes())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_unknown_deleted_and_malformed_tokens_are_the_same_404() {
    let d = TestDaemon::start().await;
    let mine = d.tokenize(&d.keys.both, SEED_003).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = d.tokenize(&d.keys.both, SEED_003).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = d
        .send(
            "DELETE",
            &format!("/v2/tokens/{deleted}"),
            Some(&d.keys.both),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let unknown = "00".repeat(24);
    let mut bodies = Vec::new();
    for (key, token) in [
        (&d.keys.other, mine.as_str()),
        (&d.keys.both, unknown.as_str()),
        (&d.keys.both, deleted.as_str()),
        (&d.keys.both, "not-a-token"),
        (&d.keys.both, &*mine.to_uppercase()),
    ] {
        let path = format!("/v2/tokens/{token}");
        for (method, body) in [
            ("GET", None),
            ("DELETE", None),
            (
                "PUT",
                Some(r#"{"card":{"pan":"4242424242424242","expiration_date":"2802"}}"#),
            ),
        ] {
            let r = d.send(method, &path, Some(key), body).await;
            assert_eq!(r.status, 404, "{method} {token}: {}", r.text());
            bodies.push(r.body);
        }
        let r = d
            .send("POST", &format!("{path}/reveal"), Some(key), None)
            .await;
        assert_eq!(r.status, 404);
        bodies.push(r.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "404 bodies differ");
    // The owner still sees its token.
    let r = d
        .send(
            "GET",
            &format!("/v2/tokens/{mine}"),
            Some(&d.keys.both),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_field_is_named() {
    let d = TestDaemon::start().await;
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            r#"{"type":"card","card":{"pan":"4242424242424241","expiration_date":"2813"}}"#,
            &[
                ("card.pan", "luhn_check_failed"),
                ("card.expiration_date", "invalid_month"),
            ],
        ),
        (
            r#"{"type":"card","card":{"pan":"42424242","expiration_date":"2401"}}"#,
            &[
                ("card.pan", "too_short"),
                ("card.expiration_date", "expired"),
            ],
        ),
        (
            r#"{"type":"card","card":{"pan":"4242-4242-4242-4242","expiration_date":"28/02"}}"#,
            &[
                ("card.pan", "not_digits"),
                ("card.expiration_date", "invalid_format"),
            ],
        ),
        (
            r#"{"type":"bank","card":{"pan":"4242424242424242","expiration_date":"2802"}}"#,
            &[("type", "unsupported")],
        ),
        (
            r#"{"card":{"pan":"4242424242424242","expiration_date":"2802"}}"#,
            &[("type", "required")],
        ),
        (r#"{"type":"card"}"#, &[("card", "required")]),
        (
            r#"{"type":"card","card":"4242424242424242"}"#,
            &[("card", "invalid_type")],
        ),
        (
            r#"{"type":"card","card":{"pan":4242424242424242,"expiration_date":2802}}"#,
            &[
                ("card.pan", "invalid_type"),
                ("card.expiration_date", "invalid_type"),
            ],
        ),
        (
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"a":{"b":1}},"customer_id":7,"keep_until":"soon","dedupe":1}"#,
            &[
                ("metadata", "invalid_type"),
                ("customer_id", "invalid_type"),
                ("keep_until", "invalid_format"),
                ("dedupe", "invalid_type"),
            ],
        ),
        (
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"keep_until":"2029-01-01T00:00:00Z"}"#,
            &[("keep_until", "after_card_expiry")],
        ),
        (
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"customer_id":"has space"}"#,
            &[("customer_id", "invalid")],
        ),
        ("", &[("body", "required")]),
        ("[]", &[("body", "invalid_type")]),
        (
            r#"{"type":"card","card":{"pan":"4242424242424242""#,
            &[("body", "invalid_json")],
        ),
        (
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"n":1e999}}"#,
            &[("body", "invalid_json")],
        ),
    ];
    for (body, want) in cases {
        let r = d.tokenize(&d.keys.tokenize, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["status"], "invalid-request");
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, c)| ((*f).into(), (*c).into()))
            .collect();
        assert_eq!(r.error_fields(), want, "{body}");
        assert!(
            !r.text().contains("4242424242"),
            "card digits echoed: {}",
            r.text()
        );
    }
    // Invalid UTF-8 inside a string.
    let mut body = br#"{"type":"card","card":{"pan":"42424242424242"#.to_vec();
    body.extend_from_slice(b"\xff\xfe");
    body.extend_from_slice(br#"","expiration_date":"2802"}}"#);
    let mut req = format!(
        "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        d.keys.tokenize,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = vault_testkit::daemon::raw(&d.sock, &req).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.error_fields(), [("body".into(), "invalid_utf8".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_media_type_route_and_method_errors() {
    let d = TestDaemon::start().await;
    // 413: over 1 MiB.
    let big = format!(
        r#"{{"type":"card","card":{{"pan":"4242424242424242","expiration_date":"2802"}},"metadata":{{"x":"{}"}}}}"#,
        "a".repeat(1 << 20)
    );
    let r = d.tokenize(&d.keys.tokenize, &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["status"], "payload-too-large");
    // 413 on a chunked body without Content-Length.
    let chunk = "b".repeat(300_000);
    let mut req = format!(
        "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        d.keys.tokenize
    );
    for _ in 0..5 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let r = vault_testkit::daemon::raw(&d.sock, req.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    // 415.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let req = format!(
            "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{SEED_003}",
            d.keys.tokenize,
            SEED_003.len()
        );
        let r = vault_testkit::daemon::raw(&d.sock, req.as_bytes())
            .await
            .unwrap();
        assert_eq!(r.status, 415);
        assert_eq!(r.json()["status"], "unsupported-media-type");
    }
    let req = format!(
        "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{SEED_003}",
        d.keys.tokenize,
        SEED_003.len()
    );
    assert_eq!(
        vault_testkit::daemon::raw(&d.sock, req.as_bytes())
            .await
            .unwrap()
            .status,
        415
    );
    // 404 unknown route, 405 wrong method.
    let r = d
        .send("GET", "/v3/tokens", Some(&d.keys.tokenize), None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["status"], "not-found");
    let r = d
        .send("GET", "/v2/tokens", Some(&d.keys.tokenize), None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json()["status"], "method-not-allowed");
    let r = d
        .send(
            "PATCH",
            &format!("/v2/tokens/{}", "ab".repeat(24)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, PUT, DELETE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_delete_and_reveal() {
    let d = TestDaemon::start().await;
    let v = d.tokenize(&d.keys.both, SEED_003).await.json();
    let token = v["token"].as_str().unwrap().to_owned();
    let path = format!("/v2/tokens/{token}");

    // Reveal an unbound token: empty body, or {}.
    for body in [None, Some("{}")] {
        let r = d
            .send(
                "POST",
                &format!("{path}/reveal"),
                Some(&d.keys.reveal),
                body,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let rv = r.json();
        assert_eq!(rv["pan"], "4242424242424242");
        assert_eq!(rv["expiration_date"], "2802");
        assert_eq!(rv["masked_pan"], "424242****4242");
        assert_eq!(rv["token"], token.as_str());
    }
    // A customer presented for an unbound token is a mismatch.
    let r = d
        .send(
            "POST",
            &format!("{path}/reveal"),
            Some(&d.keys.reveal),
            Some(r#"{"customer_id":"c-1"}"#),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.error_fields(),
        [("customer_id".into(), "customer_mismatch".into())]
    );

    // Update: same token, new card, metadata kept.
    let r = d
        .send(
            "PUT",
            &path,
            Some(&d.keys.tokenize),
            Some(r#"{"card":{"pan":"5555555555554444","expiration_date":"3011","cardholder_name":"Ada Lovelace"}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let u = r.json();
    assert_eq!(u["token"], token.as_str());
    assert_eq!(u["card"]["masked_pan"], "555555****4444");
    assert_eq!(u["card"]["keep_until"], "2030-12-01T00:00:00Z");
    assert_eq!(u["card"]["brand"], "mastercard");
    assert_eq!(
        u["metadata"]["description"],
        "Card description - optional value"
    );
    let r = d
        .send(
            "POST",
            &format!("{path}/reveal"),
            Some(&d.keys.reveal),
            None,
        )
        .await;
    let rv = r.json();
    assert_eq!(rv["pan"], "5555555555554444");
    assert_eq!(rv["cardholder_name"], "Ada Lovelace");
    // Invalid update names its fields.
    let r = d
        .send(
            "PUT",
            &path,
            Some(&d.keys.tokenize),
            Some(r#"{"card":{"pan":"1","expiration_date":"9913"}}"#),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error_fields(),
        [
            ("card.pan".into(), "too_short".into()),
            ("card.expiration_date".into(), "invalid_month".into())
        ]
    );

    // Delete: 204, then gone for good.
    let r = d.send("DELETE", &path, Some(&d.keys.tokenize), None).await;
    assert_eq!(r.status, 204);
    for (m, p) in [
        ("GET", path.clone()),
        ("DELETE", path.clone()),
        ("POST", format!("{path}/reveal")),
    ] {
        assert_eq!(d.send(m, &p, Some(&d.keys.both), None).await.status, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_binding_on_reveal() {
    let d = TestDaemon::start().await;
    let body = json!({"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"customer_id":"cust-42"}).to_string();
    let v = d.tokenize(&d.keys.both, &body).await.json();
    assert_eq!(v["customer_id"], "cust-42");
    let path = format!("/v2/tokens/{}/reveal", v["token"].as_str().unwrap());
    let r = d
        .send(
            "POST",
            &path,
            Some(&d.keys.reveal),
            Some(r#"{"customer_id":"cust-42"}"#),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["customer_id"], "cust-42");
    for body in [None, Some(r#"{"customer_id":"cust-43"}"#)] {
        let r = d.send("POST", &path, Some(&d.keys.reveal), body).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(!r.text().contains("4242424242"));
    }
    let r = d
        .send(
            "POST",
            &path,
            Some(&d.keys.reveal),
            Some(r#"{"customer_id":42}"#),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error_fields(),
        [("customer_id".into(), "invalid_type".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_gives_one_result_per_item() {
    let d = TestDaemon::start().await;
    let body = json!({"items":[
        {"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}},
        {"type":"card","card":{"pan":"4242424242424241","expiration_date":"2813"}},
        {"type":"card","card":{"pan":true,"expiration_date":"2802"}},
        {"type":"card","card":{"pan":"4111111111111111","expiration_date":"9602"},"customer_id":"c-9"},
    ]})
    .to_string();
    let r = d
        .send(
            "POST",
            "/v2/tokens/batch",
            Some(&d.keys.tokenize),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let results = v["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 400, 400, 201]);
    assert_eq!(results[1]["errors"].as_array().unwrap().len(), 2);
    assert_eq!(results[2]["errors"][0]["field"], "card.pan");
    assert_eq!(results[3]["card"]["keep_until"], "2096-03-01T00:00:00Z");
    for i in [0, 3] {
        let t = results[i]["token"].as_str().unwrap();
        let g = d
            .send(
                "GET",
                &format!("/v2/tokens/{t}"),
                Some(&d.keys.tokenize),
                None,
            )
            .await;
        assert_eq!(g.status, 200);
    }
    // Whole-body errors.
    for (body, field) in [
        (r#"{"items":[]}"#, "items"),
        (r#"{"items":{}}"#, "items"),
        (r#"{}"#, "items"),
        ("7", "body"),
    ] {
        let r = d
            .send(
                "POST",
                "/v2/tokens/batch",
                Some(&d.keys.tokenize),
                Some(body),
            )
            .await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.error_fields()[0].0, field);
    }
    let items: Vec<_> = (0..1001)
        .map(|_| json!({"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}}))
        .collect();
    let r = d
        .send(
            "POST",
            "/v2/tokens/batch",
            Some(&d.keys.tokenize),
            Some(&json!({ "items": items }).to_string()),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error_fields(),
        [("items".into(), "invalid_length".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_returns_the_existing_token() {
    let d = TestDaemon::start().await;
    let body = r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"dedupe":true}"#;
    let a = d.tokenize(&d.keys.tokenize, body).await.json();
    let b = d.tokenize(&d.keys.tokenize, body).await.json();
    assert_eq!(a["token"], b["token"]);
    assert_eq!(b["deduplicated"], true);
    assert_eq!(a["fingerprint"], b["fingerprint"]);
    // Times in whole seconds on both answers (`2026-01-01T00:00:00Z`).
    for v in [&a, &b] {
        for field in ["created_at", "updated_at"] {
            let t = v[field].as_str().unwrap();
            assert_eq!(t.len(), 20, "{field}: {t}");
        }
    }
}
