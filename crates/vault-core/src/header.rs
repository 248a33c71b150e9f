//! The key header: the public, serialisable half of the key hierarchy.
//!
//! It holds what is needed to re-derive the KEK (Argon2id salt and parameters, or nothing for a
//! key file), a key-check value that tells a wrong passphrase from a corrupt header, the wrapped
//! MAC root key and the wrapped data keys (DEKs). Nothing in it is secret; it must only be
//! protected against loss. The byte layout is specified in `docs/record-format.md`.
//!
//! Wrapping is AES-256-GCM with random 96-bit nonces under a key derived from the KEK. Only a
//! handful of wraps ever happen under one KEK (one per DEK and one for the MAC root, redone on a
//! rekey, which also changes the KEK), far below the 2^32 messages NIST SP 800-38D allows with
//! random nonces.

use std::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::aead::{TAG_LEN, WRAP_NONCE_LEN, WrapKey};
use crate::fingerprint::hmac_sha256;
use crate::{DecodeError, DekId, KdfParams, Kek, KeyError, KeySource, Keyring, SecretKey};

/// Version of the key header layout written by this build (also bound into every wrap's AAD).
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: &[u8; 4] = b"CVKH";
const VAULT_ID_LEN: usize = 16;
const CHECK_LEN: usize = 32;
const HEADER_MAC_LEN: usize = 32;
/// nonce || wrapped 32-byte key || tag
const WRAPPED_LEN: usize = WRAP_NONCE_LEN + SecretKey::LEN + TAG_LEN;
/// id || created_at || wrapped key
const DEK_ENTRY_LEN: usize = 4 + 8 + WRAPPED_LEN;
/// At most this many DEKs (the count is a `u16` on disk).
const MAX_DEKS: usize = u16::MAX as usize;

const KIND_PASSPHRASE: u8 = 1;
const KIND_KEY_FILE: u8 = 2;

const LABEL_KEY_CHECK: &[u8] = b"cardvault/v1/key-check";
const LABEL_WRAP_KEY: &[u8] = b"cardvault/v1/key-wrap";
const LABEL_HEADER_MAC: &[u8] = b"cardvault/v1/header-mac";
const LABEL_DEK_WRAP: &[u8] = b"cardvault/v1/dek-wrap";
const LABEL_MAC_ROOT_WRAP: &[u8] = b"cardvault/v1/mac-root-wrap";

/// What a data key is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DekState {
    /// Seals new records (exactly one DEK is current).
    Current,
    /// Opens records sealed before a rotation; seals nothing new.
    DecryptOnly,
}

/// How the KEK is obtained.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KdfSpec {
    Passphrase {
        salt: [u8; Kek::SALT_LEN],
        params: KdfParams,
    },
    KeyFile,
}

impl KdfSpec {
    fn kind(self) -> u8 {
        match self {
            Self::Passphrase { .. } => KIND_PASSPHRASE,
            Self::KeyFile => KIND_KEY_FILE,
        }
    }
}

#[derive(Clone)]
struct WrappedDek {
    id: DekId,
    /// Unix seconds; always representable as an `OffsetDateTime` (checked on decode, clamped on
    /// creation).
    created_at: i64,
    wrapped: [u8; WRAPPED_LEN],
}

/// The vault's key header. Public data only (wrapped keys, salt, parameters, a key-check value);
/// `Debug` shows ids and parameters, not the wrapped bytes.
#[derive(Clone)]
pub struct KeyHeader {
    vault_id: [u8; VAULT_ID_LEN],
    kdf: KdfSpec,
    check: [u8; CHECK_LEN],
    mac_root: [u8; WRAPPED_LEN],
    current: DekId,
    /// Sorted by id, strictly increasing; the last one is the current DEK.
    deks: Vec<WrappedDek>,
    /// HMAC over every preceding encoded byte, under a key derived from the KEK.
    mac: [u8; HEADER_MAC_LEN],
}

