//! Merchant gateway passwords (the session-token API's `merchantId` + `password`): Argon2id PHC strings,
//! bounded hashing, dummy hashes for unknown merchants, failure rate limits and a verification
//! cache.
//!
//! A password is stored as its Argon2id PHC string under `P` + merchant id (u64 BE), in a
//! postcard record `{v: 1, phc, updated_at}`; the password itself is never written anywhere.
//!
//! [`Gateway::login`](crate::Gateway::login) costs one Argon2id verification (tens of milliseconds, and `memory_kib` of
//! memory), so it is guarded three ways:
//! - **Rate limits** are checked before any hashing: failures are counted per merchant id (known
//!   or not, so ids cannot be enumerated by their limits) and per socket peer within a window.
//!   On a vault shared by several daemons the per-merchant failures are counted in the store
//!   (`failures.rs`), so they add up across daemons; per-peer failures stay in each daemon's
//!   memory (a socket peer's uid means something only on its own host).
//! - **Hashing slots**: at most `max_concurrent_hashes` verifications run at once (so Argon2
//!   memory stays under `max_concurrent_hashes * memory_kib`), at most `max_waiting` callers
//!   queue for a slot, and the rest are refused `Busy` at once instead of piling up threads.
//! - **A verification cache**: after a success, `HMAC-SHA256(per-process random key, merchant ||
//!   stored PHC string || password)` is kept for `cache_ttl`, so a gateway logging in for every
//!   payment pays Argon2 once per TTL. Every login reads the stored password record first (one
//!   point read) and an entry answers only for the PHC string it was verified against: a
//!   password changed through any daemon of a shared vault is never accepted from the cache of
//!   another one after the change is committed. The trade-off: while an entry lives, someone who
//!   can read this process's memory could test guesses at HMAC speed instead of Argon2 speed; the
//!   key never leaves the process.
//!
//! A stored hash is verified with the parameters it was made with; one made under other
//! parameters than the policy's is re-hashed (and stored) at its next successful login, so after
//! a policy change the memory bound holds again once each merchant has logged in.
//!
//! Unknown merchants, merchants without a password and wrong passwords are the same
//! `Unauthorized`, after the same work: an unknown merchant is verified against a dummy PHC
//! string with the policy's parameters (random salt and output, so nothing matches it).

use std::{
    collections::HashMap,
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Version,
    password_hash::{
        self,
        phc::{Output, ParamsString, PasswordHash, Salt},
    },
};
use hmac::{KeyInit, Mac};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use vault_core::MerchantId;
use vault_service::{AuditThrottle, KeySpace, RecordKind, Table, Update, Versioned};
use zeroize::{Zeroize, Zeroizing};

use crate::{Actor, Gateway, GatewayError, VaultError};

/// Merchant password records: `P` + merchant id, MAC'd by the vault ([`PASSWORD_MAC`]).
const PASSWORDS: Table<u64, PasswordRec> = Table::new(KeySpace::Password);
/// The MAC of password records.
const PASSWORD_MAC: RecordKind = RecordKind::new(PASSWORD_PREFIX, "record-mac:password");
/// The layout version of password records (MAC'd).
const MAC_VERSION: u8 = 2;

mod cache;
mod failures;
mod limits;
mod slots;

use cache::VerifyCache;
use limits::Limits;
use slots::Slots;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const PASSWORD_PREFIX: u8 = KeySpace::Password.byte();
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;
/// Past this many tracked ids (merchants or peers), counters whose window has ended are dropped.
const PRUNE_AT: usize = 4096;

/// A merchant's gateway password: 1-64 characters (the session-token API: `String(64)`). Wiped on drop;
/// `Debug` shows nothing of it; not `Clone`.
pub struct MerchantPassword(Zeroizing<String>);

impl MerchantPassword {
    /// The longest password, in characters.
    pub const MAX_LEN: usize = 64;
    /// The shortest password a merchant may be given (PCI DSS v4 8.3.6), in characters. Logins
    /// accept any 1-64 characters (and simply fail for a wrong one).
    pub const MIN_LEN: usize = 12;

    /// Checks the length. A refused string is wiped before the error is returned.
    pub fn new(s: String) -> Result<Self, GatewayError> {
        let s = Zeroizing::new(s);
        if s.is_empty() {
            return Err(GatewayError::field(
                "password",
                "required",
                "password is required",
            ));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(GatewayError::field(
                "password",
                "too_long",
                "password must be at most 64 characters",
            ));
        }
        Ok(Self(s))
    }

