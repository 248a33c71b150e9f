//! Card data: the card number (PAN) and what can be shown of it, the CVV and the cardholder name.
//!
//! The secret types here ([`Pan`], [`CardholderName`]) are zeroized on drop, implement
//! neither `Clone` nor `Display`, and print only a redacted form through `Debug`. The only route
//! from a [`Pan`] to printable text is [`Pan::masked`] (or the deliberately named
//! [`Pan::expose_digits`]).

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::CardError;

/// A primary account number: 12-19 ASCII digits, Luhn-valid. Secret: zeroized on drop, no
/// `Clone`/`Display`; `Debug` shows only the mask. `parse` is the only way to build one.
pub struct Pan {
    digits: [u8; 19],
    len: u8,
}

impl Pan {
    /// Fewest digits a PAN may have.
    pub const MIN_LEN: usize = 12;
    /// Most digits a PAN may have.
    pub const MAX_LEN: usize = 19;

    /// Parses a PAN: digits only, 12-19 long, Luhn-valid.
    ///
    /// Checks run in a fixed order, so each input gets exactly one reason: empty, then
    /// non-digits, then length, then Luhn. The input is validated in place and copied only once it
    /// is known to be good, so no stray copy of rejected digits is left behind.
    pub fn parse(s: &str) -> Result<Self, CardError> {
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err(CardError::PanEmpty);
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(CardError::PanNotDigits);
        }
        if bytes.len() < Self::MIN_LEN {
            return Err(CardError::PanTooShort);
        }
        if bytes.len() > Self::MAX_LEN {
            return Err(CardError::PanTooLong);
        }
        if !luhn_valid(bytes) {
            return Err(CardError::PanLuhn);
        }
        let mut digits = [0u8; 19];
        digits[..bytes.len()].copy_from_slice(bytes);
        // The length was checked to be 12..=19 just above, so it fits in a u8.
        let len = u8::try_from(bytes.len()).map_err(|_| CardError::PanTooLong)?;
        Ok(Self { digits, len })
    }

    /// Number of digits (12-19).
    #[allow(clippy::len_without_is_empty)] // a PAN is never empty
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// The card brand detected from the leading digits.
    ///
    /// Ranges are tried in the order of [`Brand`]'s documentation. The only overlap among the
    /// ranges we recognise is the Discover co-brand range 622126-622925 inside UnionPay's 62: it
    /// is tested first, so those cards are reported as Discover (they are accepted on the
    /// Discover network), and the rest of 62 as UnionPay.
    pub fn brand(&self) -> Brand {
        let p = |n: usize| self.prefix(n);
        let (p1, p2, p3, p4, p6) = (p(1), p(2), p(3), p(4), p(6));
        if p1 == 4 {
            Brand::Visa
        } else if p2 == 34 || p2 == 37 {
            Brand::Amex
        } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
            Brand::Mastercard
        } else if (3528..=3589).contains(&p4) {
            Brand::Jcb
        } else if (300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39) {
            Brand::DinersClub
        } else if p4 == 6011
            || (644..=649).contains(&p3)
            || p2 == 65
            || (622_126..=622_925).contains(&p6)
        {
            // Before UnionPay: the co-brand range lies inside UnionPay's 62.
            Brand::Discover
        } else if p2 == 62 || p2 == 81 {
            Brand::UnionPay
        } else if matches!(p2, 50 | 56..=58)
            || p4 == 6304
            || p4 == 6759
            || p6 == 676_770
            || p6 == 676_774
            || p3 == 639
        {
            Brand::Maestro
        } else {
            Brand::Unknown
        }
    }

    /// The displayable mask: first six + `****` + last four; first four + `****` + last four under 15 digits.
    pub fn masked(&self) -> MaskedPan {
        let digits = self.digit_bytes();
        let head = if digits.len() >= 15 { 6 } else { 4 };
        let tail = &digits[digits.len() - 4..];
        let mut out = String::with_capacity(head + 4 + 4);
        out.extend(digits[..head].iter().map(|&b| char::from(b)));
        out.push_str("****");
        out.extend(tail.iter().map(|&b| char::from(b)));
        MaskedPan(out)
    }

    /// The digits as ASCII. Named so every use of the secret is visible in review.
    pub fn expose_digits(&self) -> &str {
        // Invariant: `parse` only stores ASCII digits, which are valid UTF-8.
        std::str::from_utf8(self.digit_bytes()).expect("a Pan holds only ASCII digits")
    }

    /// A copy of this PAN (explicit: secrets do not implement `Clone`).
    pub fn duplicate(&self) -> Pan {
        Pan {
            digits: self.digits,
            len: self.len,
        }
    }

    fn digit_bytes(&self) -> &[u8] {
        &self.digits[..self.len()]
    }

    /// The first `n` digits (n <= 12, always available) as a number.
    fn prefix(&self, n: usize) -> u32 {
        self.digits[..n]
            .iter()
            .fold(0, |acc, &b| acc * 10 + u32::from(b - b'0'))
    }
}

