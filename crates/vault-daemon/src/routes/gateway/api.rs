//! `POST /token` (the session-token API: a session token for a merchant's password) and `POST /payments`
//! (the session-token API's card capture and the stored-card payment API's payment use of a stored card), form or JSON, answered
//! in the seeds' `result` envelope.

use std::{collections::BTreeMap, net::Ipv4Addr};

use hyper::{Request, Response, StatusCode, body::Incoming, header::AUTHORIZATION};
use vault_gateway::{
    Cvv, MerchantPassword, PaymentCard, PaymentRequest, SessionKind, SessionOptions, SessionToken,
    SessionView,
};
use vault_service::{
    Actor, CardholderName, CustomerId, Expiry, MerchantId, NewCard, Pan, Scope, Token,
};
use vault_wire::{GatewayResult, PaymentCardView, PaymentResponse, SessionTokenResponse};

use crate::{
    http::response::{ApiError, Body},
    idempotency::{self, KeyRule},
    routes::gateway::hosted_fields,
    routes::gateway::{self, Call, Check, Failure, INVALID},
    state::{State, peer_uid},
};

/// How far a `timestamp` may lag the vault clock.
const MAX_TIMESTAMP_AGE_MS: i128 = 5 * 60 * 1000;
/// How far it may lead it (clock skew).
const MAX_TIMESTAMP_LEAD_MS: i128 = 60 * 1000;

/// `POST /token`.
pub(crate) async fn token(state: &State, req: Request<Incoming>) -> Response<Body> {
    let call = Call::begin(req.headers());
    let mut allowed_origin = false;
    let answer = token_inner(state, &call, req, &mut allowed_origin).await;
    call.answer(answer, allowed_origin)
}

/// The checked fields of a `POST /token`.
struct TokenRequest {
    merchant: MerchantId,
    password: MerchantPassword,
    kind: SessionKind,
    allow_origin: String,
    options: SessionOptions,
}

fn check_token_fields(
    fields: &crate::decode::form::Fields,
    now: time::OffsetDateTime,
) -> Result<TokenRequest, Failure> {
    let mut c = Check::new(fields);
    let merchant = c.required("merchantId", 18);
    let merchant = c.parse("merchantId", merchant, MerchantId::parse);
    let password = c.required("password", MerchantPassword::MAX_LEN);
    let password = c.parse("password", password, |p| {
        MerchantPassword::new(p.to_owned())
    });
    let action = c.required("action", 8);
    let kind = c.parse("action", action, |a| SessionKind::from_action(a).ok_or(()));
    let timestamp = c.required("timestamp", 13);
    if let Some(ts) = c.parse("timestamp", timestamp, |t| gateway::integer(t, 13)) {
        let now_ms = now.unix_timestamp_nanos() / 1_000_000;
        let age = now_ms - i128::from(ts);
        if age > MAX_TIMESTAMP_AGE_MS || -age > MAX_TIMESTAMP_LEAD_MS {
            c.fail("timestamp", "timestamp.stale");
        }
    }
    let allow_origin = c.required("allowOriginUrl", 253);
    let allow_origin = c.parse("allowOriginUrl", allow_origin, |o| {
        gateway::origin(o).map(|()| o.to_owned())
    });
    let customer = c.optional("customerId", 20);
    let customer = c.parse("customerId", customer, CustomerId::parse);
    let card_description = c.optional("cardDescription", 50).map(str::to_owned);
    // The stored-card payment API: these may be given with the session instead of with the payment.
    let payment = kind.is_some_and(SessionKind::uses_stored_card);
    let (mut customer_ip, mut payment_solution_id, mut free_text, mut card_token) =
        (None, None, None, None);
    if payment {
        let ip = c.optional("customerIPAddress", 39);
        customer_ip = c.parse("customerIPAddress", ip, str::parse::<Ipv4Addr>);
        let ps = c.optional("paymentSolutionId", 18);
        payment_solution_id = c.parse("paymentSolutionId", ps, |p| gateway::integer(p, 18));
        free_text = c.optional("freeText", 200).map(str::to_owned);
        let t = c.optional("specinCreditCardToken", 100);
        card_token = c.parse("specinCreditCardToken", t, Token::parse);
    }
    let errors = c.errors;
    match (merchant, password, kind, allow_origin) {
        (Some(merchant), Some(password), Some(kind), Some(allow_origin)) if errors.is_empty() => {
            Ok(TokenRequest {
                merchant,
                password,
                kind,
                options: SessionOptions {
                    customer,
                    allow_origin: Some(allow_origin.clone()),
                    card_description,
                    free_text,
                    customer_ip,
                    payment_solution_id,
                    card_token,
                    ..SessionOptions::default()
                },
                allow_origin,
            })
        }
        _ => Err(Failure::many(StatusCode::BAD_REQUEST, errors)),
    }
}

