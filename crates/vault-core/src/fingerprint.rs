//! Keyed fingerprints of card numbers and keyed token lookups.
//!
//! A [`Fingerprint`] is HMAC-SHA256 of the PAN under a per-merchant key derived from the vault's MAC
//! root: never a plain hash, which anyone could recompute from the ~10^9 plausible PANs of a BIN
//! (PCI DSS 3.5.1.1). Without the key it reveals nothing about the PAN, so it is safe to store and
//! to return to the merchant. A [`LookupKey`] maps a token to the 16-byte key under which the store
//! files it, so the store's index is keyed by a MAC rather than by the token itself.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{Pan, Token};

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // Invariant: HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The per-merchant fingerprint key: a keyed HMAC-SHA256 state, ready to absorb a PAN.
///
/// Obtained from [`Keyring::fingerprint_key`](crate::Keyring::fingerprint_key). `Debug` is
/// redacted; no `Clone` (it is key material).
pub struct FingerprintKey(HmacSha256);

impl FingerprintKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(keyed(key))
    }

    /// The fingerprint of `pan` for this key's merchant: HMAC-SHA256 over the PAN's ASCII digits.
    pub fn fingerprint(&self, pan: &Pan) -> Fingerprint {
        let mut mac = self.0.clone();
        mac.update(pan.expose_digits().as_bytes());
        Fingerprint(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// A keyed fingerprint of a card number: 32 bytes, shown as 64 lowercase hex characters.
///
/// Public: safe to store, log and return. Equality is constant-time, because fingerprints are
/// compared while de-duplicating cards.
#[derive(Clone, Copy)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// From stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl ConstantTimeEq for Fingerprint {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}

impl Eq for Fingerprint {}

impl std::hash::Hash for Fingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Invariant: the output buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).expect("64-byte buffer for 32 bytes");
        // Invariant: hex output is ASCII.
        f.write_str(std::str::from_utf8(&buf).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The token-lookup key: maps a token to the 16-byte key the store indexes it by.
///
/// The keyed HMAC state is computed once; each lookup clones it (two SHA-256 block states), so a
/// token read costs two compression calls instead of four. `Debug` is redacted.
pub struct LookupKey(HmacSha256);

impl LookupKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(keyed(key))
    }

    /// The first 16 bytes of HMAC-SHA256(lookup key, token bytes).
    pub fn lookup(&self, token: &Token) -> [u8; 16] {
        let mut mac = self.0.clone();
        mac.update(token.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LookupKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (HMAC-SHA256, key "Jefe"), split across parts to check concatenation.
    #[test]
    fn hmac_rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// HMAC key states are two SHA-256 cores; they are wiped on drop only with `sha2`'s `zeroize`
    /// feature, which `Cargo.toml` enables. This fails to compile if that is ever lost.
    #[test]
    fn sha256_state_zeroizes_on_drop() {
        fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        assert_zeroize_on_drop::<sha2::block_api::Sha256VarCore>();
    }

    #[test]
    fn lookup_is_truncated_hmac() {
        let key = LookupKey::new(&[5; 32]);
        let token = Token::from_bytes([6; 24]);
        let full = hmac_sha256(&[5; 32], &[&[6; 24]]);
        assert_eq!(key.lookup(&token), full[..16]);
        // The precomputed state is not consumed by a lookup.
        assert_eq!(key.lookup(&token), key.lookup(&token));
        assert_ne!(key.lookup(&token), key.lookup(&Token::from_bytes([7; 24])));
    }

    #[test]
    fn fingerprint_display_and_debug() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x01;
        let fp = Fingerprint::from_bytes(bytes);
        let hex = format!("{fp}");
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00") && hex.ends_with("0001"));
        assert_eq!(format!("{fp:?}"), format!("Fingerprint({hex})"));
        assert_eq!(
            format!("{:?}", FingerprintKey::new(&[1; 32])),
            "FingerprintKey(..)"
        );
        assert_eq!(format!("{:?}", LookupKey::new(&[1; 32])), "LookupKey(..)");
    }
}
