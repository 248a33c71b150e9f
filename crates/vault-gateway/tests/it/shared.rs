//! Several daemons on one PostgreSQL vault, simulated by two gateways over two `Vault`s opened on
//! one test database in this process (each with its own clock and memory: login cache and
//! counters, CVV store): login failures add up across daemons and a lockout or unlock is seen by
//! every one; a password changed on one is not accepted from another's cache; a CVV given to one
//! is handed over through the other, exactly once; a session is spent once; a payment's outcome
//! is reported once.

use std::{
    sync::{Arc, Barrier},
    thread,
};

use time::Duration;
use vault_gateway::{
    Cvv, Gateway, GatewayError, LoginPolicy, MerchantPassword, PaymentId, PaymentRequest,
    SessionKind, SessionOptions, SessionToken,
};
use vault_service::{CustomerId, ManualClock, MerchantId, TokenInfo, TokenizeOptions, VaultError};
use vault_testkit::{engine::SharedVaults, postgres::TestDatabase};

use crate::common::card;

const PASSPHRASE: &str = "shared gateway test";
const PASSWORD: &str = "u16q9rZ02bW0jqTjxH8t";

/// Two daemons' gateways on one fresh database, each with its own clock (both at `T0`).
struct Pair {
    a: Gateway,
    b: Gateway,
    clock_a: Arc<ManualClock>,
    clock_b: Arc<ManualClock>,
    // Dropped last: the vaults close first.
    _db: TestDatabase,
}

impl Pair {
    fn both(&self) -> [&Gateway; 2] {
        [&self.a, &self.b]
    }

    fn advance(&self, d: Duration) {
        self.clock_a.advance(d);
        self.clock_b.advance(d);
    }
}

fn fast() -> LoginPolicy {
    LoginPolicy {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
        ..LoginPolicy::default()
    }
}

/// The pair, with merchant [`m`] added.
fn pair() -> Pair {
    let SharedVaults {
        a,
        b,
        clock_a,
        clock_b,
        db,
    } = SharedVaults::new(PASSPHRASE);
    let (a, b) = (Gateway::new(a), Gateway::new(b));
    a.set_login_policy(fast());
    b.set_login_policy(fast());
    a.add_merchant(m(), "Shop").unwrap();
    Pair {
        a,
        b,
        clock_a,
        clock_b,
        _db: db,
    }
}

fn m() -> MerchantId {
    MerchantId::new(890_490).unwrap()
}

fn pw(s: &str) -> MerchantPassword {
    MerchantPassword::new(s.to_owned()).unwrap()
}

fn unauthorized<T: std::fmt::Debug>(r: Result<T, GatewayError>) -> bool {
    matches!(r, Err(GatewayError::Vault(VaultError::Unauthorized)))
}

fn rate_limited<T: std::fmt::Debug>(r: Result<T, GatewayError>) -> bool {
    matches!(r, Err(GatewayError::RateLimited))
}

#[test]
fn login_failures_add_up_across_daemons_and_an_unlock_is_seen_by_all() {
    let p = pair();
    p.a.set_merchant_password(m(), &pw(PASSWORD)).unwrap();
    // Five wrong passwords, spread over the two daemons (the default limit is 5 per merchant).
    for v in [&p.a, &p.b, &p.a, &p.b, &p.a] {
        assert!(unauthorized(v.login(m(), &pw("wrong password"))));
    }
    // Locked on both, the right password included.
    for v in p.both() {
        assert!(rate_limited(v.login(m(), &pw(PASSWORD))));
    }
    // Unlocked through one daemon: both let the merchant in again.
    p.b.unlock_merchant(m()).unwrap();
    for v in p.both() {
        v.login(m(), &pw(PASSWORD)).unwrap();
    }
    // The window slides on each daemon's clock.
    for v in [&p.a, &p.b, &p.a, &p.b, &p.a] {
        assert!(unauthorized(v.login(m(), &pw("wrong password"))));
    }
    assert!(rate_limited(p.b.login(m(), &pw(PASSWORD))));
    p.advance(Duration::minutes(15));
    p.b.login(m(), &pw(PASSWORD)).unwrap();
    // The sweep removes the record of failures that slid out of the window.
    assert_eq!(failures_stored(&p.a), Some(5));
    p.a.sweep_sessions().unwrap();
    assert_eq!(failures_stored(&p.a), None);
}

/// How many failures the store keeps for [`m`] (`None`: no record).
fn failures_stored(v: &Gateway) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Rec {
        _v: u8,
        failures: Vec<i64>,
    }
    let mut key = vec![b'L'];
    key.extend_from_slice(&m().get().to_be_bytes());
    v.read(&key)
        .unwrap()
        .map(|b| postcard::from_bytes::<Rec>(&b).unwrap().failures.len())
}

