//! `POST /processing-terminals/{processingTerminalId}/hosted-fields-sessions` (the hosted-fields session API):
//! a merchant's server asks for a session token to configure Hosted Fields with. Errors are RFC
//! 9457 problem details naming the parameter.

use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::Incoming,
    header::{ACCEPT, HeaderValue, LOCATION},
};
use time::format_description::well_known::Rfc3339;
use vault_gateway::{SessionKind, SessionOptions, TerminalId};
use vault_service::Token;
use vault_wire::{HostedFieldsSessionRequest, HostedFieldsSessionResponse};

use bytes::Bytes;

use crate::{
    decode::json,
    http::response::{self, ApiError, Body},
    http::router::Param,
    idempotency::{self, KeyRule},
    routes::gateway,
    state::{State, actor},
};

/// The route, as idempotency keys are scoped to it.
pub(crate) const ROUTE: &str =
    "POST /processing-terminals/{processingTerminalId}/hosted-fields-sessions";

/// Answers, errors as problem details.
pub(crate) async fn create(state: &State, req: Request<Incoming>, param: Param) -> Response<Body> {
    match create_inner(state, req, param).await {
        Ok(r) => r,
        Err(e) => e.into_problem(),
    }
}

async fn create_inner(
    state: &State,
    req: Request<Incoming>,
    param: Param,
) -> Result<Response<Body>, ApiError> {
    let p = state.authorize(req.headers(), vault_gateway::SESSIONS)?;
    let terminal = match param {
        Param::Text(t) => TerminalId::parse(&t)?,
        _ => {
            return Err(ApiError::field(
                "processingTerminalId",
                "invalid",
                "terminal id must be 4-50 characters",
            ));
        }
    };
    if !accepts_json(req.headers()) {
        return Err(ApiError::not_acceptable());
    }
    let key = idempotency::key_from(req.headers(), KeyRule::Required)?;
    let body = state.json_body(req, gateway::MAX_BODY).await?;
    // A `secureTokenId` session puts the shopper's card behind a stored token: an update of that
    // token, which takes the `tokenize` scope as `PUT /v2/tokens/{token}` does. Checked before the
    // Idempotency-Key is looked up: the request's identity does not name the key that sent it, so
    // a replay would otherwise hand a session made for a key with `tokenize` to one without (and a
    // refusal stored for one without would be replayed to one with it).
    // (A body that does not validate is the work's answer: its 400 names the fields.)
    let checked = json::typed::<HostedFieldsSessionRequest>(&body, json::HOSTED_SESSION)
        .map_err(ApiError::from)
        .and_then(|request| check(&request, terminal.clone()));
    let replaces = matches!(&checked, Ok((_, options)) if options.secure_token.is_some());
    if replaces && p.require(vault_service::Scope::Tokenize).is_err() {
        return Err(ApiError::forbidden(
            "authorization",
            "missing_scope",
            "a session with secureTokenId replaces a stored card: the API key needs the tokenize scope too",
        ));
    }
    let merchant = p.merchant;
    let parts = vec![
        Bytes::from(terminal.as_str().to_owned()),
        idempotency::json_shape(state, merchant, &body),
    ];
    // Errors of the work itself are problem details, stored and replayed as such.
    idempotency::run(
        state,
        merchant,
        ROUTE,
        key,
        parts,
        ApiError::into_problem,
        || async {
            Ok(match work(state, &p, terminal, checked).await {
                Ok(r) => r,
                Err(e) => e.into_problem(),
            })
        },
    )
    .await
}

