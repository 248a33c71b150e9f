//! Merchants and their API keys.
//!
//! API keys look like `cvk_<16 hex id>_<64 hex secret>`. Only
//! `HMAC-SHA256(vault "api-key" MAC key, secret)` is stored; the key itself is shown once, at
//! creation. The secret has 256 bits of entropy, so a keyed hash (not a slow, salted hash) is the
//! right tool and keeps authentication cheap on every request. Comparison is constant-time.

use std::fmt;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use vault_core::MerchantId;
use vault_store::{Table, Versioned};
use zeroize::Zeroizing;

use crate::{
    Actor, AuditAction, AuditOutcome, Update, Vault, VaultError,
    api_key_cache::ApiKeyRec,
    record_mac::{MAC_VERSION, RecordKind},
    txn::Entry,
    vault::from_unix,
};

use crate::HmacSha256;

/// Merchants: `M` + merchant id.
const MERCHANTS: Table<u64, MerchantRec> = Table::new(vault_store::KeySpace::Merchant);
/// API keys: `K` + key id, MAC'd ([`RecordKind::API_KEY`]).
const API_KEYS: Table<[u8; 8], ApiKeyRec> = Table::new(vault_store::KeySpace::ApiKey);
const RECORD_VERSION: u8 = 1;

/// What an API key may do: the vault's scopes, or one a layer above names ([`ScopeBit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scope {
    /// Create, read, update and delete tokens (no PAN in any answer).
    Tokenize,
    /// Reveal the PAN behind a token.
    Reveal,
    /// See the keyed card fingerprint and the `customer_id` in token answers (`reveal` sees
    /// them too). Without either, token answers carry neither.
    Fingerprint,
    /// Manage merchants, keys, vault keys and what the layers above administer.
    Admin,
    /// A scope of a layer above, on a bit the vault reserves for it.
    Extension(ScopeBit),
}

/// A scope of a layer above: a bit of the stored scope byte reserved for it
/// ([`RESERVED`](Self::RESERVED)) and its lower-case name. Registered
/// ([`register`](Self::register)) so that [`Scopes::parse`] and [`Scopes::iter`] know it. Two
/// `ScopeBit`s are the same scope when their bits are equal.
#[derive(Clone, Copy, Debug)]
pub struct ScopeBit {
    bit: u8,
    name: &'static str,
}

/// The scope bits registered so far (see [`ScopeBit::register`]).
static REGISTERED_SCOPES: parking_lot::RwLock<Vec<ScopeBit>> = parking_lot::RwLock::new(Vec::new());

impl ScopeBit {
    /// The bits of the stored scope byte reserved for the layer above (the vault's are 1, 2, 8
    /// and 16; 4 predates this registry, when the gateway's scope was the vault's).
    pub const RESERVED: u8 = 4 | 32 | 64 | 128;

    /// The scope `name` on `bit`. Panics (at compile time, for a constant) unless `bit` is one
    /// reserved bit.
    pub const fn new(bit: u8, name: &'static str) -> Self {
        assert!(
            bit.count_ones() == 1 && bit & Self::RESERVED == bit,
            "scope bit not reserved for the layer above"
        );
        Self { bit, name }
    }

    /// Makes `bits` known to this process (idempotent). Panics if a bit is already registered
    /// under another name.
    pub fn register(bits: &[ScopeBit]) {
        let mut all = REGISTERED_SCOPES.write();
        for b in bits {
            match all.iter().find(|r| r.bit == b.bit) {
                Some(r) => assert_eq!(r.name, b.name, "scope bit {} registered twice", b.bit),
                None => all.push(*b),
            }
        }
        all.sort_by_key(|b| b.bit);
    }
}

impl PartialEq for ScopeBit {
    fn eq(&self, other: &Self) -> bool {
        self.bit == other.bit
    }
}

impl Eq for ScopeBit {}

impl std::hash::Hash for ScopeBit {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bit.hash(state);
    }
}

impl PartialOrd for ScopeBit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScopeBit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bit.cmp(&other.bit)
    }
}

