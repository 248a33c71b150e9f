//! What the gateway routes (the gateway API: `POST /token`, `POST /payments`) share: reading a
//! form or JSON body into fields, checking fields the way the seeds name their errors, the
//! `result`/`resultId`/`processingTime` envelope, and CORS for the session's browser origin.
//!
//! The gateway route handlers live in the submodules: [`api`] (`POST /token`, `POST /payments`),
//! [`payments`] (a payment's card and result), [`hosted`] and [`hosted_fields`] (hosted-fields
//! sessions, assets and frame).

pub(crate) mod api;
pub(crate) mod hosted;
pub(crate) mod hosted_fields;
pub(crate) mod payments;

use std::{collections::BTreeMap, time::Instant};

use bytes::Bytes;
use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue, ORIGIN, VARY},
};
use serde::Serialize;
use vault_gateway::SessionToken;
use vault_wire::{GatewayError, GatewayFailure, GatewayResult};

use crate::{
    decode::form::{self, Fields},
    http::headers::{Given, given},
    http::limits,
    http::response::{self, ApiError, Body},
    state::State,
};

/// Largest gateway request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The session-token API's message for a field that was not sent.
pub(crate) const REQUIRED: &str = "This field is required in [REQUEST]";
/// The stored-card payment API's message for a field sent empty.
pub(crate) const NONEMPTY: &str = "field.nonempty";
/// A field with the wrong form.
pub(crate) const INVALID: &str = "field.invalid";
/// A field over its length.
pub(crate) const LENGTH: &str = "field.length";

/// A gateway request in progress: when it started (for `processingTime`) and the browser origin.
pub(crate) struct Call {
    start: Instant,
    pub(crate) origin: Option<String>,
}

