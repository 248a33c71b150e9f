//! The gateway's error type: the vault's errors, and the gateway's own.

use std::fmt;

use vault_service::{AuditOutcome, VaultError};

/// Everything a gateway call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum GatewayError {
    /// The vault refused or failed.
    Vault(VaultError),
    /// No usable session by that token: unknown, expired, already used or another merchant's
    /// (deliberately indistinguishable).
    SessionInvalid,
    /// The browser origin does not match the session's `allowOriginUrl`.
    OriginMismatch,
    /// Too many failed logins for this merchant or from this peer; try again later.
    RateLimited,
    /// A session with this token exists (122 random bits: not a realistic event).
    SessionExists,
}

impl GatewayError {
    /// The audit outcome of a call that returned `r`.
    pub fn outcome<T>(r: &Result<T, GatewayError>) -> AuditOutcome {
        match r {
            Ok(_) => AuditOutcome::Ok,
            Err(Self::Vault(e)) => AuditOutcome::of_error(e),
            Err(Self::SessionInvalid) => AuditOutcome::Denied("session_invalid".to_owned()),
            Err(Self::OriginMismatch) => AuditOutcome::Denied("origin_mismatch".to_owned()),
            Err(Self::RateLimited) => AuditOutcome::Denied("rate_limited".to_owned()),
            Err(Self::SessionExists) => AuditOutcome::Denied("session_exists".to_owned()),
        }
    }

    /// A refused request field (see [`FieldError`](vault_service::FieldError)).
    pub(crate) fn field(
        field: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Vault(VaultError::Invalid(vault_service::FieldError::new(
            field, code, message,
        )))
    }

    /// A stored gateway record of key space `what` that does not decode.
    pub(crate) fn corrupt(what: vault_service::KeySpace) -> Self {
        Self::Vault(VaultError::Store(vault_service::StoreError::Corrupt(
            vault_service::Structure::Value(what),
        )))
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vault(e) => e.fmt(f),
            Self::SessionInvalid => f.write_str("session is unknown, expired or already used"),
            Self::OriginMismatch => f.write_str("origin does not match the session"),
            Self::RateLimited => f.write_str("too many failed attempts; try again later"),
            Self::SessionExists => f.write_str("conflict: session_exists"),
        }
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Vault(e) => e.source(),
            _ => None,
        }
    }
}

impl From<VaultError> for GatewayError {
    fn from(e: VaultError) -> Self {
        Self::Vault(e)
    }
}

impl From<vault_service::CardError> for GatewayError {
    fn from(e: vault_service::CardError) -> Self {
        Self::Vault(e.into())
    }
}
