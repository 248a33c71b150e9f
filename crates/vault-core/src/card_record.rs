//! The plaintext that gets sealed: a card and what travels with it, with its byte layout.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroizing;

use crate::{CardholderName, DecodeError, Expiry, Metadata, Pan};

/// A card as stored (before sealing / after opening). No `Debug` derive: holds a PAN; the manual
/// `Debug` shows the mask only and redacts the name.
///
/// # Byte layout, version 1
///
/// The plaintext that [`encode`](Self::encode) writes and [`decode`](Self::decode) reads. All
/// integers are unsigned and big-endian; there is no padding and no trailing data.
///
/// | field        | size              | meaning                                                    |
/// |--------------|-------------------|------------------------------------------------------------|
/// | `version`    | u8                | `1`; any other value is refused (`UnsupportedVersion`)     |
/// | `pan_len`    | u8                | number of PAN digits, 12-19                                |
/// | `pan`        | `pan_len` bytes   | ASCII digits, Luhn-valid                                   |
/// | `exp_year`   | u16               | four-digit year, 2000-2099                                 |
/// | `exp_month`  | u8                | 1-12                                                       |
/// | `name_len`   | u8                | 0 = no name; else 1-255 (1-64 characters)                  |
/// | `name`       | `name_len` bytes  | UTF-8, already trimmed, no control characters              |
/// | `meta_count` | u8                | 0-20 entries                                               |
/// | per entry: `key_len` | u8        | 1-40                                                       |
/// | `key`        | `key_len` bytes   | UTF-8; keys strictly ascending (bytewise), so no duplicates |
/// | `value_len`  | u16               | 0-500                                                      |
/// | `value`      | `value_len` bytes | UTF-8                                                      |
///
/// The encoding is canonical: one record has exactly one encoding, and `decode` refuses anything
/// `encode` would not have written (an untrimmed name, a two-digit year, unsorted or repeated
/// metadata keys, bytes after the last entry). Every field is re-validated through the same
/// parsers as user input, so a decoded [`Pan`] is Luhn-valid and so on.
pub struct CardRecord {
    /// The card number.
    pub pan: Pan,
    /// The expiry month.
    pub expiry: Expiry,
    /// The cardholder name, when given.
    pub name: Option<CardholderName>,
    /// Merchant metadata.
    pub metadata: Metadata,
}

impl CardRecord {
    /// The layout version [`encode`](Self::encode) writes and [`decode`](Self::decode) reads.
    pub const FORMAT_VERSION: u8 = 1;

    /// Encodes the versioned plaintext layout (see `docs/record-format.md`). The buffer is
    /// zeroized when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let pan = self.pan.expose_digits().as_bytes();
        let name = self
            .name
            .as_ref()
            .map_or(&[][..], |n| n.expose().as_bytes());
        let entries = self.metadata.entries();
        let meta_len: usize = entries.iter().map(|(k, v)| 1 + k.len() + 2 + v.len()).sum();
        // Sized exactly up front: a growing Vec would reallocate and leave un-zeroized copies of
        // the PAN behind in freed memory.
        let total = 1 + 1 + pan.len() + 2 + 1 + 1 + name.len() + 1 + meta_len;
        let mut out = Zeroizing::new(Vec::with_capacity(total));