    /// The password, in clear.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MerchantPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MerchantPassword(..)")
    }
}

/// How [`Gateway::login`](crate::Gateway::login) spends and limits its work. Set with [`Gateway::set_login_policy`](crate::Gateway::set_login_policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Argon2id verifications running at once (default: available parallelism, 1-8).
    pub max_concurrent_hashes: usize,
    /// Callers that may wait for a hashing slot; past that, `login` fails at once with
    /// [`VaultError::Busy`] (default 64).
    pub max_waiting: usize,
    /// Failed logins per merchant id within `window` before [`GatewayError::RateLimited`]
    /// (default 5).
    pub merchant_failures: u32,
    /// Failed logins per socket peer (uid; callers without one count as one peer) within
    /// `window` before [`GatewayError::RateLimited`] (default 50).
    pub peer_failures: u32,
    /// The failure-counting window, on the vault clock (default 15 minutes).
    pub window: Duration,
    /// How long a successful verification is remembered (default 5 minutes).
    pub cache_ttl: Duration,
    /// Argon2id memory in KiB (default 19456, OWASP).
    pub memory_kib: u32,
    /// Argon2id passes (default 2).
    pub iterations: u32,
    /// Argon2id lanes (default 1).
    pub parallelism: u32,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self {
            max_concurrent_hashes: cpus.clamp(1, 8),
            max_waiting: 64,
            merchant_failures: 5,
            peer_failures: 50,
            window: Duration::from_secs(15 * 60),
            cache_ttl: Duration::from_secs(5 * 60),
            memory_kib: argon2::Params::DEFAULT_M_COST,
            iterations: argon2::Params::DEFAULT_T_COST,
            parallelism: argon2::Params::DEFAULT_P_COST,
        }
    }
}

impl LoginPolicy {
    /// The same policy with values below Argon2's minimums (and a zero slot count) raised to
    /// them, so every policy can hash.
    fn normalized(mut self) -> Self {
        self.max_concurrent_hashes = self.max_concurrent_hashes.max(1);
        self.parallelism = self.parallelism.clamp(1, argon2::Params::MAX_P_COST);
        self.iterations = self.iterations.max(argon2::Params::MIN_T_COST);
        self.memory_kib = self
            .memory_kib
            .max(argon2::Params::MIN_M_COST)
            .max(8 * self.parallelism);
        self
    }

    fn argon2_params(&self) -> Result<argon2::Params, GatewayError> {
        argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|_| {
            GatewayError::field(
                "policy",
                "invalid",
                "the login policy's Argon2id parameters are out of range",
            )
        })
    }

    fn cost(&self) -> Cost {
        (self.memory_kib, self.iterations, self.parallelism)
    }
}

/// Login counters, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginStats {
    /// Argon2id computations running now.
    pub hashing: usize,
    /// The most that ever ran at once since the vault was opened.
    pub peak_hashing: usize,
    /// Logins refused [`VaultError::Busy`] since open.
    pub busy: u64,
    /// Logins answered from the verification cache since open.
    pub cache_hits: u64,
}

/// The vault's login state: hashing slots, failure counters, the verification cache.
#[derive(Default)]
pub(crate) struct LoginState {
    policy: RwLock<LoginPolicy>,
    slots: Slots,
    limits: Mutex<Limits>,
    cache: VerifyCache,
    /// Argon2 memory, reused across hashes (one buffer per slot in use).
    memory: MemoryPool,
    /// The unknown-merchant PHC string for the current parameters.
    dummy: Mutex<Option<Dummy>>,
    busy: AtomicU64,
    cache_hits: AtomicU64,
    /// `rate_limited`/`busy` refusals cost the caller no hashing, so they are audited at most
    /// once a minute per claimed merchant id, with the count (a flood cannot grow the
    /// append-only log at request rate).
    pub(crate) refusals: AuditThrottle,
}

/// Argon2id memory (KiB), passes and lanes.
type Cost = (u32, u32, u32);

/// The unknown-merchant hash and the parameters it was made for.
struct Dummy {
    cost: Cost,
    hash: PasswordHash,
}

#[derive(Serialize, Deserialize)]
struct PasswordRec {
    v: u8,
    phc: String,
    updated_at: i64,
}

impl Versioned for PasswordRec {
    const VERSION: u8 = MAC_VERSION;
}

