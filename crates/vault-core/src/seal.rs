//! Sealing card records: XAES-256-GCM under the current data key, with the record's identity
//! bound in as associated data.
//!
//! Sealed layout, version 1 (see `docs/record-format.md`):
//!
//! ```text
//! 0x01 | dek_id u32 BE | nonce [24] | ciphertext | tag [16]
//! ```
//!
//! The associated data binds the format byte, the DEK id, the merchant, the token, the customer
//! and the retention date, so a sealed blob copied into another record's slot does not open.

use rand_core::CryptoRng;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::aead::{RECORD_NONCE_LEN, TAG_LEN};
use crate::{CardRecord, CustomerId, DekId, Keyring, MerchantId, OpenError, Token};

const FORMAT_V1: u8 = 0x01;
const AAD_LABEL: &[u8] = b"cardvault/v1/record";
const HEADER_LEN: usize = 1 + 4 + RECORD_NONCE_LEN;
/// The shortest well-formed sealed record (empty plaintext).
const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;

/// What a sealed record is bound to: opening it with any other value fails.
#[derive(Clone, Copy, Debug)]
pub struct RecordBinding<'a> {
    /// The merchant that owns the token.
    pub merchant: MerchantId,
    /// The token the record is filed under.
    pub token: &'a Token,
    /// The merchant's customer, when the token was created for one.
    pub customer: Option<&'a CustomerId>,
    /// The retention date stored next to the record.
    pub keep_until: OffsetDateTime,
}

impl RecordBinding<'_> {
    /// `"cardvault/v1/record" | 0x01 | dek_id u32 BE | merchant u64 BE | token [24] |
    /// customer_len u8 (0 = none) | customer bytes | keep_until i64 BE`
    fn aad(&self, dek: DekId) -> Vec<u8> {
        let customer = self.customer.map_or(&[][..], |c| c.as_str().as_bytes());
        // Invariant: `CustomerId::parse` caps ids at 64 bytes, and an empty id cannot be parsed, so
        // length 0 unambiguously means "no customer".
        let customer_len = u8::try_from(customer.len()).expect("customer ids are at most 64 bytes");
        let mut aad =
            Vec::with_capacity(AAD_LABEL.len() + 1 + 4 + 8 + Token::LEN + 1 + customer.len() + 8);
        aad.extend_from_slice(AAD_LABEL);
        aad.push(FORMAT_V1);
        aad.extend_from_slice(&dek.get().to_be_bytes());
        aad.extend_from_slice(&self.merchant.get().to_be_bytes());
        aad.extend_from_slice(self.token.as_bytes());
        aad.push(customer_len);
        aad.extend_from_slice(customer);
        aad.extend_from_slice(&self.keep_until.unix_timestamp().to_be_bytes());
        aad
    }
}

/// Seals `record` under the keyring's current DEK with a fresh random 192-bit nonce.
pub fn seal_record<R: CryptoRng + ?Sized>(
    keyring: &Keyring,
    binding: &RecordBinding<'_>,
    record: &CardRecord,
    rng: &mut R,
) -> Vec<u8> {
    let (dek, cipher) = keyring.current_cipher();
    let mut nonce = [0u8; RECORD_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let plaintext = record.encode();

    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT_V1);
    out.extend_from_slice(&dek.get().to_be_bytes());
    out.extend_from_slice(&nonce);
    // The plaintext is copied into the output buffer and encrypted there in place.
    out.extend_from_slice(&plaintext);
    cipher.seal_in_place(&nonce, &binding.aad(dek), &mut out, HEADER_LEN);
    out
}

/// Opens a sealed record. Every failure (short or malformed input, unknown version or DEK, a
/// binding that differs from the one it was sealed with, any altered byte, a plaintext that does
/// not decode) is the same opaque [`OpenError`].
pub fn open_record(
    keyring: &Keyring,
    binding: &RecordBinding<'_>,
    sealed: &[u8],
) -> Result<CardRecord, OpenError> {
    let dek = sealed_dek_id(sealed)?;
    let cipher = keyring.cipher(dek).ok_or(OpenError)?;
    let nonce =
        <&[u8; RECORD_NONCE_LEN]>::try_from(&sealed[5..HEADER_LEN]).map_err(|_| OpenError)?;
    let plaintext: Zeroizing<Vec<u8>> = cipher
        .open(nonce, &binding.aad(dek), &sealed[HEADER_LEN..])
        .map_err(|_| OpenError)?;
    CardRecord::decode(&plaintext).map_err(|_| OpenError)
}

/// The id of the DEK a sealed record was sealed under, read without decrypting (for re-wrapping
/// and for checking that no record still needs a DEK before retiring it).
pub fn sealed_dek_id(sealed: &[u8]) -> Result<DekId, OpenError> {
    if sealed.len() < MIN_SEALED_LEN || sealed[0] != FORMAT_V1 {
        return Err(OpenError);
    }
    let id = <[u8; 4]>::try_from(&sealed[1..5]).map_err(|_| OpenError)?;
    Ok(DekId::new(u32::from_be_bytes(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_dek_id_rejects_short_and_unknown_versions() {
        let mut blob = vec![FORMAT_V1, 0, 0, 0, 7];
        blob.resize(MIN_SEALED_LEN, 0);
        assert_eq!(sealed_dek_id(&blob), Ok(DekId::new(7)));
        assert_eq!(sealed_dek_id(&blob[..MIN_SEALED_LEN - 1]), Err(OpenError));
        assert_eq!(sealed_dek_id(&[]), Err(OpenError));
        blob[0] = 0x02;
        assert_eq!(sealed_dek_id(&blob), Err(OpenError));
    }
}
