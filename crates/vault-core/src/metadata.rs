//! Merchant metadata stored (sealed) with a card: a small bounded string map.

use std::collections::BTreeMap;

use crate::CardError;

/// At most [`MAX_ENTRIES`](Self::MAX_ENTRIES) pairs; keys 1-40 bytes, values at most 500 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Maximum number of entries.
    pub const MAX_ENTRIES: usize = 20;
    /// Maximum key length in bytes.
    pub const MAX_KEY_LEN: usize = 40;
    /// Maximum value length in bytes.
    pub const MAX_VALUE_LEN: usize = 500;

    /// Validates the bounds: the entry count first, then each key, then each value.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, CardError> {
        if map.len() > Self::MAX_ENTRIES {
            return Err(CardError::MetadataTooManyEntries);
        }
        if map
            .keys()
            .any(|k| k.is_empty() || k.len() > Self::MAX_KEY_LEN)
        {
            return Err(CardError::MetadataKeyInvalid);
        }
        if map.values().any(|v| v.len() > Self::MAX_VALUE_LEN) {
            return Err(CardError::MetadataValueTooLong);
        }
        Ok(Self(map))
    }

    /// The entries.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn bounds() {
        assert!(Metadata::new(BTreeMap::new()).is_ok_and(|m| m.is_empty()));
        let k40 = "k".repeat(40);
        let v500 = "v".repeat(500);
        assert!(Metadata::new(map(&[(&k40, &v500), ("a", "")])).is_ok());
        assert_eq!(
            Metadata::new(map(&[("", "v")])),
            Err(CardError::MetadataKeyInvalid)
        );
        assert_eq!(
            Metadata::new(map(&[(&"k".repeat(41), "v")])),
            Err(CardError::MetadataKeyInvalid)
        );
        assert_eq!(
            Metadata::new(map(&[("k", &"v".repeat(501))])),
            Err(CardError::MetadataValueTooLong)
        );
        let twenty: BTreeMap<String, String> =
            (0..20).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(Metadata::new(twenty.clone()).is_ok());
        let mut twenty_one = twenty;
        twenty_one.insert("extra".to_owned(), String::new());
        assert_eq!(
            Metadata::new(twenty_one),
            Err(CardError::MetadataTooManyEntries)
        );
    }
}
