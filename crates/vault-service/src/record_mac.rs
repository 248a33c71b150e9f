//! MACs on the records that decide access: API keys (scopes, revocation), merchant password
//! hashes, terminals and one-click marks. Layout (version 2):
//!
//! ```text
//! value = body || HMAC-SHA256(mac_key("record-mac:<kind>"), kind byte || store key || body)
//! body  = postcard record whose first byte (its `v`) is 2
//! ```
//!
//! The MAC binds the record to its store key, so a record cannot be moved to another key id,
//! merchant or terminal, and each kind has its own derived key. A record whose MAC does not
//! verify is refused (`Integrity`; authentication fails closed).
//!
//! Records written before MACs (version 1) are migrated once, at open: in one commit every
//! version-1 record of these kinds gets its MAC and a MAC'd marker is stored. After that,
//! version-1 records are refused. If the marker is missing but MAC'd records exist (someone
//! deleted it), nothing is migrated: version-1 records stay refused.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use vault_core::SecretKey;

use crate::{Vault, VaultError};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The layout version of MAC'd records.
pub(crate) const MAC_VERSION: u8 = 2;
/// The layout version before MACs.
const OLD_VERSION: u8 = 1;
const MAC_LEN: usize = 32;
/// Store key of the "version-1 records were migrated" marker.
const MARKER_KEY: &[u8] = b"~record-macs";
const _: () = assert!(MARKER_KEY[0] == vault_store::KeySpace::Marker.byte());

/// Which kind of record (each has its own MAC key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// `K` + key id.
    ApiKey,
    /// `P` + merchant id.
    Password,
    /// `T` + terminal id.
    Terminal,
    /// `O` + token lookup id: the card may be paid without a CVV.
    OneClick,
}

impl RecordKind {
    const ALL: [RecordKind; 4] = [Self::ApiKey, Self::Password, Self::Terminal, Self::OneClick];

    fn label(self) -> &'static str {
        match self {
            Self::ApiKey => "record-mac:api-key",
            Self::Password => "record-mac:password",
            Self::Terminal => "record-mac:terminal",
            Self::OneClick => "record-mac:one-click",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::ApiKey => vault_store::KeySpace::ApiKey.byte(),
            Self::Password => vault_store::KeySpace::Password.byte(),
            Self::Terminal => vault_store::KeySpace::Terminal.byte(),
            Self::OneClick => vault_store::KeySpace::OneClick.byte(),
        }
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
            &self.record_mac_key(RecordKind::ApiKey),
            RecordKind::ApiKey,
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
        for kind in RecordKind::ALL {
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
                for (k, v) in writes {
                    tx.put_raw(&k, v)?;
                }
                Ok(())
            })?;
        Ok(n)
    }
}