impl Scope {
    /// Every scope, in display order: the vault's, the registered extensions, then `admin`.
    pub fn all() -> Vec<Scope> {
        let mut all = vec![Scope::Tokenize, Scope::Reveal, Scope::Fingerprint];
        all.extend(
            REGISTERED_SCOPES
                .read()
                .iter()
                .map(|b| Scope::Extension(*b)),
        );
        all.push(Scope::Admin);
        all
    }

    fn bit(self) -> u8 {
        match self {
            Self::Tokenize => 1,
            Self::Reveal => 2,
            Self::Admin => 8,
            // A new bit: keys stored before it existed keep their bits and meaning.
            Self::Fingerprint => 16,
            Self::Extension(b) => b.bit,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokenize => "tokenize",
            Self::Reveal => "reveal",
            Self::Admin => "admin",
            Self::Fingerprint => "fingerprint",
            Self::Extension(b) => b.name,
        }
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Parses a comma-separated list (`"tokenize,reveal"`).
    pub fn parse(s: &str) -> Result<Self, VaultError> {
        let mut bits = 0;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let all = Scope::all();
            let scope = all.iter().find(|sc| sc.as_str() == part).ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
                VaultError::field(
                    "scopes",
                    "invalid",
                    format!("scopes are {}", names.join(", ")),
                )
            })?;
            bits |= scope.bit();
        }
        if bits == 0 {
            return Err(VaultError::field(
                "scopes",
                "required",
                "at least one scope is required",
            ));
        }
        Ok(Self(bits))
    }

    /// From a list.
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |b, s| b | s.bit()))
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes in the set.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::all().into_iter().filter(move |s| self.contains(*s))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// A merchant known to the vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merchant {
    /// Its id.
    pub id: MerchantId,
    /// A display name.
    pub name: String,
    /// When it was added.
    pub created_at: OffsetDateTime,
}

/// An API key as listed (never with its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Public key id (16 hex characters).
    pub id: String,
    /// The merchant it acts for; `None` for an operator key, which belongs to no merchant.
    pub merchant: Option<MerchantId>,
    /// What it may do.
    pub scopes: Scopes,
    /// A label for humans.
    pub label: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Revoked keys authenticate nothing.
    pub revoked: bool,
}

/// A freshly created API key: the only time its full value exists outside the caller.
pub struct NewApiKey {
    /// What will be listed about it.
    pub info: ApiKeyInfo,
    secret: Zeroizing<String>,
}

impl NewApiKey {
    /// The full key (`cvk_<id>_<secret>`), to hand to the merchant once.
    pub fn expose(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Who a request authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The merchant.
    pub merchant: MerchantId,
    /// The API key id used.
    pub key_id: String,
    /// Its scopes.
    pub scopes: Scopes,
}

/// Who an admin request authenticated as: an operator key, which belongs to no merchant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// The API key id used.
    pub key_id: String,
    /// Its scopes (only `admin` today).
    pub scopes: Scopes,
}

impl Operator {
    /// `Forbidden` unless this operator holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), VaultError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(VaultError::Forbidden)
        }
    }
}

/// Who a bearer API key authenticated as: a merchant's key or an operator key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A key acting for one merchant (`tokenize`, `reveal`, `fingerprint`, a layer above's).
    Merchant(Principal),
    /// An operator key (`admin`), belonging to no merchant.
    Operator(Operator),
}

impl Principal {
    /// `Forbidden` unless this principal holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), VaultError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(VaultError::Forbidden)
        }
    }

    /// Whether token answers to this principal may carry the keyed card fingerprint and the
    /// `customer_id`: only with the `fingerprint` or `reveal` scope. Without them, a key that
    /// can only tokenize cannot match fingerprints of candidate numbers against a stored card.
    pub fn sees_card_links(&self) -> bool {
        self.scopes.contains(Scope::Fingerprint) || self.scopes.contains(Scope::Reveal)
    }
}

#[derive(Serialize, Deserialize)]
struct MerchantRec {
    v: u8,
    name: String,
    created_at: i64,
}

impl Versioned for MerchantRec {
    const VERSION: u8 = RECORD_VERSION;
}

impl Versioned for ApiKeyRec {
    const VERSION: u8 = MAC_VERSION;
}

/// The `merchant` of an operator key's record (no merchant has id 0).
const OPERATOR: u64 = 0;