        // The `expect`s below restate invariants of the parsed types: a Pan has 12-19 digits, a
        // name at most 255 bytes, metadata at most 20 entries, keys of 40 bytes and values of 500.
        out.push(Self::FORMAT_VERSION);
        out.push(u8::try_from(pan.len()).expect("a Pan has at most 19 digits"));
        out.extend_from_slice(pan);
        out.extend_from_slice(&self.expiry.year().to_be_bytes());
        out.push(self.expiry.month());
        out.push(u8::try_from(name.len()).expect("a CardholderName has at most 255 bytes"));
        out.extend_from_slice(name);
        out.push(u8::try_from(entries.len()).expect("Metadata has at most 20 entries"));
        for (k, v) in entries {
            out.push(u8::try_from(k.len()).expect("metadata keys have at most 40 bytes"));
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(
                &u16::try_from(v.len())
                    .expect("metadata values have at most 500 bytes")
                    .to_be_bytes(),
            );
            out.extend_from_slice(v.as_bytes());
        }
        debug_assert_eq!(out.len(), total);
        out
    }

    /// Decodes what [`encode`](Self::encode) wrote, re-validating every field.
    ///
    /// Never panics. Errors name the field, never its content: [`DecodeError::Truncated`],
    /// [`DecodeError::TrailingBytes`], [`DecodeError::UnsupportedVersion`] or
    /// [`DecodeError::Invalid`] with one of `"pan"`, `"expiry"`, `"name"`, `"metadata"`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != Self::FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(u16::from(version)));
        }

        // The digits are borrowed from `bytes`, never copied outside the zeroizing Pan.
        let pan_len = r.u8()?;
        let pan = r.take(usize::from(pan_len))?;
        let pan = std::str::from_utf8(pan)
            .ok()
            .and_then(|s| Pan::parse(s).ok())
            .ok_or(DecodeError::Invalid("pan"))?;

        let year = r.u16()?;
        let month = r.u8()?;
        if !(2000..=2099).contains(&year) {
            // `Expiry::new` also takes two-digit years; the format stores four only.
            return Err(DecodeError::Invalid("expiry"));
        }
        let expiry = Expiry::new(year, month).map_err(|_| DecodeError::Invalid("expiry"))?;

        let name_len = r.u8()?;
        let name = match name_len {
            0 => None,
            n => {
                let raw = std::str::from_utf8(r.take(usize::from(n))?)
                    .map_err(|_| DecodeError::Invalid("name"))?;
                let name = CardholderName::parse(raw).map_err(|_| DecodeError::Invalid("name"))?;
                if name.expose() != raw {
                    // Untrimmed: not something `encode` writes.
                    return Err(DecodeError::Invalid("name"));
                }
                Some(name)
            }
        };

        let count = r.u8()?;
        if usize::from(count) > Metadata::MAX_ENTRIES {
            return Err(DecodeError::Invalid("metadata"));
        }
        let mut map = BTreeMap::new();
        let mut last_key: Option<&[u8]> = None;
        for _ in 0..count {
            let key_len = r.u8()?;
            let key = r.take(usize::from(key_len))?;
            let value_len = r.u16()?;
            let value = r.take(usize::from(value_len))?;
            if last_key.is_some_and(|last| last >= key) {
                return Err(DecodeError::Invalid("metadata"));
            }
            last_key = Some(key);
            let key = std::str::from_utf8(key).map_err(|_| DecodeError::Invalid("metadata"))?;
            let value = std::str::from_utf8(value).map_err(|_| DecodeError::Invalid("metadata"))?;
            map.insert(key.to_owned(), value.to_owned());
        }
        let metadata = Metadata::new(map).map_err(|_| DecodeError::Invalid("metadata"))?;

        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Self {
            pan,
            expiry,
            name,
            metadata,
        })
    }

    /// An explicit copy (the PAN and name are secrets, so there is no `Clone`).
    pub fn duplicate(&self) -> CardRecord {
        CardRecord {
            pan: self.pan.duplicate(),
            expiry: self.expiry,
            name: self.name.as_ref().map(CardholderName::duplicate),
            metadata: self.metadata.clone(),
        }
    }
}

impl fmt::Debug for CardRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each secret field prints its own redacted form.
        f.debug_struct("CardRecord")
            .field("pan", &self.pan)
            .field("expiry", &self.expiry)
            .field("name", &self.name)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl PartialEq for CardRecord {
    /// The PAN and name compare in constant time (see their `PartialEq`).
    fn eq(&self, other: &Self) -> bool {
        self.pan == other.pan
            && self.expiry == other.expiry
            && self.name == other.name
            && self.metadata == other.metadata
    }
}
impl Eq for CardRecord {}

