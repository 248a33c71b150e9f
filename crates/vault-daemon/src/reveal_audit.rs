//! Refused card-revealing calls (`POST /v2/tokens/{token}/reveal`, `POST /payments/{txId}/card`)
//! leave an audit entry too: a key without the `reveal` scope (403) and a malformed attempt (a
//! bad token or payment id, a bad body) are recorded as denied, with the caller named as far as
//! it is known. (A key that does not authenticate at all is recorded as `auth.failed` by the
//! vault; a refusal by the vault itself, such as an unknown token, is recorded by the vault.)

use hyper::{HeaderMap, StatusCode};
use vault_service::{Actor, AuditAction, AuditOutcome, Principal, Scope, Token};

use crate::{
    http::response::ApiError,
    state::{State, peer_uid},
};

/// The reason code of a key that authenticated but lacks the `reveal` scope.
pub(crate) const MISSING_SCOPE: &str = "missing_scope";
/// The reason code of a path parameter that is no token or payment id.
pub(crate) const INVALID_TARGET: &str = "invalid_target";
/// The reason code of a body that does not parse or validate.
pub(crate) const INVALID_BODY: &str = "invalid_body";

/// Authorizes a card-revealing call on `target` (the token asked for, when the path names one):
/// `reveal` scope. A key that authenticates without the scope, or an operator key, is refused
/// (403) and the refusal audited as `action`, denied `missing_scope`, naming the key's holder and
/// the target.
pub(crate) async fn authorize(
    state: &State,
    headers: &HeaderMap,
    action: AuditAction,
    target: Option<Token>,
) -> Result<Principal, ApiError> {
    match state.authorize(headers, Scope::Reveal) {
        Err(e) if e.status() == StatusCode::FORBIDDEN => {
            // The key did authenticate (a 403 comes only after that): name its holder.
            let who = state
                .actor_of(headers)
                .unwrap_or_else(|| Actor::local().with_peer_uid(peer_uid()));
            refused(state, who, action, target, MISSING_SCOPE).await;
            Err(e)
        }
        r => r,
    }
}

/// Records a refused `action` by `who` on `token` (if known) with reason `code`, durably. A
/// failure to record is logged (the call is refused either way).
pub(crate) async fn refused(
    state: &State,
    who: Actor,
    action: AuditAction,
    token: Option<Token>,
    code: &'static str,
) {
    let r = state
        .blocking(move |v| {
            v.as_actor(&who).audit(
                action,
                token.as_ref(),
                AuditOutcome::Denied(code.to_owned()),
            )
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(
            action = action.as_str(),
            status = e.status().as_u16(),
            "a refused call could not be audited"
        );
    }
}