async fn token_inner(
    state: &State,
    call: &Call,
    req: Request<Incoming>,
    allowed_origin: &mut bool,
) -> Result<Response<Body>, Failure> {
    let key = idempotency::key_from(req.headers(), KeyRule::Optional)
        .map_err(|e| gateway::idempotency_failure(&e))?;
    let (fields, _raw) = gateway::read_fields(state, req).await?;
    let request = check_token_fields(&fields, state.vault.now())?;
    // The password is not part of what identifies the request (see `form_shape`).
    let shape = idempotency::form_shape(state, request.merchant, &fields);
    drop(fields);
    let TokenRequest {
        merchant,
        password,
        kind,
        allow_origin,
        options,
    } = request;
    *allowed_origin = call
        .origin
        .as_deref()
        .is_some_and(|o| gateway::origin_matches(Some(&allow_origin), o));
    let actor = Actor {
        merchant: Some(merchant),
        ..Actor::local().with_peer_uid(peer_uid())
    };
    let login_actor = actor.clone();
    // Credentials first: a replayed answer is only for the merchant who earned it.
    state
        .gateway(move |g| g.as_actor(&login_actor).login(merchant, &password))
        .await
        .map_err(login_failure)?;
    idempotency::run(
        state,
        merchant,
        "POST /token",
        key,
        vec![shape],
        |e| call.idempotency_response(e),
        || async {
            let session = match state
                .gateway(move |g| g.as_actor(&actor).create_session(merchant, kind, options))
                .await
            {
                Ok(s) => s,
                Err(e) => return Ok(call.failure_response(vault_failure(&e))),
            };
            let body = SessionTokenResponse {
                result: GatewayResult::Success,
                result_id: gateway::result_id(),
                merchant_id: merchant.to_string(),
                additional_details: BTreeMap::new(),
                processing_time: call.elapsed_ms(),
                token: session.token.to_string(),
                customer_id: session.customer.map(|c| c.as_str().to_owned()),
            };
            Ok(gateway::success(&body))
        },
    )
    .await
    .map_err(|e| gateway::idempotency_failure(&e))
}

/// Unknown merchant, merchant without a password and wrong password are one answer.
fn login_failure(e: ApiError) -> Failure {
    match e.status() {
        StatusCode::UNAUTHORIZED => {
            Failure::one(StatusCode::UNAUTHORIZED, "password", "credentials.invalid")
        }
        StatusCode::TOO_MANY_REQUESTS => Failure::one(
            StatusCode::TOO_MANY_REQUESTS,
            "merchantId",
            "login.rate_limited",
        ),
        StatusCode::SERVICE_UNAVAILABLE => Failure::unavailable(&e),
        status => Failure::one(status, "request", "service.unavailable"),
    }
}