/// A cursor over untrusted bytes: every read is bounds-checked and reports `Truncated`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CardRecord {
        let mut m = BTreeMap::new();
        m.insert("order".to_owned(), "A-1".to_owned());
        m.insert("b".to_owned(), String::new());
        CardRecord {
            pan: Pan::parse("4111111111111111").expect("valid"),
            expiry: Expiry::new(2028, 2).expect("valid"),
            name: Some(CardholderName::parse("Ada Lovelace").expect("valid")),
            metadata: Metadata::new(m).expect("valid"),
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = sample().encode();
        let mut want = vec![1u8, 16];
        want.extend_from_slice(b"4111111111111111");
        want.extend_from_slice(&[0x07, 0xEC, 2, 12]);
        want.extend_from_slice(b"Ada Lovelace");
        want.push(2);
        want.extend_from_slice(&[1, b'b', 0, 0]);
        want.extend_from_slice(&[5]);
        want.extend_from_slice(b"order");
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(b"A-1");
        assert_eq!(&bytes[..], &want[..]);
        assert_eq!(CardRecord::decode(&bytes).expect("decodes"), sample());
    }

    #[test]
    fn decode_refusals() {
        let good = sample().encode();
        let with = |i: usize, b: u8| {
            let mut v = good.to_vec();
            v[i] = b;
            CardRecord::decode(&v).map(|_| ())
        };
        assert_eq!(with(0, 2), Err(DecodeError::UnsupportedVersion(2)));
        assert_eq!(with(0, 0), Err(DecodeError::UnsupportedVersion(0)));
        assert_eq!(with(17, b'2'), Err(DecodeError::Invalid("pan"))); // Luhn
        assert_eq!(with(2, b'x'), Err(DecodeError::Invalid("pan")));
        assert_eq!(with(18, 0), Err(DecodeError::Invalid("expiry"))); // year 0x00EC = 236
        assert_eq!(with(20, 13), Err(DecodeError::Invalid("expiry")));
        assert_eq!(with(22, b' '), Err(DecodeError::Invalid("name"))); // leading space
        assert_eq!(with(22, 0xff), Err(DecodeError::Invalid("name")));
        assert_eq!(with(34, 21), Err(DecodeError::Invalid("metadata")));
        assert_eq!(with(36, b'p'), Err(DecodeError::Invalid("metadata"))); // "p" > "order": unsorted
        // The same key twice: a map cannot hold it, and `encode` never writes it.
        let mut dup = good[..34].to_vec();
        dup.extend_from_slice(&[2, 1, b'k', 0, 1, b'x', 1, b'k', 0, 1, b'y']);
        assert_eq!(
            CardRecord::decode(&dup).map(|_| ()),
            Err(DecodeError::Invalid("metadata"))
        );
        dup[41] = b'z'; // second key now "z": ascending, accepted
        assert!(CardRecord::decode(&dup).is_ok());
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(
            CardRecord::decode(&long).map(|_| ()),
            Err(DecodeError::TrailingBytes)
        );
        for n in 0..good.len() {
            assert_eq!(
                CardRecord::decode(&good[..n]).map(|_| ()),
                Err(DecodeError::Truncated),
                "prefix {n}"
            );
        }
        // Two-digit year stored: canonical form is four digits.
        let mut two_digit = good.to_vec();
        two_digit[18] = 0;
        two_digit[19] = 28;
        assert_eq!(
            CardRecord::decode(&two_digit).map(|_| ()),
            Err(DecodeError::Invalid("expiry"))
        );
    }

    #[test]
    fn a_name_of_64_characters_round_trips_whatever_its_bytes() {
        let mut r = sample();
        r.name = Some(CardholderName::parse(&"\u{1F600}".repeat(63)).expect("252 bytes"));
        let back = CardRecord::decode(&r.encode()).expect("decodes");
        assert_eq!(back, r.duplicate());
    }

    #[test]
    fn duplicate_and_no_name() {
        let mut r = sample();
        r.name = None;
        let bytes = r.encode();
        assert_eq!(bytes[20 + 1], 0);
        let back = CardRecord::decode(&bytes).expect("decodes");
        assert_eq!(back, r.duplicate());
        assert!(back.name.is_none());
    }
}