impl KeyHeader {
    /// Creates a new vault's keys: a random vault id, a KEK from `source` (a fresh salt and
    /// `params` for a passphrase; `params` is ignored for a key file), a random MAC root and a
    /// first random DEK with id 1.
    pub fn create<R: CryptoRng + ?Sized>(
        source: &KeySource,
        params: KdfParams,
        rng: &mut R,
        now: OffsetDateTime,
    ) -> Result<(KeyHeader, Keyring), KeyError> {
        let mut vault_id = [0u8; VAULT_ID_LEN];
        rng.fill_bytes(&mut vault_id);
        let (kdf, kek) = new_kek(source, params, rng)?;
        let mac_root = SecretKey::generate(rng);
        let first = DekId(1);
        let dek = SecretKey::generate(rng);
        let mut header = KeyHeader {
            vault_id,
            kdf,
            check: [0; CHECK_LEN],
            mac_root: [0; WRAPPED_LEN],
            current: first,
            deks: vec![WrappedDek {
                id: first,
                created_at: unix_seconds(now),
                wrapped: [0; WRAPPED_LEN],
            }],
            mac: [0; HEADER_MAC_LEN],
        };
        header.wrap_all(&kek, &mac_root, |_| Some(&dek), rng)?;
        let keyring = Keyring::new(vault_id, kek, mac_root, first, vec![(first, dek)]);
        Ok((header, keyring))
    }

    /// Unlocks the header with `source`.
    ///
    /// # Errors
    /// - [`KeyError::WrongKeyKind`] if the vault uses the other kind of key;
    /// - [`KeyError::WrongKey`] if the key-check value does not match (wrong passphrase or key
    ///   file, or altered KDF fields);
    /// - [`KeyError::CorruptHeader`] if the check passes but the header MAC or an unwrap fails;
    /// - [`KeyError::Kdf`] / [`KeyError::KdfParams`] if Argon2id refuses.
    pub fn unlock(&self, source: &KeySource) -> Result<Keyring, KeyError> {
        let kek = match (self.kdf, source) {
            (KdfSpec::Passphrase { salt, params }, KeySource::Passphrase(p)) => {
                Kek::derive(p, &salt, params)?
            }
            (KdfSpec::KeyFile, KeySource::KeyFile(k)) => Kek::from_key_file(k),
            _ => return Err(KeyError::WrongKeyKind),
        };
        self.open_with(kek)
    }

    /// Unlocks this header with the key-encryption key an already unlocked `keyring` of the
    /// same vault holds, without the passphrase or key file (and without Argon2id): for a
    /// process that must follow a header another process changed (a rotation, a retirement) on
    /// a vault they share. A header re-keyed since under another passphrase or key file does not
    /// open this way ([`KeyError::WrongKey`]): the process needs the new key.
    pub fn unlock_with(&self, keyring: &Keyring) -> Result<Keyring, KeyError> {
        if keyring.vault_id() != &self.vault_id {
            return Err(KeyError::WrongKey);
        }
        self.open_with(keyring.kek().duplicate())
    }

    fn open_with(&self, kek: Kek) -> Result<Keyring, KeyError> {
        if !bool::from(key_check(&kek, &self.vault_id).ct_eq(&self.check)) {
            return Err(KeyError::WrongKey);
        }
        if !bool::from(self.compute_mac(&kek).ct_eq(&self.mac)) {
            return Err(KeyError::CorruptHeader);
        }
        let wrap_key = wrap_key(&kek);
        let mac_root = unwrap(&wrap_key, &self.mac_root_aad(), &self.mac_root)?;
        let deks = self
            .deks
            .iter()
            .map(|d| Ok((d.id, unwrap(&wrap_key, &self.dek_aad(d), &d.wrapped)?)))
            .collect::<Result<Vec<_>, KeyError>>()?;
        Ok(Keyring::new(
            self.vault_id,
            kek,
            mac_root,
            self.current,
            deks,
        ))
    }

    /// Adds a fresh random DEK with the next id, makes it current in both the header and
    /// `keyring`, and returns its id. Earlier DEKs become decrypt-only.
    ///
    /// # Panics
    /// If `keyring` was not unlocked from this vault, or if the header already holds 65 535 DEKs
    /// (retire old ones first).
    pub fn rotate<R: CryptoRng + ?Sized>(
        &mut self,
        keyring: &mut Keyring,
        rng: &mut R,
        now: OffsetDateTime,
    ) -> DekId {
        assert!(
            keyring.vault_id() == &self.vault_id,
            "keyring belongs to another vault"
        );
        assert!(
            self.deks.len() < MAX_DEKS,
            "too many data keys; retire old ones first"
        );
        // The current DEK always has the highest id (checked on decode), so this never reuses the
        // id of a retired key.
        let id = DekId(
            self.current
                .0
                .checked_add(1)
                .expect("fewer than 2^32 rotations"),
        );
        let dek = SecretKey::generate(rng);
        let mut entry = WrappedDek {
            id,
            created_at: unix_seconds(now),
            wrapped: [0; WRAPPED_LEN],
        };
        entry.wrapped = wrap(&wrap_key(keyring.kek()), &self.dek_aad(&entry), &dek, rng);
        self.deks.push(entry);
        self.current = id;
        self.mac = self.compute_mac(keyring.kek());
        keyring.add_current_dek(id, dek);
        id
    }