#[test]
fn concurrent_failures_on_two_daemons_are_all_counted() {
    let p = pair();
    for v in p.both() {
        v.set_login_policy(LoginPolicy {
            merchant_failures: 1000,
            ..fast()
        });
    }
    p.a.set_merchant_password(m(), &pw(PASSWORD)).unwrap();
    const PER_DAEMON: usize = 4;
    let barrier = Arc::new(Barrier::new(2 * PER_DAEMON));
    let handles: Vec<_> = (0..2 * PER_DAEMON)
        .map(|i| {
            let v = if i % 2 == 0 { p.a.clone() } else { p.b.clone() };
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                assert!(unauthorized(v.login(m(), &pw("wrong password"))));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Conditional writes: no failure lost to a concurrent one.
    assert_eq!(failures_stored(&p.b), Some(2 * PER_DAEMON));
}

#[test]
fn a_password_changed_on_one_daemon_is_not_accepted_from_anothers_cache() {
    let p = pair();
    p.a.set_merchant_password(m(), &pw(PASSWORD)).unwrap();
    p.b.login(m(), &pw(PASSWORD)).unwrap();
    p.b.login(m(), &pw(PASSWORD)).unwrap();
    assert_eq!(p.b.login_stats().cache_hits, 1);
    p.a.set_merchant_password(m(), &pw("the second password"))
        .unwrap();
    assert!(unauthorized(p.b.login(m(), &pw(PASSWORD))));
    p.b.login(m(), &pw("the second password")).unwrap();
}

/// A card of customer `cust-1`, tokenized through `v`.
fn saved_card(v: &Gateway) -> (CustomerId, TokenInfo) {
    let customer = CustomerId::parse("cust-1").unwrap();
    let info = v
        .tokenize(
            m(),
            card("4242424242424242", "2802"),
            TokenizeOptions {
                customer: Some(customer.clone()),
                ..TokenizeOptions::default()
            },
        )
        .unwrap();
    (customer, info)
}

fn purchase_session(v: &Gateway) -> SessionToken {
    v.create_session(m(), SessionKind::Purchase, SessionOptions::default())
        .unwrap()
        .token
}

fn request(token: &TokenInfo, customer: &CustomerId, cvv: Option<&str>) -> PaymentRequest {
    PaymentRequest {
        merchant: Some(m()),
        card_token: Some(token.token),
        customer: Some(customer.clone()),
        cvv: cvv.map(|c| Cvv::parse(c).unwrap()),
        customer_ip: Some("203.0.113.9".parse().unwrap()),
        payment_solution_id: Some(500),
        ..PaymentRequest::default()
    }
}

fn pay(v: &Gateway, token: &TokenInfo, customer: &CustomerId, cvv: &str) -> PaymentId {
    let s = purchase_session(v);
    v.start_payment(&s, None, request(token, customer, Some(cvv)))
        .unwrap()
        .id
}

#[test]
fn a_cvv_given_to_one_daemon_is_handed_over_by_the_other_once() {
    let p = pair();
    let (customer, token) = saved_card(&p.a);
    let id = pay(&p.a, &token, &customer, "9731");
    for v in p.both() {
        assert_eq!(v.held_cvvs(), 1, "in the store, seen by both daemons");
    }
    // Sealed in the store: its digits are not there in clear.
    let mut key = vec![b'H'];
    key.extend_from_slice(uuid_bytes(&id).as_slice());
    let stored = p.b.read(&key).unwrap().expect("held in the store");
    assert!(!stored.windows(4).any(|w| w == b"9731"));
    let card = p.b.payment_card(m(), &id).unwrap();
    assert_eq!(card.cvv.unwrap().expose_digits(), "9731");
    assert_eq!(card.pan.expose_digits(), "4242424242424242");
    for v in p.both() {
        assert!(
            v.payment_card(m(), &id).unwrap().cvv.is_none(),
            "taken once"
        );
        assert_eq!(v.held_cvvs(), 0);
    }
    // Another merchant never sees it.
    let other = MerchantId::new(777).unwrap();
    let second = pay(&p.b, &token, &customer, "4321");
    assert!(matches!(
        p.a.payment_card(other, &second),
        Err(GatewayError::Vault(VaultError::NotFound))
    ));
    assert_eq!(p.a.held_cvvs(), 1);
    // A reported outcome drops it, whichever daemon reports.
    p.a.report_payment(m(), &second, true).unwrap();
    assert_eq!(p.b.held_cvvs(), 0);
    // Not handed out at or after its session's expiry, and swept.
    let third = pay(&p.a, &token, &customer, "5555");
    p.advance(Duration::minutes(10));
    assert_eq!(p.b.held_cvvs(), 1);
    p.b.sweep_sessions().unwrap();
    assert_eq!(p.a.held_cvvs(), 0);
    assert!(p.a.payment_card(m(), &third).unwrap().cvv.is_none());
}

/// The 16 bytes of a payment id (its hyphenated UUID).
fn uuid_bytes(id: &PaymentId) -> Vec<u8> {
    hex::decode(id.to_string().replace('-', "")).unwrap()
}

#[test]
fn concurrent_hand_overs_on_two_daemons_give_the_cvv_once() {
    let p = pair();
    let (customer, token) = saved_card(&p.a);
    for round in 0..3 {
        let id = pay(&p.b, &token, &customer, "9731");
        const PER_DAEMON: usize = 3;
        let barrier = Arc::new(Barrier::new(2 * PER_DAEMON));
        let handles: Vec<_> = (0..2 * PER_DAEMON)
            .map(|i| {
                let v = if i % 2 == 0 { p.a.clone() } else { p.b.clone() };
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    v.payment_card(m(), &id).unwrap().cvv.is_some()
                })
            })
            .collect();
        let with_cvv = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&got| got)
            .count();
        assert_eq!(with_cvv, 1, "round {round}");
    }
}

