//! Typed tables over the key space, in the style of redb's `TableDefinition`: a [`Table<K, V>`]
//! names its [`KeySpace`], how its keys are laid out after the prefix byte ([`TableKey`]) and how
//! its values are encoded ([`Codec`]), so the record encode / decode / corrupt / key quartet is
//! written once here instead of once per layer.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! use vault_store::{KeySpace, Table, Versioned};
//!
//! #[derive(Serialize, Deserialize)]
//! struct MerchantRec { v: u8, name: String, created_at: i64 }
//! impl Versioned for MerchantRec { const VERSION: u8 = 1; }
//!
//! const MERCHANTS: Table<u64, MerchantRec> = Table::new(KeySpace::Merchant);
//! assert_eq!(MERCHANTS.key(&7), [b'M', 0, 0, 0, 0, 0, 0, 0, 7]);
//! ```

use std::marker::PhantomData;

use serde::{Serialize, de::DeserializeOwned};

use crate::{KeySpace, Store, StoreError, Structure, WriteTx};

/// How a table's key is laid out after its prefix byte. Integers are big-endian, so key order is
/// numeric order.
pub trait TableKey {
    /// Appends the key's bytes to `out`.
    fn write_key(&self, out: &mut Vec<u8>);
}

impl TableKey for u64 {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

impl<const N: usize> TableKey for [u8; N] {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl TableKey for [u8] {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl TableKey for str {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

/// A composite key: `A`'s bytes, then `B`'s (fixed-width parts first keep the layout
/// unambiguous).
impl<A: TableKey, B: TableKey + ?Sized> TableKey for (A, B) {
    fn write_key(&self, out: &mut Vec<u8>) {
        self.0.write_key(out);
        self.1.write_key(out);
    }
}

/// How a table's values are stored.
pub trait Codec: Sized {
    /// The stored bytes.
    fn encode(&self) -> Vec<u8>;
    /// The value, or `None` when the bytes do not decode (reported as
    /// [`StoreError::Corrupt`] of the table's [`Structure::Value`]).
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// A serde record stored with postcard, whose first field is its format version (`v: u8`, so the
/// first stored byte is the version). Any other first byte is refused as corrupt unless
/// [`upgrade`](Self::upgrade) reads it.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The version written.
    const VERSION: u8;

    /// Reads a value stored under an older `version` (the whole stored bytes).
    fn upgrade(version: u8, bytes: &[u8]) -> Option<Self> {
        let _ = (version, bytes);
        None
    }
}

impl<T: Versioned> Codec for T {
    fn encode(&self) -> Vec<u8> {
        // Serialising plain structs into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes.first() {
            Some(&v) if v == T::VERSION => postcard::from_bytes(bytes).ok(),
            Some(&v) => T::upgrade(v, bytes),
            None => None,
        }
    }
}

/// A typed table: values of type `V` under keys `prefix | K` in one [`KeySpace`].
pub struct Table<K: ?Sized, V> {
    space: KeySpace,
    _types: PhantomData<fn(&K) -> V>,
}

impl<K: ?Sized, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: ?Sized, V> Copy for Table<K, V> {}

impl<K: ?Sized, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Table").field(&self.space).finish()
    }
}

impl<K: TableKey + ?Sized, V: Codec> Table<K, V> {
    /// The table of `space`.
    pub const fn new(space: KeySpace) -> Self {
        Self {
            space,
            _types: PhantomData,
        }
    }

    /// Its key space.
    pub const fn space(&self) -> KeySpace {
        self.space
    }

    /// The full key of `key`: prefix byte, then the key's bytes.
    pub fn key(&self, key: &K) -> Vec<u8> {
        let mut out = vec![self.space.byte()];
        key.write_key(&mut out);
        out
    }

    /// The error a value of this table that does not decode is reported as.
    pub const fn corrupt(&self) -> StoreError {
        StoreError::Corrupt(Structure::Value(self.space))
    }

    /// Encodes a value.
    pub fn encode(&self, value: &V) -> Vec<u8> {
        value.encode()
    }

    /// Decodes stored bytes.
    pub fn decode(&self, bytes: &[u8]) -> Result<V, StoreError> {
        V::decode(bytes).ok_or(self.corrupt())
    }

