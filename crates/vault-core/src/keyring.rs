//! The unlocked keys of a vault, held in memory for the life of the process.

use std::collections::BTreeMap;
use std::fmt;

use subtle::ConstantTimeEq;

use crate::aead::RecordKey;
use crate::fingerprint::hmac_sha256;
use crate::{FingerprintKey, Kek, LookupKey, MerchantId, SecretKey};

const LABEL_FINGERPRINT: &[u8] = b"cardvault/v1/fingerprint";
const LABEL_TOKEN_LOOKUP: &[u8] = b"cardvault/v1/token-lookup";
/// Prefix of [`Keyring::mac_key`] labels. The extra `mac/` segment keeps caller-chosen labels
/// from ever producing the same HMAC input as the fingerprint or token-lookup derivations.
const LABEL_MAC_PREFIX: &[u8] = b"cardvault/v1/mac/";
/// Input of a data key's check value ([`DekStamp`]).
const LABEL_DEK_CHECK: &[u8] = b"cardvault/v1/dek-check";

/// The unlocked key hierarchy: the KEK, every data key (each with its XAES-256-GCM key schedule
/// ready), which DEK is current, and the MAC root with the keys derived from it.
///
/// Obtained from [`KeyHeader::create`](crate::KeyHeader::create) or
/// [`KeyHeader::unlock`](crate::KeyHeader::unlock). Everything secret in it is zeroized on drop.
/// `Send + Sync`, so one keyring can be shared by all request handlers; no `Clone`, and `Debug`
/// shows only ids.
pub struct Keyring {
    vault_id: [u8; 16],
    kek: Kek,
    current: DekId,
    deks: BTreeMap<DekId, Dek>,
    mac_root: SecretKey,
    lookup: LookupKey,
}

struct Dek {
    /// Kept for re-wrapping under a new KEK.
    key: SecretKey,
    cipher: RecordKey,
    check: [u8; DEK_CHECK_LEN],
}

impl Dek {
    fn new(key: SecretKey) -> Self {
        let cipher = RecordKey::new(key.expose());
        let mut check = [0; DEK_CHECK_LEN];
        check.copy_from_slice(&hmac_sha256(key.expose(), &[LABEL_DEK_CHECK])[..DEK_CHECK_LEN]);
        Self { key, cipher, check }
    }
}

impl Keyring {
    pub(crate) fn new(
        vault_id: [u8; 16],
        kek: Kek,
        mac_root: SecretKey,
        current: DekId,
        deks: Vec<(DekId, SecretKey)>,
    ) -> Self {
        let lookup = LookupKey::new(&hmac_sha256(mac_root.expose(), &[LABEL_TOKEN_LOOKUP]));
        let deks = deks
            .into_iter()
            .map(|(id, key)| (id, Dek::new(key)))
            .collect();
        Self {
            vault_id,
            kek,
            current,
            deks,
            mac_root,
            lookup,
        }
    }

    /// The DEK that seals new records.
    pub fn current_dek(&self) -> DekId {
        self.current
    }

    /// Exactly which key seals new records: the current DEK's id and a check value of its
    /// material. Compare it with the stamp taken when a record was sealed to know whether the
    /// record is still sealed under the current key: on a vault shared by several daemons, two
    /// daemons rotating at once each make a key with the same next id, and only one of them
    /// reaches the stored header, so the id alone does not say which key it is.
    pub fn current_stamp(&self) -> DekStamp {
        self.stamp(self.current).expect(
            "the current DEK is always in the keyring (set together by create/unlock/rotate)",
        )
    }

    /// The stamp of the key this keyring holds under `id`, if it holds one.
    pub fn stamp(&self, id: DekId) -> Option<DekStamp> {
        self.deks.get(&id).map(|dek| DekStamp {
            id,
            check: dek.check,
        })
    }

    /// Whether this keyring can open records sealed under `id`.
    pub fn has_dek(&self, id: DekId) -> bool {
        self.deks.contains_key(&id)
    }

    /// Makes `id` the DEK that seals new records again (for example to roll back a rotation whose
    /// header never became durable). Fails with `UnknownDek` if this keyring does not hold it.
    pub fn set_current(&mut self, id: DekId) -> Result<(), crate::KeyError> {
        if !self.deks.contains_key(&id) {
            return Err(crate::KeyError::UnknownDek(id.get()));
        }
        self.current = id;
        Ok(())
    }

    /// The fingerprint key of `merchant`:
    /// `HMAC-SHA256(mac_root, "cardvault/v1/fingerprint" || merchant u64 BE)`.
    ///
    /// One key per merchant, so the same card has unrelated fingerprints at two merchants.
    pub fn fingerprint_key(&self, merchant: MerchantId) -> FingerprintKey {
        let key = SecretKey::from_bytes(hmac_sha256(
            self.mac_root.expose(),
            &[LABEL_FINGERPRINT, &merchant.get().to_be_bytes()],
        ));
        FingerprintKey::new(key.expose())
    }

    /// The token-lookup key, `HMAC-SHA256(mac_root, "cardvault/v1/token-lookup")`, derived once.
    pub fn lookup_key(&self) -> &LookupKey {
        &self.lookup
    }

