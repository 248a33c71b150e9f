//! Tokens: the public handle a payment service stores instead of a card number.

use std::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;

use crate::TokenError;

/// A card token: 192 bits from a CSPRNG, written as 48 lowercase hex characters.
/// Independent of the card number. Equality is constant-time.
#[derive(Clone, Copy)]
pub struct Token([u8; Token::LEN]);

impl Token {
    /// Length in bytes.
    pub const LEN: usize = 24;
    /// Length of the text form in characters.
    pub const TEXT_LEN: usize = 2 * Self::LEN;

    /// Mints a fresh token from `rng`.
    pub fn mint<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; Self::LEN];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// Parses exactly 48 lowercase hex characters (uppercase is refused so that every token has
    /// one spelling).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let b = s.as_bytes();
        if b.len() != Self::TEXT_LEN || !b.iter().all(is_lower_hex) {
            return Err(TokenError::Malformed);
        }
        let mut out = [0u8; Self::LEN];
        hex::decode_to_slice(b, &mut out).map_err(|_| TokenError::Malformed)?;
        Ok(Self(out))
    }

    /// From raw bytes (as stored).
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

fn is_lower_hex(b: &u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

impl std::str::FromStr for Token {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl ConstantTimeEq for Token {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}
impl Eq for Token {}

impl std::hash::Hash for Token {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; Self::TEXT_LEN];
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parse_rules() {
        let s = "0123456789abcdef0123456789abcdef0123456789abcdef";
        let t = Token::parse(s).expect("valid");
        assert_eq!(t.to_string(), s);
        assert_eq!(format!("{t:?}"), format!("Token({s})"));
        assert_eq!(Token::parse(&s.to_uppercase()), Err(TokenError::Malformed));
        assert_eq!(Token::parse(&s[1..]), Err(TokenError::Malformed));
        assert_eq!(Token::parse(&format!("{s}0")), Err(TokenError::Malformed));
        assert_eq!(
            Token::parse(&s.replace('a', "g")),
            Err(TokenError::Malformed)
        );
        assert_eq!(Token::parse(""), Err(TokenError::Malformed));
    }
}
