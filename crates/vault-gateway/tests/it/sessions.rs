//! Sessions and payments in the library: expiry with an injected clock, single use, what is (and
//! is never) written to disk, sweeping, and the CVV's one use.

use crate::common;

use std::sync::Arc;

use common::files_contain;

use time::{Duration, macros::datetime};
use vault_gateway::{
    Cvv, Gateway, GatewayError, PaymentRequest, SessionKind, SessionOptions, TerminalId,
};
use vault_service::{
    CustomerId, Durability, Expiry, KdfParams, KeySource, ManualClock, MerchantId, NewCard, Pan,
    Passphrase, TokenizeOptions, Vault, VaultError, VaultOptions,
};

fn vault(dir: &std::path::Path) -> (Gateway, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00:00 UTC)));
    let key = KeySource::Passphrase(Passphrase::new("sessions test".into()).unwrap());
    let v = Vault::create(
        dir.join("v"),
        &key,
        VaultOptions {
            durability: Durability::Flush,
            kdf: KdfParams::insecure_for_tests(),
            clock: clock.clone(),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    (Gateway::new(v), clock)
}

fn m() -> MerchantId {
    MerchantId::new(890_490).unwrap()
}

/// Merchant `m()` and one card of its customer `cust-1`.
fn saved_card(v: &Vault) -> (CustomerId, vault_service::TokenInfo) {
    v.add_merchant(m(), "m").unwrap();
    let customer = CustomerId::parse("cust-1").unwrap();
    let info = v
        .tokenize(
            m(),
            card(),
            TokenizeOptions {
                customer: Some(customer.clone()),
                ..TokenizeOptions::default()
            },
        )
        .unwrap();
    (customer, info)
}

fn card() -> NewCard {
    new_card("4242424242424242", "2802")
}

fn new_card(pan: &str, yymm: &str) -> NewCard {
    NewCard::new(Pan::parse(pan).unwrap(), Expiry::parse_yymm(yymm).unwrap())
}

/// Puts `card` behind `token` (as a `PUT` or a hosted update does).
fn put_card(v: &Vault, token: &vault_service::Token, card: NewCard) {
    v.update(m(), token, card, vault_service::UpdateOptions::default())
        .unwrap();
}

#[test]
fn tokenize_sessions_capture_once_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let (v, clock) = vault(dir.path());
    v.add_merchant(m(), "m").unwrap();
    let s = v
        .create_session(m(), SessionKind::Tokenize, SessionOptions::default())
        .unwrap();
    // A generated customer id, 20 characters.
    let customer = s.customer.clone().unwrap();
    assert_eq!(customer.as_str().len(), 20);
    assert_eq!(s.expires_at - s.created_at, Duration::minutes(10));
    let cap = v.capture_card(&s.token, None, card(), None).unwrap();
    assert_eq!(cap.info.customer.as_ref(), Some(&customer));
    assert!(matches!(
        v.capture_card(&s.token, None, card(), None),
        Err(GatewayError::SessionInvalid)
    ));
    // Expiry: the last second works, the next does not.
    let s = v
        .create_session(m(), SessionKind::Tokenize, SessionOptions::default())
        .unwrap();
    clock.advance(Duration::minutes(10) - Duration::seconds(1));
    assert!(v.session(&s.token).is_ok());
    clock.advance(Duration::seconds(1));
    assert!(matches!(
        v.session(&s.token),
        Err(GatewayError::SessionInvalid)
    ));
    assert!(matches!(
        v.capture_card(&s.token, None, card(), None),
        Err(GatewayError::SessionInvalid)
    ));
    // Kept an hour past expiry (for idempotent retries), then swept.
    assert_eq!(v.session_merchant(&s.token).unwrap(), m());
    assert_eq!(v.sweep_sessions().unwrap(), 0);
    clock.advance(Duration::hours(1));
    assert_eq!(v.sweep_sessions().unwrap(), 2);
    assert!(matches!(
        v.session_merchant(&s.token),
        Err(GatewayError::SessionInvalid)
    ));
    // The session token is never on disk.
    v.flush().unwrap();
    drop(v);
    assert!(!files_contain(dir.path(), s.token.to_string().as_bytes()));
    assert!(!files_contain(dir.path(), s.token.as_bytes()));
}

