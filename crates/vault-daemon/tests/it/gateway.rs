//! The gateway API through the daemon: `POST /token` (session token for a merchant password),
//! `POST /payments` (card capture with a TOKENIZE session; payment use of a stored card with an
//! AUTH/PURCHASE/VERIFY session), the acquirer leg's card hand-over and the outcome report.

use serde_json::Value;
use vault_gateway::{MerchantPassword, SessionKind, SessionOptions, SessionToken};
use vault_service::MerchantId;
use vault_testkit::daemon::{T0, TestDaemon, raw};

const MERCHANT: u64 = 890_490;
const PASSWORD: &str = "u16q9rZ02bW0jqTjxH8t";
const ORIGIN: &str = "https://shop.example";

fn merchant() -> MerchantId {
    MerchantId::new(MERCHANT).unwrap()
}

/// A request with the given content type and extra headers.
fn request(method: &str, path: &str, headers: &[(&str, &str)], ctype: &str, body: &str) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: cardvault\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    head.into_bytes()
}

async fn form(
    d: &TestDaemon,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> vault_testkit::daemon::Resp {
    raw(
        &d.sock,
        &request(
            "POST",
            path,
            headers,
            "application/x-www-form-urlencoded; charset=UTF-8",
            body,
        ),
    )
    .await
    .unwrap()
}

fn now_ms() -> i128 {
    T0.unix_timestamp_nanos() / 1_000_000
}

/// The daemon clock's now, in ms (tests advance it).
fn clock_ms(d: &TestDaemon) -> i128 {
    d.vault.now().unix_timestamp_nanos() / 1_000_000
}

async fn with_password() -> TestDaemon {
    let d = TestDaemon::start().await;
    d.vault
        .set_merchant_password(merchant(), &MerchantPassword::new(PASSWORD.into()).unwrap())
        .unwrap();
    d
}

/// The session-token API's request, as the jQuery example sends it (extra fields included).
fn session_token_body(d: &TestDaemon, action: &str, extra: &str) -> String {
    format!(
        "merchantId={MERCHANT}&password={PASSWORD}&action={action}&timestamp={}&allowOriginUrl={}&channel=ECOM&currency=GBP&country=GB&amount=5&language=en{extra}",
        clock_ms(d),
        "https%3A%2F%2Fshop.example"
    )
}

fn assert_uuid_v4(s: &str) {
    assert!(SessionToken::parse(s).is_ok(), "not a UUIDv4: {s}");
}

/// The session-token API's failure envelope: exactly these keys, and the (messageCode, fieldName) pairs.
fn failure_errors(v: &Value) -> Vec<(String, String)> {
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "additionalDetails",
            "errors",
            "processingTime",
            "result",
            "resultId"
        ],
        "{v}"
    );
    assert_eq!(v["result"], "failure");
    assert_uuid_v4(v["resultId"].as_str().unwrap());
    assert_eq!(v["additionalDetails"], serde_json::json!({}));
    assert!(v["processingTime"].is_u64());
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["messageCode"].as_str().unwrap().to_owned(),
                e["fieldName"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn session_token(d: &TestDaemon, action: &str, extra: &str) -> (String, Value) {
    let r = form(d, "/token", &[], &session_token_body(d, action, extra)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    (v["token"].as_str().unwrap().to_owned(), v)
}

fn card_form(token: &str) -> String {
    format!(
        "token={token}&number=4242424242424242&expiryMonth=02&expiryYear=2028&nameOnCard=Jane+Doe"
    )
}

#[tokio::test]
async fn session_token_then_card_capture() {
    let d = with_password().await;
    let r = form(
        &d,
        "/token",
        &[("Origin", ORIGIN)],
        &session_token_body(&d, "TOKENIZE", ""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let v = r.json();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "additionalDetails",
            "customerId",
            "merchantId",
            "processingTime",
            "result",
            "resultId",
            "token"
        ]
    );
    assert_eq!(v["result"], "success");
    assert_eq!(v["merchantId"], "890490");
    assert_eq!(v["additionalDetails"], serde_json::json!({}));
    assert!(v["processingTime"].is_u64());
    assert_uuid_v4(v["resultId"].as_str().unwrap());
    let token = v["token"].as_str().unwrap();
    assert_uuid_v4(token);
    // customerId omitted -> generated (the session-token API: String(20)) and stored against the card.
    let customer = v["customerId"].as_str().unwrap().to_owned();
    assert!(!customer.is_empty() && customer.len() <= 20, "{customer}");

    let r = form(&d, "/payments", &[("Origin", ORIGIN)], &card_form(token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let v = r.json();
    assert_eq!(v["result"], "success");
    assert_eq!(v["action"], "TOKENIZE");
    assert_eq!(v["customerId"], customer.as_str());
    assert_eq!(v["maskedPan"], "424242****4242");
    let card_token = v["cardToken"].as_str().unwrap().to_owned();
    assert_eq!(card_token.len(), 48);
    assert!(v.get("card").is_none() && !r.text().contains("4242424242424242"));

    // Single use.
    let again = form(&d, "/payments", &[("Origin", ORIGIN)], &card_form(token)).await;
    assert_eq!(again.status, 404);
    assert_eq!(
        failure_errors(&again.json()),
        [("session.invalid".to_owned(), "token".to_owned())]
    );

    // The card is bound to the session's customer.
    let reveal = d
        .send(
            "POST",
            &format!("/v2/tokens/{card_token}/reveal"),
            Some(&d.keys.reveal),
            Some(&format!(r#"{{"customer_id":"{customer}"}}"#)),
        )
        .await;
    assert_eq!(reveal.status, 200, "{}", reveal.text());
    assert_eq!(reveal.json()["pan"], "4242424242424242");
    assert_eq!(reveal.json()["cardholder_name"], "Jane Doe");
    let wrong = d
        .send(
            "POST",
            &format!("/v2/tokens/{card_token}/reveal"),
            Some(&d.keys.reveal),
            Some("{}"),
        )
        .await;
    assert_eq!(wrong.status, 403);
}

#[tokio::test]
async fn session_token_failures_name_every_field() {
    let d = with_password().await;
    // The session-token API's error example: password missing.
    let body = format!(
        "merchantId={MERCHANT}&action=TOKENIZE&timestamp={}&allowOriginUrl=*",
        now_ms()
    );
    let r = form(&d, "/token", &[], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        failure_errors(&r.json()),
        [(
            "This field is required in [REQUEST]".to_owned(),
            "password".to_owned()
        )]
    );
    // Everything missing or wrong, each named once.
    let r = form(
        &d,
        "/token",
        &[],
        "merchantId=12345678901234567890&action=&timestamp=abc&allowOriginUrl=ftp%3A%2F%2Fx&customerId=bad%20id",
    )
    .await;
    assert_eq!(r.status, 400);
    let errs = failure_errors(&r.json());
    for (code, field) in [
        ("field.length", "merchantId"),
        ("This field is required in [REQUEST]", "password"),
        ("field.nonempty", "action"),
        ("field.invalid", "timestamp"),
        ("field.invalid", "allowOriginUrl"),
        ("field.invalid", "customerId"),
    ] {
        assert!(
            errs.contains(&(code.to_owned(), field.to_owned())),
            "{field}: {errs:?}"
        );
    }
    assert_eq!(errs.len(), 6, "{errs:?}");
    // Unknown action, stale timestamp.
    let stale = format!(
        "merchantId={MERCHANT}&password=x&action=REFUND&timestamp={}&allowOriginUrl=*",
        now_ms() - 10 * 60 * 1000
    );
    let errs = failure_errors(&form(&d, "/token", &[], &stale).await.json());
    assert_eq!(
        errs,
        [
            ("field.invalid".to_owned(), "action".to_owned()),
            ("timestamp.stale".to_owned(), "timestamp".to_owned())
        ]
    );
    // Wrong password and unknown merchant: one answer.
    let wrong = session_token_body(&d, "TOKENIZE", "").replace(PASSWORD, "not-the-password");
    let unknown =
        session_token_body(&d, "TOKENIZE", "").replace("merchantId=890490", "merchantId=555");
    for body in [wrong, unknown] {
        let r = form(&d, "/token", &[], &body).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(
            failure_errors(&r.json()),
            [("credentials.invalid".to_owned(), "password".to_owned())]
        );
        assert!(!r.text().contains("not-the-password"));
    }
    // Neither form nor JSON.
    let r = raw(&d.sock, &request("POST", "/token", &[], "text/plain", "x"))
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    assert_eq!(
        failure_errors(&r.json()),
        [("request.media_type".to_owned(), "Content-Type".to_owned())]
    );
}

#[tokio::test]
async fn json_bodies_work_too() {
    let d = with_password().await;
    let body = format!(
        r#"{{"merchantId":{MERCHANT},"password":"{PASSWORD}","action":"TOKENIZE","timestamp":{},"allowOriginUrl":"*","customerId":"hptest","cardDescription":"seq 7"}}"#,
        now_ms()
    );
    let r = raw(
        &d.sock,
        &request("POST", "/token", &[], "application/json", &body),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["customerId"], "hptest");
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let body = format!(
        r#"{{"token":"{token}","number":"5555555555554444","expiryMonth":"12","expiryYear":"29"}}"#
    );
    let r = raw(
        &d.sock,
        &request("POST", "/payments", &[], "application/json", &body),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["customerId"], "hptest");
    assert_eq!(r.json()["brand"], "mastercard");
}

#[tokio::test]
async fn capture_refuses_bad_cards_without_spending_the_session() {
    let d = with_password().await;
    let (token, _) = session_token(&d, "TOKENIZE", "").await;
    let r = form(
        &d,
        "/payments",
        &[],
        &format!("token={token}&number=4242424242424241&expiryMonth=13&expiryYear=2028"),
    )
    .await;
    assert_eq!(r.status, 400);
    let errs = failure_errors(&r.json());
    assert_eq!(
        errs,
        [
            ("field.invalid".to_owned(), "number".to_owned()),
            ("field.invalid".to_owned(), "expiryMonth".to_owned())
        ]
    );
    assert!(!r.text().contains("4242424242424241"));
    // Still usable.
    let r = form(&d, "/payments", &[], &card_form(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn sessions_expire_and_origins_must_match() {
    let d = with_password().await;
    let (token, _) = session_token(&d, "TOKENIZE", "").await;
    // A hostile origin is refused, gets no CORS grant, and does not burn the session.
    let r = form(
        &d,
        "/payments",
        &[("Origin", "https://evil.example")],
        &card_form(&token),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(
        failure_errors(&r.json()),
        [("origin.mismatch".to_owned(), "Origin".to_owned())]
    );
    // Ten minutes later it is gone.
    d.clock.advance(time::Duration::minutes(10));
    let r = form(&d, "/payments", &[("Origin", ORIGIN)], &card_form(&token)).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        failure_errors(&r.json()),
        [("session.invalid".to_owned(), "token".to_owned())]
    );
    // A session one second from expiry still works.
    let (token, _) = session_token(&d, "TOKENIZE", "").await;
    d.clock.advance(time::Duration::seconds(599));
    let r = form(&d, "/payments", &[("Origin", ORIGIN)], &card_form(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Preflight.
    let pre = raw(
        &d.sock,
        format!(
            "OPTIONS /payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {ORIGIN}\r\nAccess-Control-Request-Method: POST\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(pre.header("access-control-allow-methods"), Some("POST"));
}

#[tokio::test]
async fn a_session_is_spent_once_under_concurrency() {
    let d = with_password().await;
    let (token, _) = session_token(&d, "TOKENIZE", "").await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let sock = d.sock.clone();
        let req = request(
            "POST",
            "/payments",
            &[],
            "application/x-www-form-urlencoded",
            &card_form(&token),
        );
        tasks.push(tokio::spawn(async move {
            raw(&sock, &req).await.unwrap().status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 404),
        "{statuses:?}"
    );
    assert_eq!(d.vault.stats().records, 1);
}

/// A TOKENIZE session's card for customer `customer`, and a PURCHASE session token.
async fn stored_card_and_purchase_session(d: &TestDaemon, customer: &str) -> (String, String) {
    let (token, _) = session_token(d, "TOKENIZE", &format!("&customerId={customer}")).await;
    let r = form(d, "/payments", &[], &card_form(&token)).await;
    let card_token = r.json()["cardToken"].as_str().unwrap().to_owned();
    let (purchase, v) = session_token(d, "PURCHASE", "&paymentSolutionId=500").await;
    assert!(v.get("customerId").is_none(), "{v}");
    (card_token, purchase)
}

/// A stored-card payment API payment use, form-encoded, no extra headers.
async fn pay(
    d: &TestDaemon,
    session: &str,
    card_token: &str,
    customer: &str,
    extra: &str,
) -> vault_testkit::daemon::Resp {
    form(
        d,
        "/payments",
        &[],
        &stored_card_payment_body(session, card_token, customer, extra),
    )
    .await
}

fn stored_card_payment_body(
    session: &str,
    card_token: &str,
    customer: &str,
    extra: &str,
) -> String {
    format!(
        "merchantId={MERCHANT}&token={session}&specinCreditCardToken={card_token}&customerId={customer}&customerIPAddress=203.0.113.7&freeText=Added+10%25+discount{extra}"
    )
}

#[tokio::test]
async fn stored_card_payment_use_card_handover_and_one_click() {
    let d = with_password().await;
    let (card_token, session) = stored_card_and_purchase_session(&d, "mgn456").await;
    let r = pay(
        &d,
        &session,
        &card_token,
        "mgn456",
        "&specinCreditCardCVV=737&setOneClickValueSettingForCard=true",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"], "success");
    assert_eq!(v["action"], "PURCHASE");
    assert_eq!(v["customerId"], "mgn456");
    assert_eq!(v["cardToken"], card_token.as_str());
    assert_eq!(v["paymentSolutionId"], 500);
    assert_eq!(v["freeText"], "Added 10% discount");
    assert_eq!(v["status"], "PENDING");
    assert_eq!(v["oneClickRequested"], true);
    assert!(v.get("card").is_none(), "no reveal scope, no card: {v}");
    assert!(!r.text().contains("\"737\"") && !r.text().contains("cvv"));
    let tx = v["txId"].as_str().unwrap().to_owned();
    assert_eq!(d.vault.held_cvvs(), 1);

    // The acquirer leg: tokenize-only keys may not take the card; the reveal key gets it, with the
    // CVV once.
    let path = format!("/payments/{tx}/card");
    assert_eq!(
        d.send("POST", &path, Some(&d.keys.tokenize), None)
            .await
            .status,
        403
    );
    // Another merchant's payment ids do not exist for it.
    assert_eq!(
        d.send("POST", &path, Some(&d.keys.other), None)
            .await
            .status,
        404
    );
    let first = d.send("POST", &path, Some(&d.keys.reveal), None).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["card"]["number"], "4242424242424242");
    assert_eq!(first.json()["card"]["expiryMonth"], "02");
    assert_eq!(first.json()["card"]["expiryYear"], "2028");
    assert_eq!(first.json()["card"]["cvv"], "737");
    assert_eq!(d.vault.held_cvvs(), 0);
    let second = d.send("POST", &path, Some(&d.keys.reveal), None).await;
    assert_eq!(second.status, 200);
    assert!(
        second.json()["card"].get("cvv").is_none(),
        "{}",
        second.text()
    );

    // Not one-click until the payment is reported successful.
    assert!(
        !d.vault
            .is_one_click(merchant(), &card_token.parse_token())
            .unwrap()
    );
    let result = format!("/payments/{tx}/result");
    let r = d
        .send(
            "POST",
            &result,
            Some(&d.keys.tokenize),
            Some(r#"{"result":"success"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "SUCCEEDED");
    assert_eq!(r.json()["oneClickSaved"], true);
    assert!(
        d.vault
            .is_one_click(merchant(), &card_token.parse_token())
            .unwrap()
    );
    let twice = d
        .send(
            "POST",
            &result,
            Some(&d.keys.tokenize),
            Some(r#"{"result":"failure"}"#),
        )
        .await;
    assert_eq!(twice.status, 400);
    // After the outcome the card is no longer handed over for this payment.
    assert_eq!(
        d.send("POST", &path, Some(&d.keys.reveal), None)
            .await
            .status,
        404
    );

    // One-click: a later payment needs no CVV.
    let (session, _) = session_token(&d, "AUTH", "&paymentSolutionId=500").await;
    let r = pay(&d, &session, &card_token, "mgn456", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["action"], "AUTH");

    // Every step left an audit entry, none with the CVV or PAN.
    let tail = d.vault.audit_tail(100).unwrap();
    let actions: Vec<&str> = tail.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "session.create",
        "card.capture",
        "payment.use",
        "payment.card",
        "payment.result",
    ] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
    assert!(d.vault.audit_verify().unwrap().is_ok());
}

#[tokio::test]
async fn seed_004_failures() {
    let d = with_password().await;
    let (card_token, session) = stored_card_and_purchase_session(&d, "mgn456").await;
    // Missing CVV for a card not saved for one-click: named, session kept.
    let r = pay(&d, &session, &card_token, "mgn456", "").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        failure_errors(&r.json()),
        [(
            "This field is required in [REQUEST]".to_owned(),
            "specinCreditCardCVV".to_owned()
        )]
    );
    // Bad field forms.
    let r = form(
        &d,
        "/payments",
        &[],
        &format!(
            "merchantId={MERCHANT}&token={session}&specinCreditCardToken=xyz&customerIPAddress=2001:db8::1&setOneClickValueSettingForCard=maybe&specinCreditCardCVV=12a"
        ),
    )
    .await;
    assert_eq!(r.status, 400);
    let errs = failure_errors(&r.json());
    for field in [
        "specinCreditCardToken",
        "customerIPAddress",
        "setOneClickValueSettingForCard",
        "specinCreditCardCVV",
    ] {
        assert!(
            errs.contains(&("field.invalid".to_owned(), field.to_owned())),
            "{field}: {errs:?}"
        );
    }
    // The stored-card payment API's error example: action... here `merchantId` missing is named the same way.
    let r = form(&d, "/payments", &[], &format!("token={session}")).await;
    assert_eq!(
        failure_errors(&r.json())[0],
        (
            "This field is required in [REQUEST]".to_owned(),
            "merchantId".to_owned()
        )
    );
    // A different customer: failure naming customerId; the session is spent (no guessing).
    let r = pay(
        &d,
        &session,
        &card_token,
        "someone-else",
        "&specinCreditCardCVV=737",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        failure_errors(&r.json()),
        [("customerId.mismatch".to_owned(), "customerId".to_owned())]
    );
    let r = pay(
        &d,
        &session,
        &card_token,
        "mgn456",
        "&specinCreditCardCVV=737",
    )
    .await;
    assert_eq!(
        failure_errors(&r.json()),
        [("session.invalid".to_owned(), "token".to_owned())]
    );
    // Another merchant's card token: not found.
    let other = d
        .tokenize(
            &d.keys.other,
            r#"{"type":"card","card":{"pan":"4000056655665556","expiration_date":"2802"},"customer_id":"mgn456"}"#,
        )
        .await;
    let other_token = other.json()["token"].as_str().unwrap().to_owned();
    let (session, _) = session_token(&d, "VERIFY", "&paymentSolutionId=500").await;
    let r = pay(
        &d,
        &session,
        &other_token,
        "mgn456",
        "&specinCreditCardCVV=737",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        failure_errors(&r.json()),
        [(
            "token.not_found".to_owned(),
            "specinCreditCardToken".to_owned()
        )]
    );
    // A TOKENIZE session cannot pay; a payment session cannot capture.
    let (tokenize, _) = session_token(&d, "TOKENIZE", "").await;
    let r = pay(&d, &tokenize, &card_token, "mgn456", "").await;
    assert_eq!(r.status, 400);
    let (purchase, _) = session_token(&d, "PURCHASE", "&paymentSolutionId=500").await;
    let r = form(
        &d,
        "/payments",
        &[],
        &format!("merchantId={MERCHANT}&{}", card_form(&purchase)),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        failure_errors(&r.json()),
        [(
            "This field is required in [REQUEST]".to_owned(),
            "specinCreditCardToken".to_owned()
        )]
    );
}

#[tokio::test]
async fn reveal_scope_receives_the_card_with_the_payment() {
    let d = with_password().await;
    let (card_token, session) = stored_card_and_purchase_session(&d, "mgn456").await;
    let auth = format!("Bearer {}", d.keys.reveal);
    let r = form(
        &d,
        "/payments",
        &[("Authorization", &auth)],
        &stored_card_payment_body(&session, &card_token, "mgn456", "&specinCreditCardCVV=1234"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let card = &r.json()["card"];
    assert_eq!(card["number"], "4242424242424242");
    assert_eq!(card["cvv"], "1234");
    assert_eq!(d.vault.held_cvvs(), 0, "handed over at once, nothing held");
    // Another merchant's key is refused outright.
    let (session, _) = session_token(&d, "PURCHASE", "&paymentSolutionId=500").await;
    let auth = format!("Bearer {}", d.keys.other);
    let r = form(
        &d,
        "/payments",
        &[("Authorization", &auth)],
        &stored_card_payment_body(&session, &card_token, "mgn456", "&specinCreditCardCVV=1234"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
}

#[tokio::test]
async fn library_sessions_carry_payment_fields() {
    let d = with_password().await;
    let (token, v) = session_token(&d, "TOKENIZE", "&customerId=c-1").await;
    let card = form(&d, "/payments", &[], &card_form(&token)).await.json();
    assert_eq!(v["customerId"], "c-1");
    // Everything given up front with the session (the stored-card payment API: "if not received in the Session
    // Token Request").
    let s = d
        .vault
        .create_session(
            merchant(),
            SessionKind::Purchase,
            SessionOptions {
                customer: Some(vault_service::CustomerId::parse("c-1").unwrap()),
                customer_ip: Some("198.51.100.1".parse().unwrap()),
                payment_solution_id: Some(500),
                card_token: Some(card["cardToken"].as_str().unwrap().parse_token()),
                ..SessionOptions::default()
            },
        )
        .unwrap();
    let r = form(
        &d,
        "/payments",
        &[],
        &format!(
            "merchantId={MERCHANT}&token={}&specinCreditCardCVV=123",
            s.token
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["customerId"], "c-1");
}

trait ParseToken {
    fn parse_token(&self) -> vault_service::Token;
}

impl ParseToken for str {
    fn parse_token(&self) -> vault_service::Token {
        vault_service::Token::parse(self).unwrap()
    }
}

#[tokio::test]
async fn idempotency_keys_on_token_and_payments() {
    let d = with_password().await;
    let key = ("Idempotency-Key", "5b2f9a8e-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
    let body = session_token_body(&d, "TOKENIZE", "&customerId=idem-1");
    let first = form(&d, "/token", &[key], &body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = form(&d, "/token", &[key], &body).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["token"], first.json()["token"]);
    // A replay still needs the right password.
    let wrong = form(
        &d,
        "/token",
        &[key],
        &body.replace(PASSWORD, "wrong-password"),
    )
    .await;
    assert_eq!(wrong.status, 401);
    // Same key, different request.
    let other = form(
        &d,
        "/token",
        &[key],
        &session_token_body(&d, "TOKENIZE", "&customerId=idem-2"),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.text());
    assert_eq!(
        failure_errors(&other.json()),
        [(
            "idempotency.mismatch".to_owned(),
            "Idempotency-Key".to_owned()
        )]
    );

    // A capture retried with its key: the same card token, one record.
    let session = first.json()["token"].as_str().unwrap().to_owned();
    let pkey = ("Idempotency-Key", "7c3e1b2a-9d8f-4a6b-b5c4-3d2e1f0a9b8c");
    let a = form(&d, "/payments", &[pkey], &card_form(&session)).await;
    let b = form(&d, "/payments", &[pkey], &card_form(&session)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(b.status, 200, "{}", b.text());
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    assert_eq!(a.json()["cardToken"], b.json()["cardToken"]);
    assert_eq!(d.vault.stats().records, 1);

    // A reveal-scoped payment replays without the card.
    let card_token = a.json()["cardToken"].as_str().unwrap().to_owned();
    let (purchase, _) = session_token(&d, "PURCHASE", "&paymentSolutionId=500").await;
    let auth = format!("Bearer {}", d.keys.reveal);
    let rkey = ("Idempotency-Key", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d");
    let body = stored_card_payment_body(
        &purchase,
        &card_token,
        "idem-1",
        "&specinCreditCardCVV=4321",
    );
    let paid = form(&d, "/payments", &[("Authorization", &auth), rkey], &body).await;
    assert_eq!(paid.status, 200, "{}", paid.text());
    assert_eq!(paid.json()["card"]["cvv"], "4321");
    let replay = form(&d, "/payments", &[("Authorization", &auth), rkey], &body).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json()["txId"], paid.json()["txId"]);
    assert!(replay.json().get("card").is_none(), "{}", replay.text());
    // Another merchant's key is refused on a replay as on a first request.
    let theirs = format!("Bearer {}", d.keys.other);
    let r = form(&d, "/payments", &[("Authorization", &theirs), rkey], &body).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.header("idempotent-replayed").is_none());
    assert_eq!(
        failure_errors(&r.json()),
        [(
            "authorization.merchant".to_owned(),
            "Authorization".to_owned()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_stays_bounded_and_tokenize_keeps_serving() {
    let d = with_password().await;
    // The default Argon2id cost (19 MiB, t=2), two hashing slots, four waiting places.
    d.vault.set_login_policy(vault_gateway::LoginPolicy {
        max_concurrent_hashes: 2,
        max_waiting: 4,
        ..vault_gateway::LoginPolicy::default()
    });
    let mut flood = Vec::new();
    for i in 0..60u32 {
        let sock = d.sock.clone();
        // Different merchant ids (mostly unknown) so the per-merchant limit is not what stops them.
        let body = format!(
            "merchantId={}&password=guess{i}&action=TOKENIZE&timestamp={}&allowOriginUrl=*",
            100 + i,
            clock_ms(&d)
        );
        let req = request(
            "POST",
            "/token",
            &[],
            "application/x-www-form-urlencoded",
            &body,
        );
        flood.push(tokio::spawn(async move { raw(&sock, &req).await.unwrap() }));
    }
    // Meanwhile, tokenize keeps being served.
    for i in 0..20 {
        let r = d
            .tokenize(&d.keys.tokenize, vault_testkit::daemon::SEED_003)
            .await;
        assert_eq!(r.status, 201, "tokenize {i} during the flood: {}", r.text());
    }
    let mut by_status = std::collections::BTreeMap::new();
    for t in flood {
        let r = t.await.unwrap();
        let code = failure_errors(&r.json())[0].0.clone();
        *by_status.entry((r.status, code)).or_insert(0) += 1;
    }
    let stats = d.vault.login_stats();
    // The memory bound: never more than two Argon2id instances (2 x 19 MiB) at once.
    assert!(stats.peak_hashing <= 2, "{stats:?}");
    assert!(
        stats.busy > 0,
        "the waiting room filled up: {stats:?} {by_status:?}"
    );
    for (status, code) in by_status.keys() {
        assert!(
            matches!(
                (*status, code.as_str()),
                (401, "credentials.invalid")
                    | (429, "login.rate_limited")
                    | (503, "service.unavailable")
            ),
            "{by_status:?}"
        );
    }
    // Visible to the operator.
    let metrics = d.send("GET", "/metrics", None, None).await.text();
    assert!(
        metrics.contains("cardvault_login_hashing_peak "),
        "{metrics}"
    );
    let busy_line = metrics
        .lines()
        .find(|l| l.starts_with("cardvault_login_busy_total "))
        .unwrap();
    assert_eq!(
        busy_line,
        format!("cardvault_login_busy_total {}", stats.busy)
    );
    // The real merchant still logs in afterwards.
    let (token, _) = session_token(&d, "TOKENIZE", "").await;
    assert_uuid_v4(&token);
}

#[tokio::test]
async fn only_answers_that_spent_a_session_are_kept_for_replay() {
    let d = with_password().await;
    let (session, _) = session_token(&d, "TOKENIZE", "").await;
    let key = ("Idempotency-Key", "2c4e6a8b-1d3f-4a5b-9c7d-8e0f1a2b3c4d");
    // Refused without spending the session (wrong origin): not stored, so the corrected retry
    // with the same key is served afresh.
    let r = form(
        &d,
        "/payments",
        &[key, ("Origin", "https://evil.example")],
        &card_form(&session),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = form(
        &d,
        "/payments",
        &[key, ("Origin", ORIGIN)],
        &card_form(&session),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("idempotent-replayed"), None);
    // A spent session with a fresh key: refused, and nothing stored for that key.
    let other = ("Idempotency-Key", "3d5f7b9c-2e4a-4b6c-8d8e-9f1a2b3c4d5e");
    for _ in 0..2 {
        let r = form(
            &d,
            "/payments",
            &[other, ("Origin", ORIGIN)],
            &card_form(&session),
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("idempotent-replayed"), None);
    }
}