    /// Removes a decrypt-only DEK from the header and the keyring. The caller must first make sure
    /// no stored record is still sealed under it (see [`sealed_dek_id`](crate::sealed_dek_id)).
    ///
    /// # Errors
    /// [`KeyError::DekInUse`] for the current DEK, [`KeyError::UnknownDek`] for an absent id.
    ///
    /// # Panics
    /// If `keyring` was not unlocked from this vault.
    pub fn retire(&mut self, keyring: &mut Keyring, id: DekId) -> Result<(), KeyError> {
        assert!(
            keyring.vault_id() == &self.vault_id,
            "keyring belongs to another vault"
        );
        if id == self.current {
            return Err(KeyError::DekInUse(id.0));
        }
        let pos = self
            .deks
            .iter()
            .position(|d| d.id == id)
            .ok_or(KeyError::UnknownDek(id.0))?;
        self.deks.remove(pos);
        self.mac = self.compute_mac(keyring.kek());
        keyring.remove_dek(id);
        Ok(())
    }

    /// Changes the passphrase or key file (or switches between them): a new salt and KEK, a new
    /// key-check value, and the MAC root and every DEK re-wrapped. Records are untouched. On error
    /// neither the header nor the keyring changes.
    ///
    /// # Panics
    /// If `keyring` was not unlocked from this vault.
    pub fn rekey<R: CryptoRng + ?Sized>(
        &mut self,
        keyring: &mut Keyring,
        new_source: &KeySource,
        params: KdfParams,
        rng: &mut R,
    ) -> Result<(), KeyError> {
        assert!(
            keyring.vault_id() == &self.vault_id,
            "keyring belongs to another vault"
        );
        let (kdf, kek) = new_kek(new_source, params, rng)?;
        let mut next = self.clone();
        next.kdf = kdf;
        next.wrap_all(&kek, keyring.mac_root(), |id| keyring.dek_key(id), rng)?;
        *self = next;
        keyring.replace_kek(kek);
        Ok(())
    }

    /// The random id of this vault.
    pub fn vault_id(&self) -> [u8; 16] {
        self.vault_id
    }

    /// The DEK that seals new records.
    pub fn current_dek(&self) -> DekId {
        self.current
    }

    /// Every DEK with its state and creation time, by increasing id.
    pub fn deks(&self) -> Vec<(DekId, DekState, OffsetDateTime)> {
        self.deks
            .iter()
            .map(|d| {
                let state = if d.id == self.current {
                    DekState::Current
                } else {
                    DekState::DecryptOnly
                };
                let created = OffsetDateTime::from_unix_timestamp(d.created_at)
                    .expect("created_at is range-checked on decode and clamped on creation");
                (d.id, state, created)
            })
            .collect()
    }

    /// The Argon2id parameters, for a passphrase vault.
    pub fn kdf_params(&self) -> Option<KdfParams> {
        match self.kdf {
            KdfSpec::Passphrase { params, .. } => Some(params),
            KdfSpec::KeyFile => None,
        }
    }

    /// Whether the vault is unlocked with a passphrase (rather than a key file).
    pub fn is_passphrase(&self) -> bool {
        matches!(self.kdf, KdfSpec::Passphrase { .. })
    }

