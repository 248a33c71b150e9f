//! The hosted-fields session API through the daemon: `POST /processing-terminals/{id}/hosted-fields-sessions`,
//! every error status they list, idempotent replay, and the card capture that spends the session.

use vault_gateway::{SessionToken, TerminalId};
use vault_service::{MerchantId, Scope, Scopes};
use vault_testkit::daemon::{Resp, TestDaemon, raw};

const TERMINAL: &str = "1234001";
const KEY_A: &str = "8e03978e-40d5-43e8-bc93-6894a57f9324";
const KEY_B: &str = "0fd8d5a8-1f1b-4b6e-9f34-4d6a1cbe1a01";
const BODY: &str = r#"{"libVersion":"1.6.0.172441","scenario":"payment"}"#;

struct Hosted {
    d: TestDaemon,
    sessions_key: String,
    other_sessions_key: String,
    /// `sessions` and `tokenize`: may create `secureTokenId` sessions.
    replacing_key: String,
}

async fn start() -> Hosted {
    let d = TestDaemon::start().await;
    let m = MerchantId::new(890_490).unwrap();
    let o = MerchantId::new(777).unwrap();
    d.vault
        .add_terminal(m, TerminalId::parse(TERMINAL).unwrap())
        .unwrap();
    d.vault
        .add_terminal(o, TerminalId::parse("9999001").unwrap())
        .unwrap();
    let key = |mid, scopes: &[Scope]| {
        d.vault
            .create_api_key(mid, Scopes::of(scopes), "hosted")
            .unwrap()
            .expose()
            .to_owned()
    };
    let sessions_key = key(m, &[vault_gateway::SESSIONS]);
    let other_sessions_key = key(o, &[vault_gateway::SESSIONS]);
    let replacing_key = key(m, &[vault_gateway::SESSIONS, Scope::Tokenize]);
    Hosted {
        d,
        sessions_key,
        other_sessions_key,
        replacing_key,
    }
}

fn fresh_key() -> String {
    SessionToken::mint(&mut rand::rng()).to_string()
}

fn path(terminal: &str) -> String {
    format!("/processing-terminals/{terminal}/hosted-fields-sessions")
}

impl Hosted {
    /// A request with the usual headers, any of which `skip` leaves out and `extra` adds.
    async fn post(&self, terminal: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: cardvault\r\nConnection: close\r\nContent-Length: {}\r\n",
            path(terminal),
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        raw(&self.d.sock, head.as_bytes()).await.unwrap()
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.sessions_key)
    }

    async fn create(&self, idem: &str, body: &str) -> Resp {
        self.create_as(&self.sessions_key, idem, body).await
    }

    async fn create_as(&self, key: &str, idem: &str, body: &str) -> Resp {
        let auth = format!("Bearer {key}");
        self.post(
            TERMINAL,
            &[
                ("Authorization", &auth),
                ("Idempotency-Key", idem),
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            body,
        )
        .await
    }
}

