//! `/v2/tokens`: tokenize, batch, read, update, delete, reveal.

use bytes::Bytes;
use hyper::{Request, Response, StatusCode, body::Incoming};
use tokio::sync::oneshot;
use vault_service::{
    AuditAction, IdempotentResponse, MerchantId, Principal, Scope, Token, TokenInfo,
    TokenizeRequest as VaultItem, VaultError,
};
use vault_wire::{
    BatchItemResult, BatchResponse, CardView, FieldErrorBody, RevealRequest, RevealResponse,
    TokenResponse, TokenStatus,
};

use crate::{
    decode::json,
    decode::validate,
    http::response::{self, ApiError, Body},
    http::router::Param,
    idempotency::{self, KeyRule, NoStore},
    reveal_audit,
    state::{State, actor, completion},
};

type Answer = Result<Response<Body>, ApiError>;

/// `POST /v2/tokens` -> 201. An `Idempotency-Key` is honoured when sent (see
/// [`idempotency`](crate::idempotency)).
pub(crate) async fn create(state: &State, req: Request<Incoming>) -> Answer {
    let p = state.authorize(req.headers(), Scope::Tokenize)?;
    let key = idempotency::key_from(req.headers(), KeyRule::Optional)?;
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let merchant = p.merchant;
    let p = &p;
    let parsed = {
        let (parsed, errors) = json::tokenize(&body);
        validate::tokenize(parsed, errors, state.vault.now())
    };
    // With an Idempotency-Key the card is counted before the key is looked up; without one, in
    // the work (a refusal is the work's answer either way).
    let admitted = match (&key, &parsed) {
        (Some(_), Ok((card, _))) => {
            admit_before_replay(state, p, [&card.pan])?;
            true
        }
        _ => false,
    };
    idempotency::run_checked(
        state,
        merchant,
        "POST /v2/tokens",
        key,
        request_shape(state, p, &body),
        ApiError::into_response,
        |stored| replayable_while_live(state, merchant, stored),
        || async move {
            let (card, options) = parsed?;
            if !admitted {
                state.vault.as_actor(&actor(p)).admit_card(p, &card.pan)?;
            }
            let (tx, rx) = oneshot::channel();
            state
                .vault
                .tokenize_then(merchant, card, options, move |r| {
                    let _ = tx.send(r);
                });
            let info = state.within(completion(rx)).await?;
            Ok(response::json(
                StatusCode::CREATED,
                &token_response(&info, p),
            ))
        },
    )
    .await
}

/// A stored `201` names a token (the one its first request created, or found with `dedupe`):
/// the answer, as first given, is replayed only while that token is live. Once the token has
/// been deleted or has expired the key is answered 409 `idempotency_token_gone`: a replay would
/// hand the caller a token that no longer exists, and running the work again would bring back a
/// card someone deleted. A new key tokenizes it again. The check reads the record and opens no
/// card (`Vault::live_token`); a read that fails answers as a read does (503 when the store is busy or unreachable: a
/// retry with the key gets the replay).
async fn replayable_while_live(
    state: &State,
    merchant: MerchantId,
    stored: IdempotentResponse,
) -> Result<IdempotentResponse, ApiError> {
    /// The one field of a stored answer the check needs.
    #[derive(serde::Deserialize)]
    struct Named {
        token: String,
    }
    if stored.status != StatusCode::CREATED.as_u16() {
        return Ok(stored);
    }
    let Some(token) = serde_json::from_slice::<Named>(&stored.body)
        .ok()
        .and_then(|n| Token::parse(&n.token).ok())
    else {
        // Every stored 201 of this route names its token; nothing of the answer is logged.
        tracing::warn!("a stored tokenize answer names no token: replayed unchecked");
        return Ok(stored);
    };
    match state
        .blocking(move |v| v.live_token(merchant, &token))
        .await?
    {
        Some(_) => Ok(stored),
        None => Err(ApiError::idempotency_token_gone()),
    }
}