#[test]
fn session_bindings_are_checked_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = vault(dir.path());
    let other = MerchantId::new(777).unwrap();
    v.add_merchant(m(), "m").unwrap();
    v.add_merchant(other, "o").unwrap();
    v.add_terminal(other, TerminalId::parse("9999001").unwrap())
        .unwrap();
    for terminal in ["9999001", "5555555"] {
        let r = v.create_session(
            m(),
            SessionKind::HostedPayment,
            SessionOptions {
                terminal: Some(TerminalId::parse(terminal).unwrap()),
                ..SessionOptions::default()
            },
        );
        assert!(
            matches!(r, Err(GatewayError::Vault(VaultError::Forbidden))),
            "{terminal}"
        );
    }
    let theirs = v
        .tokenize(other, card(), TokenizeOptions::default())
        .unwrap();
    let r = v.create_session(
        m(),
        SessionKind::HostedTokenization,
        SessionOptions {
            secure_token: Some(theirs.token),
            ..SessionOptions::default()
        },
    );
    assert!(
        matches!(r, Err(GatewayError::Vault(VaultError::Invalid(f))) if f.field == "secureTokenId")
    );
    let r = v.create_session(
        m(),
        SessionKind::Tokenize,
        SessionOptions {
            card_description: Some("x".repeat(51)),
            ..SessionOptions::default()
        },
    );
    assert!(
        matches!(r, Err(GatewayError::Vault(VaultError::Invalid(f))) if f.field == "cardDescription")
    );
}

/// A PURCHASE payment with the saved card of [`saved_card`] and `cvv`, held for the acquirer leg.
fn pay_with_cvv(
    v: &Gateway,
    customer: &CustomerId,
    saved: &vault_service::TokenInfo,
    cvv: &str,
) -> vault_gateway::PaymentStarted {
    start_purchase(
        v,
        saved.token,
        customer,
        Some(cvv),
        false,
        SessionOptions::default(),
    )
    .unwrap()
}

#[test]
fn a_card_put_behind_the_token_after_the_payment_is_never_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _clock) = vault(dir.path());
    let (customer, saved) = saved_card(&v);
    let started = pay_with_cvv(&v, &customer, &saved, "9731");
    // Another card behind the same token (a PUT, a hosted update) before the hand-over.
    put_card(&v, &saved.token, new_card("5105105105105100", "2802"));
    let entries = v.audit_tail(usize::MAX).unwrap().len();
    let refused = v.payment_card(m(), &started.id);
    // Refused, and audited once.
    let after = v.audit_tail(usize::MAX).unwrap();
    assert_eq!(after.len(), entries + 1);
    assert_eq!(after[entries].action.as_str(), "payment.card");
    assert_ne!(after[entries].outcome, vault_service::AuditOutcome::Ok);
    assert!(
        matches!(&refused, Err(GatewayError::Vault(VaultError::Invalid(f))) if f.code == "card_changed"),
        "{refused:?}"
    );
    // The card the payment was made with, back behind the token: handed over, with its CVV.
    put_card(&v, &saved.token, card());
    let card = v.payment_card(m(), &started.id).unwrap();
    assert_eq!(card.pan.expose_digits(), "4242424242424242");
    assert_eq!(card.cvv.as_ref().unwrap().expose_digits(), "9731");
    // The token deleted: the payment's card is not found.
    v.delete(m(), &saved.token).unwrap();
    assert!(matches!(
        v.payment_card(m(), &started.id),
        Err(GatewayError::Vault(VaultError::NotFound))
    ));
}

