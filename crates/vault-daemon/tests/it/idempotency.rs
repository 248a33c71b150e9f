//! `Idempotency-Key` on `POST /v2/tokens` and `POST /v2/tokens/batch`, over a real socket.

use std::collections::BTreeSet;

use vault_testkit::daemon::{Resp, SEED_003, TestDaemon, raw};

const KEY: &str = "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b";
const OTHER_CARD: &str =
    r#"{"type":"card","card":{"pan":"5555555555554444","expiration_date":"2802"}}"#;
const BAD_CARD: &str =
    r#"{"type":"card","card":{"pan":"4242424242424241","expiration_date":"2802"}}"#;

/// A POST with an optional `Idempotency-Key`.
async fn post(d: &TestDaemon, path: &str, api_key: &str, idem: Option<&str>, body: &str) -> Resp {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {api_key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = idem {
        head.push_str(&format!("Idempotency-Key: {k}\r\n"));
    }
    let mut bytes = format!("{head}\r\n").into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    raw(&d.sock, &bytes).await.expect("a response")
}

async fn tokenize(d: &TestDaemon, idem: Option<&str>, body: &str) -> Resp {
    post(d, "/v2/tokens", &d.keys.tokenize, idem, body).await
}

fn replayed(r: &Resp) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

fn records(d: &TestDaemon) -> u64 {
    d.vault.stats().records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_same_request_is_replayed() {
    let d = TestDaemon::start().await;
    let first = tokenize(&d, Some(KEY), SEED_003).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(!replayed(&first));
    let second = tokenize(&d, Some(KEY), SEED_003).await;
    assert_eq!(second.status, 201);
    assert!(replayed(&second), "{:?}", second.headers);
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(second.body, first.body, "the very same answer");
    assert_eq!(second.json()["token"], first.json()["token"]);
    assert_eq!(records(&d), 1, "the card was stored once");

    // Without a key the same request creates a second token (dedupe is off by default).
    let a = tokenize(&d, None, SEED_003).await;
    assert_eq!(a.status, 201);
    assert!(!replayed(&a));
    assert_ne!(a.json()["token"], first.json()["token"]);
    assert_eq!(records(&d), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_different_request_conflicts() {
    let d = TestDaemon::start().await;
    assert_eq!(tokenize(&d, Some(KEY), SEED_003).await.status, 201);
    let r = tokenize(&d, Some(KEY), OTHER_CARD).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["status"], "conflict");
    let (_, code) = &r.error_fields()[0];
    assert_eq!(code, "idempotency_mismatch");
    assert!(!r.text().contains("5555555555554444"));
    // The same key on the batch route is a different request too.
    let batch = format!(r#"{{"items":[{SEED_003}]}}"#);
    let r = post(&d, "/v2/tokens/batch", &d.keys.tokenize, Some(KEY), &batch).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(records(&d), 1);
    // Upper-case hex is the same key.
    let r = tokenize(&d, Some(&KEY.to_uppercase()), SEED_003).await;
    assert!(replayed(&r) && r.status == 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_to_the_merchant() {
    let d = TestDaemon::start().await;
    let mine = tokenize(&d, Some(KEY), SEED_003).await;
    let theirs = post(&d, "/v2/tokens", &d.keys.other, Some(KEY), OTHER_CARD).await;
    assert_eq!(theirs.status, 201, "{}", theirs.text());
    assert!(!replayed(&theirs));
    assert_ne!(theirs.json()["token"], mine.json()["token"]);
    let again = post(&d, "/v2/tokens", &d.keys.other, Some(KEY), OTHER_CARD).await;
    assert!(replayed(&again));
    assert_eq!(again.body, theirs.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_key_is_400_naming_the_header() {
    let d = TestDaemon::start().await;
    for bad in [
        "nope",
        "6f1c2b3a-1d2e-1f00-8a9b-0c1d2e3f4a5b", // version 1
        "6f1c2b3a1d2e4f008a9b0c1d2e3f4a5b",
    ] {
        let r = tokenize(&d, Some(bad), SEED_003).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(
            r.error_fields(),
            vec![("Idempotency-Key".to_owned(), "invalid".to_owned())]
        );
        assert!(r.text().contains("UUID v4"), "{}", r.text());
    }
    assert_eq!(records(&d), 0, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_replayed() {
    let d = TestDaemon::start().await;
    let first = tokenize(&d, Some(KEY), BAD_CARD).await;
    assert_eq!(first.status, 400);
    assert!(!replayed(&first));
    let second = tokenize(&d, Some(KEY), BAD_CARD).await;
    assert_eq!(second.status, 400);
    assert!(replayed(&second));
    assert_eq!(second.body, first.body);
    assert!(!second.text().contains("4242424242424241"));
    // The key is spent on that request: a corrected card needs a new key.
    assert_eq!(tokenize(&d, Some(KEY), SEED_003).await.status, 409);
    assert_eq!(records(&d), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_create_one_token() {
    let d = std::sync::Arc::new(TestDaemon::start().await);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { tokenize(&d, Some(KEY), SEED_003).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let originals: Vec<&Resp> = answers
        .iter()
        .filter(|r| r.status == 201 && !replayed(r))
        .collect();
    assert_eq!(originals.len(), 1, "exactly one request did the work");
    let original = originals[0];
    let mut tokens = BTreeSet::new();
    for r in &answers {
        match r.status {
            201 => {
                assert_eq!(r.body, original.body, "a replay is the original answer");
                tokens.insert(r.json()["token"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(r.error_fields()[0].1, "idempotency_in_progress"),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(records(&d), 1, "exactly one token was created");
    // Once the first answer is stored, a retry is a replay.
    let late = tokenize(&d, Some(KEY), SEED_003).await;
    assert!(replayed(&late) && late.body == original.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_replayed() {
    let d = TestDaemon::start().await;
    let batch = format!(r#"{{"items":[{SEED_003},{BAD_CARD},{OTHER_CARD}]}}"#);
    let first = post(&d, "/v2/tokens/batch", &d.keys.tokenize, Some(KEY), &batch).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(!replayed(&first));
    assert_eq!(records(&d), 2);
    let second = post(&d, "/v2/tokens/batch", &d.keys.tokenize, Some(KEY), &batch).await;
    assert_eq!(second.status, 200);
    assert!(replayed(&second));
    assert_eq!(second.body, first.body);
    assert_eq!(records(&d), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_after_24_hours() {
    let d = TestDaemon::start().await;
    let first = tokenize(&d, Some(KEY), SEED_003).await;
    d.clock.advance(time::Duration::hours(24));
    let later = tokenize(&d, Some(KEY), SEED_003).await;
    assert_eq!(later.status, 201);
    assert!(!replayed(&later));
    assert_ne!(later.json()["token"], first.json()["token"]);
    // The admin sweep reclaims stored answers 24 hours old.
    d.clock.advance(time::Duration::hours(24));
    assert_eq!(d.vault.sweep_idempotency().unwrap(), 1);
}
