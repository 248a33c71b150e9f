//! The client's error type. No variant ever holds a card number or an API key: server error
//! bodies carry only field names, codes and messages (the daemon never echoes card digits), and
//! decoding failures keep only the position, not serde's message (which can quote input).

use std::{fmt, io};

use vault_wire::{ErrorBody, ErrorStatus};

/// Everything a client call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting to the socket failed (absent, permission denied, ...).
    Connect(io::Error),
    /// The HTTP exchange failed (connection reset, daemon gone, malformed response).
    Transport(hyper::Error),
    /// The daemon answered with a non-success status. `body` is its structured error body when
    /// it sent one.
    Http {
        /// The HTTP status code.
        status: u16,
        /// The decoded error body, if the response had one.
        body: Option<ErrorBody>,
    },
    /// A success response did not decode into the expected type.
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Line of the failure in the body.
        line: usize,
        /// Column of the failure in the body.
        column: usize,
    },
    /// An argument cannot be sent (for example an API key with characters not allowed in a header).
    InvalidInput(&'static str),
}

impl ClientError {
    /// The HTTP status of an [`Http`](Self::Http) error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error body's `status` (`invalid-request`, `not-found`, ...) of an
    /// [`Http`](Self::Http) error that had one.
    pub fn error_status(&self) -> Option<ErrorStatus> {
        match self {
            Self::Http { body: Some(b), .. } => Some(b.status),
            _ => None,
        }
    }

    pub(crate) fn decode(what: &'static str, e: &serde_json::Error) -> Self {
        Self::Decode {
            what,
            line: e.line(),
            column: e.column(),
        }
    }
}

/// Whether the daemon closed the connection without answering: what a peer it does not allow
/// sees. Depending on timing that surfaces as a request canceled, a message cut short, or the
/// connection reset or closed under a write.
fn closed_unanswered(e: &hyper::Error) -> bool {
    if e.is_canceled() || e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect to the daemon socket: {e}"),
            Self::Transport(e) => {
                write!(f, "http exchange with the daemon failed: {e}")?;
                if closed_unanswered(e) {
                    // What a refused peer sees: the daemon closes its connections unanswered.
                    f.write_str(
                        " (the daemon closed the connection without an answer: it stopped or \
                         was killed meanwhile, or it does not allow this user, whose connections \
                         it closes at once: see `serve --allow-uid` / `--allow-gid`)",
                    )?;
                }
                Ok(())
            }
            Self::Http { status, body } => {
                write!(f, "daemon answered {status}")?;
                if let Some(b) = body {
                    for (i, e) in b.errors.iter().enumerate() {
                        let sep = if i == 0 { ": " } else { "; " };
                        write!(f, "{sep}{}: {}", e.field, e.message)?;
                    }
                }
                Ok(())
            }
            Self::Decode { what, line, column } => write!(
                f,
                "daemon response ({what}) does not decode at line {line}, column {column}"
            ),
            Self::InvalidInput(why) => write!(f, "invalid input: {why}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Transport(e) => Some(e),
            _ => None,
        }
    }
}

impl From<hyper::Error> for ClientError {
    fn from(e: hyper::Error) -> Self {
        Self::Transport(e)
    }
}
