//! Sealing short-lived secrets (a payment's CVV). On a directory vault, under a key that exists
//! only in this process's memory: generated at start, never written anywhere, gone with the
//! process; while a CVV waits for its one use it is held only in this sealed form, so a heap
//! dump or swap page shows ciphertext and a restart makes every held CVV unrecoverable. On a
//! vault shared by several daemons a CVV given to one daemon may be handed over by another, so it
//! is held in the store, sealed under [`StoredCvvKey`] (derived from the vault's key hierarchy,
//! which every daemon unlocks) until its one use or its session's expiry (`cvv_held.rs`).

use std::fmt;

use rand::CryptoRng;
use vault_core::{CardError, OpenError, SecretKey, open_blob, seal_blob};
use zeroize::Zeroize;

/// A card verification value: 3-4 ASCII digits. Secret.
pub struct Cvv {
    digits: [u8; 4],
    len: u8,
}

impl Cvv {
    /// Parses 3-4 ASCII digits.
    pub fn parse(s: &str) -> Result<Self, CardError> {
        let bytes = s.as_bytes();
        if !(3..=4).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(CardError::CvvFormat);
        }
        let mut digits = [0u8; 4];
        digits[..bytes.len()].copy_from_slice(bytes);
        let len = u8::try_from(bytes.len()).map_err(|_| CardError::CvvFormat)?;
        Ok(Self { digits, len })
    }

    /// The digits. Named so every use is visible.
    pub fn expose_digits(&self) -> &str {
        // Invariant: `parse` only stores ASCII digits, which are valid UTF-8.
        std::str::from_utf8(&self.digits[..usize::from(self.len)])
            .expect("a Cvv holds only ASCII digits")
    }
}

impl Drop for Cvv {
    fn drop(&mut self) {
        self.digits.zeroize();
        self.len.zeroize();
    }
}

impl fmt::Debug for Cvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvv(***)")
    }
}

/// An in-memory key for [`SealedCvv`]s (sealed as `vault-core` blobs: XAES-256-GCM, 192-bit
/// random nonces, so nonce reuse is negligible however long the process runs). Not `Clone`, no
/// way to export it; zeroized when dropped.
pub struct EphemeralKey(SecretKey);

impl EphemeralKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let key = SecretKey::from_bytes(bytes);
        bytes.zeroize();
        Self(key)
    }

    /// Seals `cvv`, bound to `context` (for example the payment id it belongs to): opening it with
    /// another context fails.
    pub fn seal_cvv<R: CryptoRng + ?Sized>(
        &self,
        context: &[u8],
        cvv: &Cvv,
        rng: &mut R,
    ) -> SealedCvv {
        SealedCvv {
            sealed: seal_digits(&self.0, context, cvv, rng),
        }
    }

    /// Opens a sealed CVV with the same `context` it was sealed with.
    pub fn open_cvv(&self, context: &[u8], sealed: &SealedCvv) -> Result<Cvv, OpenError> {
        open_digits(&self.0, context, &sealed.sealed)
    }
}

/// The key CVVs held in the store are sealed under, on a vault shared by several daemons: derived
/// from the vault's key hierarchy (the MAC root, under the label `cvv-seal`), so every daemon
/// unlocking the vault derives the same one; never stored. Not `Clone`, no `Debug` of it; zeroized
/// when dropped.
pub(crate) struct StoredCvvKey(SecretKey);

impl StoredCvvKey {
    /// The label the key is derived under (part of the format of held-CVV records).
    pub(crate) const PURPOSE: &'static str = "cvv-seal";

    pub(crate) fn new(key: SecretKey) -> Self {
        Self(key)
    }

    /// Seals `cvv` bound to `context` (the record's store key, merchant and expiry).
    pub(crate) fn seal<R: CryptoRng + ?Sized>(
        &self,
        context: &[u8],
        cvv: &Cvv,
        rng: &mut R,
    ) -> Vec<u8> {
        seal_digits(&self.0, context, cvv, rng)
    }

    /// Opens what [`seal`](Self::seal) made with the same `context`.
    pub(crate) fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Cvv, OpenError> {
        open_digits(&self.0, context, sealed)
    }
}

fn seal_digits<R: CryptoRng + ?Sized>(
    key: &SecretKey,
    context: &[u8],
    cvv: &Cvv,
    rng: &mut R,
) -> Vec<u8> {
    seal_blob(key, context, cvv.expose_digits().as_bytes(), rng)
}

fn open_digits(key: &SecretKey, context: &[u8], sealed: &[u8]) -> Result<Cvv, OpenError> {
    let plain = open_blob(key, context, sealed)?;
    let text = std::str::from_utf8(&plain).map_err(|_| OpenError)?;
    Cvv::parse(text).map_err(|_| OpenError)
}

impl fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EphemeralKey(..)")
    }
}

/// A CVV sealed under an [`EphemeralKey`]: version, 24-byte nonce, ciphertext and tag.
#[derive(Clone)]
pub struct SealedCvv {
    sealed: Vec<u8>,
}

impl fmt::Debug for SealedCvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedCvv(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cvv_parses_and_redacts() {
        assert_eq!(
            Cvv::parse("123").map(|c| c.expose_digits().to_owned()),
            Ok("123".to_owned())
        );
        assert_eq!(
            Cvv::parse("1234").map(|c| c.expose_digits().to_owned()),
            Ok("1234".to_owned())
        );
        for bad in ["", "12", "12345", "12a", " 123", "١٢٣"] {
            assert_eq!(
                Cvv::parse(bad).map(|_| ()),
                Err(CardError::CvvFormat),
                "{bad:?}"
            );
        }
        assert_eq!(
            format!("{:?}", Cvv::parse("987").expect("valid")),
            "Cvv(***)"
        );
    }

    #[test]
    fn round_trip_and_context_binding() {
        let mut rng = rand::rng();
        let key = EphemeralKey::generate(&mut rng);
        let cvv = Cvv::parse("1234").unwrap();
        let sealed = key.seal_cvv(b"payment-1", &cvv, &mut rng);
        assert!(!sealed.sealed.windows(4).any(|w| w == b"1234"));
        assert_eq!(
            key.open_cvv(b"payment-1", &sealed).unwrap().expose_digits(),
            "1234"
        );
        assert!(key.open_cvv(b"payment-2", &sealed).is_err());
        let other = EphemeralKey::generate(&mut rng);
        assert!(other.open_cvv(b"payment-1", &sealed).is_err());
        assert_eq!(
            format!("{sealed:?} {key:?}"),
            "SealedCvv(..) EphemeralKey(..)"
        );
    }
}
