//! `vault-wire`: the JSON bodies of cardvault's HTTP API, shared by the daemon (`vault-daemon`)
//! and its clients (`vault-client`, the CLI). It depends on serde, serde_json, time and zeroize
//! only, so a client never pulls in the store.
//!
//! Field names are a contract (see `docs/openapi.json`). Dates are RFC 3339 strings in UTC
//! (`2028-03-01T00:00:00Z`).
//!
//! ```
//! use vault_wire::{CardInput, TokenizeRequest};
//!
//! let req = TokenizeRequest::card(CardInput::new("4242424242424242", "2802"));
//! let json = serde_json::to_string(&req).unwrap();
//! assert_eq!(json, r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}}"#);
//! ```
//!
//! Types that carry a card number ([`CardInput`], [`RevealResponse`]) or an API key secret
//! ([`ApiKeyCreated`]) have a `Debug` that hides it and wipe it on drop.
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod batch;
mod error;
mod gateway;
mod health;
mod reveal;
mod tokens;
mod unique_keys;

pub use admin::{
    ApiKeyCreateRequest, ApiKeyCreated, ApiKeyKind, ApiKeyList, ApiKeyResponse, BackupRequest,
    BackupResponse, DekStatus, KeyStatusResponse, MerchantAddRequest, MerchantList,
    MerchantPasswordRequest, MerchantResponse, RetireResponse, RewrapResponse, RotateResponse,
    StatsResponse, SweepResponse, TerminalAddRequest, TerminalList, TerminalResponse,
};
pub use audit::{
    ArchivedChainView, AuditArchiveRequest, AuditArchiveResponse, AuditEntryView, AuditPage,
    AuditVerifyResponse,
};
pub use batch::{BatchItemResult, BatchRequest, BatchResponse};
pub use error::{ErrorBody, ErrorStatus, FieldErrorBody};
pub use gateway::{
    GatewayError, GatewayFailure, GatewayResult, HostedFieldsSessionRequest,
    HostedFieldsSessionResponse, PaymentCardResponse, PaymentCardView, PaymentResponse,
    PaymentResultRequest, PaymentResultResponse, Problem, ProblemError, SessionTokenResponse,
};
pub use health::HealthResponse;
pub use reveal::{RevealRequest, RevealResponse};
pub use tokens::{
    CardInput, CardView, TokenResponse, TokenStatus, TokenType, TokenizeRequest, UpdateRequest,
};

/// The content type of every JSON request and response body.
pub const JSON_CONTENT_TYPE: &str = "application/json";
