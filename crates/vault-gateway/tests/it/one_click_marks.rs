//! One-click marks (the vault's per-token marks, MAC'd and bound to their token): a moved or
//! altered mark counts as absent (moved from vault-service's record-MAC tests with the gateway).

use crate::common;

use common::*;

/// A one-click mark lets a card be paid without a CVV: a mark moved to another token's key (or
/// altered) counts as absent, so the payment needs its CVV again.
#[test]
fn moved_one_click_marks_count_as_absent() {
    use vault_gateway::{Cvv, Gateway, PaymentRequest, SessionKind, SessionOptions};
    use vault_service::{CustomerId, TokenizeOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let (v, clock) = new_vault(&path);
    let v = Gateway::new(v);
    let m = merchant(890490);
    v.add_merchant(m, "Shop").unwrap();
    let customer = CustomerId::parse("cust-1").unwrap();
    let pay_once = |v: &Gateway, pan: &str| {
        let token = v
            .tokenize(
                m,
                card(pan, "3001"),
                TokenizeOptions {
                    customer: Some(customer.clone()),
                    ..TokenizeOptions::default()
                },
            )
            .unwrap()
            .token;
        let s = v
            .create_session(m, SessionKind::Purchase, SessionOptions::default())
            .unwrap();
        let p = v
            .start_payment(
                &s.token,
                None,
                PaymentRequest {
                    merchant: Some(m),
                    card_token: Some(token),
                    customer: Some(customer.clone()),
                    cvv: Some(Cvv::parse("123").unwrap()),
                    one_click: true,
                    customer_ip: Some("203.0.113.9".parse().unwrap()),
                    payment_solution_id: Some(500),
                    ..PaymentRequest::default()
                },
            )
            .unwrap();
        assert!(v.report_payment(m, &p.id, true).unwrap().one_click_saved);
        token
    };
    let a = pay_once(&v, "4242424242424242");
    let b = pay_once(&v, "5555555555554444");
    assert!(v.is_one_click(m, &a).unwrap() && v.is_one_click(m, &b).unwrap());
    v.flush().unwrap();
    drop(v);

    // Swap the two marks' values: each now sits under the other token's key.
    {
        let db = open_sled(&path.join("sled"));
        let marks: Vec<(sled::IVec, sled::IVec)> =
            db.scan_prefix(b"O").map(|r| r.unwrap()).collect();
        assert_eq!(marks.len(), 2);
        db.insert(&marks[0].0, marks[1].1.clone()).unwrap();
        db.insert(&marks[1].0, marks[0].1.clone()).unwrap();
        db.flush().unwrap();
    }
    let v = Gateway::new(reopen(&path, clock));
    assert!(!v.is_one_click(m, &a).unwrap());
    assert!(!v.is_one_click(m, &b).unwrap());
}