#[test]
fn the_cvv_lives_in_memory_once_and_never_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (v, clock) = vault(dir.path());
    let (customer, saved) = saved_card(&v);
    let pay = |cvv: &str| pay_with_cvv(&v, &customer, &saved, cvv);
    let first = pay("9731");
    assert!(first.card.is_none());
    assert_eq!(v.held_cvvs(), 1);
    let card = v.payment_card(m(), &first.id).unwrap();
    assert_eq!(card.cvv.as_ref().unwrap().expose_digits(), "9731");
    assert_eq!(card.pan.expose_digits(), "4242424242424242");
    assert!(v.payment_card(m(), &first.id).unwrap().cvv.is_none());
    // Another merchant never sees the payment.
    assert!(matches!(
        v.payment_card(MerchantId::new(777).unwrap(), &first.id),
        Err(GatewayError::Vault(VaultError::NotFound))
    ));
    // A CVV nobody takes is dropped with its session.
    let second = pay("9731");
    assert_eq!(v.held_cvvs(), 1);
    clock.advance(Duration::minutes(10));
    v.sweep_sessions().unwrap();
    assert_eq!(v.held_cvvs(), 0);
    assert!(v.payment_card(m(), &second.id).unwrap().cvv.is_none());
    // Payment records go after a day.
    clock.advance(Duration::hours(24));
    v.sweep_sessions().unwrap();
    assert!(matches!(
        v.report_payment(m(), &second.id, true),
        Err(GatewayError::Vault(VaultError::NotFound))
    ));
    v.flush().unwrap();
    drop(v);
    assert!(
        !files_contain(dir.path(), b"9731"),
        "the CVV reached the disk"
    );
}

#[test]
fn failed_payments_do_not_save_cards_for_one_click() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = vault(dir.path());
    let (customer, saved) = saved_card(&v);
    let s = v
        .create_session(m(), SessionKind::Verify, SessionOptions::default())
        .unwrap();
    let p = v
        .start_payment(
            &s.token,
            None,
            PaymentRequest {
                merchant: Some(m()),
                card_token: Some(saved.token),
                customer: Some(customer),
                cvv: Some(Cvv::parse("123").unwrap()),
                one_click: true,
                customer_ip: Some("203.0.113.9".parse().unwrap()),
                payment_solution_id: Some(500),
                ..PaymentRequest::default()
            },
        )
        .unwrap();
    let info = v.report_payment(m(), &p.id, false).unwrap();
    assert!(!info.one_click_saved);
    assert!(!v.is_one_click(m(), &saved.token).unwrap());
    assert_eq!(v.held_cvvs(), 0, "the outcome drops the CVV");
}

/// A Purchase session and payment request for `saved`, as the tests above build them, asking
/// for one-click.
fn purchase(
    v: &Gateway,
    token: vault_service::Token,
    customer: &CustomerId,
    cvv: Option<&str>,
    session: SessionOptions,
) -> Result<vault_gateway::PaymentStarted, GatewayError> {
    start_purchase(v, token, customer, cvv, true, session)
}

/// A Purchase session and payment request with `token`, `cvv` and `one_click`.
fn start_purchase(
    v: &Gateway,
    token: vault_service::Token,
    customer: &CustomerId,
    cvv: Option<&str>,
    one_click: bool,
    session: SessionOptions,
) -> Result<vault_gateway::PaymentStarted, GatewayError> {
    let s = v
        .create_session(m(), SessionKind::Purchase, session)
        .unwrap();
    v.start_payment(
        &s.token,
        None,
        PaymentRequest {
            merchant: Some(m()),
            card_token: Some(token),
            customer: Some(customer.clone()),
            cvv: cvv.map(|c| Cvv::parse(c).unwrap()),
            one_click,
            customer_ip: Some("203.0.113.9".parse().unwrap()),
            payment_solution_id: Some(500),
            ..PaymentRequest::default()
        },
    )
}

