//! Building responses: JSON bodies, and the one error type every handler returns.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Response, StatusCode,
    header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE},
};
use serde::Serialize;
use vault_service::{ConflictKind, StoreError, Unavailable, VaultError};
use vault_wire::{ErrorBody, ErrorStatus, FieldErrorBody};

use super::log_limit::LogLimit;

/// `Retry-After` of a refused login: the failure window is sliding, so a failure leaves the count
/// at most this long after it happened (the default 15-minute login window).
pub(crate) const LOGIN_RETRY_AFTER_SECS: u64 = 15 * 60;

/// `Retry-After` of a 503 that says nothing more precise (a full write queue, a timeout).
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

/// Code of a 503 when the vault's database cannot be reached or did not answer in time.
pub(crate) const DATABASE_UNAVAILABLE: &str = "database_unavailable";

/// Code of a 503 when another daemon sharing the database kept changing what this request's
/// write rested on (the store re-ran it on fresh reads, and it still raced): safe to retry.
pub(crate) const WRITE_CONFLICT: &str = "write_conflict";

/// Code of a 503 (and of `/health`'s) once the store has stopped after a fatal write error.
pub(crate) const STORE_FAILED: &str = "store_failed";

/// Seconds a client should wait after the database was `why` unavailable: a server that refuses
/// connections or is starting needs longer than a busy pool or a slow statement.
pub(crate) fn database_retry_after(why: Unavailable) -> u64 {
    match why {
        Unavailable::Connect
        | Unavailable::ServerNotReady
        | Unavailable::Tls
        | Unavailable::Authentication
        | Unavailable::NoSuchDatabase => 5,
        _ => RETRY_AFTER_SECS,
    }
}

/// Every response body is a complete buffer.
pub(crate) type Body = Full<Bytes>;

/// `application/json`.
pub(crate) fn json_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// `status` with `value` as its JSON body.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_body(status, json_type(), Bytes::from(bytes)),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// `status` with a body of the given content type.
pub(crate) fn with_body(
    status: StatusCode,
    content_type: HeaderValue,
    body: Bytes,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, content_type);
    resp
}

/// An empty response (204).
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// A failed request: an HTTP status and the `{"status","errors"}` body. Messages are written
/// here or come from the vault's field errors; none ever holds the value refused.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: ErrorStatus,
    errors: Vec<FieldErrorBody>,
    allow: Option<String>,
    /// Seconds for a `Retry-After` header (every 429 has one).
    retry_after: Option<u64>,
}

