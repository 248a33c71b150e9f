//! Sealing short-lived secrets (a payment's CVV) under a key that exists only in this process's
//! memory: generated at start, never written anywhere, gone with the process. A CVV may never be
//! stored (PCI DSS 3.3.1.2), so while it waits for its one use it is held only in this sealed form;
//! a heap dump or swap page shows ciphertext, and a restart makes every held CVV unrecoverable.

use std::fmt;

use rand_core::CryptoRng;

use crate::{
    Cvv, OpenError,
    aead::{WRAP_NONCE_LEN, WrapKey},
};

/// An in-memory AES-256-GCM key for [`SealedCvv`]s. Not `Clone`, no way to export it; the key
/// schedule is dropped with it.
pub struct EphemeralKey(WrapKey);

impl EphemeralKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self(WrapKey::new(&bytes))
    }

    /// Seals `cvv`, bound to `context` (for example the payment id it belongs to): opening it with
    /// another context fails.
    pub fn seal_cvv<R: CryptoRng + ?Sized>(
        &self,
        context: &[u8],
        cvv: &Cvv,
        rng: &mut R,
    ) -> SealedCvv {
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed = self.0.seal(&nonce, context, cvv.expose_digits().as_bytes());
        SealedCvv { nonce, sealed }
    }

    /// Opens a sealed CVV with the same `context` it was sealed with.
    pub fn open_cvv(&self, context: &[u8], sealed: &SealedCvv) -> Result<Cvv, OpenError> {
        let plain = self
            .0
            .open(&sealed.nonce, context, &sealed.sealed)
            .map_err(|_| OpenError)?;
        let text = std::str::from_utf8(&plain).map_err(|_| OpenError)?;
        Cvv::parse(text).map_err(|_| OpenError)
    }
}

impl fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EphemeralKey(..)")
    }
}

/// A CVV sealed under an [`EphemeralKey`]: 12-byte nonce, ciphertext and tag.
#[derive(Clone)]
pub struct SealedCvv {
    nonce: [u8; WRAP_NONCE_LEN],
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
