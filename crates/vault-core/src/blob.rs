//! Sealing small opaque blobs (stored idempotent responses, session state, ...) under a
//! purpose-specific key, typically one of [`Keyring::mac_key`](crate::Keyring::mac_key).
//!
//! Sealed layout, version 1:
//!
//! ```text
//! 0x01 | nonce [24] | ciphertext | tag [16]
//! ```
//!
//! The cipher is XAES-256-GCM with a fresh random 192-bit nonce. The keys these blobs are sealed
//! under are derived once per vault and never rotate, so the number of messages over a key's life
//! is unbounded; random 96-bit AES-GCM nonces would cap it near 2^32 messages (the NIST bound for
//! a 2^-32 collision chance), XAES-256-GCM's 192-bit nonces do not. The associated data AEAD
//! authenticates is `"cardvault/v1/blob" | 0x01 | aad`: the version byte is authenticated, and a
//! blob opens only with the `aad` it was sealed with (callers pass where the blob is stored).

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::aead::{RECORD_NONCE_LEN, RecordKey, TAG_LEN};
use crate::{OpenError, SecretKey};

const FORMAT_V1: u8 = 0x01;
const AAD_LABEL: &[u8] = b"cardvault/v1/blob";
const HEADER_LEN: usize = 1 + RECORD_NONCE_LEN;

/// Bytes a sealed blob adds to its plaintext (version byte, nonce and tag).
pub const BLOB_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Seals `plaintext` under `key`, bound to `aad`, with a fresh random nonce from `rng`.
pub fn seal_blob<R: CryptoRng + ?Sized>(
    key: &SecretKey,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let mut nonce = [0u8; RECORD_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(BLOB_OVERHEAD + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    // Encrypted in place in the output buffer: no other copy of the plaintext is made.
    out.extend_from_slice(plaintext);
    RecordKey::new(key.expose()).seal_in_place(&nonce, &full_aad(aad), &mut out, HEADER_LEN);
    out
}

/// Opens a blob sealed by [`seal_blob`] with the same `key` and `aad`. Any difference (key, aad,
/// a flipped bit, truncation, an unknown version) is the one opaque [`OpenError`]. The plaintext
/// is wiped when the returned buffer is dropped.
pub fn open_blob(
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let (&version, rest) = sealed.split_first().ok_or(OpenError)?;
    if version != FORMAT_V1 || rest.len() < RECORD_NONCE_LEN + TAG_LEN {
        return Err(OpenError);
    }
    let (nonce, ct) = rest.split_at(RECORD_NONCE_LEN);
    let nonce = <&[u8; RECORD_NONCE_LEN]>::try_from(nonce).map_err(|_| OpenError)?;
    RecordKey::new(key.expose())
        .open(nonce, &full_aad(aad), ct)
        .map_err(|_| OpenError)
}

fn full_aad(aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(AAD_LABEL.len() + 1 + aad.len());
    full.extend_from_slice(AAD_LABEL);
    full.push(FORMAT_V1);
    full.extend_from_slice(aad);
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> rand::rngs::ThreadRng {
        rand::rng()
    }

    #[test]
    fn round_trip_and_layout() {
        let key = SecretKey::from_bytes([5; 32]);
        let sealed = seal_blob(&key, b"where", b"hello blob", &mut rng());
        assert_eq!(sealed.len(), BLOB_OVERHEAD + 10);
        assert_eq!(sealed[0], FORMAT_V1);
        assert!(!sealed.windows(10).any(|w| w == b"hello blob"));
        let opened = open_blob(&key, b"where", &sealed).expect("opens");
        assert_eq!(opened.as_slice(), b"hello blob");
        let empty = seal_blob(&key, b"", b"", &mut rng());
        assert_eq!(open_blob(&key, b"", &empty).expect("opens").len(), 0);
    }

    #[test]
    fn fresh_nonce_per_seal() {
        let key = SecretKey::from_bytes([5; 32]);
        let mut r = rng();
        let a = seal_blob(&key, b"", b"same", &mut r);
        let b = seal_blob(&key, b"", b"same", &mut r);
        assert_ne!(a, b);
    }

    #[test]
    fn every_difference_is_the_same_opaque_error() {
        let key = SecretKey::from_bytes([5; 32]);
        let sealed = seal_blob(&key, b"aad", b"payload", &mut rng());
        let other = SecretKey::from_bytes([6; 32]);
        assert_eq!(open_blob(&other, b"aad", &sealed), Err(OpenError));
        assert_eq!(open_blob(&key, b"aae", &sealed), Err(OpenError));
        assert_eq!(open_blob(&key, b"", &sealed), Err(OpenError));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert_eq!(open_blob(&key, b"aad", &bad), Err(OpenError), "byte {i}");
        }
        for n in 0..sealed.len() {
            assert_eq!(
                open_blob(&key, b"aad", &sealed[..n]),
                Err(OpenError),
                "len {n}"
            );
        }
        let mut v2 = sealed.clone();
        v2[0] = 2;
        assert_eq!(open_blob(&key, b"aad", &v2), Err(OpenError));
    }
}