#[test]
fn another_card_behind_a_token_is_not_one_click() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = vault(dir.path());
    let (customer, saved) = saved_card(&v);
    let p = purchase(
        &v,
        saved.token,
        &customer,
        Some("123"),
        SessionOptions::default(),
    )
    .unwrap();
    v.report_payment(m(), &p.id, true).unwrap();
    assert!(v.is_one_click(m(), &saved.token).unwrap());
    // The same card with a new expiry stays one-click...
    put_card(&v, &saved.token, new_card("4242424242424242", "2903"));
    assert!(v.is_one_click(m(), &saved.token).unwrap());
    assert!(purchase(&v, saved.token, &customer, None, SessionOptions::default()).is_ok());
    // ... another card behind the token is not, until a payment with it succeeds.
    put_card(&v, &saved.token, new_card("5555555555554444", "2903"));
    assert!(!v.is_one_click(m(), &saved.token).unwrap());
    let r = purchase(&v, saved.token, &customer, None, SessionOptions::default());
    assert!(
        matches!(&r, Err(GatewayError::Vault(VaultError::Invalid(f))) if f.field == "specinCreditCardCVV"),
        "{r:?}"
    );
}

#[test]
fn a_card_swapped_in_during_a_payment_is_not_saved_for_one_click() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = vault(dir.path());
    let (customer, saved) = saved_card(&v);
    let p = purchase(
        &v,
        saved.token,
        &customer,
        Some("123"),
        SessionOptions::default(),
    )
    .unwrap();
    // Between the payment's start (CVV checked for 4242...) and its outcome, another card is put
    // behind the token.
    put_card(&v, &saved.token, new_card("5555555555554444", "2903"));
    let info = v.report_payment(m(), &p.id, true).unwrap();
    assert!(!info.one_click_saved);
    assert!(!v.is_one_click(m(), &saved.token).unwrap());
    let r = purchase(&v, saved.token, &customer, None, SessionOptions::default());
    assert!(
        matches!(&r, Err(GatewayError::Vault(VaultError::Invalid(f))) if f.field == "specinCreditCardCVV"),
        "{r:?}"
    );
    // The card the payment was made with, back behind the token, may be saved.
    put_card(&v, &saved.token, card());
    let p = purchase(
        &v,
        saved.token,
        &customer,
        Some("123"),
        SessionOptions::default(),
    )
    .unwrap();
    assert!(v.report_payment(m(), &p.id, true).unwrap().one_click_saved);
    assert!(v.is_one_click(m(), &saved.token).unwrap());
}

#[test]
fn values_pinned_with_the_session_cannot_be_changed_by_the_payment() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = vault(dir.path());
    v.add_merchant(m(), "m").unwrap();
    let customer = CustomerId::parse("cust-1").unwrap();
    let opts = || TokenizeOptions {
        customer: Some(customer.clone()),
        ..TokenizeOptions::default()
    };
    let t1 = v.tokenize(m(), card(), opts()).unwrap().token;
    let t2 = v.tokenize(m(), card(), opts()).unwrap().token;
    let pinned = || SessionOptions {
        card_token: Some(t1),
        payment_solution_id: Some(500),
        free_text: Some("order 42, 10% off".into()),
        ..SessionOptions::default()
    };
    // Another card token than the pinned one.
    let r = purchase(&v, t2, &customer, Some("123"), pinned());
    assert!(
        matches!(&r, Err(GatewayError::Vault(VaultError::Invalid(f))) if f.field == "specinCreditCardToken" && f.code == "conflict"),
        "{r:?}"
    );
    // The pinned values are used.
    let ok = purchase(&v, t1, &customer, Some("123"), pinned()).unwrap();
    assert_eq!(ok.free_text.as_deref(), Some("order 42, 10% off"));
    assert_eq!(ok.payment_solution_id, Some(500));
}