/// The Luhn (mod 10) check over ASCII digits; the caller has checked they are digits.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Drop for Pan {
    fn drop(&mut self) {
        self.digits.zeroize();
        self.len.zeroize();
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl ConstantTimeEq for Pan {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        // Unused positions are always zero, so comparing the whole arrays plus the length is exact.
        self.digits.ct_eq(&other.digits) & self.len.ct_eq(&other.len)
    }
}

impl PartialEq for Pan {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}
impl Eq for Pan {}

/// The masked form of a PAN, safe to display, log and store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedPan(String);

impl MaskedPan {
    /// The mask as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MaskedPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Card brands cardvault recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Brand {
    /// Visa (4).
    Visa,
    /// Mastercard (51-55, 2221-2720).
    Mastercard,
    /// American Express (34, 37).
    Amex,
    /// Discover (6011, 644-649, 65, 622126-622925).
    Discover,
    /// JCB (3528-3589).
    Jcb,
    /// UnionPay (62, 81).
    UnionPay,
    /// Maestro (50, 56-58, 6304, 6759, 676770, 676774, 639).
    Maestro,
    /// Diners Club (300-305, 3095, 36, 38, 39).
    DinersClub,
    /// Not recognised.
    Unknown,
}

impl Brand {
    /// Lower-case name for APIs (`visa`, `mastercard`, `amex`, `discover`, `jcb`, `unionpay`,
    /// `maestro`, `diners`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visa => "visa",
            Self::Mastercard => "mastercard",
            Self::Amex => "amex",
            Self::Discover => "discover",
            Self::Jcb => "jcb",
            Self::UnionPay => "unionpay",
            Self::Maestro => "maestro",
            Self::DinersClub => "diners",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Brand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cardholder's name: 1-64 characters (and at most 255 bytes of UTF-8, which only a name of
/// 64 four-byte characters exceeds), no control characters, trimmed. Secret (personal data):
/// zeroized on drop, `Debug` redacted.
pub struct CardholderName(String);

impl CardholderName {
    /// Maximum length in characters.
    pub const MAX_LEN: usize = 64;
    /// Maximum length in bytes (a card record stores the length in one byte).
    pub const MAX_BYTES: usize = 255;
    /// Parses and validates (trims surrounding whitespace first).
    pub fn parse(s: &str) -> Result<Self, CardError> {
        let t = s.trim();
        if t.is_empty()
            || t.len() > Self::MAX_BYTES
            || t.chars().count() > Self::MAX_LEN
            || t.chars().any(char::is_control)
        {
            return Err(CardError::NameInvalid);
        }
        Ok(Self(t.to_owned()))
    }
    /// The name.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// An explicit copy.
    pub fn duplicate(&self) -> CardholderName {
        CardholderName(self.0.clone())
    }
}

impl Drop for CardholderName {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for CardholderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardholderName(..)")
    }
}

impl PartialEq for CardholderName {
    /// Constant time in the contents (the length may show).
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}
impl Eq for CardholderName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known() {
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"79927398710"));
        assert!(luhn_valid(b"4111111111111111"));
    }

    #[test]
    fn name_rules() {
        let n = CardholderName::parse("  Ada Lovelace \t").map(|n| n.expose().to_owned());
        assert_eq!(n, Ok("Ada Lovelace".to_owned()));
        assert!(CardholderName::parse("   ").is_err());
        assert!(CardholderName::parse("Ada\u{0}Lovelace").is_err());
        assert!(CardholderName::parse("Ada\u{7f}").is_err());
        assert!(CardholderName::parse(&"x".repeat(64)).is_ok());
        assert!(CardholderName::parse(&"x".repeat(65)).is_err());
        // Counted in characters (as the API's schema counts them), not bytes.
        assert!(CardholderName::parse(&"é".repeat(64)).is_ok());
        assert!(CardholderName::parse(&"é".repeat(65)).is_err());
        // Only 64 four-byte characters (256 bytes) pass the record's one-byte length.
        assert!(CardholderName::parse(&"\u{1F600}".repeat(63)).is_ok());
        assert!(CardholderName::parse(&"\u{1F600}".repeat(64)).is_err());
    }

    #[test]
    fn pan_equality() {
        let a = Pan::parse("4111111111111111").expect("valid");
        let b = Pan::parse("4111111111111111").expect("valid");
        let c = Pan::parse("4242424242424242").expect("valid");
        assert!(a == b);
        assert!(a != c);
        assert!(a.duplicate() == a);
    }
}
