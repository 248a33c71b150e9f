//! The bearer API key a client presents.

use std::{fmt, io, path::Path};

use zeroize::Zeroizing;

use crate::ClientError;

/// An API key (`cvk_<id>_<secret>`). Secret: no `Clone`, `Debug` shows only the public id, wiped
/// on drop.
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    /// Wraps a key, trimming surrounding whitespace. Refuses an empty key or one with characters
    /// that cannot go into an HTTP header.
    pub fn new(key: impl Into<String>) -> Result<Self, ClientError> {
        let key = Zeroizing::new(key.into());
        let trimmed = key.trim();
        if trimmed.is_empty() {
            return Err(ClientError::InvalidInput("api key is empty"));
        }
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidInput(
                "api key must be printable ASCII without spaces",
            ));
        }
        Ok(Self(Zeroizing::new(trimmed.to_owned())))
    }

    /// Reads a key from a file (one key, surrounding whitespace ignored).
    pub fn from_file(path: impl AsRef<Path>) -> io::Result<Result<Self, ClientError>> {
        let s = Zeroizing::new(std::fs::read_to_string(path)?);
        Ok(Self::new(s.as_str()))
    }

    /// The full key, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The public id part (`cvk_<id>`), safe to log.
    pub fn public_id(&self) -> &str {
        match self.0.match_indices('_').nth(1) {
            Some((i, _)) => &self.0[..i],
            None => "cvk_?",
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}_<redacted>)", self.public_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let k = ApiKey::new("cvk_0123456789abcdef_deadbeef\n").expect("valid");
        assert_eq!(k.expose(), "cvk_0123456789abcdef_deadbeef");
        assert_eq!(format!("{k:?}"), "ApiKey(cvk_0123456789abcdef_<redacted>)");
        assert!(ApiKey::new("  ").is_err());
        assert!(ApiKey::new("a b").is_err());
    }
}