/// A vault refusal in the gateway's terms.
fn vault_failure(e: &ApiError) -> Failure {
    let status = e.status();
    let (field, code) = match status {
        StatusCode::FORBIDDEN => ("processingTerminalId", "terminal.forbidden"),
        StatusCode::SERVICE_UNAVAILABLE => return Failure::unavailable(e),
        StatusCode::CONFLICT => ("Idempotency-Key", "idempotency.conflict"),
        s if s.is_client_error() => ("request", INVALID),
        _ => ("request", "request.internal"),
    };
    Failure::one(status, field, code)
}

/// `POST /payments`.
pub(crate) async fn payments(state: &State, req: Request<Incoming>) -> Response<Body> {
    let call = Call::begin(req.headers());
    let mut allowed_origin = false;
    let answer = payments_inner(state, &call, req, &mut allowed_origin).await;
    call.answer(answer, allowed_origin)
}

/// What a `POST /payments` will do once its fields are checked.
enum Plan {
    Capture(NewCard, Option<Cvv>),
    Pay(PaymentRequest),
}

async fn payments_inner(
    state: &State,
    call: &Call,
    req: Request<Incoming>,
    allowed_origin: &mut bool,
) -> Result<Response<Body>, Failure> {
    let authorization = req.headers().get(AUTHORIZATION).is_some();
    let from_vault_page = hosted_fields::from_vault_page(req.headers());
    // A server-side caller may present a reveal-scoped key to receive the card for its acquirer
    // leg; a wrong or insufficient key is refused rather than ignored.
    let principal = if authorization {
        Some(
            state
                .authorize(req.headers(), Scope::Reveal)
                .map_err(|e| Failure::one(e.status(), "Authorization", "authorization.invalid"))?,
        )
    } else {
        None
    };
    let key = idempotency::key_from(req.headers(), KeyRule::Optional)
        .map_err(|e| gateway::idempotency_failure(&e))?;
    let (fields, _raw) = gateway::read_fields(state, req).await?;
    let mut c = Check::new(&fields);
    let token = c.required("token", 40);
    let token = c.parse("token", token, SessionToken::parse);
    let Some(token) = token else {
        return Err(c.finish().err().unwrap_or_else(session_failure));
    };
    // A Hosted Fields frame posts from the vault's origin and names its page's origin.
    let page_origin = c.optional(hosted_fields::ORIGIN_FIELD, 253);
    let page_origin = hosted_fields::frame_origin(from_vault_page, page_origin).map_err(|()| {
        Failure::one(
            StatusCode::BAD_REQUEST,
            hosted_fields::ORIGIN_FIELD,
            INVALID,
        )
    })?;
    let view = match state.gateway(move |g| g.session(&token)).await {
        Ok(view) => view,
        Err(_) => {
            let caller = principal.as_ref().map(|p| p.merchant);
            return replay_or_refuse(state, key, token, &fields, caller).await;
        }
    };
    *allowed_origin = call
        .origin
        .as_deref()
        .is_some_and(|o| gateway::origin_matches(view.allow_origin.as_deref(), o));
    if let Some(p) = &principal
        && p.merchant != view.merchant
    {
        return Err(Failure::one(
            StatusCode::FORBIDDEN,
            "Authorization",
            "authorization.merchant",
        ));
    }
    let plan = if view.kind.captures_card() {
        let (card, cvv) = check_card_fields(c, state.vault.now())?;
        Plan::Capture(card, cvv)
    } else {
        let mut request = check_payment_fields(c)?;
        request.reveal = principal.is_some();
        Plan::Pay(request)
    };
    let parts = payment_shape(state, view.merchant, &token, &fields);
    drop(fields);
    let actor = match &principal {
        Some(p) => crate::state::actor(p),
        None => Actor::local().with_peer_uid(peer_uid()),
    };
    let origin = page_origin.or_else(|| call.origin.clone());
    // Keys are the session merchant's: the session is what authorises this request.
    idempotency::run(
        state,
        view.merchant,
        "POST /payments",
        key,
        parts,
        |e| call.idempotency_response(e),
        || async {
            let answer = match plan {
                Plan::Capture(card, cvv) => {
                    capture(state, call, &view, actor, token, origin, card, cvv).await
                }
                Plan::Pay(request) => pay(state, call, &view, actor, token, origin, request).await,
            };
            Ok(answer.unwrap_or_else(|f| {
                // Only answers of requests that spent the session are kept for replay: a refusal
                // that left it unspent (wrong origin, a field to fix) is answered afresh on a retry,
                // and whoever holds a session cannot fill the store with stored refusals.
                let spent = f.errors.first().is_some_and(|e| {
                    matches!(
                        e.message_code.as_str(),
                        "customerId.mismatch" | "token.not_found"
                    )
                });
                let mut resp = call.failure_response(f);
                if !spent {
                    resp.extensions_mut().insert(idempotency::NoStore);
                }
                resp
            }))
        },
    )
    .await
    .map_err(|e| gateway::idempotency_failure(&e))
}