    /// The header's bytes (layout in `docs/record-format.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_body();
        out.extend_from_slice(&self.mac);
        out
    }

    /// Parses a header. Never panics; refuses newer versions, out-of-range Argon2id parameters
    /// (before anything is allocated for them), malformed DEK lists and trailing bytes. The MAC
    /// and key check are verified later, by [`unlock`](Self::unlock).
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyError> {
        let mut r = Reader(bytes);
        if r.array::<4>()? != *MAGIC {
            return Err(DecodeError::Invalid("key header magic").into());
        }
        match r.u16()? {
            FORMAT_VERSION => {}
            0 => return Err(DecodeError::Invalid("key header version").into()),
            v => return Err(DecodeError::UnsupportedVersion(v).into()),
        }
        let vault_id = r.array()?;
        let kdf = match r.u8()? {
            KIND_PASSPHRASE => {
                let salt = r.array()?;
                let params = KdfParams::new(r.u32()?, r.u32()?, r.u32()?)?;
                KdfSpec::Passphrase { salt, params }
            }
            KIND_KEY_FILE => KdfSpec::KeyFile,
            _ => return Err(DecodeError::Invalid("key kind").into()),
        };
        let check = r.array()?;
        let mac_root = r.array()?;
        let current = DekId(r.u32()?);
        let count = usize::from(r.u16()?);
        if count == 0 {
            return Err(DecodeError::Invalid("data key count").into());
        }
        if r.0.len() < count * DEK_ENTRY_LEN {
            return Err(DecodeError::Truncated.into());
        }
        let mut deks: Vec<WrappedDek> = Vec::with_capacity(count);
        for _ in 0..count {
            let id = DekId(r.u32()?);
            let created_at = r.i64()?;
            let wrapped = r.array()?;
            if id.0 == 0 || deks.last().is_some_and(|prev| prev.id >= id) {
                return Err(DecodeError::Invalid("data key ids").into());
            }
            if OffsetDateTime::from_unix_timestamp(created_at).is_err() {
                return Err(DecodeError::Invalid("data key creation time").into());
            }
            deks.push(WrappedDek {
                id,
                created_at,
                wrapped,
            });
        }
        if deks.last().map(|d| d.id) != Some(current) {
            return Err(DecodeError::Invalid("current data key").into());
        }
        let mac = r.array()?;
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes.into());
        }
        Ok(Self {
            vault_id,
            kdf,
            check,
            mac_root,
            current,
            deks,
            mac,
        })
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.deks.len() * DEK_ENTRY_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.vault_id);
        out.push(self.kdf.kind());
        if let KdfSpec::Passphrase { salt, params } = self.kdf {
            out.extend_from_slice(&salt);
            out.extend_from_slice(&params.m_cost_kib.to_be_bytes());
            out.extend_from_slice(&params.t_cost.to_be_bytes());
            out.extend_from_slice(&params.p_cost.to_be_bytes());
        }
        out.extend_from_slice(&self.check);
        out.extend_from_slice(&self.mac_root);
        out.extend_from_slice(&self.current.0.to_be_bytes());
        let count =
            u16::try_from(self.deks.len()).expect("at most MAX_DEKS data keys (rotate checks)");
        out.extend_from_slice(&count.to_be_bytes());
        for d in &self.deks {
            out.extend_from_slice(&d.id.0.to_be_bytes());
            out.extend_from_slice(&d.created_at.to_be_bytes());
            out.extend_from_slice(&d.wrapped);
        }
        out
    }

    fn compute_mac(&self, kek: &Kek) -> [u8; HEADER_MAC_LEN] {
        let key = hmac_sha256(kek.expose(), &[LABEL_HEADER_MAC]);
        hmac_sha256(&key, &[&self.encode_body()])
    }

    /// Sets the key check, wraps the MAC root and every DEK (fresh nonces) under `kek`, then
    /// recomputes the header MAC. `dek_key` supplies the plaintext DEK for each id.
    fn wrap_all<'k, R: CryptoRng + ?Sized>(
        &mut self,
        kek: &Kek,
        mac_root: &SecretKey,
        dek_key: impl Fn(DekId) -> Option<&'k SecretKey>,
        rng: &mut R,
    ) -> Result<(), KeyError> {
        let wrap_key = wrap_key(kek);
        self.check = key_check(kek, &self.vault_id);
        self.mac_root = wrap(&wrap_key, &self.mac_root_aad(), mac_root, rng);
        for i in 0..self.deks.len() {
            let id = self.deks[i].id;
            let key = dek_key(id).ok_or(KeyError::UnknownDek(id.0))?;
            let wrapped = wrap(&wrap_key, &self.dek_aad(&self.deks[i]), key, rng);
            self.deks[i].wrapped = wrapped;
        }
        self.mac = self.compute_mac(kek);
        Ok(())
    }

    /// `"cardvault/v1/mac-root-wrap" || version u16 || vault id || key kind`
    fn mac_root_aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(LABEL_MAC_ROOT_WRAP);
        aad.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        aad.extend_from_slice(&self.vault_id);
        aad.push(self.kdf.kind());
        aad
    }

    /// `"cardvault/v1/dek-wrap" || version u16 || vault id || key kind || id u32 || created_at i64`
    fn dek_aad(&self, dek: &WrappedDek) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(LABEL_DEK_WRAP);
        aad.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        aad.extend_from_slice(&self.vault_id);
        aad.push(self.kdf.kind());
        aad.extend_from_slice(&dek.id.0.to_be_bytes());
        aad.extend_from_slice(&dek.created_at.to_be_bytes());
        aad
    }
}