/// `POST /v2/tokens/batch` -> 200 with one result per item, all stored in one durable commit.
/// An `Idempotency-Key` is honoured when sent; an answer in which an item failed for a server
/// reason (`status` 500) is not stored, so a retry runs the batch again.
pub(crate) async fn batch(state: &State, req: Request<Incoming>) -> Answer {
    let p = state.authorize(req.headers(), Scope::Tokenize)?;
    let key = idempotency::key_from(req.headers(), KeyRule::Optional)?;
    let body = state
        .json_body(req, state.config.max_batch_body_bytes)
        .await?;
    let merchant = p.merchant;
    // (A batch of the wrong size is left to the work below: its 400 counts no card.)
    let mut admitted = false;
    if key.is_some()
        && let Ok(items) = json::batch(&body)
        && (1..=vault_service::MAX_BATCH).contains(&items.len())
    {
        let now = state.vault.now();
        let cards: Vec<_> = items
            .into_iter()
            .filter_map(|(parsed, errors)| validate::tokenize(parsed, errors, now).ok())
            .map(|(card, _)| card)
            .collect();
        admit_before_replay(state, &p, cards.iter().map(|c| &c.pan))?;
        admitted = true;
    }
    idempotency::run(
        state,
        merchant,
        "POST /v2/tokens/batch",
        key,
        request_shape(state, &p, &body),
        ApiError::into_response,
        || batch_items(state, &p, body, admitted),
    )
    .await
}

/// With an `Idempotency-Key`, the masked-form limit is applied before the key is looked up: a
/// stored answer is replayed only to a request whose card matches the stored one (the request's
/// identity holds the card's keyed fingerprint), so otherwise a key that knows another request's
/// `Idempotency-Key` could test candidate numbers, uncounted, by whether it gets a replay or 409.
/// The work then does not count them again. A card over the limit refuses the whole request
/// (429 `masked_form_limit`, a batch included).
fn admit_before_replay<'a>(
    state: &State,
    p: &Principal,
    pans: impl IntoIterator<Item = &'a vault_service::Pan>,
) -> Result<(), ApiError> {
    let guard = state.vault.as_actor(&actor(p));
    for pan in pans {
        guard.admit_card(p, pan)?;
    }
    Ok(())
}

/// The batch's items, stored; `admitted`: their cards were counted against the masked-form
/// limit already ([`admit_before_replay`]).
async fn batch_items(state: &State, p: &Principal, body: Bytes, admitted: bool) -> Answer {
    let merchant = p.merchant;
    let items = json::batch(&body)?;
    if items.is_empty() || items.len() > vault_service::MAX_BATCH {
        return Err(ApiError::field(
            "items",
            "invalid_length",
            &format!("a batch holds 1-{} items", vault_service::MAX_BATCH),
        ));
    }
    let now = state.vault.now();
    // The masked-form guard audits its refusals as this caller (one handle for the batch).
    let guard = state.vault.as_actor(&actor(p));
    let admit = |pan: &vault_service::Pan| {
        if admitted {
            Ok(())
        } else {
            guard.admit_card(p, pan)
        }
    };
    // Refused items keep their slot; valid ones go to the vault in order.
    let mut results: Vec<Option<BatchItemResult>> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    for (parsed, errors) in items {
        match validate::tokenize(parsed, errors, now) {
            Ok((card, options)) => match admit(&card.pan) {
                Ok(()) => {
                    valid.push(VaultItem { card, options });
                    results.push(None);
                }
                Err(VaultError::TooManyCards { .. }) => {
                    results.push(Some(BatchItemResult {
                        status: 429,
                        errors: Some(vec![FieldErrorBody::new(
                            "card.pan",
                            "masked_form_limit",
                            "this API key stored too many distinct cards with the same masked number recently",
                        )]),
                        ..BatchItemResult::default()
                    }));
                }
                Err(e) => return Err(e.into()),
            },
            Err(errors) => results.push(Some(BatchItemResult::refused(errors))),
        }
    }
    let mut stored = if valid.is_empty() {
        Vec::new()
    } else {
        let (tx, rx) = oneshot::channel();
        state.vault.tokenize_batch_then(merchant, valid, move |r| {
            let _ = tx.send(r);
        });
        state.within(completion(rx)).await?
    }
    .into_iter();
    let results: Vec<BatchItemResult> = results
        .into_iter()
        .map(|slot| match slot {
            Some(refused) => refused,
            None => match stored.next() {
                Some(Ok(info)) => BatchItemResult::stored(token_response(&info, p)),
                Some(Err(VaultError::Invalid(f))) => {
                    BatchItemResult::refused(vec![FieldErrorBody::new(f.field, f.code, f.message)])
                }
                Some(Err(_)) | None => BatchItemResult {
                    status: 500,
                    errors: Some(vec![FieldErrorBody::new(
                        "item",
                        "internal",
                        "the vault could not store this item",
                    )]),
                    ..BatchItemResult::default()
                },
            },
        })
        .collect();
    let partial_failure = results.iter().any(|r| r.status >= 500);
    let mut resp = response::json(StatusCode::OK, &BatchResponse { results });
    if partial_failure {
        resp.extensions_mut().insert(NoStore);
    }
    Ok(resp)
}

