//! PostgreSQL failures as store errors. A server message or its detail can quote key values
//! (`Key (key)=(\x52...) already exists`), so no server text is ever kept: only its SQLSTATE
//! code, mapped to a typed variant, or shown as the code alone.

use std::{fmt, sync::Arc};

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

use crate::{ConflictKind, StoreError, Unavailable};

/// A database error the store has no variant for: its SQLSTATE code only.
#[derive(Debug)]
pub(crate) struct DbFailure(Option<String>);

impl fmt::Display for DbFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            // The class the operator can act on named (no server text: see above).
            Some(code) if code == "42501" => write!(
                f,
                "postgresql error (SQLSTATE {code}): permission denied: the database role lacks \
                 a privilege the vault needs (see docs/operations.md, \"Roles and grants\")"
            ),
            Some(code) if code.starts_with("28") => write!(
                f,
                "postgresql error (SQLSTATE {code}): {}",
                Unavailable::Authentication
            ),
            Some(code) => write!(f, "postgresql error (SQLSTATE {code})"),
            None => f.write_str("postgresql client error"),
        }
    }
}

impl std::error::Error for DbFailure {}

/// A failed operation and what to do with its connection.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The connection broke before anything could have been committed: run the operation again
    /// on another connection.
    Retry,
    /// Give up with this error. `discard`: the connection may be in an unknown state (a
    /// transaction not ended); drop it rather than return it to the pool.
    Stop { error: StoreError, discard: bool },
}

impl Fail {
    pub(crate) fn stop(error: StoreError) -> Self {
        Self::Stop {
            error,
            discard: false,
        }
    }
}

/// A `tokio_postgres` error of a statement (the connection was open).
pub(crate) fn from_pg(e: &tokio_postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        return from_code(code);
    }
    if e.is_closed() || source_is_io(e) {
        return StoreError::Unavailable(Unavailable::ConnectionLost);
    }
    StoreError::Engine(Arc::new(DbFailure(None)))
}

/// A `tokio_postgres` error while connecting: why, as far as the operator can act on it.
pub(crate) fn from_connect(e: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(match e.code() {
        Some(code) if code.code().starts_with("28") => Unavailable::Authentication,
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => Unavailable::NoSuchDatabase,
        Some(code) => match from_code(code) {
            StoreError::Unavailable(Unavailable::ServerNotReady) => Unavailable::ServerNotReady,
            _ => Unavailable::Connect,
        },
        None if is_tls(e) => Unavailable::Tls,
        None => Unavailable::Connect,
    })
}

/// Whether a connection error came from the TLS handshake: a `rustls` error somewhere in its
/// chain (an `io::Error` shows its inner error only through `get_ref`), or the server refusing
/// TLS where the URL requires it.
fn is_tls(e: &tokio_postgres::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        next = err.source();
    }
    // tokio-postgres's own refusals ("server does not support TLS" for sslmode=require against
    // a server without it) carry no rustls error: their kind's fixed text says TLS.
    e.to_string().starts_with("error performing TLS handshake")
}

/// A failure to get a pooled connection.
pub(crate) fn from_pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(TimeoutType::Wait) => {
            StoreError::Unavailable(Unavailable::PoolExhausted)
        }
        PoolError::Timeout(TimeoutType::Create) => StoreError::Unavailable(Unavailable::Connect),
        PoolError::Timeout(TimeoutType::Recycle) => {
            StoreError::Unavailable(Unavailable::ConnectionLost)
        }
        PoolError::Backend(e) => from_connect(&e),
        PoolError::Closed => StoreError::Closed,
        _ => StoreError::Unavailable(Unavailable::Connect),
    }
}

fn from_code(code: &SqlState) -> StoreError {
    let c = code.code();
    if *code == SqlState::UNIQUE_VIOLATION
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        StoreError::Conflict(ConflictKind::Raced)
    } else if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
        StoreError::Unavailable(Unavailable::StatementTimeout)
    } else if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        || c.starts_with("08")
    {
        // The server ended this session (pg_terminate_backend, a fast shutdown), or the
        // connection failed.
        StoreError::Unavailable(Unavailable::ConnectionLost)
    } else if *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || c.starts_with("53")
    {
        // Starting up, in recovery (a standby), out of connection slots or resources.
        StoreError::Unavailable(Unavailable::ServerNotReady)
    } else {
        StoreError::Engine(Arc::new(DbFailure(Some(c.to_owned()))))
    }
}

fn source_is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use tokio_postgres::error::SqlState;

    use super::from_code;
    use crate::{ConflictKind, StoreError, Unavailable};

    #[test]
    fn codes_map_to_typed_errors_and_unknown_ones_show_only_the_code() {
        for (code, expected) in [
            (
                SqlState::UNIQUE_VIOLATION,
                StoreError::Conflict(ConflictKind::Raced),
            ),
            (
                SqlState::T_R_SERIALIZATION_FAILURE,
                StoreError::Conflict(ConflictKind::Raced),
            ),
            (
                SqlState::T_R_DEADLOCK_DETECTED,
                StoreError::Conflict(ConflictKind::Raced),
            ),
            (
                SqlState::QUERY_CANCELED,
                StoreError::Unavailable(Unavailable::StatementTimeout),
            ),
            (
                SqlState::ADMIN_SHUTDOWN,
                StoreError::Unavailable(Unavailable::ConnectionLost),
            ),
            (
                SqlState::CANNOT_CONNECT_NOW,
                StoreError::Unavailable(Unavailable::ServerNotReady),
            ),
            (
                SqlState::TOO_MANY_CONNECTIONS,
                StoreError::Unavailable(Unavailable::ServerNotReady),
            ),
        ] {
            assert_eq!(
                from_code(&code).to_string(),
                expected.to_string(),
                "{code:?}"
            );
        }
        assert_eq!(
            from_code(&SqlState::INSUFFICIENT_PRIVILEGE).to_string(),
            "storage engine error: postgresql error (SQLSTATE 42501): permission denied: the \
             database role lacks a privilege the vault needs (see docs/operations.md, \"Roles \
             and grants\")"
        );
        let other = from_code(&SqlState::UNDEFINED_TABLE);
        assert_eq!(
            other.to_string(),
            "storage engine error: postgresql error (SQLSTATE 42P01)"
        );
    }
}