impl Call {
    pub(crate) fn begin(headers: &HeaderMap) -> Self {
        Self {
            start: Instant::now(),
            // Several `Origin` headers (no browser sends them) are kept as their list, which
            // matches no session's origin: which one to check is not for the daemon to guess.
            origin: match given(headers, &ORIGIN) {
                Given::Absent => None,
                Given::Once(value) => value.to_str().ok().map(str::to_owned),
                Given::Repeated => Some(
                    headers
                        .get_all(ORIGIN)
                        .iter()
                        .map(|v| v.to_str().unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            },
        }
    }

    /// Milliseconds since the request arrived.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The response for `answer` (a failure in the seeds' envelope), with CORS for the request's
    /// origin when `allowed`.
    pub(crate) fn answer(
        &self,
        answer: Result<Response<Body>, Failure>,
        allowed: bool,
    ) -> Response<Body> {
        let resp = answer.unwrap_or_else(|f| self.failure_response(f));
        cors(resp, self.origin.as_deref(), allowed)
    }

    /// An idempotency refusal, or the 503 of a request answered before its work ended, as this
    /// call's failure answer (see [`idempotency_failure`]).
    pub(crate) fn idempotency_response(&self, e: ApiError) -> Response<Body> {
        self.failure_response(idempotency_failure(&e))
    }

    pub(crate) fn failure_response(&self, f: Failure) -> Response<Body> {
        let body = GatewayFailure {
            result: GatewayResult::Failure,
            result_id: result_id(),
            additional_details: BTreeMap::new(),
            errors: f.errors,
            processing_time: self.elapsed_ms(),
        };
        let mut resp = response::json(f.status, &body);
        let retry_after = match (f.retry_after, f.status) {
            (Some(secs), _) => Some(secs),
            // The only gateway 429 is a login lockout: its failures slide out of the window.
            (None, StatusCode::TOO_MANY_REQUESTS) => Some(response::LOGIN_RETRY_AFTER_SECS),
            (None, StatusCode::SERVICE_UNAVAILABLE) => Some(response::RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A refused gateway request: its status and every refused field.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) errors: Vec<GatewayError>,
    /// `Retry-After` seconds, when the refusal says more than the status does (a 503 from an
    /// unreachable database).
    pub(crate) retry_after: Option<u64>,
}

impl Failure {
    pub(crate) fn one(status: StatusCode, field: &str, code: &str) -> Self {
        Self::many(status, vec![error(field, code)])
    }

    /// Every refused field at once.
    pub(crate) fn many(status: StatusCode, errors: Vec<GatewayError>) -> Self {
        Self {
            status,
            errors,
            retry_after: None,
        }
    }

    /// A 503 (`service.unavailable`: a busy vault, a timeout, an unreachable database, a write
    /// that kept racing another daemon's) with the `Retry-After` of `e`.
    pub(crate) fn unavailable(e: &ApiError) -> Self {
        Self {
            retry_after: e.retry_after_secs(),
            ..Self::one(
                StatusCode::SERVICE_UNAVAILABLE,
                "request",
                "service.unavailable",
            )
        }
    }
}

/// One seed-style error.
pub(crate) fn error(field: &str, code: &str) -> GatewayError {
    GatewayError {
        message_code: code.to_owned(),
        field_name: field.to_owned(),
    }
}

/// A fresh UUIDv4 for `resultId`.
pub(crate) fn result_id() -> String {
    SessionToken::mint(&mut rand::rng()).to_string()
}

/// Reads a form or JSON body into fields (and returns the raw body too, for the idempotency
/// fingerprint): 415 for another content type, 413 over [`MAX_BODY`], 400 naming the field for
/// duplicate or nested fields.
pub(crate) async fn read_fields(
    state: &State,
    req: Request<Incoming>,
) -> Result<(Fields, Bytes), Failure> {
    // Exactly one `Content-Type`: two declarations are none.
    let content_type = match given(req.headers(), &CONTENT_TYPE) {
        Given::Once(value) => value.to_str().ok(),
        Given::Absent | Given::Repeated => None,
    };
    let Some(encoding) = form::encoding(content_type) else {
        return Err(Failure::one(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
            "request.media_type",
        ));
    };
    let body: Bytes = limits::read_body(req.into_body(), MAX_BODY, state.config.request_timeout)
        .await
        .map_err(|e| Failure::one(e.status(), "body", "request.unreadable"))?;
    let fields = form::decode(encoding, &body)
        .map_err(|e| Failure::one(StatusCode::BAD_REQUEST, &e.field, e.code))?;
    Ok((fields, body))
}

/// Field checks that collect every refusal, named the seeds' way.
pub(crate) struct Check<'f> {
    fields: &'f Fields,
    pub(crate) errors: Vec<GatewayError>,
}

impl<'f> Check<'f> {
    pub(crate) fn new(fields: &'f Fields) -> Self {
        Self {
            fields,
            errors: Vec::new(),
        }
    }

    /// A mandatory field of at most `max` characters.
    pub(crate) fn required(&mut self, name: &str, max: usize) -> Option<&'f str> {
        match self.fields.get(name) {
            None => {
                self.fail(name, REQUIRED);
                None
            }
            Some("") => {
                self.fail(name, NONEMPTY);
                None
            }
            Some(v) => self.within(name, v, max),
        }
    }

    /// An optional field of at most `max` characters (empty is the same as absent, as the session-token API
    /// says of `customerId`).
    pub(crate) fn optional(&mut self, name: &str, max: usize) -> Option<&'f str> {
        match self.fields.get(name) {
            None | Some("") => None,
            Some(v) => self.within(name, v, max),
        }
    }

    fn within(&mut self, name: &str, v: &'f str, max: usize) -> Option<&'f str> {
        if v.chars().count() > max {
            self.fail(name, LENGTH);
            None
        } else {
            Some(v)
        }
    }

    /// Parses a present value; a refusal names `name` as `field.invalid`.
    pub(crate) fn parse<T, E>(
        &mut self,
        name: &str,
        v: Option<&str>,
        f: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let v = v?;
        match f(v) {
            Ok(t) => Some(t),
            Err(_) => {
                self.fail(name, INVALID);
                None
            }
        }
    }

    pub(crate) fn fail(&mut self, name: &str, code: &str) {
        self.errors.push(error(name, code));
    }

    /// The errors so far as a 400, if any.
    pub(crate) fn finish(self) -> Result<(), Failure> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Failure::many(StatusCode::BAD_REQUEST, self.errors))
        }
    }
}

/// Digits only, at most `max` of them (seed `Integer(n)` fields).
pub(crate) fn integer(s: &str, max: usize) -> Result<u64, ()> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map_err(|_| ())
}

/// `true`/`false` in any case (seed `Boolean`).
pub(crate) fn boolean(s: &str) -> Result<bool, ()> {
    if s.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(())
    }
}

/// `*` or a browser origin: `http(s)://host[:port]`, no path, query or credentials.
pub(crate) fn origin(s: &str) -> Result<(), ()> {
    if s == "*" {
        return Ok(());
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or(())?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    // The host: a name or IPv4 address, or an IPv6 literal in brackets; then an optional port.
    let (host_ok, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (address, after) = v6.split_once(']').ok_or(())?;
            let ok = !address.is_empty()
                && address
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(())?),
            };
            (ok, port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
            (ok, port)
        }
    };
    // 1-65535, digits only: a CSP source or `Access-Control-Allow-Origin` with another is invalid.
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n))
    });
    if host_ok && port_ok { Ok(()) } else { Err(()) }
}