/// `GET /v2/tokens/{token}` -> 200.
pub(crate) async fn get(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let p = state.authorize(req.headers(), Scope::Tokenize)?;
    let token = token_of(param)?;
    // Without waiting on this worker: on PostgreSQL the read joins the engine's queue of point
    // reads and the answer comes back on the channel.
    let (tx, rx) = oneshot::channel();
    state.vault.get_then(p.merchant, &token, move |r| {
        let _ = tx.send(r);
    });
    let info = state.within(completion(rx)).await?;
    Ok(response::json(StatusCode::OK, &token_response(&info, &p)))
}

/// `PUT /v2/tokens/{token}` -> 200.
pub(crate) async fn update(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let p = state.authorize(req.headers(), Scope::Tokenize)?;
    let token = token_of(param)?;
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let (parsed, errors) = json::update(&body);
    let (card, options) = validate::update(parsed, errors, state.vault.now())?;
    // A new card number is counted against the key's masked-form limit as on `POST`: the
    // answer names the card's fingerprint to a key with that scope, so an unlimited `PUT` would
    // test candidate numbers one after another.
    state.vault.as_actor(&actor(&p)).admit_card(&p, &card.pan)?;
    let merchant = p.merchant;
    let info = state
        .blocking(move |v| v.update(merchant, &token, card, options))
        .await?;
    Ok(response::json(StatusCode::OK, &token_response(&info, &p)))
}