impl fmt::Debug for KeyHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u32> = self.deks.iter().map(|d| d.id.0).collect();
        f.debug_struct("KeyHeader")
            .field("version", &FORMAT_VERSION)
            .field("vault_id", &hex::encode(self.vault_id))
            .field("kdf_params", &self.kdf_params())
            .field("current_dek", &self.current.0)
            .field("deks", &ids)
            .finish_non_exhaustive()
    }
}

/// A fresh KEK for `source`: a new random salt and validated parameters for a passphrase.
fn new_kek<R: CryptoRng + ?Sized>(
    source: &KeySource,
    params: KdfParams,
    rng: &mut R,
) -> Result<(KdfSpec, Kek), KeyError> {
    match source {
        KeySource::Passphrase(p) => {
            let params = params.checked()?;
            let mut salt = [0u8; Kek::SALT_LEN];
            rng.fill_bytes(&mut salt);
            let kek = Kek::derive(p, &salt, params)?;
            Ok((KdfSpec::Passphrase { salt, params }, kek))
        }
        KeySource::KeyFile(k) => Ok((KdfSpec::KeyFile, Kek::from_key_file(k))),
    }
}

/// `HMAC-SHA256(KEK, "cardvault/v1/key-check" || vault id)`
fn key_check(kek: &Kek, vault_id: &[u8; VAULT_ID_LEN]) -> [u8; CHECK_LEN] {
    hmac_sha256(kek.expose(), &[LABEL_KEY_CHECK, vault_id])
}

/// The AES-256-GCM wrapping key, `HMAC-SHA256(KEK, "cardvault/v1/key-wrap")`, so the KEK itself
/// keys only HMAC.
fn wrap_key(kek: &Kek) -> WrapKey {
    let key = SecretKey::from_bytes(hmac_sha256(kek.expose(), &[LABEL_WRAP_KEY]));
    WrapKey::new(key.expose())
}

fn wrap<R: CryptoRng + ?Sized>(
    wrap_key: &WrapKey,
    aad: &[u8],
    key: &SecretKey,
    rng: &mut R,
) -> [u8; WRAPPED_LEN] {
    let mut nonce = [0u8; WRAP_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let sealed = wrap_key.seal(&nonce, aad, key.expose());
    let mut out = [0u8; WRAPPED_LEN];
    out[..WRAP_NONCE_LEN].copy_from_slice(&nonce);
    out[WRAP_NONCE_LEN..].copy_from_slice(&sealed);
    out
}

fn unwrap(
    wrap_key: &WrapKey,
    aad: &[u8],
    wrapped: &[u8; WRAPPED_LEN],
) -> Result<SecretKey, KeyError> {
    let (nonce, sealed) = wrapped.split_at(WRAP_NONCE_LEN);
    let nonce = <&[u8; WRAP_NONCE_LEN]>::try_from(nonce).map_err(|_| KeyError::CorruptHeader)?;
    let plain = wrap_key
        .open(nonce, aad, sealed)
        .map_err(|_| KeyError::CorruptHeader)?;
    let bytes =
        <[u8; SecretKey::LEN]>::try_from(plain.as_slice()).map_err(|_| KeyError::CorruptHeader)?;
    Ok(SecretKey::from_bytes(bytes))
}

/// Whole Unix seconds of `t`, clamped to what `OffsetDateTime` can represent in UTC (only a clock
/// set to the year 9999 with a negative offset could fall outside).
fn unix_seconds(t: OffsetDateTime) -> i64 {
    let min = time::PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
    let max = time::PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
    t.unix_timestamp().clamp(min, max)
}

/// A cursor over untrusted bytes: every read is bounds-checked and returns `Truncated` at the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
}
