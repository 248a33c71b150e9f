//! Session tokens: the short-lived, single-use bearer credentials of the gateway's sessions.

use std::fmt;

use rand::CryptoRng;
use subtle::ConstantTimeEq;
use vault_core::TokenError;

/// A short-lived session token: a UUIDv4 string (lowercase, hyphenated).
/// A bearer credential while it lives, so `Debug` shows only its first 8 characters.
#[derive(Clone, Copy)]
pub struct SessionToken([u8; 16]);

/// Positions of the hyphens in `xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx`.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];
/// Length of the hyphenated text form.
const UUID_TEXT_LEN: usize = 36;

impl SessionToken {
    /// Mints a fresh UUIDv4 from `rng`: 122 random bits plus the version and variant bits.
    pub fn mint<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(uuid::Builder::from_random_bytes(b).into_uuid().into_bytes())
    }

    /// Parses a lowercase hyphenated UUID of version 4 (RFC 9562 variant).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let b = s.as_bytes();
        if b.len() != UUID_TEXT_LEN {
            return Err(TokenError::SessionMalformed);
        }
        let mut hex_digits = [0u8; 32];
        let mut n = 0;
        for (i, c) in b.iter().enumerate() {
            if HYPHENS.contains(&i) {
                if *c != b'-' {
                    return Err(TokenError::SessionMalformed);
                }
            } else if is_lower_hex(c) && n < hex_digits.len() {
                hex_digits[n] = *c;
                n += 1;
            } else {
                return Err(TokenError::SessionMalformed);
            }
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(hex_digits, &mut out).map_err(|_| TokenError::SessionMalformed)?;
        // Version 4 in the high nibble of byte 6; variant bits `10` at the top of byte 8.
        if out[6] >> 4 != 4 || out[8] >> 6 != 0b10 {
            return Err(TokenError::SessionMalformed);
        }
        Ok(Self(out))
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Writes the hyphenated lowercase form into a stack buffer.
    fn text(&self) -> [u8; UUID_TEXT_LEN] {
        let mut hexed = [0u8; 32];
        // 16 bytes always fit in 32 hex characters.
        let _ = hex::encode_to_slice(self.0, &mut hexed);
        let mut out = [b'-'; UUID_TEXT_LEN];
        let mut src = hexed.iter();
        for (i, slot) in out.iter_mut().enumerate() {
            if !HYPHENS.contains(&i)
                && let Some(c) = src.next()
            {
                *slot = *c;
            }
        }
        out
    }
}

fn is_lower_hex(b: &u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

impl std::str::FromStr for SessionToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl ConstantTimeEq for SessionToken {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}
impl Eq for SessionToken {}

impl std::hash::Hash for SessionToken {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        let head = std::str::from_utf8(&text[..8]).map_err(|_| fmt::Error)?;
        write!(f, "SessionToken({head}…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_parse_rules() {
        let s = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
        let t = SessionToken::parse(s).expect("valid");
        assert_eq!(t.to_string(), s);
        assert_eq!(format!("{t:?}"), "SessionToken(1b4e28ba…)");
        for bad in [
            "1B4E28BA-2FA1-41D2-883F-0016D3CCA427",   // uppercase
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427",   // version 1
            "1b4e28ba-2fa1-41d2-c83f-0016d3cca427",   // variant 110
            "1b4e28ba-2fa1-41d2-783f-0016d3cca427",   // variant 0
            "1b4e28ba2fa141d2883f0016d3cca427",       // simple form
            "{1b4e28ba-2fa1-41d2-883f-0016d3cca427}", // braced
            "1b4e28ba-2fa1-41d2-883f-0016d3cca42",    // short
            "1b4e28ba-2fa1-41d2-883f0-016d3cca427",   // hyphen moved
            "1b4e28ba-2fa1-41d2-883f-0016d3cca42g",   // not hex
            "",
        ] {
            assert_eq!(
                SessionToken::parse(bad),
                Err(TokenError::SessionMalformed),
                "{bad:?}"
            );
        }
    }
}
