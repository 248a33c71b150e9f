//! The payment service's side of a payment started through `POST /payments`:
//! `POST /payments/{txId}/card` hands the card (and the CVV, once) to the acquirer leg, and
//! `POST /payments/{txId}/result` records what the acquirer answered.

use hyper::{Request, Response, StatusCode, body::Incoming};
use vault_gateway::{GatewayError, PaymentId, PaymentStatus};
use vault_service::{Scope, VaultError};
use vault_wire::{GatewayResult, PaymentCardResponse, PaymentResultRequest, PaymentResultResponse};

use crate::{
    decode::json,
    http::response::{self, ApiError, Body},
    http::router::Param,
    reveal_audit,
    routes::gateway::api::card_view,
    state::{State, actor},
};

type Answer = Result<Response<Body>, ApiError>;

fn payment_id(param: Param) -> Result<PaymentId, ApiError> {
    let not_found = || ApiError::not_found("txId", "no such payment");
    match param {
        Param::Text(t) => PaymentId::parse(&t).map_err(|_| not_found()),
        _ => Err(not_found()),
    }
}

fn not_found(e: GatewayError) -> ApiError {
    match e {
        GatewayError::Vault(VaultError::NotFound) => {
            ApiError::not_found("txId", "no such pending payment")
        }
        e => e.into(),
    }
}

/// `POST /payments/{txId}/card` (reveal scope) -> 200 with the card; the CVV the first time only.
pub(crate) async fn card(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let p = reveal_audit::authorize(
        state,
        req.headers(),
        vault_gateway::audit::PAYMENT_CARD,
        None,
    )
    .await?;
    let id = match payment_id(param) {
        Ok(id) => id,
        Err(e) => {
            let code = reveal_audit::INVALID_TARGET;
            reveal_audit::refused(
                state,
                actor(&p),
                vault_gateway::audit::PAYMENT_CARD,
                None,
                code,
            )
            .await;
            return Err(e);
        }
    };
    let who = actor(&p);
    let merchant = p.merchant;
    let card = state
        .gateway(move |g| Ok(g.as_actor(&who).payment_card(merchant, &id)))
        .await?
        .map_err(not_found)?;
    let body = PaymentCardResponse {
        tx_id: id.to_string(),
        card_token: card.token.to_string(),
        card: card_view(card),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// `POST /payments/{txId}/result` (tokenize or reveal scope), body `{"result":"success"|"failure"}`
/// -> 200 with the payment's new status.
pub(crate) async fn result(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let p = match state.authorize(req.headers(), Scope::Tokenize) {
        Ok(p) => p,
        Err(e) if e.status() == StatusCode::FORBIDDEN => {
            state.authorize(req.headers(), Scope::Reveal)?
        }
        Err(e) => return Err(e),
    };
    let id = payment_id(param)?;
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let request: PaymentResultRequest = json::typed(&body, json::PAYMENT_RESULT)?;
    let succeeded = request.result == GatewayResult::Success;
    let who = actor(&p);
    let merchant = p.merchant;
    let info = state
        .gateway(move |g| Ok(g.as_actor(&who).report_payment(merchant, &id, succeeded)))
        .await?
        .map_err(not_found)?;
    let body = PaymentResultResponse {
        tx_id: id.to_string(),
        status: match info.status {
            PaymentStatus::Succeeded => "SUCCEEDED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Pending => "PENDING",
        }
        .to_owned(),
        card_token: info.token.to_string(),
        one_click_saved: info.one_click_saved,
    };
    Ok(response::json(StatusCode::OK, &body))
}