fn corrupt() -> GatewayError {
    GatewayError::corrupt(KeySpace::Password)
}

fn random<const N: usize>() -> [u8; N] {
    use rand::Rng;
    let mut b = [0u8; N];
    crate::os_rng().fill_bytes(&mut b);
    b
}

/// Argon2 working memory, reused: one buffer per hashing slot in use, kept between hashes, so
/// a flood of logins holds at most `max_concurrent_hashes` buffers instead of leaving the
/// allocator one fresh 19 MiB buffer per login. Every hash and verification (PHC strings
/// included) runs in a buffer from here.
#[derive(Default)]
struct MemoryPool {
    free: Mutex<Vec<Vec<argon2::Block>>>,
}

impl MemoryPool {
    /// Runs `f` on `blocks` blocks of pooled memory, and keeps the buffer for the next caller
    /// (at most `keep` buffers are kept). The buffer is wiped before it goes back: it held
    /// password-derived state.
    fn with<R>(&self, blocks: usize, keep: usize, f: impl FnOnce(&mut [argon2::Block]) -> R) -> R {
        let mut buf = self.free.lock().pop().unwrap_or_default();
        if buf.len() < blocks {
            buf.resize(blocks, argon2::Block::new());
        }
        let r = f(&mut buf[..blocks]);
        buf.fill(argon2::Block::new());
        let mut free = self.free.lock();
        if free.len() < keep {
            free.push(buf);
        }
        r
    }
}

/// `password` hashed under `params` with `salt` into `out`, in `memory`.
fn argon2id_into(
    params: argon2::Params,
    version: Version,
    password: &MerchantPassword,
    salt: &[u8],
    out: &mut [u8],
    memory: &mut [argon2::Block],
) -> Result<(), argon2::Error> {
    Argon2::new(Algorithm::Argon2id, version, params).hash_password_into_with_memory(
        password.expose().as_bytes(),
        salt,
        out,
        memory,
    )
}

/// A fresh Argon2id PHC string of `password` under the policy's parameters.
fn hash_password(
    policy: &LoginPolicy,
    password: &MerchantPassword,
    pool: &MemoryPool,
) -> Result<String, GatewayError> {
    let failed = || {
        GatewayError::field(
            "policy",
            "invalid",
            "the password could not be hashed under the login policy",
        )
    };
    let params = policy.argon2_params()?;
    let salt: [u8; SALT_LEN] = random();
    let mut out = Zeroizing::new([0u8; OUTPUT_LEN]);
    pool.with(params.block_count(), policy.max_concurrent_hashes, |mem| {
        argon2id_into(
            params.clone(),
            Version::V0x13,
            password,
            &salt,
            out.as_mut(),
            mem,
        )
    })
    .map_err(|_| failed())?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| failed())?,
        salt: Some(Salt::new(&salt).map_err(|_| failed())?),
        hash: Some(Output::new(out.as_ref()).map_err(|_| failed())?),
    };
    Ok(phc.to_string())
}

/// A PHC string no password verifies against, costing what a real one of the policy costs.
fn dummy_hash(policy: &LoginPolicy) -> Result<PasswordHash, GatewayError> {
    let params = policy.argon2_params()?;
    let built = (|| -> Result<PasswordHash, password_hash::Error> {
        Ok(PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(Salt::new(&random::<SALT_LEN>())?),
            hash: Some(Output::new(&random::<OUTPUT_LEN>())?),
        })
    })();
    built.map_err(|_| {
        GatewayError::field(
            "policy",
            "invalid",
            "the login policy's Argon2id parameters are out of range",
        )
    })
}

/// Whether `password` matches `hash` (its own parameters are used), computed in pooled memory.
/// A hash that cannot be evaluated at all (other algorithm, broken parameters, no salt or
/// output) is a corrupt record.
fn verify(
    hash: &PasswordHash,
    password: &MerchantPassword,
    pool: &MemoryPool,
    keep: usize,
) -> Result<bool, GatewayError> {
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(corrupt());
    }
    let version = match hash.version {
        Some(v) => Version::try_from(v).map_err(|_| corrupt())?,
        None => Version::V0x13,
    };
    let params = argon2::Params::try_from(hash).map_err(|_| corrupt())?;
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(corrupt());
    };
    let expected = expected.as_bytes();
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    pool.with(params.block_count(), keep, |mem| {
        argon2id_into(params.clone(), version, password, salt, &mut out, mem)
    })
    .map_err(|_| corrupt())?;
    Ok(bool::from(out.as_slice().ct_eq(expected)))
}