/// The scopes a stored key really has: `admin` only on operator keys (a merchant key stored with
/// `admin` before operator keys existed keeps its other scopes, and its `admin` is ignored), and
/// nothing but `admin` on an operator key.
fn effective_scopes(rec: &ApiKeyRec) -> Scopes {
    if rec.merchant == OPERATOR {
        Scopes(rec.scopes & Scope::Admin.bit())
    } else {
        Scopes(rec.scopes & !Scope::Admin.bit())
    }
}

impl Vault {
    /// Stores `value` under `key` unless the key exists, in which case `field` is refused as
    /// `exists` with `message`.
    /// `entry`'s action's detail is `detail`, and the entry commits with the record.
    #[allow(clippy::too_many_arguments)]
    fn insert_new(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        field: &'static str,
        message: &'static str,
        entry: Entry,
        detail: Option<String>,
    ) -> Result<(), VaultError> {
        self.transact(move |txn| {
            // Conditional: on a shared vault another daemon may be adding the same key.
            if !txn.raw().put_if_absent(&key, value.clone())? {
                return Err(VaultError::field(field, "exists", message));
            }
            entry.stage(txn, None, detail.clone())
        })
    }

    /// Adds a merchant. Refused if the id exists. Audited (`admin.merchant.add`).
    pub fn add_merchant(&self, id: MerchantId, name: &str) -> Result<Merchant, VaultError> {
        let detail = Some(format!("merchant={id}"));
        let d = detail.clone();
        self.audited(
            AuditAction::AdminMerchantAdd,
            None,
            |_| d,
            |entry| self.add_merchant_with(id, name, entry, detail),
        )
    }

    /// Creates an API key for an existing merchant. The returned value is the only copy of the
    /// key. Audited (`admin.apikey.create`, with the new key's id, never its secret).
    pub fn create_api_key(
        &self,
        merchant: MerchantId,
        scopes: Scopes,
        label: &str,
    ) -> Result<NewApiKey, VaultError> {
        let detail =
            move |id: &str, scopes: Scopes| format!("merchant={merchant},key={id},scopes={scopes}");
        self.audited(
            AuditAction::AdminApiKeyCreate,
            None,
            |k: &NewApiKey| Some(detail(&k.info.id, k.info.scopes)),
            |entry| {
                if scopes.contains(Scope::Admin) {
                    return Err(VaultError::field(
                        "scopes",
                        "admin_needs_operator",
                        "admin is for operator keys only (apikey create --operator --scopes admin)",
                    ));
                }
                self.create_api_key_with(Some(merchant), scopes, label, entry, detail)
            },
        )
    }

    /// Creates an operator key: it belongs to no merchant and holds only `admin` (any other
    /// scope is refused: `admin` does not imply `tokenize` or `reveal`). Audited
    /// (`admin.apikey.create`, detail `operator,key=..,scopes=admin`).
    pub fn create_operator_key(
        &self,
        scopes: Scopes,
        label: &str,
    ) -> Result<NewApiKey, VaultError> {
        let detail = |id: &str, scopes: Scopes| format!("operator,key={id},scopes={scopes}");
        self.audited(
            AuditAction::AdminApiKeyCreate,
            None,
            |k: &NewApiKey| Some(detail(&k.info.id, k.info.scopes)),
            |entry| {
                if scopes != Scopes::of(&[Scope::Admin]) {
                    return Err(VaultError::field(
                        "scopes",
                        "operator_scopes",
                        "operator keys hold only the admin scope",
                    ));
                }
                self.create_api_key_with(None, scopes, label, entry, detail)
            },
        )
    }

    /// Revokes an API key by id; it stops authenticating at once. Audited (`admin.apikey.revoke`).
    pub fn revoke_api_key(&self, id: &str) -> Result<(), VaultError> {
        let detail = is_key_id(id).then(|| format!("key={}", id.to_ascii_lowercase()));
        let d = detail.clone();
        self.audited(
            AuditAction::AdminApiKeyRevoke,
            None,
            |_| d,
            |entry| self.revoke_api_key_with(id, entry, detail),
        )
    }

