//! The core's error types. None of them carries card digits, keys or passphrases: variants hold
//! only static descriptions and small public numbers (lengths, limits).

use std::fmt;

/// Why a piece of card data (or a field that travels with it) was refused.
///
/// Each variant maps to a stable machine-readable [`code`](CardError::code) and to the request
/// [`field`](CardError::field) it concerns, so the layers above can build a structured field error
/// without ever echoing the rejected value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CardError {
    /// The PAN was empty.
    PanEmpty,
    /// The PAN contained something other than ASCII digits.
    PanNotDigits,
    /// The PAN had fewer than 12 digits.
    PanTooShort,
    /// The PAN had more than 19 digits.
    PanTooLong,
    /// The PAN failed the Luhn check.
    PanLuhn,
    /// The expiry was not 3 or 4 ASCII digits (YYMM).
    ExpiryFormat,
    /// The expiry month was not 01-12.
    ExpiryMonth,
    /// The expiry year was outside the supported range.
    ExpiryYear,
    /// The card has expired.
    Expired,
    /// The CVV was not 3 or 4 ASCII digits.
    CvvFormat,
    /// The cardholder name was empty, too long or held control characters.
    NameInvalid,
    /// A merchant id was not 1-18 ASCII digits.
    MerchantIdInvalid,
    /// A customer id was empty, too long or held characters outside the allowed set.
    CustomerIdInvalid,
    /// Metadata had more than [`Metadata::MAX_ENTRIES`](crate::Metadata::MAX_ENTRIES) entries.
    MetadataTooManyEntries,
    /// A metadata key was empty or longer than [`Metadata::MAX_KEY_LEN`](crate::Metadata::MAX_KEY_LEN) bytes.
    MetadataKeyInvalid,
    /// A metadata value was longer than [`Metadata::MAX_VALUE_LEN`](crate::Metadata::MAX_VALUE_LEN) bytes.
    MetadataValueTooLong,
}

impl CardError {
    /// A stable, machine-readable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PanEmpty => "required",
            Self::PanNotDigits => "not_digits",
            Self::PanTooShort => "too_short",
            Self::PanTooLong => "too_long",
            Self::PanLuhn => "luhn_check_failed",
            Self::ExpiryFormat => "invalid_format",
            Self::ExpiryMonth => "invalid_month",
            Self::ExpiryYear => "invalid_year",
            Self::Expired => "expired",
            Self::CvvFormat => "invalid_format",
            Self::NameInvalid => "invalid",
            Self::MerchantIdInvalid => "invalid",
            Self::CustomerIdInvalid => "invalid",
            Self::MetadataTooManyEntries => "too_many_entries",
            Self::MetadataKeyInvalid => "invalid_key",
            Self::MetadataValueTooLong => "too_long",
        }
    }

    /// The request field this error concerns, in the dotted form of the token API
    /// (`card.pan`, `card.expiration_date`, ...).
    pub fn field(&self) -> &'static str {
        match self {
            Self::PanEmpty
            | Self::PanNotDigits
            | Self::PanTooShort
            | Self::PanTooLong
            | Self::PanLuhn => "card.pan",
            Self::ExpiryFormat | Self::ExpiryMonth | Self::ExpiryYear | Self::Expired => {
                "card.expiration_date"
            }
            Self::CvvFormat => "card.cvv",
            Self::NameInvalid => "card.name",
            Self::MerchantIdInvalid => "merchant_id",
            Self::CustomerIdInvalid => "customer_id",
            Self::MetadataTooManyEntries
            | Self::MetadataKeyInvalid
            | Self::MetadataValueTooLong => "metadata",
        }
    }
}

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PanEmpty => "card number is required",
            Self::PanNotDigits => "card number must contain digits only",
            Self::PanTooShort => "card number must have at least 12 digits",
            Self::PanTooLong => "card number must have at most 19 digits",
            Self::PanLuhn => "card number fails the Luhn check",
            Self::ExpiryFormat => "expiration date must be YYMM",
            Self::ExpiryMonth => "expiration month must be 01-12",
            Self::ExpiryYear => "expiration year is out of range",
            Self::Expired => "card has expired",
            Self::CvvFormat => "cvv must be 3 or 4 digits",
            Self::NameInvalid => {
                "cardholder name must be 1-64 printable characters (at most 255 bytes of UTF-8)"
            }
            Self::MerchantIdInvalid => "merchant id must be 1-18 digits",
            Self::CustomerIdInvalid => "customer id must be 1-64 characters of [A-Za-z0-9._:@-]",
            Self::MetadataTooManyEntries => "metadata has too many entries",
            Self::MetadataKeyInvalid => "metadata key must be 1-40 bytes",
            Self::MetadataValueTooLong => "metadata value must be at most 500 bytes",
        })
    }
}

