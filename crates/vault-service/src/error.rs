//! The Vault's error type: what a linking service sees.

use std::fmt;

use vault_core::{CardError, KeyError};
use vault_store::StoreError;

/// A request field that was refused, in a form the HTTP layer can return as is.
/// `message` never contains the rejected value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted field path (`card.pan`, `keep_until`, ...).
    pub field: &'static str,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// A field error from parts.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

impl From<CardError> for FieldError {
    fn from(e: CardError) -> Self {
        Self {
            field: e.field(),
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything a Vault call can fail with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VaultError {
    /// The request was refused; the field and reason are named.
    Invalid(FieldError),
    /// No live token of this merchant by that name: unknown, deleted, expired and another
    /// merchant's tokens are deliberately indistinguishable.
    NotFound,
    /// The token is bound to a different customer than the one presented.
    CustomerMismatch,
    /// A stored record failed its integrity check (altered or damaged on disk). Other records
    /// are unaffected.
    Integrity,
    /// The key hierarchy refused: wrong passphrase/key file, corrupt header, ...
    Key(KeyError),
    /// The store failed (I/O, disk full, vault in use, newer format, ...).
    Store(StoreError),
    /// Missing, malformed, unknown or revoked credentials.
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// This API key tokenized too many distinct cards sharing one masked form (first six and
    /// last four digits) within the window; try again after `retry_after`.
    TooManyCards {
        /// When the oldest counted card leaves the window.
        retry_after: std::time::Duration,
    },
    /// The vault is at a capacity bound (the store's write queue is full, or a layer above's:
    /// [`Vault::set_write_queue_limit`](crate::Vault::set_write_queue_limit)); try again shortly.
    Busy,
    /// The request conflicts with another one (see [`VaultConflict`]).
    Conflict(VaultConflict),
}

/// What a request conflicts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VaultConflict {
    /// The same merchant's same idempotency key is still being answered.
    IdempotencyInProgress,
    /// The idempotency key was answered for a different request.
    IdempotencyMismatch,
    /// An audit archive is already running.
    AuditArchiveInProgress,
}

impl VaultConflict {
    /// The stable code (HTTP answers, audit outcomes).
    pub const fn code(self) -> &'static str {
        match self {
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::IdempotencyMismatch => "idempotency_mismatch",
            Self::AuditArchiveInProgress => "audit_archive_in_progress",
        }
    }
}

impl VaultError {
    pub(crate) fn field(
        field: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid(FieldError::new(field, code, message))
    }
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "invalid request: {e}"),
            Self::NotFound => f.write_str("token not found"),
            Self::CustomerMismatch => f.write_str("token belongs to a different customer"),
            Self::Integrity => f.write_str("stored record failed its integrity check"),
            Self::Key(e) => write!(f, "key error: {e}"),
            Self::Store(e) => write!(f, "store error: {e}"),
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::Forbidden => f.write_str("forbidden"),
            Self::TooManyCards { .. } => f.write_str(
                "too many distinct cards with the same masked number from this API key; try again later",
            ),
            Self::Busy => f.write_str("the vault is busy; try again shortly"),
            Self::Conflict(conflict) => write!(f, "conflict: {}", conflict.code()),
        }
    }
}

impl std::error::Error for VaultError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Key(e) => Some(e),
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(vault_store::Structure::Value(vault_store::KeySpace::Record)) => {
                Self::Integrity
            }
            StoreError::Busy => Self::Busy,
            e => Self::Store(e),
        }
    }
}

impl From<KeyError> for VaultError {
    fn from(e: KeyError) -> Self {
        Self::Key(e)
    }
}

impl From<CardError> for VaultError {
    fn from(e: CardError) -> Self {
        Self::Invalid(e.into())
    }
}