    /// Authenticates a bearer API key. Every failure (malformed, unknown, wrong secret, revoked,
    /// merchant removed) is the same `Unauthorized`, and is recorded in the audit log
    /// (`auth.failed`, with the key id when the bearer has the shape of a key; never the secret).
    /// The failure entry joins the next group commit; the call does not wait for it. A failure
    /// is recorded with this handle's actor (typically only a peer uid) plus the presented key id.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, VaultError> {
        match self.authenticate_caller(bearer)? {
            Caller::Merchant(p) => Ok(p),
            // An operator key acts for no merchant: it is known, but not allowed here.
            Caller::Operator(_) => Err(VaultError::Forbidden),
        }
    }

    /// Authenticates a bearer API key of either kind (merchant or operator). Failures as for
    /// [`authenticate`](Self::authenticate).
    pub fn authenticate_caller(&self, bearer: &str) -> Result<Caller, VaultError> {
        let actor = self.actor();
        let r = self.check_bearer(bearer);
        if r.is_ok() {
            return r;
        }
        let key_id = bearer
            .strip_prefix("cvk_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .filter(|id| is_key_id(id));
        let actor = Actor {
            key_id: key_id
                .map(str::to_ascii_lowercase)
                .or_else(|| actor.key_id.clone()),
            ..actor.clone()
        };
        // Not waited for: a refused caller learns nothing, and a flood of bad keys then costs
        // group commits, not one durable commit per request on the caller's thread.
        // Aggregated per socket peer per minute: a flood of bad keys adds one entry a minute.
        self.record_auth_failure(&actor, AuditOutcome::of(&r));
        r
    }

    fn key_hash(&self, secret: &[u8]) -> [u8; 32] {
        let base = self.inner.keys.hasher.get_or_init(|| {
            let k = self.inner.keyring.read().mac_key("api-key");
            <HmacSha256 as KeyInit>::new_from_slice(k.expose())
                .expect("HMAC accepts any key length")
        });
        let mut mac = base.clone();
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// Adds a merchant. Refused if the id exists.
    fn add_merchant_with(
        &self,
        id: MerchantId,
        name: &str,
        entry: Entry,
        detail: Option<String>,
    ) -> Result<Merchant, VaultError> {
        if id == MerchantId::LARGEST {
            // The daemon keeps operator requests' idempotency keys under this id.
            return Err(VaultError::field(
                "merchant_id",
                "reserved",
                "merchant id 999999999999999999 is reserved for the vault's own use",
            ));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(VaultError::field(
                "name",
                "invalid",
                "merchant name must be 1-100 printable characters",
            ));
        }
        let now = self.now();
        let rec = MerchantRec {
            v: RECORD_VERSION,
            name: name.to_owned(),
            created_at: now.unix_timestamp(),
        };
        let k = MERCHANTS.key(&id.get());
        let bytes = MERCHANTS.encode(&rec);
        let message = "a merchant with this id exists";
        self.insert_new(k, bytes, "merchant_id", message, entry, detail)?;
        Ok(Merchant {
            id,
            name: rec.name,
            created_at: from_unix(rec.created_at)?,
        })
    }

    /// The merchant with this id.
    pub fn merchant(&self, id: MerchantId) -> Result<Option<Merchant>, VaultError> {
        match MERCHANTS.get(&self.inner.store, &id.get())? {
            Some(r) => Ok(Some(Merchant {
                id,
                name: r.name,
                created_at: from_unix(r.created_at)?,
            })),
            None => Ok(None),
        }
    }

    /// Every merchant, by id.
    pub fn merchants(&self) -> Result<Vec<Merchant>, VaultError> {
        let mut out = Vec::new();
        for (k, r) in MERCHANTS.scan(&self.inner.store, usize::MAX)? {
            let id: [u8; 8] = k
                .get(..8)
                .and_then(|s| s.try_into().ok())
                .ok_or(VaultError::Integrity)?;
            let id = MerchantId::new(u64::from_be_bytes(id)).map_err(|_| VaultError::Integrity)?;
            let r = r?;
            out.push(Merchant {
                id,
                name: r.name,
                created_at: from_unix(r.created_at)?,
            });
        }
        Ok(out)
    }

    /// Creates an API key for an existing merchant. The returned value is the only copy of the key.
    fn create_api_key_with(
        &self,
        merchant: Option<MerchantId>,
        scopes: Scopes,
        label: &str,
        entry: Entry,
        detail: impl Fn(&str, Scopes) -> String,
    ) -> Result<NewApiKey, VaultError> {
        if let Some(merchant) = merchant
            && self.merchant(merchant)?.is_none()
        {
            return Err(VaultError::field(
                "merchant_id",
                "unknown",
                "no merchant with this id",
            ));
        }
        if label.chars().count() > 100 || label.chars().any(char::is_control) {
            return Err(VaultError::field(
                "label",
                "invalid",
                "label must be at most 100 printable characters",
            ));
        }
        let mut id = [0u8; 8];
        let mut secret = Zeroizing::new([0u8; 32]);
        {
            use rand::Rng;
            // Key material: straight from the OS generator.
            let mut rng = crate::os_rng::os_rng();
            rng.fill_bytes(&mut id);
            rng.fill_bytes(secret.as_mut());
        }
        let secret_hex = Zeroizing::new(hex::encode(secret.as_ref()));
        let now = self.now();
        let rec = ApiKeyRec {
            v: MAC_VERSION,
            merchant: merchant.map_or(OPERATOR, MerchantId::get),
            scopes: scopes.0,
            hash: self.key_hash(secret_hex.as_bytes()),
            label: label.to_owned(),
            created_at: now.unix_timestamp(),
            revoked: false,
        };
        let k = API_KEYS.key(&id);
        let bytes = self
            .record_mac(RecordKind::API_KEY)
            .seal_in(&API_KEYS, &id, &rec);
        let id_hex = hex::encode(id);
        let detail = Some(detail(&id_hex, scopes));
        self.transact(move |txn| {
            // 64 random bits: a clash is not a realistic event, but never overwrite a key.
            if !txn.raw().put_if_absent(&k, bytes.clone())? {
                return Err(
                    vault_store::StoreError::Conflict(vault_store::ConflictKind::Exists).into(),
                );
            }
            entry.stage(txn, None, detail.clone())
        })?;
        self.inner.keys.put(id, rec.clone(), now);
        Ok(NewApiKey {
            info: ApiKeyInfo {
                id: id_hex.clone(),
                merchant,
                scopes,
                label: rec.label,
                created_at: from_unix(rec.created_at)?,
                revoked: false,
            },
            secret: Zeroizing::new(format!("cvk_{id_hex}_{}", secret_hex.as_str())),
        })
    }

    /// API keys, of one merchant or all.
    pub fn api_keys(&self, merchant: Option<MerchantId>) -> Result<Vec<ApiKeyInfo>, VaultError> {
        let mut out = Vec::new();
        let prefix = [API_KEYS.space().byte()];
        for (k, v) in self.inner.store.scan_raw(&prefix, usize::MAX)? {
            // The MAC is checked on the stored bytes before anything is decoded.
            let r = API_KEYS.decode(self.open_record(RecordKind::API_KEY, &k, &v)?)?;
            let m = match r.merchant {
                OPERATOR => None,
                m => Some(MerchantId::new(m).map_err(|_| VaultError::Integrity)?),
            };
            if merchant.is_some_and(|want| Some(want) != m) {
                continue;
            }
            out.push(ApiKeyInfo {
                id: hex::encode(k.get(1..).unwrap_or_default()),
                merchant: m,
                scopes: effective_scopes(&r),
                label: r.label,
                created_at: from_unix(r.created_at)?,
                revoked: r.revoked,
            });
        }
        Ok(out)
    }

    /// Revokes an API key by id; it stops authenticating at once.
    fn revoke_api_key_with(
        &self,
        id: &str,
        entry: Entry,
        detail: Option<String>,
    ) -> Result<(), VaultError> {
        let raw: [u8; 8] = hex::decode(id)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                VaultError::field("key_id", "invalid", "key id must be 16 hex characters")
            })?;
        let k = API_KEYS.key(&raw);
        let mac = self.record_mac(RecordKind::API_KEY);
        let rec = self.transact(move |txn| -> Result<ApiKeyRec, VaultError> {
            // Conditional on the record read (a shared vault's other daemons write keys too).
            let rec = crate::txn::update_raw(txn.raw(), &k, |bytes| {
                let bytes = bytes.ok_or(VaultError::NotFound)?;
                // The MAC is checked on the stored bytes before anything is decoded.
                let mut rec = mac.open_in(&API_KEYS, &raw, bytes)?;
                rec.revoked = true;
                Ok::<_, VaultError>(Update::Put(mac.seal_in(&API_KEYS, &raw, &rec), rec))
            })?;
            entry.stage(txn, None, detail.clone())?;
            Ok(rec)
        })?;
        // This process stops accepting the key at once; other daemons of a shared vault within
        // `SHARED_KEY_CACHE_TTL` (their cached copy expires, and the store says revoked).
        self.inner.keys.put(raw, rec, self.now());
        Ok(())
    }

    /// Authenticates a bearer API key. Every failure (malformed, unknown, wrong secret, revoked,
    /// merchant removed) is the same `Unauthorized`.
    fn check_bearer(&self, bearer: &str) -> Result<Caller, VaultError> {
        let parsed = bearer
            .strip_prefix("cvk_")
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, secret)| id.len() == 16 && secret.len() == 64);
        let Some((id_hex, secret)) = parsed else {
            return Err(VaultError::Unauthorized);
        };
        let Some(id) = hex::decode(id_hex)
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
        else {
            return Err(VaultError::Unauthorized);
        };
        // A directory vault's cache is exact (this process is the only writer); a shared
        // vault's entries are re-read from the store once they are `SHARED_KEY_CACHE_TTL` old.
        let now = self.now();
        let shared = self.shared();
        let cached = self.inner.keys.fresh(&id, now, shared);
        let rec = match cached {
            Some(r) => r,
            None => {
                let k = API_KEYS.key(&id);
                let Some(bytes) = self.inner.store.get_raw(&k)? else {
                    // Pay the same HMAC as a real check, so unknown ids do not answer faster.
                    let _ = self.key_hash(secret.as_bytes());
                    return Err(VaultError::Unauthorized);
                };
                // A tampered record fails closed: `Integrity`, never a principal.
                let r = self
                    .record_mac(RecordKind::API_KEY)
                    .open_in(&API_KEYS, &id, &bytes)?;
                self.inner.keys.offer(id, r.clone(), now, shared);
                r
            }
        };
        let ok = self.key_hash(secret.as_bytes()).ct_eq(&rec.hash);
        if !bool::from(ok) || rec.revoked {
            return Err(VaultError::Unauthorized);
        }
        // One spelling for the id in principals and audit entries: lower case.
        let key_id = id_hex.to_ascii_lowercase();
        let scopes = effective_scopes(&rec);
        if rec.merchant == OPERATOR {
            return Ok(Caller::Operator(Operator { key_id, scopes }));
        }
        Ok(Caller::Merchant(Principal {
            merchant: MerchantId::new(rec.merchant).map_err(|_| VaultError::Integrity)?,
            key_id,
            scopes,
        }))
    }
}