/// Whether a browser `origin` may read answers for a session allowing `allowed`.
pub(crate) fn origin_matches(allowed: Option<&str>, origin: &str) -> bool {
    match allowed {
        Some("*") => true,
        Some(a) => a
            .trim_end_matches('/')
            .eq_ignore_ascii_case(origin.trim_end_matches('/')),
        None => false,
    }
}

/// Adds `Access-Control-Allow-Origin` for `origin` when `allowed`, and `Vary: Origin` always.
pub(crate) fn cors(
    mut resp: Response<Body>,
    origin: Option<&str>,
    allowed: bool,
) -> Response<Body> {
    resp.headers_mut()
        .insert(VARY, HeaderValue::from_static("Origin"));
    if allowed
        && let Some(o) = origin
        && let Ok(v) = HeaderValue::from_str(o)
    {
        resp.headers_mut()
            .insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    resp
}

/// `OPTIONS /token` and `OPTIONS /payments`: the CORS preflight. The origin is echoed because the
/// session (and so its allowed origin) is only known from the body of the real request; that
/// request is refused by the vault itself when its `Origin` is not the session's.
pub(crate) fn preflight(headers: &HeaderMap) -> Response<Body> {
    use hyper::header::{
        ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_MAX_AGE, ALLOW,
    };
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let mut resp = cors(response::empty(StatusCode::NO_CONTENT), origin, true);
    let h = resp.headers_mut();
    h.insert(ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    if origin.is_some() {
        h.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type, Idempotency-Key"),
        );
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    resp
}

/// An idempotency refusal (409 conflict, or a store failure) in the gateway's terms.
pub(crate) fn idempotency_failure(e: &ApiError) -> Failure {
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        return Failure::unavailable(e);
    }
    match e.first_error() {
        Some((_, "idempotency_in_progress")) => Failure::one(
            StatusCode::CONFLICT,
            "Idempotency-Key",
            "idempotency.in_progress",
        ),
        Some((_, "idempotency_mismatch")) => Failure::one(
            StatusCode::CONFLICT,
            "Idempotency-Key",
            "idempotency.mismatch",
        ),
        Some((field, "invalid" | "required")) => Failure::one(e.status(), field, INVALID),
        _ => Failure::one(e.status(), "request", "request.internal"),
    }
}

/// A success body with status 200.
pub(crate) fn success<T: Serialize>(value: &T) -> Response<Body> {
    response::json(StatusCode::OK, value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_a_gateway_503_with_retry_after() {
        use vault_service::{StoreError, Unavailable, VaultError};
        let call = Call::begin(&HeaderMap::new());
        let down = ApiError::from(VaultError::Store(StoreError::Unavailable(
            Unavailable::Connect,
        )));
        for failure in [idempotency_failure(&down), Failure::unavailable(&down)] {
            let resp = call.failure_response(failure);
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                resp.headers()
                    .get(hyper::header::RETRY_AFTER)
                    .map(HeaderValue::as_bytes),
                Some(&b"5"[..])
            );
        }
        let failure = idempotency_failure(&down);
        assert_eq!(failure.errors[0].message_code, "service.unavailable");
        // A 503 without a reason of its own (a timeout) still says when to come back.
        let resp = call.failure_response(Failure::one(
            StatusCode::SERVICE_UNAVAILABLE,
            "request",
            "service.unavailable",
        ));
        assert_eq!(
            resp.headers()
                .get(hyper::header::RETRY_AFTER)
                .map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn origins() {
        assert!(origin("*").is_ok());
        assert!(origin("https://shop.example.com").is_ok());
        assert!(origin("http://localhost:8080/").is_ok());
        assert!(origin("https://[::1]:8443").is_ok());
        assert!(origin("http://127.0.0.1").is_ok());
        for bad in [
            "shop.example.com",
            "https://",
            "https://a/b",
            "ftp://a",
            "https://a?x",
            "https://x.example:99999",
            "https://x.example:0",
            "https://x.example:",
            "https://x.example:80:80",
            "https://:443",
            "https://[]",
            "https://[::1]x",
            "https://[[::1]]",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
        assert!(origin_matches(Some("*"), "https://x"));
        assert!(origin_matches(
            Some("https://Shop.example/"),
            "https://shop.example"
        ));
        assert!(!origin_matches(
            Some("https://shop.example"),
            "https://evil.example"
        ));
        assert!(!origin_matches(None, "https://shop.example"));
    }

    #[test]
    fn integers_and_booleans() {
        assert_eq!(integer("890490", 18), Ok(890_490));
        assert!(integer("1234567890123456789", 18).is_err());
        assert!(integer("-1", 18).is_err());
        assert!(integer("", 18).is_err());
        assert_eq!(boolean("TRUE"), Ok(true));
        assert!(boolean("yes").is_err());
    }
}
