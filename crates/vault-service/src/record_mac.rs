//! MACs on the records that decide access: API keys (scopes, revocation), per-token marks, and
//! the records a layer above declares ([`RecordKind::new`]). Layout (version 2):
//!
//! ```text
//! value = body || HMAC-SHA256(mac_key("record-mac:<kind>"), kind byte || store key || body)
//! body  = postcard record whose first byte (its `v`) is 2
//! ```
//!
//! The MAC binds the record to its store key, so a record cannot be moved to another key id or
//! owner, and each kind has its own derived key. A record whose MAC does not
//! verify is refused (`Integrity`; authentication fails closed).
//!
//! Records written before MACs (version 1) are migrated once, at open: in one commit every
//! version-1 record of these kinds gets its MAC and a MAC'd marker is stored. After that,
//! version-1 records are refused. If the marker is missing but MAC'd records exist (someone
//! deleted it), nothing is migrated: version-1 records stay refused.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use vault_core::SecretKey;
use vault_store::{Codec, Table, TableKey};

use crate::{Vault, VaultError};

use crate::HmacSha256;

/// The layout version of MAC'd records.
pub(crate) const MAC_VERSION: u8 = 2;
/// The layout version before MACs.
const OLD_VERSION: u8 = 1;
const MAC_LEN: usize = 32;
/// Store key of the "version-1 records were migrated" marker.
const MARKER_KEY: &[u8] = b"~record-macs";
const _: () = assert!(MARKER_KEY[0] == vault_store::KeySpace::Marker.byte());

/// A kind of MAC'd record (each has its own MAC key): its store-key prefix and the label its
/// MAC key is derived under. The vault's are API keys (`K`) and per-token marks (`O`); a layer
/// above declares its own ([`RecordKind::new`]) and seals and opens them with
/// [`Vault::record_mac`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordKind {
    prefix: u8,
    label: &'static str,
}

impl RecordKind {
    /// `K` + key id.
    pub(crate) const API_KEY: Self =
        Self::new(vault_store::KeySpace::ApiKey.byte(), "record-mac:api-key");
    /// `O` + token lookup id: a per-token mark (see `txn.rs`). Its MAC label is the one the
    /// marks were first written under (the on-disk format).
    pub(crate) const TOKEN_MARK: Self = Self::new(
        vault_store::KeySpace::OneClick.byte(),
        "record-mac:one-click",
    );

    /// A kind stored under keys starting with `prefix`, its MAC key derived under `label`.
    pub const fn new(prefix: u8, label: &'static str) -> Self {
        Self { prefix, label }
    }

    pub(crate) fn label(self) -> &'static str {
        self.label
    }

    fn byte(self) -> u8 {
        self.prefix
    }
}

/// One record kind's MAC key, to seal and open records of that kind (in or outside a job).
pub struct RecordMac {
    key: SecretKey,
    kind: RecordKind,
}

impl RecordMac {
    /// `body` (a postcard record whose first byte, its version, is 2) with its MAC, bound to
    /// `store_key`.
    pub fn seal(&self, store_key: &[u8], body: Vec<u8>) -> Vec<u8> {
        seal_with(&self.key, self.kind, store_key, body)
    }

    /// The body of `value` stored under `store_key` once its MAC verifies; `Integrity` otherwise.
    pub fn open<'a>(&self, store_key: &[u8], value: &'a [u8]) -> Result<&'a [u8], VaultError> {
        open_with(&self.key, self.kind, store_key, value)
    }

    /// `value` of `table` under `key`, encoded and sealed (see [`seal`](Self::seal)): the stored
    /// bytes.
    pub fn seal_in<K: TableKey + ?Sized, V: Codec>(
        &self,
        table: &Table<K, V>,
        key: &K,
        value: &V,
    ) -> Vec<u8> {
        self.seal(&table.key(key), table.encode(value))
    }

    /// The value of `table` stored under `key` as `stored`: its MAC is checked on the stored
    /// bytes first (`Integrity` when it does not verify), and only then is the body decoded (a
    /// body that does not decode is the table's corrupt value).
    pub fn open_in<K: TableKey + ?Sized, V: Codec>(
        &self,
        table: &Table<K, V>,
        key: &K,
        stored: &[u8],
    ) -> Result<V, VaultError> {
        let body = self.open(&table.key(key), stored)?;
        Ok(table.decode(body)?)
    }
}

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordMac")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn record_mac(key: &SecretKey, kind: RecordKind, store_key: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key.expose()).expect("HMAC takes any key");
    mac.update(&[kind.byte()]);
    mac.update(
        &u64::try_from(store_key.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    mac.update(store_key);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// `body` (a version-2 postcard record) with its MAC under `key` (from
/// [`Vault::record_mac_key`]) appended.
pub(crate) fn seal_with(
    key: &SecretKey,
    kind: RecordKind,
    store_key: &[u8],
    mut body: Vec<u8>,
) -> Vec<u8> {
    let mac = record_mac(key, kind, store_key, &body);
    body.extend_from_slice(&mac);
    body
}

/// The body of a stored record after its MAC verified; `Integrity` for a bad MAC, a version-1
/// record (migrated at open, so one now is an injected or rolled-back record) or an unknown
/// version.
pub(crate) fn open_with<'a>(
    key: &SecretKey,
    kind: RecordKind,
    store_key: &[u8],
    value: &'a [u8],
) -> Result<&'a [u8], VaultError> {
    if value.first() != Some(&MAC_VERSION) || value.len() < 1 + MAC_LEN {
        return Err(VaultError::Integrity);
    }
    let (body, mac) = value.split_at(value.len() - MAC_LEN);
    let want = record_mac(key, kind, store_key, body);
    if bool::from(want.ct_eq(mac)) {
        Ok(body)
    } else {
        Err(VaultError::Integrity)
    }
}