/// A spent or expired session: an idempotent retry of the request that spent it gets that
/// request's stored answer; anything else is refused. A caller that presented a merchant key
/// (`caller`, its merchant) must be the session's merchant, as on a first request.
async fn replay_or_refuse(
    state: &State,
    key: Option<vault_service::IdempotencyKey>,
    token: SessionToken,
    fields: &crate::decode::form::Fields,
    caller: Option<MerchantId>,
) -> Result<Response<Body>, Failure> {
    let Some(key) = key else {
        return Err(session_failure());
    };
    let merchant = state
        .gateway(move |g| g.session_merchant(&token))
        .await
        .map_err(|_| session_failure())?;
    if caller.is_some_and(|m| m != merchant) {
        return Err(Failure::one(
            StatusCode::FORBIDDEN,
            "Authorization",
            "authorization.merchant",
        ));
    }
    let parts = payment_shape(state, merchant, &token, fields);
    match idempotency::replay_only(state, merchant, "POST /payments", key, parts).await {
        Ok(Some(replayed)) => Ok(replayed),
        Ok(None) => Err(session_failure()),
        Err(e) => Err(gateway::idempotency_failure(&e)),
    }
}

/// What identifies a `POST /payments` for idempotency: the session (by the keyed lookup key the
/// vault already stores it under, never the token) and the non-secret fields (no CVV, no token;
/// a card number only as its keyed card fingerprint).
fn payment_shape(
    state: &State,
    merchant: MerchantId,
    token: &SessionToken,
    fields: &crate::decode::form::Fields,
) -> Vec<bytes::Bytes> {
    vec![
        bytes::Bytes::from(state.gateway.idempotency_session_part(token)),
        idempotency::form_shape(state, merchant, fields),
    ]
}

#[allow(clippy::too_many_arguments)]
async fn capture(
    state: &State,
    call: &Call,
    view: &SessionView,
    actor: Actor,
    token: SessionToken,
    origin: Option<String>,
    card: NewCard,
    cvv: Option<Cvv>,
) -> Result<Response<Body>, Failure> {
    let capture = state
        .gateway(move |g| {
            g.as_actor(&actor)
                .capture_card(&token, origin.as_deref(), card, cvv)
        })
        .await
        .map_err(|e| payment_failure(&e))?;
    let info = capture.info;
    let payment = capture.payment;
    let body = PaymentResponse {
        result: GatewayResult::Success,
        result_id: gateway::result_id(),
        merchant_id: view.merchant.to_string(),
        action: view.kind.as_str().to_owned(),
        card_token: info.token.to_string(),
        // A replacement keeps the stored token's customer binding, which the merchant's server
        // already knows; it is not handed to whoever spent the session (the answer reaches the
        // shopper's browser, and the session's key may not be one that sees customer ids).
        customer_id: info
            .customer
            .filter(|_| !capture.replaced)
            .map(|c| c.as_str().to_owned()),
        masked_pan: info.masked_pan.as_str().to_owned(),
        brand: info.brand.as_str().to_owned(),
        tx_id: payment.as_ref().map(|p| p.id.to_string()),
        status: payment.as_ref().map(|_| "PENDING".to_owned()),
        payment_solution_id: payment.as_ref().and_then(|p| p.payment_solution_id),
        free_text: payment.and_then(|p| p.free_text),
        one_click_requested: false,
        replaced: capture.replaced,
        card: None,
        additional_details: BTreeMap::new(),
        processing_time: call.elapsed_ms(),
    };
    Ok(gateway::success(&body))
}

