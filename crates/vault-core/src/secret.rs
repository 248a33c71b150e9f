//! Secret byte strings: 256-bit keys and operator passphrases.
//!
//! Neither type derives `Clone`, `Display` or a revealing `Debug`; both are wiped when dropped and
//! hand their contents out only through a method named `expose`, so every use is visible in
//! review.

use std::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::KeyError;

/// A 256-bit secret key (a data key, a MAC key or key-file material).
///
/// Zeroized on drop; `Debug` prints `SecretKey(..)`; equality is constant-time.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps existing key bytes. The caller should wipe its own copy.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh key from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Self([0; 32]);
        rng.fill_bytes(&mut key.0);
        key
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// An explicit copy (secrets do not implement `Clone`).
    pub(crate) fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

impl ConstantTimeEq for SecretKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}

impl Eq for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// An operator passphrase: 1 to [`MAX_LEN`](Self::MAX_LEN) bytes of UTF-8.
///
/// Zeroized on drop; `Debug` prints `Passphrase(..)`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl Passphrase {
    /// Longest accepted passphrase, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Takes ownership of `s`. An empty or over-long passphrase is wiped and refused.
    pub fn new(mut s: String) -> Result<Self, KeyError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            s.zeroize();
            return Err(KeyError::PassphraseInvalid);
        }
        Ok(Self(s))
    }

    /// The passphrase text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = SecretKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
        let pass = Passphrase::new("hunter2".to_owned()).expect("valid passphrase");
        assert_eq!(format!("{pass:?}"), "Passphrase(..)");
    }

    #[test]
    fn passphrase_length_limits() {
        assert!(matches!(
            Passphrase::new(String::new()),
            Err(KeyError::PassphraseInvalid)
        ));
        assert!(Passphrase::new("x".repeat(Passphrase::MAX_LEN)).is_ok());
        assert!(matches!(
            Passphrase::new("x".repeat(Passphrase::MAX_LEN + 1)),
            Err(KeyError::PassphraseInvalid)
        ));
        // The limit is in bytes, not characters.
        assert!(matches!(
            Passphrase::new("é".repeat(513)),
            Err(KeyError::PassphraseInvalid)
        ));
    }

    #[test]
    fn key_equality() {
        assert_eq!(
            SecretKey::from_bytes([1; 32]),
            SecretKey::from_bytes([1; 32])
        );
        assert_ne!(
            SecretKey::from_bytes([1; 32]),
            SecretKey::from_bytes([2; 32])
        );
    }
}
