//! Who sees fingerprints and customer ids, and the masked-form limit on tokenization.

use vault_service::{MerchantId, Scope, Scopes};
use vault_testkit::{cards::luhn_valid, daemon::TestDaemon};

use crate::idempotency::{post, tokenize};

/// Luhn-valid 16-digit numbers `424242 xxxxxx 4242`, all with the same masked form.
fn same_mask_pans(n: usize) -> Vec<String> {
    (0..1_000_000u32)
        .map(|mid| format!("424242{mid:06}4242"))
        .filter(|p| luhn_valid(p))
        .take(n)
        .collect()
}

fn body(pan: &str) -> String {
    format!(
        r#"{{"type":"card","card":{{"pan":"{pan}","expiration_date":"2802"}},"customer_id":"cust-1"}}"#
    )
}

/// A `PUT /v2/tokens/{token}` body replacing the card with `pan`.
fn put_body(pan: &str) -> String {
    format!(r#"{{"card":{{"pan":"{pan}","expiration_date":"2802"}}}}"#)
}

fn key(d: &TestDaemon, scopes: &[Scope]) -> String {
    d.vault
        .create_api_key(MerchantId::new(890_490).unwrap(), Scopes::of(scopes), "t")
        .unwrap()
        .expose()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_only_key_sees_no_fingerprint_or_customer() {
    let d = TestDaemon::start().await;
    let r = d
        .tokenize(&d.keys.tokenize, &body("4242424242424242"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert!(v.get("fingerprint").is_none(), "{v}");
    assert!(v.get("customer_id").is_none(), "{v}");
    assert_eq!(v["card"]["masked_pan"], "424242****4242");
    let token = v["token"].as_str().unwrap().to_owned();
    let path = format!("/v2/tokens/{token}");
    let got = d
        .send("GET", &path, Some(&d.keys.tokenize), None)
        .await
        .json();
    assert!(got.get("fingerprint").is_none(), "{got}");
    assert!(got.get("customer_id").is_none(), "{got}");
    assert_eq!(got["card"]["masked_pan"], "424242****4242");
    let put = d
        .send(
            "PUT",
            &path,
            Some(&d.keys.tokenize),
            Some(r#"{"card":{"pan":"4111111111111111","expiration_date":"2802"}}"#),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(put.json().get("fingerprint").is_none());
    let batch = format!(r#"{{"items":[{}]}}"#, body("5555555555554444"));
    let b = d
        .send(
            "POST",
            "/v2/tokens/batch",
            Some(&d.keys.tokenize),
            Some(&batch),
        )
        .await
        .json();
    assert!(b["results"][0].get("fingerprint").is_none(), "{b}");
    assert!(b["results"][0].get("customer_id").is_none(), "{b}");

    // A key with `fingerprint` (or `reveal`) sees both.
    let fp = key(&d, &[Scope::Tokenize, Scope::Fingerprint]);
    for k in [&fp, &d.keys.both] {
        let got = d.send("GET", &path, Some(k), None).await.json();
        assert_eq!(got["fingerprint"].as_str().unwrap().len(), 64, "{got}");
        assert_eq!(got["customer_id"], "cust-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleventh_distinct_card_with_one_masked_form_is_refused_and_audited() {
    let d = TestDaemon::start().await;
    let pans = same_mask_pans(12);
    for pan in &pans[..10] {
        let r = d.tokenize(&d.keys.tokenize, &body(pan)).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // Repeating a card already seen (a retry, a dedupe) is not a new distinct card.
    let again = d.tokenize(&d.keys.tokenize, &body(&pans[3])).await;
    assert_eq!(again.status, 201);
    let r = d.tokenize(&d.keys.tokenize, &body(&pans[10])).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.error_fields(),
        [("card.pan".into(), "masked_form_limit".into())]
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert!(!r.text().contains(&pans[10]));
    // In a batch, the refused item gets its own 429.
    let batch = format!(r#"{{"items":[{}]}}"#, body(&pans[11]));
    let b = d
        .send(
            "POST",
            "/v2/tokens/batch",
            Some(&d.keys.tokenize),
            Some(&batch),
        )
        .await
        .json();
    assert_eq!(b["results"][0]["status"], 429, "{b}");
    // Other cards, and other keys, are unaffected.
    let ok = d
        .tokenize(&d.keys.tokenize, &body("5555555555554444"))
        .await;
    assert_eq!(ok.status, 201);
    let other = d.tokenize(&d.keys.both, &body(&pans[10])).await;
    assert_eq!(other.status, 201);
    // Replacing a token's card counts as tokenizing it: no way around the limit through `PUT`.
    let token = ok.json()["token"].as_str().unwrap().to_owned();
    let put = d
        .send(
            "PUT",
            &format!("/v2/tokens/{token}"),
            Some(&d.keys.tokenize),
            Some(&put_body(&pans[10])),
        )
        .await;
    assert_eq!(put.status, 429, "{}", put.text());
    assert_eq!(
        put.error_fields(),
        [("card.pan".into(), "masked_form_limit".into())]
    );
    assert!(!put.text().contains(&pans[10]));
    // A card already seen under the key is admitted there too.
    let put = d
        .send(
            "PUT",
            &format!("/v2/tokens/{token}"),
            Some(&d.keys.tokenize),
            Some(&put_body(&pans[2])),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());

    d.vault.barrier().unwrap();
    let limited: Vec<_> = d
        .vault
        .audit_tail(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action.as_str() == "tokenize.masked_form_limited")
        .collect();
    // Two refusals within a minute: audited once.
    assert_eq!(limited.len(), 1, "{limited:?}");
    let detail = limited[0].detail.clone().unwrap();
    assert!(detail.contains("form=424242****4242"), "{detail}");
    assert!(!detail.contains(&pans[10]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_cannot_test_cards_past_the_masked_form_limit() {
    // Another service's request, answered under an Idempotency-Key a second key of the
    // merchant knows. Whether a candidate card gets the replay (it is the stored card) or 409
    // (it is not) would be a card-match oracle: each candidate is counted before the lookup.
    let d = TestDaemon::start().await;
    let pans = same_mask_pans(12);
    const IDEM: &str = "5b0e8f8a-4c1d-4e2f-9a3b-6c7d8e9f0a1b";
    let stored = tokenize(&d, Some(IDEM), &body(&pans[11])).await;
    assert_eq!(stored.status, 201, "{}", stored.text());
    let attacker = key(&d, &[Scope::Tokenize]);
    for pan in &pans[..10] {
        let r = post(&d, "/v2/tokens", &attacker, Some(IDEM), &body(pan)).await;
        assert_eq!(r.status, 409, "{}", r.text());
    }
    // The right card, as the eleventh distinct one: refused by the limit, not replayed.
    let r = post(&d, "/v2/tokens", &attacker, Some(IDEM), &body(&pans[11])).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("idempotent-replayed"), None);
    // The same for a batch.
    let batch = |pan: &str| format!(r#"{{"items":[{}]}}"#, body(pan));
    let r = post(
        &d,
        "/v2/tokens/batch",
        &attacker,
        Some(IDEM),
        &batch(&pans[11]),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    // The service that stored the answer still gets its replay (its card is counted under
    // its own key, where it is no new card).
    let again = tokenize(&d, Some(IDEM), &body(&pans[11])).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}