async fn pay(
    state: &State,
    call: &Call,
    view: &SessionView,
    actor: Actor,
    token: SessionToken,
    origin: Option<String>,
    request: PaymentRequest,
) -> Result<Response<Body>, Failure> {
    let started = state
        .gateway(move |g| {
            g.as_actor(&actor)
                .start_payment(&token, origin.as_deref(), request)
        })
        .await
        .map_err(|e| payment_failure(&e))?;
    let mut body = PaymentResponse {
        result: GatewayResult::Success,
        result_id: gateway::result_id(),
        merchant_id: view.merchant.to_string(),
        action: started.kind.as_str().to_owned(),
        card_token: started.token.to_string(),
        customer_id: started.customer.as_ref().map(|c| c.as_str().to_owned()),
        masked_pan: started.masked_pan.as_str().to_owned(),
        brand: started.brand.as_str().to_owned(),
        tx_id: Some(started.id.to_string()),
        status: Some("PENDING".to_owned()),
        payment_solution_id: started.payment_solution_id,
        free_text: started.free_text.clone(),
        one_click_requested: started.one_click_requested,
        replaced: false,
        card: None,
        additional_details: BTreeMap::new(),
        processing_time: call.elapsed_ms(),
    };
    let Some(card) = started.card else {
        return Ok(gateway::success(&body));
    };
    // The answer an idempotent retry replays holds no card: the card (and its CVV, a one-time
    // secret) is never stored, not even sealed.
    let stored = serde_json::to_vec(&body).unwrap_or_default();
    body.card = Some(card_view(card));
    let mut resp = gateway::success(&body);
    resp.extensions_mut()
        .insert(idempotency::StoreAs(bytes::Bytes::from(stored)));
    Ok(resp)
}

/// The card fields of a capture (session-token flow): `number`, `expiryMonth`, `expiryYear`,
/// optional `nameOnCard` and `cvv`.
fn check_card_fields(
    mut c: Check<'_>,
    now: time::OffsetDateTime,
) -> Result<(NewCard, Option<Cvv>), Failure> {
    let number = c.required("number", 19);
    let pan = c.parse("number", number, Pan::parse);
    let month = c.required("expiryMonth", 2);
    let month = c.parse("expiryMonth", month, |m| {
        gateway::integer(m, 2).and_then(|m| u8::try_from(m).map_err(|_| ()))
    });
    let year = c.required("expiryYear", 4);
    let year = c.parse("expiryYear", year, |y| match y.len() {
        2 => gateway::integer(y, 2).map(|y| 2000 + y),
        4 => gateway::integer(y, 4),
        _ => Err(()),
    });
    let name = c.optional("nameOnCard", CardholderName::MAX_LEN);
    let name = c.parse("nameOnCard", name, CardholderName::parse);
    let cvv = c.optional("cvv", 4);
    let cvv = c.parse("cvv", cvv, Cvv::parse);
    let expiry = match (month, year) {
        (Some(m), Some(y)) => match u16::try_from(y)
            .map_err(|_| ())
            .and_then(|y| Expiry::new(y, m).map_err(|_| ()))
        {
            Ok(e) if e.is_expired(now) => {
                c.fail("expiryYear", "card.expired");
                None
            }
            Ok(e) => Some(e),
            Err(()) => {
                c.fail("expiryMonth", INVALID);
                None
            }
        },
        _ => None,
    };
    match (pan, expiry) {
        (Some(pan), Some(expiry)) if c.errors.is_empty() => {
            Ok((NewCard { pan, expiry, name }, cvv))
        }
        _ => Err(Failure::many(StatusCode::BAD_REQUEST, c.errors)),
    }
}