/// The problem-details parameter names of an error answer.
fn problem(r: &Resp, status: u16) -> Vec<String> {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v = r.json();
    assert_eq!(v["status"], status);
    assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["parameter"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn seed_001_creates_a_session() {
    let h = start().await;
    let r = h.create(KEY_A, BODY).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["processingTerminalId"], TERMINAL);
    let token = v["token"].as_str().unwrap();
    assert!(SessionToken::parse(token).is_ok());
    // The test clock stands at 12:00:00; sessions live ten minutes.
    assert_eq!(v["expiresAt"], "2026-11-21T12:10:00Z");
    assert_eq!(
        r.header("location"),
        Some(format!("{}/{token}", path(TERMINAL)).as_str())
    );
    assert_eq!(v.as_object().unwrap().len(), 3);
}

#[tokio::test]
async fn seed_002_every_error_status() {
    let h = start().await;
    let auth = h.auth();
    let json = ("Content-Type", "application/json");
    let idem = ("Idempotency-Key", KEY_A);
    // 401: no key, bad key.
    assert_eq!(
        problem(&h.post(TERMINAL, &[idem, json], BODY).await, 401),
        ["authorization"]
    );
    let bad = h
        .post(
            TERMINAL,
            &[("Authorization", "Bearer cvk_nope"), idem, json],
            BODY,
        )
        .await;
    assert_eq!(problem(&bad, 401), ["authorization"]);
    assert_eq!(bad.header("www-authenticate"), Some("Bearer"));
    // 403: a key without the sessions scope; another merchant's terminal; an unknown terminal.
    let tokenize = format!("Bearer {}", h.d.keys.tokenize);
    problem(
        &h.post(TERMINAL, &[("Authorization", &tokenize), idem, json], BODY)
            .await,
        403,
    );
    let other = format!("Bearer {}", h.other_sessions_key);
    assert_eq!(
        problem(
            &h.post(TERMINAL, &[("Authorization", &other), idem, json], BODY)
                .await,
            403
        ),
        ["processingTerminalId"]
    );
    assert_eq!(
        problem(
            &h.post("5555555", &[("Authorization", &auth), idem, json], BODY)
                .await,
            403
        ),
        ["processingTerminalId"]
    );
    // 400: terminal id too short.
    assert_eq!(
        problem(
            &h.post("abc", &[("Authorization", &auth), idem, json], BODY)
                .await,
            400
        ),
        ["processingTerminalId"]
    );
    // 406: Accept rules JSON out.
    assert_eq!(
        problem(
            &h.post(
                TERMINAL,
                &[
                    ("Authorization", &auth),
                    idem,
                    json,
                    ("Accept", "text/html")
                ],
                BODY
            )
            .await,
            406
        ),
        ["Accept"]
    );
    // 400: Idempotency-Key missing, or not a UUID v4.
    assert_eq!(
        problem(
            &h.post(TERMINAL, &[("Authorization", &auth), json], BODY)
                .await,
            400
        ),
        ["Idempotency-Key"]
    );
    for bad_key in ["nope", "8e03978e-40d5-13e8-bc93-6894a57f9324"] {
        assert_eq!(
            problem(
                &h.post(
                    TERMINAL,
                    &[("Authorization", &auth), ("Idempotency-Key", bad_key), json],
                    BODY
                )
                .await,
                400
            ),
            ["Idempotency-Key"]
        );
    }
    // 415: not JSON.
    problem(
        &h.post(
            TERMINAL,
            &[
                ("Authorization", &auth),
                idem,
                ("Content-Type", "text/plain"),
            ],
            BODY,
        )
        .await,
        415,
    );
    // 400: each body field named.
    let r = h
        .create(
            &fresh_key(),
            r#"{"libVersion":"1.6","scenario":"refund","secureTokenId":""}"#,
        )
        .await;
    let mut params = problem(&r, 400);
    params.sort();
    assert_eq!(params, ["libVersion", "scenario", "secureTokenId"]);
    let r = h.create(&fresh_key(), r#"{"scenario":"payment"}"#).await;
    assert_eq!(problem(&r, 400), ["libVersion"]);
    // secureTokenId must be a live token of this merchant.
    let other_token =
        h.d.tokenize(&h.d.keys.other, vault_testkit::daemon::SEED_003)
            .await
            .json()["token"]
            .as_str()
            .unwrap()
            .to_owned();
    let r = h
        .create_as(
            &h.replacing_key,
            &fresh_key(),
            &format!(
                r#"{{"libVersion":"1.6.0.172441","scenario":"tokenization","secureTokenId":"{other_token}"}}"#
            ),
        )
        .await;
    assert_eq!(problem(&r, 400), ["secureTokenId"]);
}

#[tokio::test]
async fn idempotency_keys_replay_and_conflict() {
    let h = start().await;
    let first = h.create(KEY_A, BODY).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = h.create(KEY_A, BODY).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json(), "the same session, replayed");
    assert_eq!(again.header("location"), first.header("location"));
    // Same key, different request: 409.
    let r = h
        .create(
            KEY_A,
            r#"{"libVersion":"1.6.0.172441","scenario":"tokenization"}"#,
        )
        .await;
    assert_eq!(problem(&r, 409), ["Idempotency-Key"]);
    // Keys are scoped to the merchant: another merchant's same key is its own.
    let other = format!("Bearer {}", h.other_sessions_key);
    let r = h
        .post(
            "9999001",
            &[
                ("Authorization", &other),
                ("Idempotency-Key", KEY_A),
                ("Content-Type", "application/json"),
            ],
            BODY,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_ne!(r.json()["token"], first.json()["token"]);
    // After 24 hours the key is free again.
    h.d.clock.advance(time::Duration::hours(24));
    let fresh = h.create(KEY_A, BODY).await;
    assert_eq!(fresh.status, 201);
    assert_eq!(fresh.header("idempotent-replayed"), None);
    assert_ne!(fresh.json()["token"], first.json()["token"]);
}

#[tokio::test]
async fn concurrent_duplicates_create_one_session() {
    let h = std::sync::Arc::new(start().await);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let r = h.create(KEY_A, BODY).await;
            (r.status, r.json()["token"].as_str().map(str::to_owned))
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let (status, token) = t.await.unwrap();
        assert!(status == 201 || status == 409, "{status}");
        if status == 201 {
            tokens.insert(token.unwrap());
        }
    }
    assert_eq!(tokens.len(), 1, "every 201 is the one session: {tokens:?}");
}

#[tokio::test]
async fn hosted_sessions_capture_cards() {
    let h = start().await;
    // Payment scenario: the captured card gets a token and a pending payment holding the CVV.
    let token = h.create(KEY_A, BODY).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = capture_with_origin(&h, &token, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["action"], "payment");
    assert_eq!(v["status"], "PENDING");
    let tx = v["txId"].as_str().unwrap();
    let card = hand_over(&h, tx).await;
    assert_eq!(card.json()["card"]["cvv"], "737");

    // Tokenization scenario with secureTokenId: the same token gets the new card. Replacing a
    // stored card is an update of its token: a key with `sessions` alone is refused (the card
    // stays), one with `tokenize` too creates the session.
    let saved = v["cardToken"].as_str().unwrap().to_owned();
    let body = format!(
        r#"{{"libVersion":"1.6.0-beta.172441","scenario":"tokenization","secureTokenId":"{saved}"}}"#
    );
    let r = h.create(KEY_B, &body).await;
    assert_eq!(problem(&r, 403), ["authorization"]);
    assert_eq!(
        r.json()["errors"][0]["message"],
        "missing_scope",
        "{}",
        r.text()
    );
    // The refusal is not stored under the Idempotency-Key: a key with `tokenize` retrying with
    // it gets its session...
    let r = h.create_as(&h.replacing_key, KEY_B, &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    // ...which a key without `tokenize` cannot get as a replay.
    let replay = h.create(KEY_B, &body).await;
    assert_eq!(problem(&replay, 403), ["authorization"]);
    assert!(!replay.text().contains(&token), "{}", replay.text());
    let update = format!("token={token}&number=5555555555554444&expiryMonth=11&expiryYear=2030");
    let r = spend(&h, &update).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["cardToken"], saved.as_str());
    assert_eq!(r.json()["replaced"], true);
    let revealed =
        h.d.send(
            "POST",
            &format!("/v2/tokens/{saved}/reveal"),
            Some(&h.d.keys.reveal),
            Some("{}"),
        )
        .await;
    assert_eq!(revealed.json()["pan"], "5555555555554444");
    assert_eq!(revealed.json()["expiration_date"], "3011");
}

/// `POST /payments` capturing a card with a hosted session, with an optional `Origin` header.
async fn capture_with_origin(h: &Hosted, token: &str, origin: Option<&str>) -> Resp {
    let capture =
        format!("token={token}&number=4242424242424242&expiryMonth=02&expiryYear=28&cvv=737");
    spend_from(h, origin, &capture).await
}

#[tokio::test]
async fn a_session_without_an_allowed_origin_refuses_every_browser() {
    let h = start().await;
    // No allowOriginUrl: a server-only session. A page on any origin cannot spend it...
    let token = h.create(KEY_A, BODY).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for origin in ["https://evil.example", "https://shop.example", "null"] {
        let r = capture_with_origin(&h, &token, Some(origin)).await;
        assert_eq!(r.status, 403, "{origin}: {}", r.text());
        assert!(r.text().contains("origin.mismatch"), "{}", r.text());
        assert!(r.header("access-control-allow-origin").is_none());
    }
    // ...and the refusals left it unspent for the merchant's server (no Origin header).
    let r = capture_with_origin(&h, &token, None).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // With allowOriginUrl, exactly that origin may spend it.
    let body = r#"{"libVersion":"1.6.0.172441","scenario":"payment","allowOriginUrl":"https://shop.example"}"#;
    let token = h.create(KEY_B, body).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = capture_with_origin(&h, &token, Some("https://evil.example")).await;
    assert!(r.text().contains("origin.mismatch"), "{}", r.text());
    // Two Origin headers, the right one first: not for the daemon to pick one.
    let two = "https://shop.example\r\nOrigin: https://evil.example";
    let r = capture_with_origin(&h, &token, Some(two)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("origin.mismatch"), "{}", r.text());
    let r = capture_with_origin(&h, &token, Some("https://shop.example")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
}

/// `POST /payments` spending a hosted session with the form `fields`.
async fn spend(h: &Hosted, fields: &str) -> Resp {
    spend_from(h, None, fields).await
}

/// [`spend`], with an optional `Origin` header.
async fn spend_from(h: &Hosted, origin: Option<&str>, fields: &str) -> Resp {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    raw(
        &h.d.sock,
        format!(
            "POST /payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{origin}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{fields}",
            fields.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_replacement_never_tells_the_shopper_the_tokens_customer() {
    let h = start().await;
    let r = h
        .d
        .tokenize(
            &h.d.keys.tokenize,
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"customer_id":"cust_hidden_42"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let saved = r.json()["token"].as_str().unwrap().to_owned();
    let body = format!(
        r#"{{"libVersion":"1.6.0.172441","scenario":"tokenization","secureTokenId":"{saved}"}}"#
    );
    let r = h.create_as(&h.replacing_key, KEY_A, &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let session = r.json()["token"].as_str().unwrap().to_owned();
    let r = spend(
        &h,
        &format!("token={session}&number=5555555555554444&expiryMonth=11&expiryYear=2030"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["replaced"], true);
    assert!(!r.text().contains("cust_hidden_42"), "{}", r.text());
    // The binding is kept: a reveal still needs the customer.
    let revealed =
        h.d.send(
            "POST",
            &format!("/v2/tokens/{saved}/reveal"),
            Some(&h.d.keys.reveal),
            Some(r#"{"customer_id":"cust_hidden_42"}"#),
        )
        .await;
    assert_eq!(
        revealed.json()["pan"],
        "5555555555554444",
        "{}",
        revealed.text()
    );
}

#[tokio::test]
async fn a_hosted_payments_card_replaced_before_the_hand_over_is_never_handed_over() {
    let h = start().await;
    let session = h.create(KEY_A, BODY).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = spend(
        &h,
        &format!("token={session}&number=4242424242424242&expiryMonth=02&expiryYear=28&cvv=737"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tx = r.json()["txId"].as_str().unwrap().to_owned();
    let token = r.json()["cardToken"].as_str().unwrap().to_owned();
    // Another card is put behind the token before the acquirer leg asks for the card.
    let put =
        h.d.send(
            "PUT",
            &format!("/v2/tokens/{token}"),
            Some(&h.d.keys.tokenize),
            Some(r#"{"card":{"pan":"5555555555554444","expiration_date":"3011"}}"#),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let card = hand_over(&h, &tx).await;
    assert_eq!(card.status, 400, "{}", card.text());
    assert_eq!(
        card.json()["errors"][0]["code"],
        "card_changed",
        "{}",
        card.text()
    );
    assert!(!card.text().contains("5555555555554444"));
    assert!(!card.text().contains("737"));
}

/// `POST /payments/{tx}/card` with the reveal key: the acquirer leg.
async fn hand_over(h: &Hosted, tx: &str) -> Resp {
    h.d.send(
        "POST",
        &format!("/payments/{tx}/card"),
        Some(&h.d.keys.reveal),
        None,
    )
    .await
}