/// Whether `s` has the shape of a public API key id (16 hex characters).
fn is_key_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Actor {
    /// The actor behind an authenticated principal.
    pub fn principal(p: &Principal) -> Self {
        Self {
            merchant: Some(p.merchant),
            key_id: Some(p.key_id.clone()),
            peer_uid: None,
        }
    }

    /// The actor behind an operator key (no merchant).
    pub fn operator(o: &Operator) -> Self {
        Self {
            merchant: None,
            key_id: Some(o.key_id.clone()),
            peer_uid: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(merchant: u64, scopes: Scopes) -> ApiKeyRec {
        ApiKeyRec {
            v: RECORD_VERSION,
            merchant,
            scopes: scopes.0,
            hash: [0; 32],
            label: String::new(),
            created_at: 0,
            revoked: false,
        }
    }

    #[test]
    fn a_stored_merchant_key_with_admin_keeps_its_other_scopes_only() {
        let old = rec(890_490, Scopes::of(&[Scope::Tokenize, Scope::Admin]));
        assert_eq!(effective_scopes(&old), Scopes::of(&[Scope::Tokenize]));
        let op = rec(OPERATOR, Scopes::of(&[Scope::Admin, Scope::Reveal]));
        assert_eq!(effective_scopes(&op), Scopes::of(&[Scope::Admin]));
    }
}
