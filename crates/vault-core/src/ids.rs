//! Identifiers of the parties a card belongs to: merchants and their customers.

use std::fmt;

use crate::CardError;

/// A merchant: 1-18 ASCII digits (the session-token API: `merchantId`, Integer(18)), held as a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MerchantId(u64);

impl MerchantId {
    /// The largest id: eighteen nines.
    pub const MAX: u64 = 999_999_999_999_999_999;
    /// The largest id, as an id.
    pub const LARGEST: MerchantId = MerchantId(Self::MAX);

    /// Parses 1-18 ASCII digits (leading zeros are refused so that every id has one spelling).
    pub fn parse(s: &str) -> Result<Self, CardError> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 18 || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
            return Err(CardError::MerchantIdInvalid);
        }
        // At most 18 digits, so this cannot overflow a u64.
        let n = b
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        Self::new(n)
    }

    /// From a number; refuses 0 and values above 18 digits.
    pub fn new(n: u64) -> Result<Self, CardError> {
        if n == 0 || n > Self::MAX {
            return Err(CardError::MerchantIdInvalid);
        }
        Ok(Self(n))
    }

    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A merchant's identifier for one of its customers: 1-64 characters of `[A-Za-z0-9._:@-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerId(String);

impl CustomerId {
    /// Maximum length in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses and validates.
    pub fn parse(s: &str) -> Result<Self, CardError> {
        let ok =
            |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-');
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.as_bytes().iter().all(ok) {
            return Err(CardError::CustomerIdInvalid);
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_ids() {
        assert_eq!(MerchantId::parse("1").map(MerchantId::get), Ok(1));
        assert_eq!(
            MerchantId::parse("999999999999999999").map(MerchantId::get),
            Ok(MerchantId::MAX)
        );
        for bad in [
            "",
            "0",
            "01",
            "1000000000000000000",
            "12a",
            "+1",
            " 1",
            "-1",
            "１",
        ] {
            assert_eq!(
                MerchantId::parse(bad),
                Err(CardError::MerchantIdInvalid),
                "{bad:?}"
            );
        }
        assert_eq!(MerchantId::new(0), Err(CardError::MerchantIdInvalid));
        assert_eq!(
            MerchantId::new(MerchantId::MAX + 1),
            Err(CardError::MerchantIdInvalid)
        );
        assert_eq!(
            MerchantId::new(42).map(|m| m.to_string()),
            Ok("42".to_owned())
        );
    }

    #[test]
    fn customer_ids() {
        for good in ["a", "cust-1", "A.b_c:d@e-f", &"z".repeat(64)] {
            assert_eq!(
                CustomerId::parse(good).map(|c| c.as_str().to_owned()),
                Ok(good.to_owned())
            );
        }
        for bad in ["", "a b", "a/b", "é", &"z".repeat(65), "a\n"] {
            assert_eq!(
                CustomerId::parse(bad),
                Err(CardError::CustomerIdInvalid),
                "{bad:?}"
            );
        }
    }
}