#[test]
fn a_hosted_payment_captured_on_one_daemon_hands_its_cvv_over_on_the_other() {
    let p = pair();
    let s =
        p.a.create_session(m(), SessionKind::HostedPayment, SessionOptions::default())
            .unwrap();
    let captured =
        p.a.capture_card(
            &s.token,
            None,
            card("4242424242424242", "2802"),
            Some(Cvv::parse("321").unwrap()),
        )
        .unwrap();
    let payment = captured.payment.expect("a hosted payment starts one");
    assert_eq!(p.b.held_cvvs(), 1);
    let card = p.b.payment_card(m(), &payment.id).unwrap();
    assert_eq!(card.cvv.unwrap().expose_digits(), "321");
    assert!(p.a.payment_card(m(), &payment.id).unwrap().cvv.is_none());
}

#[test]
fn a_session_is_spent_once_across_daemons() {
    let p = pair();
    let (customer, token) = saved_card(&p.a);
    for round in 0..3 {
        let session = purchase_session(&p.a);
        const PER_DAEMON: usize = 3;
        let barrier = Arc::new(Barrier::new(2 * PER_DAEMON));
        let handles: Vec<_> = (0..2 * PER_DAEMON)
            .map(|i| {
                let v = if i % 2 == 0 { p.a.clone() } else { p.b.clone() };
                let barrier = barrier.clone();
                let request = request(&token, &customer, Some("123"));
                thread::spawn(move || {
                    barrier.wait();
                    v.start_payment(&session, None, request)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let spent = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(spent, 1, "round {round}: exactly one spend");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, GatewayError::SessionInvalid)),
            "round {round}: the others find the session spent"
        );
    }
    // Only the one payment of each round holds a CVV.
    assert_eq!(p.b.held_cvvs(), 3);
}

#[test]
fn a_payment_outcome_is_reported_once_across_daemons() {
    let p = pair();
    let (customer, token) = saved_card(&p.a);
    let id = pay(&p.a, &token, &customer, "123");
    const PER_DAEMON: usize = 3;
    let barrier = Arc::new(Barrier::new(2 * PER_DAEMON));
    let handles: Vec<_> = (0..2 * PER_DAEMON)
        .map(|i| {
            let v = if i % 2 == 0 { p.a.clone() } else { p.b.clone() };
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                v.report_payment(m(), &id, i % 3 == 0)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(
        |e| matches!(e, GatewayError::Vault(VaultError::Invalid(f)) if f.code == "already_reported")
    ));
}

#[test]
fn a_card_replaced_on_one_daemon_is_never_paid_without_its_cvv_on_the_other() {
    // One-click: a card saved after a successful payment may be paid without a CVV; replacing
    // the card behind the token (on any daemon) clears the mark.
    let p = pair();
    let (customer, token) = saved_card(&p.a);
    let s = purchase_session(&p.a);
    let mut req = request(&token, &customer, Some("123"));
    req.one_click = true;
    let id = p.a.start_payment(&s, None, req).unwrap().id;
    p.b.report_payment(m(), &id, true).unwrap();
    assert!(p.a.is_one_click(m(), &token.token).unwrap());
    let s = purchase_session(&p.b);
    p.b.start_payment(&s, None, request(&token, &customer, None))
        .unwrap();
    p.a.update(
        m(),
        &token.token,
        card("5555555555554444", "2802"),
        vault_service::UpdateOptions::default(),
    )
    .unwrap();
    assert!(!p.b.is_one_click(m(), &token.token).unwrap());
    let s = purchase_session(&p.b);
    assert!(matches!(
        p.b.start_payment(&s, None, request(&token, &customer, None)),
        Err(GatewayError::Vault(VaultError::Invalid(f))) if f.field == "specinCreditCardCVV"
    ));
}