impl Vault {
    /// The MAC key of `kind`'s records, to seal and open them.
    pub fn record_mac(&self, kind: RecordKind) -> RecordMac {
        RecordMac {
            key: self.record_mac_key(kind),
            kind,
        }
    }

    /// The MAC key of one record kind (for write jobs, which must not hold the vault).
    pub(crate) fn record_mac_key(&self, kind: RecordKind) -> SecretKey {
        self.inner.keyring.read().mac_key(kind.label())
    }

    /// [`seal_with`] under this vault's key for `kind`.
    pub(crate) fn seal_record(&self, kind: RecordKind, store_key: &[u8], body: Vec<u8>) -> Vec<u8> {
        seal_with(&self.record_mac_key(kind), kind, store_key, body)
    }

    /// [`open_with`] under this vault's key for `kind`.
    pub(crate) fn open_record<'a>(
        &self,
        kind: RecordKind,
        store_key: &[u8],
        value: &'a [u8],
    ) -> Result<&'a [u8], VaultError> {
        open_with(&self.record_mac_key(kind), kind, store_key, value)
    }

    fn marker_mac(&self) -> [u8; MAC_LEN] {
        record_mac(
            &self.record_mac_key(RecordKind::API_KEY),
            RecordKind::API_KEY,
            MARKER_KEY,
            b"migrated",
        )
    }

    /// Adds MACs to version-1 records (once; see the module docs). Returns how many records
    /// were migrated.
    pub(crate) fn migrate_record_macs(&self) -> Result<usize, VaultError> {
        let marker = self.marker_mac();
        if let Some(v) = self.inner.store.get_raw(MARKER_KEY)? {
            return if bool::from(v.as_slice().ct_eq(&marker)) {
                Ok(0)
            } else {
                Err(VaultError::Integrity)
            };
        }
        let mut old = Vec::new();
        // Every kind written before MACs existed, the vault's and the layers' above, as the
        // key-space registry lists them with their labels.
        let migrated = vault_store::KeySpace::ALL.into_iter().filter_map(|k| {
            k.legacy_mac_label()
                .map(|label| RecordKind::new(k.byte(), label))
        });
        for kind in migrated {
            for (k, v) in self.inner.store.scan_raw(&[kind.byte()], usize::MAX)? {
                match v.first() {
                    Some(&OLD_VERSION) => old.push((kind, k, v)),
                    // A MAC'd record but no marker: the marker was removed. Migrate nothing.
                    Some(&MAC_VERSION) => return Ok(0),
                    _ => {}
                }
            }
        }
        if old.is_empty() {
            // Nothing written before MACs (a new vault): no commit at open.
            return Ok(0);
        }
        let mut writes = Vec::with_capacity(old.len() + 1);
        for (kind, k, mut v) in old {
            v[0] = MAC_VERSION;
            let sealed = self.seal_record(kind, &k, v);
            writes.push((k, sealed));
        }
        let n = writes.len();
        writes.push((MARKER_KEY.to_vec(), marker.to_vec()));
        self.inner
            .store
            .write(move |tx| -> Result<(), VaultError> {
                for (k, v) in &writes {
                    tx.put_raw(k, v.clone())?;
                }
                Ok(())
            })?;
        Ok(n)
    }
}