    /// The value under `key` in the committed state.
    pub fn get(&self, store: &Store, key: &K) -> Result<Option<V>, StoreError> {
        store
            .get_raw(&self.key(key))?
            .map(|b| self.decode(&b))
            .transpose()
    }

    /// The value under `key`, this group's pending writes included.
    pub fn get_in(&self, tx: &WriteTx<'_>, key: &K) -> Result<Option<V>, StoreError> {
        tx.get_raw(&self.key(key))?
            .map(|b| self.decode(&b))
            .transpose()
    }

    /// Stores `value` under `key`.
    pub fn put(&self, tx: &mut WriteTx<'_>, key: &K, value: &V) -> Result<(), StoreError> {
        tx.put_raw(&self.key(key), value.encode())
    }

    /// Stores `value` under `key` only if the key is absent; returns whether it did.
    pub fn insert_new(&self, tx: &mut WriteTx<'_>, key: &K, value: &V) -> Result<bool, StoreError> {
        tx.put_if_absent(&self.key(key), value.encode())
    }

    /// Removes `key`.
    pub fn delete(&self, tx: &mut WriteTx<'_>, key: &K) -> Result<(), StoreError> {
        tx.delete_raw_key(&self.key(key))
    }

    /// Up to `limit` entries in key order: the key after the prefix byte, and the value or the
    /// error it decodes to (so a caller can report a damaged entry and carry on).
    #[allow(clippy::type_complexity)]
    pub fn scan(
        &self,
        store: &Store,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Result<V, StoreError>)>, StoreError> {
        Ok(store
            .scan_raw(&[self.space.byte()], limit)?
            .into_iter()
            .map(|(mut k, v)| {
                k.remove(0);
                (k, self.decode(&v))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rec {
        v: u8,
        name: String,
    }

    impl Versioned for Rec {
        const VERSION: u8 = 2;

        fn upgrade(version: u8, bytes: &[u8]) -> Option<Self> {
            (version == 1).then(|| Rec {
                v: 2,
                name: String::from_utf8_lossy(&bytes[1..]).into_owned(),
            })
        }
    }

    const RECS: Table<u64, Rec> = Table::new(KeySpace::Merchant);

    #[test]
    fn keys_values_and_corruption() {
        assert_eq!(RECS.key(&0x0102), [b'M', 0, 0, 0, 0, 0, 0, 1, 2]);
        let pairs: Table<(u64, [u8; 2]), Rec> = Table::new(KeySpace::Merchant);
        assert_eq!(
            pairs.key(&(3, [4, 5])),
            [b'M', 0, 0, 0, 0, 0, 0, 0, 3, 4, 5]
        );
        let r = Rec {
            v: 2,
            name: "x".into(),
        };
        // postcard: the version byte first, then the string's length and bytes.
        assert_eq!(RECS.encode(&r), [2, 1, b'x']);
        assert_eq!(RECS.decode(&[2, 1, b'x']).expect("decodes"), r);
        assert_eq!(
            RECS.decode(&[1, b'o', b'k']).expect("upgrades").name,
            "ok".to_owned()
        );
        for bad in [&[][..], &[3, 1, b'x'], &[2, 5, b'x']] {
            assert!(matches!(
                RECS.decode(bad),
                Err(StoreError::Corrupt(Structure::Value(KeySpace::Merchant)))
            ));
        }
    }

    #[test]
    fn through_a_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(dir.path(), b"h", crate::StoreOptions::default()).expect("store");
        let r = Rec {
            v: 2,
            name: "a".into(),
        };
        store
            .write(move |tx| {
                assert!(RECS.insert_new(tx, &2, &r)?);
                assert!(!RECS.insert_new(tx, &2, &r)?);
                RECS.put(tx, &1, &r)?;
                assert_eq!(RECS.get_in(tx, &1)?.map(|r| r.name), Some("a".into()));
                tx.put_raw(&RECS.key(&3), vec![9])
            })
            .expect("write");
        assert_eq!(
            RECS.get(&store, &1).expect("get").map(|r| r.name),
            Some("a".into())
        );
        let all = RECS.scan(&store, usize::MAX).expect("scan");
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].0, 1u64.to_be_bytes());
        assert!(all[2].1.is_err());
        store.write(|tx| RECS.delete(tx, &1)).expect("delete");
        assert!(RECS.get(&store, &1).expect("get").is_none());
    }
}