/// Whether a stored hash was made with other parameters than the policy's.
fn outdated(hash: &PasswordHash, policy: &LoginPolicy) -> bool {
    let version: u32 = Version::V0x13.into();
    let cost = argon2::Params::try_from(hash).map(|p| (p.m_cost(), p.t_cost(), p.p_cost()));
    hash.algorithm != argon2::ARGON2ID_IDENT
        || hash.version != Some(version)
        || cost.map_or(true, |c| c != policy.cost())
}

impl Gateway {
    /// Replaces the login policy. Values below Argon2's minimums are raised to them; a smaller
    /// `max_concurrent_hashes` lets running verifications finish. Stored hashes made with other
    /// parameters are re-hashed at their next successful login.
    pub fn set_login_policy(&self, policy: LoginPolicy) {
        let policy = policy.normalized();
        let slots = policy.max_concurrent_hashes;
        *self.state.login.policy.write() = policy;
        self.state.login.slots.resize(slots);
    }

    /// The login policy in force.
    pub fn login_policy(&self) -> LoginPolicy {
        self.state.login.policy.read().clone()
    }

    /// Login counters: verifications running now, the peak since open, `Busy` refusals and
    /// cache hits.
    pub fn login_stats(&self) -> LoginStats {
        let login = &self.state.login;
        let s = login.slots.state.lock();
        LoginStats {
            hashing: s.running,
            peak_hashing: s.peak,
            busy: login.busy.load(Ordering::Relaxed),
            cache_hits: login.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Sets or replaces `merchant`'s gateway password (hashed with Argon2id under the login
    /// policy, on the caller's thread); durable on return. The merchant must exist. Clears the
    /// merchant's failure count and cached verification. Audited (`admin.merchant.password`).
    pub fn set_merchant_password(
        &self,
        merchant: MerchantId,
        password: &MerchantPassword,
    ) -> Result<(), GatewayError> {
        // The entry commits with the password; a refusal wrote nothing, and its entry is alone.
        let detail = Some(format!("merchant={merchant}"));
        let result = self.set_merchant_password_with(merchant, password, detail);
        if result.is_err() {
            let outcome = GatewayError::outcome(&result);
            self.vault
                .audit(crate::audit::ADMIN_MERCHANT_PASSWORD, None, outcome)?;
        }
        result
    }

    fn set_merchant_password_with(
        &self,
        merchant: MerchantId,
        password: &MerchantPassword,
        detail: Option<String>,
    ) -> Result<(), GatewayError> {
        if self.vault.merchant(merchant)?.is_none() {
            return Err(GatewayError::field(
                "merchantId",
                "unknown",
                "no merchant with this id",
            ));
        }
        if password.expose().chars().count() < MerchantPassword::MIN_LEN {
            return Err(GatewayError::field(
                "password",
                "too_short",
                "a merchant password must be at least 12 characters",
            ));
        }
        let login = &self.state.login;
        let policy = self.login_policy();
        let phc = {
            // An admin call waits for a slot however long the queue: it is never `Busy`.
            let _slot = login.slots.acquire(None)?;
            hash_password(&policy, password, &login.memory)?
        };
        let rec = PasswordRec {
            v: MAC_VERSION,
            phc,
            updated_at: self.vault.now().unix_timestamp(),
        };
        let mac = self.vault.record_mac(PASSWORD_MAC);
        let actor = self.vault.actor().clone();
        self.vault
            .transact(move |txn| -> Result<(), GatewayError> {
                txn.put_sealed_in(&PASSWORDS, &mac, &merchant.get(), &rec)?;
                failures::clear_stored_failures(txn, merchant.get())?;
                let ok = vault_service::AuditOutcome::Ok;
                txn.audit(
                    &actor,
                    crate::audit::ADMIN_MERCHANT_PASSWORD,
                    None,
                    detail.clone(),
                    ok,
                )?;
                Ok(())
            })?;
        // After the write: a login that verified the old password and caches after this point is
        // refused by the epoch; one that cached before it is removed here.
        login.cache.invalidate(merchant.get());
        login.limits.lock().merchants.remove(&merchant.get());
        Ok(())
    }

    /// Clears the login failures counted for `merchant` (a lockout): logins for it are limited
    /// again only by new failures (and by the per-peer limit). Audited
    /// (`admin.merchant.unlock`). Refused `unknown` for an unknown merchant.
    pub fn unlock_merchant(&self, merchant: MerchantId) -> Result<(), GatewayError> {
        let result = match self.vault.merchant(merchant) {
            Ok(Some(_)) => {
                self.state
                    .login
                    .limits
                    .lock()
                    .merchants
                    .remove(&merchant.get());
                // The failures counted in the store (a shared vault's) go in the entry's commit.
                let id = merchant.get();
                let actor = self.vault.actor().clone();
                let detail = Some(format!("merchant={merchant}"));
                let committed = self.vault.transact(move |txn| -> Result<(), GatewayError> {
                    failures::clear_stored_failures(txn, id)?;
                    txn.audit(
                        &actor,
                        crate::audit::ADMIN_MERCHANT_UNLOCK,
                        None,
                        detail.clone(),
                        vault_service::AuditOutcome::Ok,
                    )?;
                    Ok(())
                });
                match committed {
                    Ok(()) => return Ok(()),
                    // Falls through: the refusal's entry is written alone.
                    Err(e) => Err(e),
                }
            }
            Ok(None) => Err(GatewayError::field(
                "merchantId",
                "unknown",
                "no merchant with this id",
            )),
            Err(e) => Err(e.into()),
        };
        // Refused (or the commit failed): nothing changed, and the entry is written alone.
        let outcome = GatewayError::outcome(&result);
        self.vault
            .audit_detailed(crate::audit::ADMIN_MERCHANT_UNLOCK, None, None, outcome)?;
        result
    }

    /// Checks `merchant`'s gateway password. Blocking: one Argon2id verification (tens of
    /// milliseconds) unless a recent success with the same password is cached.
    ///
    /// Unknown merchant, merchant without a password and wrong password are the same
    /// [`VaultError::Unauthorized`], after the same work. Too many recent failures for this
    /// merchant id or from this peer (the handle's actor's `peer_uid`) -> [`GatewayError::RateLimited`], checked
    /// before any hashing; all hashing slots taken and `max_waiting` callers already queued ->
    /// [`VaultError::Busy`]. Failures are counted in a sliding window (`policy.window`); a success
    /// does not clear them (so guesses interleaved with a gateway's good logins still hit the
    /// limit); an operator clears a merchant's with [`unlock_merchant`](Self::unlock_merchant). A
    /// success re-hashes the stored password if it was made with other parameters than the policy's.
    ///
    /// A concurrent burst can overshoot `merchant_failures` by at most the callers already past
    /// the check (the limit is checked again once a slot is taken, so by at most
    /// `max_concurrent_hashes - 1`).
    ///
    /// Every failure is recorded in the audit log (`login.failed`, actor = this handle's actor
    /// with the claimed merchant id), except that refusals costing no hashing (`rate_limited`, `busy`) are
    /// recorded at most once a minute per merchant id; successes are not (the sessions they open
    /// are).
    pub fn login(
        &self,
        merchant: MerchantId,
        password: &MerchantPassword,
    ) -> Result<(), GatewayError> {
        let actor = self.vault.actor();
        let r = self.check_password(actor.peer_uid, merchant, password);
        let cheap = matches!(
            r,
            Err(GatewayError::RateLimited | GatewayError::Vault(VaultError::Busy))
        );
        let vault = self.vault.as_actor(&Actor {
            merchant: Some(merchant),
            ..actor.clone()
        });
        if cheap {
            vault.audit_throttled(
                &self.state.login.refusals,
                merchant.get(),
                crate::audit::LOGIN_FAILED,
                GatewayError::outcome(&r),
            );
        } else if r.is_err() {
            // Not waited for: a refused caller learns nothing from the entry, and during a flood
            // of bad passwords (or Busy refusals) each failure then joins a group commit instead
            // of holding its thread, and a hashing slot's worth of time, for one durable commit.
            vault.audit_then(crate::audit::LOGIN_FAILED, None, GatewayError::outcome(&r));
        }
        r
    }

    fn check_password(
        &self,
        peer: Option<u32>,
        merchant: MerchantId,
        password: &MerchantPassword,
    ) -> Result<(), GatewayError> {
        let login = &self.state.login;
        let policy = self.login_policy();
        let id = merchant.get();
        let now = self.vault.now();
        self.check_limits(id, peer, now, &policy)?;

        let mac = self.vault.record_mac(PASSWORD_MAC);
        // A tampered record fails closed (`Integrity`), never verifies.
        let stored = match self
            .vault
            .read_sealed_in(&PASSWORDS, &mac, &merchant.get())?
        {
            Some(rec) => Some((PasswordHash::new(&rec.phc).map_err(|_| corrupt())?, rec.phc)),
            None => None,
        };

        let epoch = login.cache.epoch();
        // Bound to the stored hash as just read: a password changed since the entry was made
        // (through any daemon) never hits.
        let stored_phc = stored.as_ref().map(|(_, phc)| phc.as_str());
        if let Some(phc) = stored_phc
            && login
                .cache
                .hit(id, &login.cache.tag(merchant, phc, password), now)
        {
            login.cache_hits.fetch_add(1, Ordering::Relaxed);
            // A success does not clear earlier failures (the window slides them out).
            return Ok(());
        }

        let slot = login
            .slots
            .acquire(Some(policy.max_waiting))
            .inspect_err(|_| {
                login.busy.fetch_add(1, Ordering::Relaxed);
            })?;
        // Failures may have piled up while this caller waited for its slot.
        self.check_limits(id, peer, self.vault.now(), &policy)?;
        let keep = policy.max_concurrent_hashes;
        let ok = match &stored {
            Some((hash, _)) => verify(hash, password, &login.memory, keep)?,
            None => {
                let dummy = self.dummy_hash(&policy)?;
                let _ = verify(&dummy, password, &login.memory, keep)?;
                false
            }
        };
        if !ok {
            // Counted before the slot is freed: the next waiter re-checks the limit only once it
            // holds the slot, and must see this failure (else a burst overshoots the limit by
            // more than the slots in use).
            self.count_failure(id, peer, self.vault.now(), &policy)?;
            drop(slot);
            return Err(VaultError::Unauthorized.into());
        }
        let cached_phc = match stored {
            Some((hash, old)) if outdated(&hash, &policy) => {
                // Still holding the slot: the re-hash counts against the memory bound too.
                let phc = hash_password(&policy, password, &login.memory)?;
                drop(slot);
                self.replace_hash(merchant, old, phc.clone())?;
                phc
            }
            Some((_, old)) => {
                drop(slot);
                old
            }
            // `ok` is false without a stored hash.
            None => return Err(VaultError::Unauthorized.into()),
        };
        let ttl = time::Duration::try_from(policy.cache_ttl).unwrap_or(time::Duration::MAX);
        let tag = login.cache.tag(merchant, &cached_phc, password);
        login.cache.insert(id, tag, now, ttl, epoch);
        Ok(())
    }

    /// Refuses with [`GatewayError::RateLimited`] when `merchant` or `peer` failed too often
    /// within the window: the merchant's failures as counted in the store on a shared vault (by
    /// every daemon), in memory otherwise; the peer's in memory.
    fn check_limits(
        &self,
        merchant: u64,
        peer: Option<u32>,
        now: OffsetDateTime,
        policy: &LoginPolicy,
    ) -> Result<(), GatewayError> {
        let limits = &self.state.login.limits;
        if self.vault.shared() {
            limits.lock().check_peer(peer, now, policy)?;
            if failures::stored_failures(&self.vault, merchant, now, policy)?
                >= policy.merchant_failures
            {
                return Err(GatewayError::RateLimited);
            }
            return Ok(());
        }
        limits.lock().check(merchant, peer, now, policy)
    }

    /// Counts a failed login of `merchant` from `peer` (see [`check_limits`](Self::check_limits)
    /// for where). On a shared vault it is durable before this returns; if it cannot be stored,
    /// the login fails with that error (a failure that is not counted would not limit).
    fn count_failure(
        &self,
        merchant: u64,
        peer: Option<u32>,
        now: OffsetDateTime,
        policy: &LoginPolicy,
    ) -> Result<(), GatewayError> {
        let limits = &self.state.login.limits;
        if self.vault.shared() {
            limits.lock().fail_peer(peer, now, policy);
            return failures::count_stored_failure(&self.vault, merchant, now, policy);
        }
        limits.lock().fail(merchant, peer, now, policy);
        Ok(())
    }

    /// Removes the failure records (a shared vault's) whose every failure has slid out of the
    /// window; returns how many. Part of the sweep.
    pub(crate) fn sweep_login_failures(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        failures::sweep(&self.vault, now, &self.login_policy())
    }

    /// Stores `new` as `merchant`'s hash, unless the stored one is no longer `old` (the password
    /// was changed meanwhile: that change wins).
    fn replace_hash(
        &self,
        merchant: MerchantId,
        old: String,
        new: String,
    ) -> Result<(), GatewayError> {
        let id = merchant.get();
        let rec = PasswordRec {
            v: MAC_VERSION,
            phc: new,
            updated_at: self.vault.now().unix_timestamp(),
        };
        let mac = self.vault.record_mac(PASSWORD_MAC);
        self.vault.transact(move |tx| -> Result<(), GatewayError> {
            // Conditional on the record read: a password set meanwhile by another daemon of a
            // shared vault wins over this re-hash.
            tx.update(&PASSWORDS.key(&id), |bytes| {
                let Some(bytes) = bytes else {
                    return Ok(Update::Keep(()));
                };
                if mac.open_in(&PASSWORDS, &id, bytes)?.phc != old {
                    return Ok(Update::Keep(()));
                }
                Ok::<_, GatewayError>(Update::Put(mac.seal_in(&PASSWORDS, &id, &rec), ()))
            })
        })
    }

    /// The unknown-merchant hash for the policy's parameters, made once per parameter set.
    fn dummy_hash(&self, policy: &LoginPolicy) -> Result<PasswordHash, GatewayError> {
        let mut dummy = self.state.login.dummy.lock();
        match &*dummy {
            Some(d) if d.cost == policy.cost() => Ok(d.hash.clone()),
            _ => {
                let hash = dummy_hash(policy)?;
                *dummy = Some(Dummy {
                    cost: policy.cost(),
                    hash: hash.clone(),
                });
                Ok(hash)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn small() -> LoginPolicy {
        LoginPolicy {
            memory_kib: 64,
            iterations: 1,
            ..LoginPolicy::default()
        }
    }

    #[test]
    fn dummy_never_verifies_and_has_the_policy_cost() {
        let p = small();
        let d = dummy_hash(&p).unwrap();
        assert!(!outdated(&d, &p));
        let pw = MerchantPassword::new("anything".into()).unwrap();
        assert!(!verify(&d, &pw, &MemoryPool::default(), 1).unwrap());
    }

    #[test]
    fn hash_round_trip_and_outdated() {
        let p = small();
        let pw = MerchantPassword::new("u16q9rZ02bW0jqTjxH8t".into()).unwrap();
        let pool = MemoryPool::default();
        let phc = hash_password(&p, &pw, &pool).unwrap();
        let h = PasswordHash::new(&phc).unwrap();
        assert!(verify(&h, &pw, &pool, 2).unwrap());
        assert!(
            !verify(
                &h,
                &MerchantPassword::new("u16q9rZ02bW0jqTjxH8T".into()).unwrap(),
                &pool,
                2
            )
            .unwrap()
        );
        // A hash made by the argon2 crate's own PHC path verifies in pooled memory too.
        use argon2::PasswordHasher;
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            p.argon2_params().unwrap(),
        )
        .hash_password_with_salt(pw.expose().as_bytes(), b"0123456789abcdef")
        .unwrap();
        assert!(verify(&theirs, &pw, &pool, 2).unwrap());
        // One buffer is kept and reused.
        assert_eq!(pool.free.lock().len(), 1);
        assert!(!outdated(&h, &p));
        assert!(outdated(&h, &LoginPolicy { iterations: 2, ..p }));
    }

    #[test]
    fn policy_is_normalized() {
        let p = LoginPolicy {
            max_concurrent_hashes: 0,
            memory_kib: 0,
            iterations: 0,
            parallelism: 0,
            ..LoginPolicy::default()
        }
        .normalized();
        assert_eq!(
            (
                p.max_concurrent_hashes,
                p.memory_kib,
                p.iterations,
                p.parallelism
            ),
            (1, 8, 1, 1)
        );
        assert!(p.argon2_params().is_ok());
    }

    #[test]
    fn semaphore_refuses_past_the_queue() {
        let slots = Slots::default();
        slots.resize(1);
        let held = slots.acquire(Some(0)).unwrap();
        assert!(matches!(slots.acquire(Some(0)), Err(VaultError::Busy)));
        drop(held);
        assert!(slots.acquire(Some(0)).is_ok());
        assert_eq!(slots.state.lock().peak, 1);
    }
}
