//! The stored form of one token: public, authenticated fields in the clear, the card sealed.
//!
//! Layout, version 1 (all integers big-endian):
//!
//! | offset | size | field                                                       |
//! |--------|------|-------------------------------------------------------------|
//! | 0      | 1    | record format version (`1`)                                 |
//! | 1      | 1    | flags: bit 0 = listed in the de-duplication index; others 0 |
//! | 2      | 8    | merchant id (u64)                                           |
//! | 10     | 24   | token                                                       |
//! | 34     | 8    | created at (unix seconds, i64)                              |
//! | 42     | 8    | updated at (unix seconds, i64)                              |
//! | 50     | 8    | keep until (unix seconds, i64)                              |
//! | 58     | 16   | de-duplication key                                          |
//! | 74     | 1    | customer id length `n` (0 = none, at most 64)               |
//! | 75     | n    | customer id (ASCII)                                         |
//! | 75+n   | rest | sealed card (`vault_core::seal_record` output, non-empty)    |
//!
//! The merchant, token, customer and keep-until are also bound into the sealed card's associated
//! data, so editing them on disk makes the record fail to open rather than change meaning.

use crate::{DedupeKey, KeySpace, StoreError, Structure};

const VERSION: u8 = 1;
const FIXED: usize = 75;
const MAX_CUSTOMER: usize = 64;

/// One token's record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Merchant that owns the token.
    pub merchant: u64,
    /// The token itself (public).
    pub token: [u8; 24],
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Last update time, unix seconds.
    pub updated_at: i64,
    /// When the token stops being usable, unix seconds.
    pub keep_until: i64,
    /// De-duplication key of this card for this merchant and customer.
    pub dedupe: DedupeKey,
    /// Whether the de-duplication index may point at this record (tokens created with `dedupe`).
    pub dedupe_indexed: bool,
    /// Customer the card is bound to, if any (validated ASCII).
    pub customer: Option<String>,
    /// The sealed card.
    pub sealed: Vec<u8>,
}

/// Where a database that does not decode records finds what a
/// [`RecordGuard`](crate::RecordGuard) compares, in the version-1 layout: the version byte at 0,
/// merchant and token as 32 bytes at `IDENTITY_AT`, the customer's length byte and id at
/// `CUSTOMER_AT`, and a sealed card after it. (Only the PostgreSQL engine checks guards there.)
#[cfg(feature = "postgres")]
pub(crate) mod guard_layout {
    /// The version byte every guarded record has.
    pub(crate) const VERSION: u8 = super::VERSION;
    /// Offset of the merchant id (8 bytes) followed by the token (24 bytes).
    pub(crate) const IDENTITY_AT: usize = 2;
    /// Offset of the customer's length byte, followed by the id.
    pub(crate) const CUSTOMER_AT: usize = super::FIXED - 1;

    /// The 32 bytes at [`IDENTITY_AT`] of `merchant`'s record of `token`.
    pub(crate) fn identity(merchant: u64, token: &[u8; 24]) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&merchant.to_be_bytes());
        out.extend_from_slice(token);
        out
    }

    /// The bytes at [`CUSTOMER_AT`] of a record bound to `customer` (its length byte, then the
    /// id; `[0]` for none). `None` for an id no record can hold (longer than 64 bytes).
    pub(crate) fn customer(customer: Option<&str>) -> Option<Vec<u8>> {
        let c = customer.unwrap_or("");
        if c.len() > super::MAX_CUSTOMER {
            return None;
        }
        let mut out = Vec::with_capacity(1 + c.len());
        out.push(u8::try_from(c.len()).ok()?);
        out.extend_from_slice(c.as_bytes());
        Some(out)
    }
}