    /// A 256-bit MAC key for another purpose, named by `label` (for example
    /// `"idempotency"`): `HMAC-SHA256(mac_root, "cardvault/v1/mac/" || label)`.
    ///
    /// Different labels give independent keys; use a fixed, distinct label per purpose.
    pub fn mac_key(&self, label: &str) -> SecretKey {
        SecretKey::from_bytes(hmac_sha256(
            self.mac_root.expose(),
            &[LABEL_MAC_PREFIX, label.as_bytes()],
        ))
    }

    /// A second, independent copy of every key, for putting the keyring back after a key
    /// operation (rotate, retire, re-key) whose header never became durable. Named, not `Clone`,
    /// so every copy of key material is visible in review; the copy is zeroized on drop too.
    pub fn duplicate(&self) -> Self {
        Self::new(
            self.vault_id,
            Kek::from_key_file(&SecretKey::from_bytes(*self.kek.expose())),
            self.mac_root.duplicate(),
            self.current,
            self.deks
                .iter()
                .map(|(id, dek)| (*id, dek.key.duplicate()))
                .collect(),
        )
    }

    pub(crate) fn vault_id(&self) -> &[u8; 16] {
        &self.vault_id
    }

    pub(crate) fn kek(&self) -> &Kek {
        &self.kek
    }

    pub(crate) fn mac_root(&self) -> &SecretKey {
        &self.mac_root
    }

    pub(crate) fn dek_key(&self, id: DekId) -> Option<&SecretKey> {
        self.deks.get(&id).map(|d| &d.key)
    }

    pub(crate) fn cipher(&self, id: DekId) -> Option<&RecordKey> {
        self.deks.get(&id).map(|d| &d.cipher)
    }

    pub(crate) fn current_cipher(&self) -> (DekId, &RecordKey) {
        let dek = self.deks.get(&self.current).expect(
            "the current DEK is always in the keyring (set together by create/unlock/rotate)",
        );
        (self.current, &dek.cipher)
    }

    pub(crate) fn add_current_dek(&mut self, id: DekId, key: SecretKey) {
        self.deks.insert(id, Dek::new(key));
        self.current = id;
    }

    pub(crate) fn remove_dek(&mut self, id: DekId) {
        self.deks.remove(&id);
    }

    pub(crate) fn replace_kek(&mut self, kek: Kek) {
        self.kek = kek;
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u32> = self.deks.keys().map(|id| id.get()).collect();
        f.debug_struct("Keyring")
            .field("vault_id", &hex::encode(self.vault_id))
            .field("current_dek", &self.current.get())
            .field("deks", &ids)
            .finish_non_exhaustive()
    }
}

/// The keyring is shared across request handlers.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Keyring>();
};

/// Length of a [`DekStamp`]'s check value.
const DEK_CHECK_LEN: usize = 16;

/// One data key exactly ([`Keyring::current_stamp`]): its id and a key check value,
/// `HMAC-SHA256(dek, "cardvault/v1/dek-check")` truncated to 128 bits. Two keyrings have equal
/// stamps for an id only if they hold the same key under it: a keyring unlocked from the stored
/// header again, or a [`Keyring::duplicate`], keeps its stamps. The check value is one-way (it
/// reveals nothing of the key) and lives in memory only; `Debug` shows the id alone.
#[derive(Clone, Copy)]
pub struct DekStamp {
    id: DekId,
    check: [u8; DEK_CHECK_LEN],
}

impl DekStamp {
    /// The key's id.
    pub fn id(&self) -> DekId {
        self.id
    }
}

impl PartialEq for DekStamp {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && bool::from(self.check.ct_eq(&other.check))
    }
}

impl Eq for DekStamp {}

impl fmt::Debug for DekStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DekStamp")
            .field("id", &self.id.get())
            .finish_non_exhaustive()
    }
}

/// Identifies a data key. Ids start at 1 and only grow; each sealed record names the DEK that
/// sealed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DekId(pub(crate) u32);

impl DekId {
    /// Wraps a raw id.
    pub fn new(id: u32) -> Self {
        Self(id)
    }

    /// The raw id.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for DekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(
            [1; 16],
            Kek::from_key_file(&SecretKey::from_bytes([2; 32])),
            SecretKey::from_bytes([3; 32]),
            DekId::new(1),
            vec![(DekId::new(1), SecretKey::from_bytes([4; 32]))],
        )
    }

    #[test]
    fn derived_keys_follow_the_documented_formulas() {
        let k = keyring();
        let root = [3u8; 32];
        assert_eq!(
            k.mac_key("idempotency").expose(),
            &hmac_sha256(&root, &[b"cardvault/v1/mac/idempotency"])
        );
        let token = crate::Token::from_bytes([9; 24]);
        let lookup = LookupKey::new(&hmac_sha256(&root, &[b"cardvault/v1/token-lookup"]));
        assert_eq!(k.lookup_key().lookup(&token), lookup.lookup(&token));
        assert_ne!(k.mac_key("a").expose(), k.mac_key("b").expose());
        // `mac_key` cannot be made to return the lookup key.
        assert_ne!(
            k.mac_key("token-lookup").expose(),
            &hmac_sha256(&root, &[b"cardvault/v1/token-lookup"])
        );
    }

    #[test]
    fn debug_shows_only_ids() {
        let dbg = format!("{:?}", keyring());
        assert!(dbg.contains("current_dek: 1"), "{dbg}");
        assert!(
            !dbg.contains("[2, 2") && !dbg.contains("0303") && !dbg.contains("0404"),
            "{dbg}"
        );
    }
}