impl ApiError {
    fn one(status: StatusCode, kind: ErrorStatus, field: &str, code: &str, message: &str) -> Self {
        Self {
            status,
            kind,
            errors: vec![FieldErrorBody::new(field, code, message)],
            allow: None,
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` of `secs` seconds.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 naming every refused field.
    pub(crate) fn invalid(errors: Vec<FieldErrorBody>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: ErrorStatus::InvalidRequest,
            errors,
            allow: None,
            retry_after: None,
        }
    }

    /// 400 for one field.
    pub(crate) fn field(field: &str, code: &str, message: &str) -> Self {
        Self::invalid(vec![FieldErrorBody::new(field, code, message)])
    }

    /// 401.
    pub(crate) fn unauthorized(code: &str, message: &str) -> Self {
        Self::one(
            StatusCode::UNAUTHORIZED,
            ErrorStatus::Unauthorized,
            "authorization",
            code,
            message,
        )
    }

    /// 403.
    pub(crate) fn forbidden(field: &str, code: &str, message: &str) -> Self {
        Self::one(
            StatusCode::FORBIDDEN,
            ErrorStatus::Forbidden,
            field,
            code,
            message,
        )
    }

    /// 404 for a token: unknown, deleted, expired and foreign tokens all look like this.
    pub(crate) fn token_not_found() -> Self {
        Self::one(
            StatusCode::NOT_FOUND,
            ErrorStatus::NotFound,
            "token",
            "not_found",
            "no such token",
        )
    }

    /// 409: an `Idempotency-Key` whose stored answer names a token that has been deleted or
    /// has expired since (see `routes::tokens::create`). A rule of that route, not of the vault's
    /// idempotency store, so not a `VaultConflict`.
    pub(crate) fn idempotency_token_gone() -> Self {
        Self::one(
            StatusCode::CONFLICT,
            ErrorStatus::Conflict,
            "Idempotency-Key",
            "idempotency_token_gone",
            "the token this Idempotency-Key's answer named has since been deleted or has expired; \
             send a new Idempotency-Key to tokenize the card again",
        )
    }

    /// 404 for something other than a token (`field` names what was looked up).
    pub(crate) fn not_found(field: &str, message: &str) -> Self {
        Self::one(
            StatusCode::NOT_FOUND,
            ErrorStatus::NotFound,
            field,
            "not_found",
            message,
        )
    }

    /// 406: the client does not accept JSON.
    pub(crate) fn not_acceptable() -> Self {
        Self::one(
            StatusCode::NOT_ACCEPTABLE,
            ErrorStatus::NotAcceptable,
            "Accept",
            "not_acceptable",
            "responses are application/json; the Accept header rules it out",
        )
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Retry-After` seconds this error's response carries, if any (every 503 and 429).
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        match self.retry_after {
            Some(secs) => Some(secs.max(1)),
            None if self.status == StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            None => None,
        }
    }

    /// The first refused field and its code.
    pub(crate) fn first_error(&self) -> Option<(&str, &str)> {
        self.errors
            .first()
            .map(|e| (e.field.as_str(), e.code.as_str()))
    }

    /// This error as an RFC 9457 problem-details response (`application/problem+json`), the error
    /// form of the hosted-fields API (the hosted-fields session API).
    pub(crate) fn into_problem(self) -> Response<Body> {
        let retry_after = self.retry_after_secs();
        let problem = vault_wire::Problem {
            kind: "about:blank".to_owned(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: match self.errors.as_slice() {
                [one] => one.message.clone(),
                _ => "one or more parameters were refused; see errors".to_owned(),
            },
            errors: self
                .errors
                .into_iter()
                .map(|e| vault_wire::ProblemError {
                    parameter: e.field,
                    detail: e.message,
                    message: e.code,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = with_body(
            self.status,
            HeaderValue::from_static("application/problem+json"),
            Bytes::from(bytes),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// 404 for a path no route serves.
    pub(crate) fn no_route() -> Self {
        Self::one(
            StatusCode::NOT_FOUND,
            ErrorStatus::NotFound,
            "path",
            "not_found",
            "no such route",
        )
    }

    /// 405 with the methods the path accepts.
    pub(crate) fn method_not_allowed(allow: String) -> Self {
        let mut e = Self::one(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorStatus::MethodNotAllowed,
            "method",
            "not_allowed",
            "this route does not accept that method",
        );
        e.allow = Some(allow);
        e
    }

    /// 413.
    pub(crate) fn too_large() -> Self {
        Self::one(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorStatus::PayloadTooLarge,
            "body",
            "too_large",
            "request body is over the size limit",
        )
    }

    /// 415.
    pub(crate) fn unsupported_media_type() -> Self {
        Self::one(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorStatus::UnsupportedMediaType,
            "content-type",
            "unsupported",
            "request body must be application/json",
        )
    }

    /// 408: the body did not arrive in time.
    pub(crate) fn body_timeout() -> Self {
        Self::one(
            StatusCode::REQUEST_TIMEOUT,
            ErrorStatus::Timeout,
            "body",
            "timeout",
            "request body took too long to arrive",
        )
    }

    /// 503: the request took too long to serve.
    pub(crate) fn unavailable(message: &str) -> Self {
        Self::one(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorStatus::Unavailable,
            "request",
            "unavailable",
            message,
        )
    }

    /// 503 `database_unavailable`: the vault's database cannot be reached, or did not answer in
    /// time. Nothing was acknowledged; the engine reconnects by itself. A lost connection leaves a
    /// write's outcome unknown: the message says to retry with the same `Idempotency-Key`.
    pub(crate) fn database_unavailable(why: Unavailable) -> Self {
        // Says what failed, never where: no URL, host or user reaches a client or the log. At
        // most one line a second: an outage under load refuses every request.
        static DATABASE_WARNINGS: LogLimit = LogLimit::new();
        if let Some(left_out) = DATABASE_WARNINGS.admit() {
            tracing::warn!(reason = %why, left_out, "the vault's database is unavailable");
        }
        let message = match why {
            Unavailable::ConnectionLost => {
                "the connection to the vault's database was lost; whether this request took effect is unknown: retry it (with the same Idempotency-Key)"
            }
            _ => "the vault's database is unavailable; try again shortly",
        };
        Self::one(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorStatus::Unavailable,
            "request",
            DATABASE_UNAVAILABLE,
            message,
        )
        .retry_after(database_retry_after(why))
    }

    /// 503 `write_conflict`: other daemons sharing the database kept changing what this
    /// request's write rested on, and the store's re-runs did not get through. Nothing was
    /// written; retrying is safe.
    pub(crate) fn write_conflict() -> Self {
        Self::one(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorStatus::Unavailable,
            "request",
            WRITE_CONFLICT,
            "other writers changed the same data at the same time; nothing was written: try again",
        )
        .retry_after(RETRY_AFTER_SECS)
    }

    /// 500. The cause is logged by the caller, never returned.
    pub(crate) fn internal() -> Self {
        Self::one(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorStatus::Internal,
            "request",
            "internal",
            "the vault could not complete the request",
        )
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let retry_after = self.retry_after_secs();
        let body = ErrorBody {
            status: self.kind,
            errors: self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"status":"internal","errors":[{"field":"request","code":"internal","message":"error"}]}"#.to_vec()
        });
        let mut resp = with_body(self.status, json_type(), Bytes::from(bytes));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow
            && let Ok(v) = HeaderValue::from_str(&allow)
        {
            resp.headers_mut().insert(ALLOW, v);
        }
        resp
    }
}

impl From<vault_gateway::GatewayError> for ApiError {
    fn from(e: vault_gateway::GatewayError) -> Self {
        use vault_gateway::GatewayError;
        match e {
            GatewayError::SessionInvalid => Self::one(
                StatusCode::NOT_FOUND,
                ErrorStatus::NotFound,
                "token",
                "session_invalid",
                "the session is unknown, expired or already used",
            ),
            GatewayError::OriginMismatch => Self::forbidden(
                "origin",
                "origin_mismatch",
                "the request origin is not the session's allowed origin",
            ),
            GatewayError::RateLimited => Self::one(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorStatus::RateLimited,
                "authorization",
                "rate_limited",
                "too many failed attempts; try again later",
            )
            .retry_after(LOGIN_RETRY_AFTER_SECS),
            // Answered as the vault's conflicts are (a session-token collision: 122 random bits).
            GatewayError::SessionExists => Self::one(
                StatusCode::CONFLICT,
                ErrorStatus::Conflict,
                "Idempotency-Key",
                "session_exists",
                "this Idempotency-Key was used with a different request",
            ),
            GatewayError::Vault(e) => e.into(),
            other => {
                // Gateway errors carry no card data.
                tracing::error!(error = %other, "gateway error");
                Self::internal()
            }
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Invalid(f) => Self::field(f.field, f.code, &f.message),
            VaultError::NotFound => Self::token_not_found(),
            VaultError::CustomerMismatch => Self::forbidden(
                "customer_id",
                "customer_mismatch",
                "the token is bound to a different customer",
            ),
            VaultError::Unauthorized => Self::unauthorized("invalid", "the API key is not valid"),
            VaultError::Forbidden => Self::forbidden(
                "authorization",
                "missing_scope",
                "the API key lacks the scope this route needs",
            ),
            VaultError::TooManyCards { retry_after } => Self::one(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorStatus::RateLimited,
                "card.pan",
                "masked_form_limit",
                "this API key stored too many distinct cards with the same masked number recently; try again later",
            )
            .retry_after(retry_after.as_secs()),
            VaultError::Busy => Self::unavailable("the vault is busy; try again shortly"),
            VaultError::Store(StoreError::Unavailable(why)) => Self::database_unavailable(why),
            VaultError::Store(StoreError::Conflict(ConflictKind::Raced | ConflictKind::Guard)) => {
                Self::write_conflict()
            }
            VaultError::Store(StoreError::BackupRunning) => Self::one(
                StatusCode::CONFLICT,
                ErrorStatus::Conflict,
                "path",
                "backup_in_progress",
                "another backup of this vault is running; try again once it is done",
            ),
            VaultError::Conflict(conflict) => Self::one(
                StatusCode::CONFLICT,
                ErrorStatus::Conflict,
                "Idempotency-Key",
                conflict.code(),
                match conflict {
                    vault_service::VaultConflict::IdempotencyInProgress => {
                        "a request with this Idempotency-Key is still being processed"
                    }
                    _ => "this Idempotency-Key was used with a different request",
                },
            ),
            VaultError::Store(StoreError::Failed) => {
                // sled 0.34 refuses everything after its first write error (disk full, I/O):
                // every request would log this, at most one line a second instead.
                static STOPPED: LogLimit = LogLimit::new();
                if let Some(left_out) = STOPPED.admit() {
                    tracing::error!(
                        left_out,
                        "the vault's store has stopped after a write failed (disk full or I/O error): restart the daemon once the cause is fixed"
                    );
                }
                Self::one(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorStatus::Unavailable,
                    "request",
                    STORE_FAILED,
                    "the vault's store has stopped after a write error (disk full or I/O error); it serves again once the daemon is restarted",
                )
            }
            other => {
                // Vault errors carry no card data (see vault-service's error rules). A storage
                // error can repeat on every request (a failed disk under reads): at most one
                // line a second of those. Any other kind is logged every time.
                static STORAGE_ERRORS: LogLimit = LogLimit::new();
                match &other {
                    VaultError::Store(StoreError::Db(_) | StoreError::Io(_)) => {
                        if let Some(left_out) = STORAGE_ERRORS.admit() {
                            tracing::error!(error = %other, left_out, "vault error");
                        }
                    }
                    _ => tracing::error!(error = %other, "vault error"),
                }
                Self::internal()
            }
        }
    }
}

impl From<Vec<FieldErrorBody>> for ApiError {
    fn from(errors: Vec<FieldErrorBody>) -> Self {
        Self::invalid(errors)
    }
}

#[cfg(test)]
mod busy_tests {
    use http_body_util::BodyExt;
    use vault_service::{ConflictKind, StoreError, Unavailable};

    use super::*;

    /// The JSON body (a complete buffer: collecting it never waits).
    fn body(resp: Response<Body>) -> serde_json::Value {
        let collected = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(resp.into_body().collect())
            .expect("a full body");
        serde_json::from_slice(&collected.to_bytes()).expect("a JSON body")
    }

    fn retry_after(resp: &Response<Body>) -> Option<&[u8]> {
        resp.headers().get(RETRY_AFTER).map(HeaderValue::as_bytes)
    }

    #[test]
    fn a_stopped_store_is_a_503_naming_it_with_retry_after() {
        let e = ApiError::from(VaultError::Store(StoreError::Failed));
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry_after(&resp).is_some());
        let v = body(resp);
        assert_eq!(v["errors"][0]["code"], STORE_FAILED, "{v}");
        // A store closed for another reason (a job that could not run) is no disk failure.
        let closed = ApiError::from(VaultError::Store(StoreError::Closed));
        assert_eq!(closed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn an_unavailable_database_is_a_503_with_retry_after_never_a_500() {
        for (why, secs) in [
            (Unavailable::Connect, &b"5"[..]),
            (Unavailable::ServerNotReady, b"5"),
            (Unavailable::ConnectionLost, b"1"),
            (Unavailable::PoolExhausted, b"1"),
            (Unavailable::StatementTimeout, b"1"),
        ] {
            let e = ApiError::from(VaultError::Store(StoreError::Unavailable(why)));
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{why:?}");
            let resp = e.into_response();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{why:?}");
            assert_eq!(retry_after(&resp), Some(secs), "{why:?}");
            let v = body(resp);
            assert_eq!(v["status"], "unavailable", "{v}");
            assert_eq!(v["errors"][0]["code"], "database_unavailable", "{v}");
            assert_eq!(v["errors"][0]["field"], "request", "{v}");
        }
        // A lost connection leaves the outcome unknown: the message says how to retry safely.
        let lost = ApiError::from(VaultError::Store(StoreError::Unavailable(
            Unavailable::ConnectionLost,
        )));
        let v = body(lost.into_response());
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Idempotency-Key")),
            "{v}"
        );
        // The hosted-fields form (problem details) carries the same status and Retry-After.
        let problem = ApiError::from(VaultError::Store(StoreError::Unavailable(
            Unavailable::Connect,
        )))
        .into_problem();
        assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&problem), Some(&b"5"[..]));
        let v = body(problem);
        assert_eq!(v["errors"][0]["message"], "database_unavailable", "{v}");
    }

    #[test]
    fn a_write_that_kept_racing_is_a_retryable_503() {
        let e = ApiError::from(VaultError::Store(StoreError::Conflict(ConflictKind::Raced)));
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&resp), Some(&b"1"[..]));
        let v = body(resp);
        assert_eq!(v["status"], "unavailable", "{v}");
        assert_eq!(v["errors"][0]["code"], "write_conflict", "{v}");
        // The other conflicts stay what they were: a store invariant broken, a 500.
        let other = ApiError::from(VaultError::Store(StoreError::Conflict(
            ConflictKind::Changed,
        )));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_busy_vault_is_a_503_with_retry_after() {
        let resp = ApiError::from(VaultError::Busy).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers().get(RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
        let full = VaultError::from(vault_service::StoreError::Busy);
        assert!(matches!(full, VaultError::Busy), "{full:?}");
    }
}