/// `DELETE /v2/tokens/{token}` -> 204.
pub(crate) async fn delete(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let p = state.authorize(req.headers(), Scope::Tokenize)?;
    let token = token_of(param)?;
    let (tx, rx) = oneshot::channel();
    state.vault.delete_then(p.merchant, &token, move |r| {
        let _ = tx.send(r);
    });
    state.within(completion(rx)).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `POST /v2/tokens/{token}/reveal` (`reveal` scope) -> 200 with the PAN. A token bound to a
/// customer needs the same `customer_id` (403 `customer_mismatch` otherwise, as does presenting
/// a customer for an unbound token). Each reveal is logged (audit) without the PAN.
pub(crate) async fn reveal(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let target = match &param {
        Param::Token(t) => *t,
        _ => None,
    };
    let p = reveal_audit::authorize(state, req.headers(), AuditAction::Reveal, target).await?;
    let token = match token_of(param) {
        Ok(t) => t,
        Err(e) => {
            let code = reveal_audit::INVALID_TARGET;
            reveal_audit::refused(state, actor(&p), AuditAction::Reveal, None, code).await;
            return Err(e);
        }
    };
    let customer = match reveal_request(state, req).await {
        Ok(c) => c,
        Err(e) => {
            let code = reveal_audit::INVALID_BODY;
            reveal_audit::refused(state, actor(&p), AuditAction::Reveal, Some(token), code).await;
            return Err(e);
        }
    };
    let (tx, rx) = oneshot::channel();
    state
        .vault
        .as_actor(&actor(&p))
        .reveal_then(p.merchant, &token, customer.as_ref(), move |r| {
            let _ = tx.send(r);
        });
    // The card comes back only once the reveal's audit entry is durable.
    let result = state.in_time(completion(rx)).await?;
    // The audit log is the record of every reveal; a successful one is a debug line only (at
    // info, a reveal-heavy load writes megabytes of log a second). Refusals stay at info.
    let outcome = match &result {
        Ok(_) => "revealed",
        Err(VaultError::NotFound) => "not_found",
        Err(VaultError::CustomerMismatch) => "customer_mismatch",
        Err(_) => "error",
    };
    if result.is_ok() {
        tracing::debug!(target: "cardvault::audit", merchant = %p.merchant, key_id = %p.key_id, token = %token, outcome, "reveal");
    } else {
        tracing::info!(target: "cardvault::audit", merchant = %p.merchant, key_id = %p.key_id, token = %token, outcome, "reveal");
    }
    let card = result?;
    let body = RevealResponse {
        token: token.to_string(),
        pan: card.pan.expose_digits().to_owned(),
        expiration_date: card.expiry.to_yymm(),
        cardholder_name: card.name.as_ref().map(|n| n.expose().to_owned()),
        masked_pan: card.pan.masked().as_str().to_owned(),
        customer_id: card.customer.as_ref().map(|c| c.as_str().to_owned()),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// The `{token}` segment: a malformed one is answered like an unknown one.
/// The optional body of a reveal: its `customer_id`, checked.
async fn reveal_request(
    state: &State,
    req: Request<Incoming>,
) -> Result<Option<vault_service::CustomerId>, ApiError> {
    let body = state.optional_json_body(req).await?;
    let request: RevealRequest = if body.is_empty() {
        RevealRequest::default()
    } else {
        json::typed(&body, json::REVEAL)?
    };
    request
        .customer_id
        .as_deref()
        .map(validate::customer)
        .transpose()
        .map_err(|e| ApiError::invalid(vec![e]))
}

fn token_of(param: Param) -> Result<Token, ApiError> {
    match param {
        Param::Token(Some(t)) => Ok(t),
        _ => Err(ApiError::token_not_found()),
    }
}

/// What identifies a tokenize request for idempotency: its body's shape and, for a key that
/// sees the card's fingerprint and customer (`fingerprint` or `reveal`), a mark of that view. A
/// key without them cannot replay an answer made for one with them (409
/// `idempotency_mismatch`). The mark is added for those keys only, so the requests of keys without
/// it keep the identity they had before it existed (an answer stored before an upgrade still
/// replays to them).
fn request_shape(state: &State, p: &Principal, body: &[u8]) -> Vec<Bytes> {
    let mut parts = vec![idempotency::json_shape(state, p.merchant, body)];
    if p.sees_card_links() {
        parts.push(Bytes::from_static(b"view: card links"));
    }
    parts
}

/// The answer about `info` for `p`: the fingerprint and `customer_id` only for a key holding
/// `fingerprint` or `reveal` ([`Principal::sees_card_links`]).
fn token_response(info: &TokenInfo, p: &Principal) -> TokenResponse {
    let links = p.sees_card_links();
    TokenResponse {
        token: info.token.to_string(),
        status: TokenStatus::Approved,
        card: CardView {
            keep_until: info.keep_until,
            masked_pan: info.masked_pan.as_str().to_owned(),
            expiration_date: info.expiry.to_yymm(),
            brand: Some(info.brand.as_str().to_owned()),
        },
        customer_id: info
            .customer
            .as_ref()
            .filter(|_| links)
            .map(|c| c.as_str().to_owned()),
        metadata: (!info.metadata.is_empty()).then(|| info.metadata.entries().clone()),
        fingerprint: links.then(|| info.fingerprint.to_string()),
        created_at: Some(info.created_at),
        updated_at: Some(info.updated_at),
        deduplicated: info.deduplicated,
    }
}