impl std::error::Error for CardError {}

/// Why a token or session token string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not exactly 48 lowercase hexadecimal characters.
    Malformed,
    /// Not a lowercase, hyphenated UUID of version 4.
    SessionMalformed,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "token must be 48 lowercase hexadecimal characters",
            Self::SessionMalformed => "session token must be a lowercase UUIDv4",
        })
    }
}

impl std::error::Error for TokenError {}

/// A sealed record could not be opened.
///
/// Deliberately opaque: a wrong key, a wrong token or merchant in the associated data, a flipped
/// bit, a truncated blob and an unknown format version all look the same, so the error tells an
/// attacker nothing about which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenError;

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("record could not be opened")
    }
}

impl std::error::Error for OpenError {}

/// Bytes (from disk or the wire) that do not decode as the structure they claim to be.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the structure did.
    Truncated,
    /// Bytes were left over after the structure.
    TrailingBytes,
    /// The format version is newer than this build understands.
    UnsupportedVersion(u16),
    /// A field held a value the format does not allow.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated input"),
            Self::TrailingBytes => f.write_str("trailing bytes after the end of the structure"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Self::Invalid(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Failures of the key hierarchy: deriving, checking, unwrapping and rotating keys.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase or key file does not unlock this vault. Nothing was changed.
    WrongKey,
    /// The vault was created with a passphrase but a key file was given, or the reverse.
    WrongKeyKind,
    /// A key file did not hold exactly 32 bytes (or 64 hex characters).
    KeyFileInvalid,
    /// The passphrase was empty or longer than [`Passphrase::MAX_LEN`](crate::Passphrase::MAX_LEN) bytes.
    PassphraseInvalid,
    /// Argon2id parameters out of the accepted range (for example a tampered header asking for
    /// gigabytes of memory).
    KdfParams(&'static str),
    /// The key derivation itself failed.
    Kdf,
    /// The header's key check passed but a wrapped key did not unwrap: the header was altered.
    CorruptHeader,
    /// The header bytes do not decode.
    Decode(DecodeError),
    /// No data key with this id exists in the header.
    UnknownDek(u32),
    /// A data key cannot be retired while it is the current one or while records still use it.
    DekInUse(u32),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongKey => f.write_str("wrong passphrase or key file for this vault"),
            Self::WrongKeyKind => f.write_str(
                "this vault is unlocked with a different kind of key (passphrase or key file)",
            ),
            Self::KeyFileInvalid => {
                f.write_str("key file must hold exactly 32 bytes or 64 hex characters")
            }
            Self::PassphraseInvalid => f.write_str("passphrase must be 1-1024 bytes"),
            Self::KdfParams(why) => write!(f, "argon2id parameters rejected: {why}"),
            Self::Kdf => f.write_str("key derivation failed"),
            Self::CorruptHeader => f.write_str("vault key header is corrupt"),
            Self::Decode(e) => write!(f, "vault key header does not decode: {e}"),
            Self::UnknownDek(id) => write!(f, "no data key with id {id}"),
            Self::DekInUse(id) => write!(f, "data key {id} is still in use"),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DecodeError> for KeyError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}
