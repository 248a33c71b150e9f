//! The error body every non-2xx response carries.

use serde::{Deserialize, Serialize};

/// `status` of an error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorStatus {
    /// 400: a field was refused (each one is named).
    InvalidRequest,
    /// 401: missing or bad API key.
    Unauthorized,
    /// 403: the key lacks the scope, or the customer binding does not match.
    Forbidden,
    /// 404: unknown route, or no live token of this merchant by that name.
    NotFound,
    /// 405: the route exists, not with this method.
    MethodNotAllowed,
    /// 408: the request took too long to arrive or to serve.
    Timeout,
    /// 406: the `Accept` header rules out JSON.
    NotAcceptable,
    /// 409: an `Idempotency-Key` conflict (different request, or one still in progress).
    Conflict,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 429: too many failed attempts.
    RateLimited,
    /// 500: an integrity or storage failure (details are logged, not returned).
    Internal,
    /// 503: the daemon is shutting down or overloaded.
    Unavailable,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

/// One refused field. `message` never contains the refused value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldErrorBody {
    /// Dotted path (`card.pan`, `card.expiration_date`, `type`, `body`, `authorization`, ...).
    pub field: String,
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldErrorBody {
    /// A field error from parts.
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// `{"status":"invalid-request","errors":[{"field","code","message"}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The kind of failure.
    pub status: ErrorStatus,
    /// At least one entry.
    pub errors: Vec<FieldErrorBody>,
}

impl ErrorBody {
    /// A body with a single error.
    pub fn single(status: ErrorStatus, error: FieldErrorBody) -> Self {
        Self {
            status,
            errors: vec![error],
        }
    }
}
