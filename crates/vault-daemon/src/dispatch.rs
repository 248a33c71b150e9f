//! Dispatch: one request to its route's handler (the route table and matching are in
//! `http/router.rs`), and the request's metrics and trace line.

use std::{sync::Arc, time::Instant};

use hyper::{Request, Response, body::Incoming};

use crate::{
    http::{
        response::{ApiError, Body},
        router::{Matched, Param, RouteId, UNMATCHED, find},
    },
    idempotency,
    routes::{
        admin, audit,
        gateway::{self, api, hosted, hosted_fields, payments},
        ops, tokens,
    },
    state::State,
};

/// Answers one request and records it in the metrics. A request carrying an `Idempotency-Key`
/// runs on a task of its own, so that its work ends (and its answer is stored for a retry) even
/// if the client goes away or it is answered at the request timeout first (see
/// [`idempotency`](crate::idempotency)). The metrics record what the caller was answered and
/// when (for such a request answered early: the 503, at the timeout), not how its work ended.
pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let matched = find(req.method().as_str(), req.uri().path());
    let slot = match &matched {
        Matched::Route(id, _) => *id as usize,
        Matched::WrongMethod(_) | Matched::Unknown => UNMATCHED,
    };
    let resp = if req.headers().contains_key(idempotency::KEY_HEADER) {
        let (to, answered) = tokio::sync::oneshot::channel();
        let peer_uid = crate::state::peer_uid();
        let state = state.clone();
        tokio::spawn(crate::state::PEER_UID.scope(
            peer_uid,
            idempotency::ANSWERING.scope(idempotency::Answering::new(to), async move {
                let resp = answer(&state, matched, req).await;
                idempotency::ANSWERING.with(|a| a.send(resp));
            }),
        ));
        answered
            .await
            .unwrap_or_else(|_| ApiError::internal().into_response())
    } else {
        answer(&state, matched, req).await
    };
    let elapsed = start.elapsed();
    state.metrics.observe(slot, resp.status().as_u16(), elapsed);
    // The route's slot and status only: never the path (it holds tokens) or anything from the body.
    tracing::trace!(
        route = slot,
        status = resp.status().as_u16(),
        // A number, not the string JSON logs make of a u128 (a quoted 4-digit figure reads
        // like a CVV to the leak scan).
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "answered"
    );
    resp
}

/// The answer to `req`, whose route `matched` names.
async fn answer(state: &State, matched: Matched, req: Request<Incoming>) -> Response<Body> {
    match matched {
        Matched::Route(id, param) => dispatch(state, id, param, req).await,
        Matched::WrongMethod(allow) => ApiError::method_not_allowed(allow).into_response(),
        Matched::Unknown => ApiError::no_route().into_response(),
    }
}

async fn dispatch(
    state: &State,
    id: RouteId,
    param: Param,
    req: Request<Incoming>,
) -> Response<Body> {
    let result = match id {
        RouteId::Health => Ok(ops::health(state).await),
        RouteId::Metrics => Ok(ops::metrics(state)),
        RouteId::TokenCreate => tokens::create(state, req).await,
        RouteId::TokenBatch => tokens::batch(state, req).await,
        RouteId::TokenGet => tokens::get(state, req, param).await,
        RouteId::TokenUpdate => tokens::update(state, req, param).await,
        RouteId::TokenDelete => tokens::delete(state, req, param).await,
        RouteId::TokenReveal => tokens::reveal(state, req, param).await,
        RouteId::MerchantList => admin::merchant_list(state, req).await,
        RouteId::MerchantAdd => admin::merchant_add(state, req).await,
        RouteId::MerchantPassword => admin::merchant_password(state, req, param).await,
        RouteId::MerchantUnlock => admin::merchant_unlock(state, req, param).await,
        RouteId::ApiKeyList => admin::apikey_list(state, req).await,
        RouteId::ApiKeyCreate => admin::apikey_create(state, req).await,
        RouteId::ApiKeyRevoke => admin::apikey_revoke(state, req, param).await,
        RouteId::TerminalList => admin::terminal_list(state, req).await,
        RouteId::TerminalAdd => admin::terminal_add(state, req).await,
        RouteId::KeyStatus => admin::key_status(state, req).await,
        RouteId::KeyRotate => admin::key_rotate(state, req).await,
        RouteId::KeyRewrap => admin::key_rewrap(state, req).await,
        RouteId::KeyRetire => admin::key_retire(state, req).await,
        RouteId::Sweep => admin::sweep(state, req).await,
        RouteId::Stats => admin::stats(state, req).await,
        RouteId::Backup => admin::backup(state, req).await,
        RouteId::SessionToken => Ok(api::token(state, req).await),
        RouteId::SessionTokenPreflight | RouteId::PaymentsPreflight => {
            Ok(gateway::preflight(req.headers()))
        }
        RouteId::Payments => Ok(api::payments(state, req).await),
        RouteId::PaymentCard => payments::card(state, req, param).await,
        RouteId::PaymentResult => payments::result(state, req, param).await,
        RouteId::HostedFieldsSession => Ok(hosted::create(state, req, param).await),
        RouteId::HostedFieldsAsset => Ok(hosted_fields::asset(state, req, param).await),
        RouteId::AuditEntries => audit::entries(state, req).await,
        RouteId::AuditVerify => audit::verify(state, req).await,
        RouteId::AuditArchive => audit::archive(state, req).await,
    };
    result.unwrap_or_else(ApiError::into_response)
}
