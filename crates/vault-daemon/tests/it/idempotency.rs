//! `Idempotency-Key` on `POST /v2/tokens` and `POST /v2/tokens/batch`, over a real socket.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use tokio::io::AsyncWriteExt;
use vault_daemon::DaemonConfig;
use vault_service::VaultError;
use vault_testkit::daemon::{Resp, SEED_003, TestDaemon, raw};

const KEY: &str = "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b";
const BATCH_KEY: &str = "0b7f6c5d-2e3f-4a10-9b8c-7d6e5f4a3b2c";
const OTHER_CARD: &str =
    r#"{"type":"card","card":{"pan":"5555555555554444","expiration_date":"2802"}}"#;
const BAD_CARD: &str =
    r#"{"type":"card","card":{"pan":"4242424242424241","expiration_date":"2802"}}"#;

/// A POST with an optional `Idempotency-Key`.
pub(crate) async fn post(
    d: &TestDaemon,
    path: &str,
    api_key: &str,
    idem: Option<&str>,
    body: &str,
) -> Resp {
    raw(&d.sock, &post_bytes(path, api_key, idem, body))
        .await
        .expect("a response")
}

/// The bytes of [`post`]'s request.
fn post_bytes(path: &str, api_key: &str, idem: Option<&str>, body: &str) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {api_key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = idem {
        head.push_str(&format!("Idempotency-Key: {k}\r\n"));
    }
    let mut bytes = format!("{head}\r\n").into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// `POST /v2/tokens` with the tokenize key and an optional `Idempotency-Key`.
pub(crate) async fn tokenize(d: &TestDaemon, idem: Option<&str>, body: &str) -> Resp {
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

/// A replay names the token its first request created: once that token has been deleted or has
/// expired, the key is answered 409 `idempotency_token_gone`, neither a 201 naming a token that
/// is not there (a contract fuzzer's "created resource not found") nor a new token for a card
/// someone deleted. A live token's answer is still replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_token_was_deleted_or_has_expired_is_not_replayed() {
    let d = TestDaemon::start().await;
    let first = tokenize(&d, Some(KEY), SEED_003).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let token = first.json()["token"].as_str().unwrap().to_owned();
    let deleted = d
        .send(
            "DELETE",
            &format!("/v2/tokens/{token}"),
            Some(&d.keys.tokenize),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    for _ in 0..2 {
        let again = tokenize(&d, Some(KEY), SEED_003).await;
        assert_eq!(again.status, 409, "{}", again.text());
        assert!(!replayed(&again));
        assert_eq!(
            again.error_fields(),
            vec![(
                "Idempotency-Key".to_owned(),
                "idempotency_token_gone".to_owned()
            )]
        );
    }
    assert_eq!(records(&d), 0, "the deleted card was not stored again");
    // A new key tokenizes the card again.
    let new_key = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    assert_eq!(tokenize(&d, Some(new_key), SEED_003).await.status, 201);

    // Expired: a token kept for one hour, its answer replayed within it and not after it.
    let keep_until = (vault_service::Clock::now(&*d.clock) + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = format!(
        r#"{{"type":"card","card":{{"pan":"5555555555554444","expiration_date":"2802"}},"keep_until":"{keep_until}"}}"#
    );
    let kept_key = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
    let kept = tokenize(&d, Some(kept_key), &body).await;
    assert_eq!(kept.status, 201, "{}", kept.text());
    let within = tokenize(&d, Some(kept_key), &body).await;
    assert_eq!(within.status, 201, "{}", within.text());
    assert!(replayed(&within));
    assert_eq!(within.body, kept.body);
    d.clock.advance(time::Duration::hours(2));
    let after = tokenize(&d, Some(kept_key), &body).await;
    assert_eq!(after.status, 409, "{}", after.text());
    assert_eq!(after.error_fields()[0].1, "idempotency_token_gone");
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

/// Metadata is the caller's own and is part of the request whole, whatever its keys are named
/// (a label `number`, `token` or `password` is not a card number or a secret here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_differing_only_in_metadata_are_two_requests() {
    let d = TestDaemon::start().await;
    let with = |label: &str, value: &str| {
        format!(
            r#"{{"type":"card","card":{{"pan":"4242424242424242","expiration_date":"2802"}},"metadata":{{"{label}":"{value}"}}}}"#
        )
    };
    for (i, label) in ["number", "token", "password"].into_iter().enumerate() {
        let key = format!("00000000-0000-4000-8000-00000000000{i}");
        let first = tokenize(&d, Some(&key), &with(label, "order-1")).await;
        assert_eq!(first.status, 201, "{}", first.text());
        let again = tokenize(&d, Some(&key), &with(label, "order-1")).await;
        assert!(replayed(&again), "{label}: {}", again.text());
        let other = tokenize(&d, Some(&key), &with(label, "order-2")).await;
        assert_eq!(other.status, 409, "{label}: {}", other.text());
    }
}

/// An answer that named the card's fingerprint (to a key with `fingerprint` or `reveal`) is not
/// replayed to a key of the same merchant without them: that is another request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_is_replayed_only_to_a_caller_with_the_same_view() {
    let d = TestDaemon::start().await;
    let first = post(&d, "/v2/tokens", &d.keys.both, Some(KEY), SEED_003).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(
        first.json().get("fingerprint").is_some(),
        "{}",
        first.text()
    );
    let r = tokenize(&d, Some(KEY), SEED_003).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_fields()[0].1, "idempotency_mismatch");
    assert!(!r.text().contains("fingerprint"), "{}", r.text());
    let again = post(&d, "/v2/tokens", &d.keys.both, Some(KEY), SEED_003).await;
    assert!(replayed(&again) && again.body == first.body);
    // The batch route alike.
    let batch = format!(r#"{{"items":[{SEED_003}]}}"#);
    let b = post(
        &d,
        "/v2/tokens/batch",
        &d.keys.both,
        Some(BATCH_KEY),
        &batch,
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.text());
    let r = post(
        &d,
        "/v2/tokens/batch",
        &d.keys.tokenize,
        Some(BATCH_KEY),
        &batch,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(records(&d), 2);
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

/// Holds back the commit of new tokens until the returned function is called (and a little
/// while): on a directory vault a write job that blocks the committer; on PostgreSQL a lock on
/// the token records' table for 3 s, within the statement timeout (the claim of an idempotency
/// key, in another table, still commits there).
pub(crate) fn hold_token_commits(d: &TestDaemon) -> Box<dyn FnOnce()> {
    if let Some(db) = d.home.database() {
        let holder = db.lock_table_for("cardvault_record", Duration::from_secs(3));
        return Box::new(move || holder.join().unwrap());
    }
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, inside) = std::sync::mpsc::channel::<()>();
    let vault = d.vault.vault().clone();
    let holder = std::thread::spawn(move || {
        vault.transact(move |_| {
            let _ = entered.send(());
            let _ = held.recv();
            Ok::<_, VaultError>(())
        })
    });
    inside.recv().unwrap();
    Box::new(move || {
        release.send(()).unwrap();
        holder.join().unwrap().unwrap();
    })
}

/// A request whose work outlasts the request timeout is answered 503 at the timeout and its
/// work goes on: a retry with the key meanwhile is refused (409 in progress, or 503 on
/// PostgreSQL, where the retry's claim waits behind the held commit), then gets the stored answer,
/// and the card is stored once. Before, the 503 freed the key, and each retry stored the card
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_answered_at_the_timeout_ends_its_work_and_is_replayed() {
    let d = TestDaemon::start_with(DaemonConfig {
        request_timeout: Duration::from_millis(300),
        ..DaemonConfig::default()
    })
    .await;
    let release = hold_token_commits(&d);
    let first = tokenize(&d, Some(KEY), SEED_003).await;
    assert_eq!(first.status, 503, "{}", first.text());
    assert!(
        first.text().contains("retry with the same Idempotency-Key"),
        "{}",
        first.text()
    );
    let meanwhile = tokenize(&d, Some(KEY), SEED_003).await;
    match d.home.database() {
        None => {
            assert_eq!(meanwhile.status, 409, "{}", meanwhile.text());
            assert_eq!(
                meanwhile.error_fields()[0].1,
                "idempotency_in_progress",
                "{}",
                meanwhile.text()
            );
        }
        Some(_) => assert!(
            [409, 503].contains(&meanwhile.status),
            "{}",
            meanwhile.text()
        ),
    }
    release();
    assert_replayed_once(&d).await;
    // The metrics count what callers were answered: the first request as its 503 (not the 201
    // its work ended with), so the only 201 is the replay's.
    let m = d.send("GET", "/metrics", None, None).await.text();
    let answered = |status: &str| {
        crate::lifecycle::metric(
            &m,
            &format!(
                "cardvault_http_requests_total{{method=\"POST\",route=\"/v2/tokens\",status=\"{status}\"}} "
            ),
        )
    };
    assert_eq!(answered("201"), 1, "{m}");
    assert!(answered("503") >= 1, "{m}");
}

/// A client that sends a request with a key and goes away before the answer does not stop its
/// work: once the work ended, a retry with the key gets its stored answer, and the card is stored
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_before_the_answer_leaves_its_work_to_end() {
    let d = TestDaemon::start().await;
    let release = hold_token_commits(&d);
    {
        let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
        let bytes = post_bytes("/v2/tokens", &d.keys.tokenize, Some(KEY), SEED_003);
        s.write_all(&bytes).await.unwrap();
        // The daemon takes the key and starts the work; then the client goes away.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    release();
    assert_replayed_once(&d).await;
}

/// Retries `SEED_003` with `KEY` while its first request's work is under way (409, or 503 while
/// a claim waits), then checks the answer is that request's, replayed, and the card stored once.
async fn assert_replayed_once(d: &TestDaemon) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let replay = loop {
        let r = tokenize(d, Some(KEY), SEED_003).await;
        if ![409, 503].contains(&r.status) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "still {}: {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(replay.status, 201, "{}", replay.text());
    assert!(replayed(&replay), "{:?}", replay.headers);
    assert_eq!(records(d), 1, "the card was stored once");
}