impl StoredRecord {
    /// Encodes the version-1 layout.
    pub fn encode(&self) -> Vec<u8> {
        let customer = self.customer.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(FIXED + customer.len() + self.sealed.len());
        out.push(VERSION);
        out.push(u8::from(self.dedupe_indexed));
        out.extend_from_slice(&self.merchant.to_be_bytes());
        out.extend_from_slice(&self.token);
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(&self.updated_at.to_be_bytes());
        out.extend_from_slice(&self.keep_until.to_be_bytes());
        out.extend_from_slice(&self.dedupe.0);
        // Customer ids are validated to at most 64 bytes before they get here; clamp anyway so a
        // bad caller cannot produce an undecodable record.
        let n = customer.len().min(MAX_CUSTOMER);
        out.push(u8::try_from(n).unwrap_or(0));
        out.extend_from_slice(&customer.as_bytes()[..n]);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// The record of a read of its key: none when the key is absent, the decoded record
    /// otherwise.
    pub(crate) fn from_read(
        read: Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<Option<Self>, StoreError> {
        read?.as_deref().map(Self::decode).transpose()
    }

    /// Decodes a stored record. Never panics; any malformation is `StoreError::Corrupt(Structure::Value(KeySpace::Record))`
    /// and a newer version is `StoreError::NewerFormat`.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        const BAD: StoreError = StoreError::Corrupt(Structure::Value(KeySpace::Record));
        let version = *bytes.first().ok_or(BAD)?;
        if version > VERSION {
            return Err(StoreError::NewerFormat(u16::from(version)));
        }
        if version != VERSION || bytes.len() < FIXED {
            return Err(BAD);
        }
        let flags = bytes[1];
        if flags & !1 != 0 {
            return Err(BAD);
        }
        let u64_at = |o: usize| -> Result<[u8; 8], StoreError> {
            bytes
                .get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or(BAD)
        };
        let merchant = u64::from_be_bytes(u64_at(2)?);
        let token: [u8; 24] = bytes
            .get(10..34)
            .and_then(|s| s.try_into().ok())
            .ok_or(BAD)?;
        let created_at = i64::from_be_bytes(u64_at(34)?);
        let updated_at = i64::from_be_bytes(u64_at(42)?);
        let keep_until = i64::from_be_bytes(u64_at(50)?);
        let dedupe: [u8; 16] = bytes
            .get(58..74)
            .and_then(|s| s.try_into().ok())
            .ok_or(BAD)?;
        let n = usize::from(bytes[74]);
        if n > MAX_CUSTOMER {
            return Err(BAD);
        }
        let customer_bytes = bytes.get(FIXED..FIXED + n).ok_or(BAD)?;
        let customer = if n == 0 {
            None
        } else {
            let s = std::str::from_utf8(customer_bytes).map_err(|_| BAD)?;
            if !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(BAD);
            }
            Some(s.to_owned())
        };
        let sealed = bytes.get(FIXED + n..).ok_or(BAD)?;
        if sealed.is_empty() {
            return Err(BAD);
        }
        Ok(Self {
            merchant,
            token,
            created_at,
            updated_at,
            keep_until,
            dedupe: DedupeKey(dedupe),
            dedupe_indexed: flags & 1 == 1,
            customer,
            sealed: sealed.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> StoredRecord {
        StoredRecord {
            merchant: 890490,
            token: [0xab; 24],
            created_at: 1_700_000_000,
            updated_at: 1_700_000_100,
            keep_until: 1_835_481_600,
            dedupe: DedupeKey([3; 16]),
            dedupe_indexed: false,
            customer: Some("mgn456".into()),
            sealed: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(StoredRecord::decode(&r.encode()).expect("decodes"), r);
        let r2 = StoredRecord {
            customer: None,
            ..sample()
        };
        assert_eq!(StoredRecord::decode(&r2.encode()).expect("decodes"), r2);
    }

    /// Golden bytes: a change that breaks old records must fail here.
    #[test]
    fn golden_v1() {
        // Built from the table in the module docs, independent of `encode`.
        let mut expected = vec![1u8, 0];
        expected.extend_from_slice(&890490u64.to_be_bytes());
        expected.extend_from_slice(&[0xab; 24]);
        expected.extend_from_slice(&1_700_000_000i64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_100i64.to_be_bytes());
        expected.extend_from_slice(&1_835_481_600i64.to_be_bytes());
        expected.extend_from_slice(&[3; 16]);
        expected.push(6);
        expected.extend_from_slice(b"mgn456");
        expected.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(sample().encode(), expected);
    }

    #[test]
    fn the_dedupe_flag_round_trips_and_unknown_flags_are_refused() {
        let r = StoredRecord {
            dedupe_indexed: true,
            ..sample()
        };
        let mut b = r.encode();
        assert_eq!(b[1], 1);
        assert_eq!(StoredRecord::decode(&b).expect("decodes"), r);
        b[1] = 2;
        assert!(StoredRecord::decode(&b).is_err());
    }

    #[test]
    fn newer_version_is_refused() {
        let mut b = sample().encode();
        b[0] = 2;
        assert!(matches!(
            StoredRecord::decode(&b),
            Err(StoreError::NewerFormat(2))
        ));
    }

    #[test]
    fn truncations_are_corrupt() {
        let b = sample().encode();
        for n in 0..b.len() - 4 {
            assert!(
                StoredRecord::decode(&b[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = StoredRecord::decode(&bytes);
        }

        #[test]
        fn round_trips(merchant in any::<u64>(), token in any::<[u8; 24]>(), c in any::<i64>(),
                       u in any::<i64>(), k in any::<i64>(), d in any::<[u8; 16]>(),
                       customer in proptest::option::of("[A-Za-z0-9._:@-]{1,64}"),
                       sealed in proptest::collection::vec(any::<u8>(), 1..300)) {
            let r = StoredRecord { merchant, token, created_at: c, updated_at: u, keep_until: k,
                                   dedupe: DedupeKey(d), dedupe_indexed: c % 2 == 0, customer, sealed };
            prop_assert_eq!(StoredRecord::decode(&r.encode()).expect("decodes"), r);
        }
    }
}