/// The stored-card payment API's fields.
fn check_payment_fields(mut c: Check<'_>) -> Result<PaymentRequest, Failure> {
    let merchant = c.required("merchantId", 18);
    let merchant = c.parse("merchantId", merchant, MerchantId::parse);
    let card_token = c.optional("specinCreditCardToken", 100);
    let card_token = c.parse("specinCreditCardToken", card_token, Token::parse);
    let customer = c.optional("customerId", 20);
    let customer = c.parse("customerId", customer, CustomerId::parse);
    let cvv = c.optional("specinCreditCardCVV", 5);
    let cvv = c.parse("specinCreditCardCVV", cvv, Cvv::parse);
    let one_click = c.optional("setOneClickValueSettingForCard", 5);
    let one_click = c
        .parse(
            "setOneClickValueSettingForCard",
            one_click,
            gateway::boolean,
        )
        .unwrap_or(false);
    let free_text = c.optional("freeText", 200).map(str::to_owned);
    let ip = c.optional("customerIPAddress", 39);
    let customer_ip = c.parse("customerIPAddress", ip, str::parse::<Ipv4Addr>);
    let ps = c.optional("paymentSolutionId", 18);
    let payment_solution_id = c.parse("paymentSolutionId", ps, |p| gateway::integer(p, 18));
    // Accepted for the acquirer leg's own use; the vault keeps neither.
    c.optional("fraudToken", 50);
    c.optional("ipPlanId", 7);
    c.finish()?;
    Ok(PaymentRequest {
        merchant,
        card_token,
        customer,
        cvv,
        one_click,
        free_text,
        customer_ip,
        payment_solution_id,
        reveal: false,
    })
}

fn session_failure() -> Failure {
    Failure::one(StatusCode::NOT_FOUND, "token", "session.invalid")
}

/// A refused capture or payment, named as the stored-card payment API names them.
fn payment_failure(e: &ApiError) -> Failure {
    let status = e.status();
    let first = e.first_error();
    let (field, code) = match (status, first) {
        (_, Some((_, "session_invalid"))) => ("token", "session.invalid"),
        (_, Some((_, "origin_mismatch"))) => ("Origin", "origin.mismatch"),
        (_, Some((_, "customer_mismatch"))) => ("customerId", "customerId.mismatch"),
        (StatusCode::NOT_FOUND, _) => ("specinCreditCardToken", "token.not_found"),
        (StatusCode::BAD_REQUEST, Some((field, "required"))) => {
            return Failure::one(status, field, gateway::REQUIRED);
        }
        (StatusCode::BAD_REQUEST, Some((field, code))) => {
            return Failure::one(status, field, &format!("field.{code}"));
        }
        (StatusCode::SERVICE_UNAVAILABLE, _) => return Failure::unavailable(e),
        (s, _) if s.is_client_error() => ("request", INVALID),
        _ => ("request", "request.internal"),
    };
    Failure::one(status, field, code)
}

/// The card for the acquirer leg, as JSON.
pub(crate) fn card_view(card: PaymentCard) -> PaymentCardView {
    PaymentCardView {
        number: card.pan.expose_digits().to_owned(),
        expiry_month: format!("{:02}", card.expiry.month()),
        expiry_year: format!("{:04}", card.expiry.year()),
        name_on_card: card.name.as_ref().map(|n| n.expose().to_owned()),
        cvv: card.cvv.as_ref().map(|c| c.expose_digits().to_owned()),
    }
}