async fn work(
    state: &State,
    p: &vault_service::Principal,
    terminal: TerminalId,
    checked: Result<(SessionKind, SessionOptions), ApiError>,
) -> Result<Response<Body>, ApiError> {
    let (kind, options) = checked?;
    let who = actor(p);
    let merchant = p.merchant;
    let session = state
        .gateway(move |g| g.as_actor(&who).create_session(merchant, kind, options))
        .await
        .map_err(|e| match e.status() {
            StatusCode::FORBIDDEN => ApiError::forbidden(
                "processingTerminalId",
                "forbidden",
                "the terminal is not one of this merchant's",
            ),
            _ => e,
        })?;
    let expires_at = session
        .expires_at
        .format(&Rfc3339)
        .map_err(|_| ApiError::internal())?;
    let body = HostedFieldsSessionResponse {
        processing_terminal_id: terminal.as_str().to_owned(),
        token: session.token.to_string(),
        expires_at,
    };
    let mut resp = response::json(StatusCode::CREATED, &body);
    let location = format!(
        "/processing-terminals/{}/hosted-fields-sessions/{}",
        terminal, session.token
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    Ok(resp)
}

/// Whether `Accept` (absent: anything) admits `application/json`.
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return headers.get(ACCEPT).is_none();
    };
    accept.split(',').any(|part| {
        let mut params = part.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = params.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        !refused
            && matches!(
                media.as_str(),
                "application/json" | "application/*" | "*/*" | "application/problem+json"
            )
    })
}

/// `^\d{1,2}\.\d{1,2}\.\d{1,2}(?:-beta)?\.\d+$`.
pub(crate) fn lib_version_ok(s: &str) -> bool {
    let digits = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
    };
    let parts: Vec<&str> = s.split('.').collect();
    let [a, b, c, d] = parts.as_slice() else {
        return false;
    };
    let c = c.strip_suffix("-beta").unwrap_or(c);
    digits(a, 2) && digits(b, 2) && digits(c, 2) && digits(d, usize::MAX)
}

fn check(
    r: &HostedFieldsSessionRequest,
    terminal: TerminalId,
) -> Result<(SessionKind, SessionOptions), ApiError> {
    let mut errors = Vec::new();
    if !lib_version_ok(&r.lib_version) {
        errors.push(vault_wire::FieldErrorBody::new(
            "libVersion",
            "invalid",
            "libVersion must match ^\\d{1,2}.\\d{1,2}.\\d{1,2}(?:-beta)?.\\d+$ (for example 1.6.0.172441)",
        ));
    }
    let kind = SessionKind::from_scenario(&r.scenario);
    if kind.is_none() {
        errors.push(vault_wire::FieldErrorBody::new(
            "scenario",
            "invalid",
            "scenario must be payment or tokenization",
        ));
    }
    let secure_token = match r.secure_token_id.as_deref() {
        None => None,
        Some(s) if s.is_empty() || s.chars().count() > 200 => {
            errors.push(vault_wire::FieldErrorBody::new(
                "secureTokenId",
                "invalid_length",
                "secureTokenId must be 1-200 characters",
            ));
            None
        }
        Some(s) => match Token::parse(s) {
            Ok(t) => Some(t),
            Err(_) => {
                errors.push(vault_wire::FieldErrorBody::new(
                    "secureTokenId",
                    "unknown",
                    "secureTokenId is not a live token of this merchant",
                ));
                None
            }
        },
    };
    if let Some(o) = r.allow_origin_url.as_deref()
        && (o.chars().count() > 253 || gateway::origin(o).is_err())
    {
        errors.push(vault_wire::FieldErrorBody::new(
            "allowOriginUrl",
            "invalid",
            "allowOriginUrl must be * or an origin such as https://shop.example",
        ));
    }
    match kind {
        Some(kind) if errors.is_empty() => Ok((
            kind,
            SessionOptions {
                terminal: Some(terminal),
                secure_token,
                allow_origin: r.allow_origin_url.clone(),
                ..SessionOptions::default()
            },
        )),
        _ => Err(ApiError::invalid(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_versions() {
        for ok in ["1.6.0.172441", "10.10.10-beta.1", "1.0.0.0"] {
            assert!(lib_version_ok(ok), "{ok}");
        }
        for bad in [
            "1.6.0",
            "100.1.1.1",
            "1.6.0.beta.1",
            "1.6.0-alpha.1",
            "a.b.c.d",
            "1..0.1",
            "",
        ] {
            assert!(!lib_version_ok(bad), "{bad}");
        }
    }

    #[test]
    fn accept_header() {
        let mut h = HeaderMap::new();
        assert!(accepts_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("*/*", true),
            ("text/html, application/*;q=0.5", true),
            ("text/html", false),
            ("application/json;q=0", false),
            ("application/xml", false),
        ] {
            h.insert(ACCEPT, HeaderValue::from_static(v));
            assert_eq!(accepts_json(&h), ok, "{v}");
        }
    }
}
