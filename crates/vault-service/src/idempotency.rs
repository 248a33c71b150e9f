//! Idempotency keys: per-merchant, keyed request fingerprints, sealed stored responses, 24-hour
//! replay, conflicts for different or concurrent requests.
//!
//! A caller starts a keyed request with [`Vault::idempotency_begin`]. The answer is one of:
//!
//! - `Err(Conflict(IdempotencyInProgress))`: the same merchant's same key is being answered
//!   right now (by this process; on a vault shared by several daemons, by any of them: see
//!   *Claims* below);
//! - `Ok(Replay(response))`: the key was answered less than [`IDEMPOTENCY_TTL`] ago for the same
//!   request; `response` is what was answered then;
//! - `Err(Conflict(IdempotencyMismatch))`: the key was answered less than 24 hours ago for a
//!   different request (a different body, or a different route);
//! - `Ok(Proceed(guard))`: the key is new (or its record is older than 24 hours). The caller does
//!   the work and hands the response to [`IdempotencyGuard::finish`], which stores it durably
//!   unless it is a server error (status 500 and above: those may succeed on a retry, so they are
//!   never replayed). Dropping the guard instead stores nothing; either way the key is free
//!   again afterwards.
//!
//! # What is stored
//!
//! ```text
//! b'I' | merchant u64 BE | key [16]            -> postcard { v: 1, created_at: i64,
//!                                                            fingerprint: [32], sealed: bytes }
//! b'i' | created_at u64 BE | merchant u64 BE | key [16] -> empty   (the sweep's time index)
//! ```
//!
//! - `fingerprint` = `HMAC-SHA256(mac_key("idempotency"), merchant u64 BE | route_len u64 BE |
//!   route | part_count u64 BE | (part_len u64 BE | part)*)`. Compared in constant time. The
//!   parts are the caller's canonical, NON-secret view of the request (the daemon's `json_shape`
//!   / `form_shape`): a short secret or a bearer credential in a request never enters them in
//!   any form (a keyed digest of a secret with few possible values could be brute-forced by a
//!   key holder in as many guesses), and a card number only as the merchant's keyed card
//!   fingerprint ([`Vault::idempotency_pan_part`]), which the vault already keeps at rest for
//!   every stored card.
//! - `sealed` = [`seal_blob`] under `mac_key("idempotency-seal")` of `status u16 BE |
//!   content_type_len u64 BE | content_type | has_location u8 | (location_len u64 BE | location)? |
//!   body`, with the record's key, `created_at` (i64 BE) and `fingerprint` as associated data: a
//!   stored answer (which may hold a bearer credential) is never on disk in clear, and a sealed
//!   answer moved under another key, time or fingerprint does not open.
//! - `created_at` is the vault clock when the request began; the record is replayed while
//!   `now - created_at < 24 h`.
//!
//! A stored record that does not decode or open is reported as [`VaultError::Integrity`] (the
//! key is neither replayed nor silently re-run, since that could repeat the work it guarded);
//! [`Vault::sweep_idempotency`] removes it once its index entry is older than 24 hours.
//!
//! # Claims (a vault shared by several daemons)
//!
//! A directory vault has one process, and the keys in flight are a set in its memory. On a vault
//! shared by several daemons ([`Vault::shared`]) a request also **claims its key in the store**
//! before it proceeds, in one conditional write (the record key must be absent, hold an answer
//! older than 24 h, or hold a claim whose lease ran out):
//!
//! ```text
//! b'I' | merchant u64 BE | key [16]  -> postcard { v: 2, created_at: i64, lease_until: i64,
//!                                                 fingerprint: [32], owner: [16] }
//! ```
//!
//! with the same time-index entry an answer made at `created_at` has. A claim held by another
//! request, on any daemon, answers `IdempotencyInProgress` until `lease_until`
//! ([`IDEMPOTENCY_LEASE`] after the claim, on the claiming daemon's vault clock); past it (the
//! daemon holding it was killed) the next request with the key takes it over.
//! [`IdempotencyGuard::finish`] replaces the claim by the sealed answer in one conditional write
//! (only while the claim is still its own: `owner` is random per request); dropping the guard
//! deletes the claim (queued, not waited for; if that write is refused the lease still frees the
//! key).
//!
//! While its work runs, the request renews its claim every [`IDEMPOTENCY_RENEWAL`] through
//! [`IdempotencyGuard::renewal`] (one conditional write: the lease becomes `now + IDEMPOTENCY_LEASE`
//! while the claim is still its own), so work that takes longer than the lease keeps its key as
//! long as the daemon doing it is alive and can reach the database. A claim that was not renewed
//! in time (its daemon was killed, or could not write for a whole lease) can be taken over, and
//! then the late request's answer is not stored (`finish` and `renew` report
//! `IdempotencyInProgress`).

use std::fmt;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use vault_core::{MerchantId, open_blob, seal_blob};
use vault_store::{Table, Versioned};
use zeroize::Zeroizing;

use crate::{Update, Vault, VaultError, txn::update_raw, vault::Core};

use crate::HmacSha256;

/// How long a stored answer is replayed: 24 hours from the request that produced it.
pub const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);

/// How long a claim on a key (a vault shared by several daemons) holds it for its request without
/// a renewal (see [`IDEMPOTENCY_RENEWAL`]) before another request may take the key over.
pub const IDEMPOTENCY_LEASE: time::Duration = time::Duration::seconds(60);

/// How often a request whose work is still running renews its claim (a third of the lease: two
/// renewals may fail or be late before the key can be taken over).
pub const IDEMPOTENCY_RENEWAL: std::time::Duration = std::time::Duration::from_secs(20);

/// Stored answers: `I` + merchant id + idempotency key.
const RECORDS: Table<(u64, [u8; 16]), StoredRec> =
    Table::new(vault_store::KeySpace::IdempotencyRecord);
/// Claims (a shared vault), under the same keys as the answers they become.
const CLAIMS: Table<(u64, [u8; 16]), ClaimRec> =
    Table::new(vault_store::KeySpace::IdempotencyRecord);
/// The layout version of a claim (its first byte tells it from an answer).
const CLAIM_VERSION: u8 = 2;
const RECORD_PREFIX: u8 = vault_store::KeySpace::IdempotencyRecord.byte();
const INDEX_PREFIX: u8 = vault_store::KeySpace::IdempotencyIndex.byte();
const RECORD_VERSION: u8 = 1;
/// `b'I' | merchant | key`.
const RECORD_KEY_LEN: usize = 1 + 8 + 16;
/// `b'i' | created_at | merchant | key`.
const INDEX_KEY_LEN: usize = 1 + 8 + 8 + 16;
/// Index entries examined per sweep step (each step's removals are one commit).
const SWEEP_BATCH: usize = 1024;

/// A client-chosen idempotency key: a UUID of version 4 (`8-4-4-4-12` hexadecimal digits, either
/// case, RFC 4122 variant). Not a secret; `Display` is the lower-case hyphenated form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdempotencyKey([u8; 16]);

impl IdempotencyKey {
    /// Parses the header value. Anything but a hyphenated version-4 UUID is refused, as
    /// `Invalid` on field `Idempotency-Key` with code `invalid`.
    pub fn parse(s: &str) -> Result<Self, VaultError> {
        let invalid = || {
            VaultError::field(
                "Idempotency-Key",
                "invalid",
                "Idempotency-Key must be a UUID v4 (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx)",
            )
        };
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(invalid());
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(invalid());
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(invalid()),
            };
            out[nibbles / 2] |= if nibbles.is_multiple_of(2) { v << 4 } else { v };
            nibbles += 1;
        }
        // Version nibble 4; variant bits 10 (RFC 4122).
        if out[6] >> 4 != 4 || out[8] >> 6 != 0b10 {
            return Err(invalid());
        }
        Ok(Self(out))
    }

    /// The 16 bytes of the UUID.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({self})")
    }
}

/// A response as stored for replay: status, content type, optional `Location`, body.
#[derive(Clone)]
pub struct IdempotentResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` (empty when the response had none).
    pub content_type: String,
    /// `Location`, for answers that created a resource.
    pub location: Option<String>,
    /// The body, exactly as sent.
    pub body: Vec<u8>,
}

impl fmt::Debug for IdempotentResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotentResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What [`Vault::idempotency_begin`] decided.
#[derive(Debug)]
pub enum IdempotencyStart {
    /// Do the work, then [`finish`](IdempotencyGuard::finish) with its response.
    Proceed(IdempotencyGuard),
    /// Answer with this stored response (and say it is a replay).
    Replay(IdempotentResponse),
}

/// The in-flight slot of one merchant's key, held while its request is answered. Dropping it
/// releases the slot without storing anything (the request may then be retried with the key).
pub struct IdempotencyGuard {
    vault: Vault,
    merchant: MerchantId,
    key: IdempotencyKey,
    fingerprint: [u8; 32],
    started: OffsetDateTime,
    /// On a shared vault: the owner id of this request's claim in the store.
    claim: Option<[u8; 16]>,
    /// The answer was stored: nothing to release in the store.
    finished: bool,
}

impl IdempotencyGuard {
    /// Stores `response` for replay, durably, unless it is a server error (status >= 500), then
    /// releases the slot. On a store failure nothing is stored, the slot is released and the
    /// error returned.
    pub fn finish(mut self, response: &IdempotentResponse) -> Result<(), VaultError> {
        if response.status >= 500 {
            return Ok(());
        }
        let core = &self.vault.inner.core;
        let merchant = self.merchant;
        let key = self.key;
        let record_key = record_key(merchant, &key);
        let created_at = self.started.unix_timestamp();
        let plaintext = encode_response(response);
        let aad = seal_aad(&record_key, created_at, &self.fingerprint);
        let sealed = seal_blob(
            &core.idempotency_keys().seal,
            &aad,
            &plaintext,
            &mut rand::rng(),
        );
        let value = RECORDS.encode(&StoredRec {
            v: RECORD_VERSION,
            created_at,
            fingerprint: self.fingerprint,
            sealed,
        });
        let index = index_key(created_at, merchant, &key);
        let claim = self.claim;
        // The job captures only bytes (never the vault): see `Core`.
        self.vault
            .inner
            .store
            .write(move |tx| -> Result<(), VaultError> {
                let replaced = update_raw(tx, &record_key, |current| {
                    let current = current.map(decode_stored);
                    if let Some(owner) = claim {
                        // Shared vault: only over this request's own claim (the claim's index
                        // entry is the answer's: same key, same time).
                        return match own_claim(current.transpose()?, owner) {
                            Some(_) => Ok(Update::Put(value.clone(), None)),
                            None => Err(in_progress()),
                        };
                    }
                    // A record being replaced (older than 24 h) takes its index entry with it.
                    let old = current.and_then(Result::ok).map(|r| r.created_at());
                    Ok(Update::Put(value.clone(), old))
                })?;
                if let Some(old_index) = replaced.map(|t| index_key(t, merchant, &key))
                    && old_index != index
                {
                    tx.delete_raw_key(&old_index)?;
                }
                tx.put_raw(&index, Vec::new())?;
                Ok(())
            })?;
        self.finished = true;
        Ok(())
        // `self` drops here: the slot is released only after the record is durable, so a
        // duplicate arriving in between sees "in progress" and one arriving after sees the replay.
    }

    /// On a vault shared with other daemons, a handle that renews this request's claim on its key
    /// (see the module documentation); `None` on a directory vault, whose keys in flight are held
    /// in this process's memory for as long as the guard lives.
    pub fn renewal(&self) -> Option<ClaimRenewal> {
        Some(ClaimRenewal {
            vault: self.vault.clone(),
            record_key: record_key(self.merchant, &self.key),
            owner: self.claim?,
        })
    }
}

/// Renews one request's claim on its idempotency key (a vault shared with other daemons), from
/// [`IdempotencyGuard::renewal`]. Owns what it needs, so it can run beside the guard's work.
#[derive(Clone)]
pub struct ClaimRenewal {
    vault: Vault,
    record_key: Vec<u8>,
    owner: [u8; 16],
}

impl ClaimRenewal {
    /// Extends the claim's lease to [`IDEMPOTENCY_LEASE`] from now (never shortens it), durably, in
    /// one conditional write. `Err(Conflict(IdempotencyInProgress))` if the claim is no longer this
    /// request's (its lease ran out and another request took the key over, or it was answered):
    /// renewing again cannot help then.
    pub fn renew(&self) -> Result<(), VaultError> {
        let lease_until = (self.vault.inner.clock.now() + IDEMPOTENCY_LEASE).unix_timestamp();
        let record_key = self.record_key.clone();
        let owner = self.owner;
        // The job captures only bytes (never the vault): see `Core`.
        self.vault
            .inner
            .store
            .write(move |tx| -> Result<(), VaultError> {
                update_raw(tx, &record_key, |current| {
                    let stored = current.map(decode_stored).transpose()?;
                    let Some(mut c) = own_claim(stored, owner) else {
                        return Err(in_progress());
                    };
                    if c.lease_until >= lease_until {
                        return Ok(Update::Keep(()));
                    }
                    c.lease_until = lease_until;
                    Ok(Update::Put(CLAIMS.encode(&c), ()))
                })
            })
    }
}

impl fmt::Debug for ClaimRenewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimRenewal").finish_non_exhaustive()
    }
}

impl Drop for IdempotencyGuard {
    fn drop(&mut self) {
        if let (Some(owner), false) = (self.claim, self.finished) {
            // Give the key back in the store: delete the claim while it is still this request's
            // (and its index entry with it). Queued, not waited for (a guard may drop on an async
            // task); if the write is refused, the lease frees the key.
            let record_key = record_key(self.merchant, &self.key);
            let index = index_key(self.started.unix_timestamp(), self.merchant, &self.key);
            self.vault.inner.store.submit(
                move |tx| -> Result<(), VaultError> {
                    let released = update_raw(tx, &record_key, |current| {
                        let stored = current.map(decode_stored).and_then(Result::ok);
                        Ok::<_, VaultError>(match own_claim(stored, owner) {
                            Some(_) => Update::Delete(true),
                            None => Update::Keep(false),
                        })
                    })?;
                    if released {
                        tx.delete_raw_key(&index)?;
                    }
                    Ok(())
                },
                |_| {},
            );
        }
        self.vault
            .inner
            .idempotency
            .slots
            .lock()
            .remove(&(self.merchant, self.key.0));
    }
}

impl fmt::Debug for IdempotencyGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyGuard")
            .field("merchant", &self.merchant)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Core {
    fn idempotency_keys(&self) -> &crate::idempotency_state::IdempotencyKeys {
        self.idempotency.keys.get_or_init(|| {
            let keyring = self.keyring.read();
            let mac = keyring.mac_key("idempotency");
            crate::idempotency_state::IdempotencyKeys {
                fingerprint: <HmacSha256 as KeyInit>::new_from_slice(mac.expose())
                    .expect("HMAC accepts any key length"),
                seal: keyring.mac_key("idempotency-seal"),
            }
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredRec {
    v: u8,
    created_at: i64,
    fingerprint: [u8; 32],
    sealed: Vec<u8>,
}

impl Versioned for StoredRec {
    const VERSION: u8 = RECORD_VERSION;
}

/// A request's claim on its key, on a shared vault (see the module documentation).
#[derive(Serialize, Deserialize)]
struct ClaimRec {
    v: u8,
    created_at: i64,
    lease_until: i64,
    fingerprint: [u8; 32],
    owner: [u8; 16],
}

impl Versioned for ClaimRec {
    const VERSION: u8 = CLAIM_VERSION;
}

/// What the store holds under an idempotency key.
enum Stored {
    Answer(StoredRec),
    Claim(ClaimRec),
}

impl Stored {
    fn created_at(&self) -> i64 {
        match self {
            Self::Answer(r) => r.created_at,
            Self::Claim(c) => c.created_at,
        }
    }
}

/// What the store says of a key at `now`, before any request proceeds with it.
enum Standing {
    /// Nothing that counts: no record, or an answer older than 24 h, or a claim whose lease ran
    /// out. Holds the replaced record's creation time, if any.
    Free(Option<i64>),
    /// A live answer: replay it (same fingerprint) or refuse (another).
    Answered(StoredRec),
    /// A live claim: another request is being answered.
    Claimed,
}

fn standing(stored: Option<Stored>, now: OffsetDateTime) -> Result<Standing, VaultError> {
    Ok(match stored {
        None => Standing::Free(None),
        Some(Stored::Answer(rec)) => {
            if now - from_unix(rec.created_at)? >= IDEMPOTENCY_TTL {
                Standing::Free(Some(rec.created_at))
            } else {
                Standing::Answered(rec)
            }
        }
        Some(Stored::Claim(c)) => {
            if now.unix_timestamp() >= c.lease_until {
                Standing::Free(Some(c.created_at))
            } else {
                Standing::Claimed
            }
        }
    })
}

/// What a shared vault's claiming job did.
enum ClaimOutcome {
    /// The key is this request's now (replacing the record created then, if any).
    Taken(Option<i64>),
    /// A live answer is stored.
    Answered(StoredRec),
    /// Another request holds a live claim.
    Held,
}

impl Vault {
    /// Starts answering a request that carries an idempotency key.
    ///
    /// `route` is a stable route name (`"POST /v2/tokens"`); `request` the parts that define the
    /// request (path parameters, body bytes). In flight (same merchant and key) ->
    /// `Err(Conflict(IdempotencyInProgress))`. Stored less than 24 h ago with the same
    /// fingerprint -> `Ok(Replay(response))`; with a different one (a different route included) ->
    /// `Err(Conflict(IdempotencyMismatch))`. Absent or older -> `Ok(Proceed(guard))`. A stored
    /// record that fails to decode or open -> `Err(Integrity)`. Keys are scoped to `merchant`:
    /// two merchants using the same key never meet.
    pub fn idempotency_begin(
        &self,
        merchant: MerchantId,
        route: &str,
        key: &IdempotencyKey,
        request: &[&[u8]],
    ) -> Result<IdempotencyStart, VaultError> {
        // Taken before reading the store, so two concurrent duplicates cannot both proceed.
        if !self
            .inner
            .idempotency
            .slots
            .lock()
            .insert((merchant, key.0))
        {
            return Err(in_progress());
        }
        let now = self.inner.clock.now();
        let keys = self.inner.core.idempotency_keys();
        // From here on, every early return drops the guard and so frees the slot.
        let mut guard = IdempotencyGuard {
            vault: self.clone(),
            merchant,
            key: *key,
            fingerprint: fingerprint(&keys.fingerprint, merchant, route, request),
            started: now,
            claim: None,
            finished: false,
        };
        let record_key = record_key(merchant, key);
        let found = if self.shared() {
            // Other daemons answer keys too: claim the key in the store, in one conditional
            // write, or learn what holds it.
            let owner: [u8; 16] = rand::random();
            let claim = CLAIMS.encode(&ClaimRec {
                v: CLAIM_VERSION,
                created_at: now.unix_timestamp(),
                lease_until: (now + IDEMPOTENCY_LEASE).unix_timestamp(),
                fingerprint: guard.fingerprint,
                owner,
            });
            let index = index_key(now.unix_timestamp(), merchant, key);
            let key = *key;
            let claim_key = record_key.clone();
            let outcome = self.inner.store.write(move |tx| -> Result<_, VaultError> {
                let outcome = update_raw(tx, &claim_key, |current| {
                    let stored = current.map(decode_stored).transpose()?;
                    Ok::<_, VaultError>(match standing(stored, now)? {
                        Standing::Answered(rec) => Update::Keep(ClaimOutcome::Answered(rec)),
                        Standing::Claimed => Update::Keep(ClaimOutcome::Held),
                        Standing::Free(replaced) => {
                            Update::Put(claim.clone(), ClaimOutcome::Taken(replaced))
                        }
                    })
                })?;
                if let ClaimOutcome::Taken(replaced) = &outcome {
                    if let Some(old) = replaced.map(|t| index_key(t, merchant, &key))
                        && old != index
                    {
                        tx.delete_raw_key(&old)?;
                    }
                    tx.put_raw(&index, Vec::new())?;
                }
                Ok(outcome)
            })?;
            match outcome {
                ClaimOutcome::Taken(_) => {
                    guard.claim = Some(owner);
                    return Ok(IdempotencyStart::Proceed(guard));
                }
                ClaimOutcome::Held => return Err(in_progress()),
                ClaimOutcome::Answered(rec) => Standing::Answered(rec),
            }
        } else {
            let stored = self
                .inner
                .store
                .get_raw(&record_key)?
                .as_deref()
                .map(decode_stored)
                .transpose()?;
            standing(stored, now)?
        };
        match found {
            Standing::Free(_) => Ok(IdempotencyStart::Proceed(guard)),
            // A claim on a directory vault (a vault that was shared once): its daemon is gone
            // unless the lease says otherwise.
            Standing::Claimed => Err(in_progress()),
            Standing::Answered(rec) => Ok(IdempotencyStart::Replay(self.replay_of(
                &record_key,
                &rec,
                &guard.fingerprint,
            )?)),
        }
    }

    /// The answer stored for `key` if it may be replayed for this request (see
    /// [`idempotency_begin`](Self::idempotency_begin)), without taking the key: `Ok(None)` when
    /// nothing is stored (or only an answer older than 24 h, or a claim whose lease ran out); the
    /// same conflicts as `idempotency_begin` otherwise. Writes nothing, on any vault: for a
    /// request that can no longer be served (a retry on a spent session) and only looks up.
    pub fn idempotency_lookup(
        &self,
        merchant: MerchantId,
        route: &str,
        key: &IdempotencyKey,
        request: &[&[u8]],
    ) -> Result<Option<IdempotentResponse>, VaultError> {
        if self
            .inner
            .idempotency
            .slots
            .lock()
            .contains(&(merchant, key.0))
        {
            return Err(in_progress());
        }
        let now = self.inner.clock.now();
        let keys = self.inner.core.idempotency_keys();
        let record_key = record_key(merchant, key);
        let stored = self
            .inner
            .store
            .get_raw(&record_key)?
            .as_deref()
            .map(decode_stored)
            .transpose()?;
        match standing(stored, now)? {
            Standing::Free(_) => Ok(None),
            Standing::Claimed => Err(in_progress()),
            Standing::Answered(rec) => {
                let fingerprint = fingerprint(&keys.fingerprint, merchant, route, request);
                self.replay_of(&record_key, &rec, &fingerprint).map(Some)
            }
        }
    }

    /// A live stored answer, for a request with `fingerprint`: the answer, or
    /// `IdempotencyMismatch` for another request.
    fn replay_of(
        &self,
        record_key: &[u8],
        rec: &StoredRec,
        fingerprint: &[u8; 32],
    ) -> Result<IdempotentResponse, VaultError> {
        if !bool::from(rec.fingerprint.ct_eq(fingerprint)) {
            return Err(VaultError::Conflict(
                crate::VaultConflict::IdempotencyMismatch,
            ));
        }
        let keys = self.inner.core.idempotency_keys();
        let aad = seal_aad(record_key, rec.created_at, &rec.fingerprint);
        let plaintext =
            open_blob(&keys.seal, &aad, &rec.sealed).map_err(|_| VaultError::Integrity)?;
        decode_response(&plaintext)
    }

    /// The keyed digest the idempotency store keeps for a request made of `request` on `route`
    /// (the `fingerprint` of a stored record). For audits and leak tests: it lets one check that
    /// no request shape holding a secret was ever fingerprinted.
    pub fn idempotency_digest(
        &self,
        merchant: MerchantId,
        route: &str,
        request: &[&[u8]],
    ) -> [u8; 32] {
        fingerprint(
            &self.inner.core.idempotency_keys().fingerprint,
            merchant,
            route,
            request,
        )
    }

    /// A stand-in for a card number in an idempotent request's fingerprint: the merchant's
    /// keyed card fingerprint of `pan`, which the vault already keeps at rest for every stored
    /// card, so fingerprinting it adds no new way to test guesses of the number.
    pub fn idempotency_pan_part(&self, merchant: MerchantId, pan: &vault_core::Pan) -> [u8; 32] {
        let keyring = self.inner.core.keyring.read();
        *self
            .inner
            .core
            .fingerprint(&keyring, merchant, pan)
            .as_bytes()
    }

    /// Deletes the stored idempotency records created 24 hours or more before the vault clock's
    /// now; returns how many. Walks the time index oldest first, 1,024 entries per
    /// commit, and stops at the first entry still young enough to be replayed.
    pub fn sweep_idempotency(&self) -> Result<u64, VaultError> {
        self.sweep_idempotency_at(self.inner.clock.now())
    }

    /// [`sweep_idempotency`](Self::sweep_idempotency) as of `now`.
    pub(crate) fn sweep_idempotency_at(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        let cutoff = index_time((now - IDEMPOTENCY_TTL).unix_timestamp());
        let mut removed = 0;
        loop {
            let batch = self.inner.store.scan_raw(&[INDEX_PREFIX], SWEEP_BATCH)?;
            let full = batch.len() == SWEEP_BATCH;
            // Index keys sort by time; a malformed one (no time) is removed as well.
            let due: Vec<Vec<u8>> = batch
                .into_iter()
                .map(|(k, _)| k)
                .take_while(|k| parse_index(k).is_none_or(|(t, _)| t <= cutoff))
                .collect();
            if due.is_empty() {
                return Ok(removed);
            }
            let stopped_early = due.len() < SWEEP_BATCH;
            removed += self
                .inner
                .store
                .write(move |tx| -> Result<u64, VaultError> {
                    let mut n = 0;
                    for index in &due {
                        tx.delete_raw_key(index)?;
                        let Some((t, record_key)) = parse_index(index) else {
                            continue;
                        };
                        // Re-read inside the commit: the key may have been answered again since
                        // (a newer record with its own index entry), which stays. A record that
                        // does not decode is removed once an index entry naming it is due: it
                        // can never be replayed. Conditional: on a shared vault another daemon
                        // may be claiming the key right now.
                        n += update_raw(tx, &record_key, |current| {
                            Ok::<_, VaultError>(match current {
                                Some(bytes)
                                    if decode_stored(bytes)
                                        .map_or(true, |r| index_time(r.created_at()) == t) =>
                                {
                                    Update::Delete(1)
                                }
                                _ => Update::Keep(0),
                            })
                        })?;
                    }
                    Ok(n)
                })?;
            if !full || stopped_early {
                return Ok(removed);
            }
        }
    }
}

fn fingerprint(
    base: &HmacSha256,
    merchant: MerchantId,
    route: &str,
    request: &[&[u8]],
) -> [u8; 32] {
    let mut mac = base.clone();
    mac.update(&merchant.get().to_be_bytes());
    mac.update(&(route.len() as u64).to_be_bytes());
    mac.update(route.as_bytes());
    mac.update(&(request.len() as u64).to_be_bytes());
    for part in request {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn record_key(merchant: MerchantId, key: &IdempotencyKey) -> Vec<u8> {
    RECORDS.key(&(merchant.get(), key.0))
}

/// Times before the epoch (never written by a sane clock) sort first.
fn index_time(unix: i64) -> u64 {
    u64::try_from(unix).unwrap_or(0)
}

fn index_key(created_at: i64, merchant: MerchantId, key: &IdempotencyKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(INDEX_KEY_LEN);
    k.push(INDEX_PREFIX);
    k.extend_from_slice(&index_time(created_at).to_be_bytes());
    k.extend_from_slice(&merchant.get().to_be_bytes());
    k.extend_from_slice(&key.0);
    k
}

/// An index key's time and the record key it names.
fn parse_index(k: &[u8]) -> Option<(u64, Vec<u8>)> {
    if k.len() != INDEX_KEY_LEN || k[0] != INDEX_PREFIX {
        return None;
    }
    let t = u64::from_be_bytes(k[1..9].try_into().ok()?);
    let mut record = Vec::with_capacity(RECORD_KEY_LEN);
    record.push(RECORD_PREFIX);
    record.extend_from_slice(&k[9..]);
    Some((t, record))
}

fn seal_aad(record_key: &[u8], created_at: i64, fingerprint: &[u8; 32]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(record_key.len() + 8 + 32);
    aad.extend_from_slice(record_key);
    aad.extend_from_slice(&created_at.to_be_bytes());
    aad.extend_from_slice(fingerprint);
    aad
}

/// A stored answer or claim; one that does not decode is an integrity failure (it was written
/// by the vault), not a plain corrupt value.
fn decode_stored(bytes: &[u8]) -> Result<Stored, VaultError> {
    match bytes.first() {
        Some(&CLAIM_VERSION) => CLAIMS.decode(bytes).map(Stored::Claim),
        _ => RECORDS.decode(bytes).map(Stored::Answer),
    }
    .map_err(|_| VaultError::Integrity)
}

/// The claim of request `owner`, if that is what is stored (not another request's claim, an
/// answer, or nothing).
fn own_claim(stored: Option<Stored>, owner: [u8; 16]) -> Option<ClaimRec> {
    match stored {
        Some(Stored::Claim(c)) if c.owner == owner => Some(c),
        _ => None,
    }
}

fn in_progress() -> VaultError {
    VaultError::Conflict(crate::VaultConflict::IdempotencyInProgress)
}

fn from_unix(t: i64) -> Result<OffsetDateTime, VaultError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| VaultError::Integrity)
}

/// The sealed plaintext, built in one buffer of the exact size (no stray copies of the body).
fn encode_response(r: &IdempotentResponse) -> Zeroizing<Vec<u8>> {
    let location = r.location.as_deref();
    let len = 2 + 8 + r.content_type.len() + 1 + location.map_or(0, |l| 8 + l.len()) + r.body.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(&r.status.to_be_bytes());
    out.extend_from_slice(&(r.content_type.len() as u64).to_be_bytes());
    out.extend_from_slice(r.content_type.as_bytes());
    match location {
        Some(l) => {
            out.push(1);
            out.extend_from_slice(&(l.len() as u64).to_be_bytes());
            out.extend_from_slice(l.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&r.body);
    out
}

fn decode_response(mut b: &[u8]) -> Result<IdempotentResponse, VaultError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], VaultError> {
        if b.len() < n {
            return Err(VaultError::Integrity);
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn text(b: &mut &[u8]) -> Result<String, VaultError> {
        let len = u64::from_be_bytes(take(b, 8)?.try_into().map_err(|_| VaultError::Integrity)?);
        let bytes = take(b, usize::try_from(len).map_err(|_| VaultError::Integrity)?)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| VaultError::Integrity)
    }
    let status = u16::from_be_bytes(
        take(&mut b, 2)?
            .try_into()
            .map_err(|_| VaultError::Integrity)?,
    );
    let content_type = text(&mut b)?;
    let location = match take(&mut b, 1)? {
        [0] => None,
        [1] => Some(text(&mut b)?),
        _ => return Err(VaultError::Integrity),
    };
    Ok(IdempotentResponse {
        status,
        content_type,
        location,
        body: b.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codec_round_trips() {
        for location in [None, Some("/x/y".to_owned())] {
            let r = IdempotentResponse {
                status: 201,
                content_type: "application/json".into(),
                location: location.clone(),
                body: b"{\"a\":1}".to_vec(),
            };
            let back = decode_response(&encode_response(&r)).expect("decodes");
            assert_eq!(back.status, 201);
            assert_eq!(back.content_type, "application/json");
            assert_eq!(back.location, location);
            assert_eq!(back.body, r.body);
        }
        // Truncated length; a length past the end; an unknown location flag.
        for bad in [
            &[0, 201, 0, 0][..],
            &[0, 201, 0, 0, 0, 0, 0, 0, 0, 7, b'x'],
            &[0, 201, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        ] {
            assert!(matches!(decode_response(bad), Err(VaultError::Integrity)));
        }
        let minimal = decode_response(&[0, 204, 0, 0, 0, 0, 0, 0, 0, 0, 0]).expect("decodes");
        assert_eq!((minimal.status, minimal.body.len()), (204, 0));
    }

    #[test]
    fn index_keys_parse_back() {
        let key = IdempotencyKey::parse("6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b").expect("valid");
        let m = MerchantId::new(42).expect("valid");
        let ik = index_key(1_700_000_000, m, &key);
        let (t, rk) = parse_index(&ik).expect("parses");
        assert_eq!(t, 1_700_000_000);
        assert_eq!(rk, record_key(m, &key));
        assert_eq!(parse_index(&ik[..ik.len() - 1]), None);
        // Earlier times sort first.
        assert!(index_key(5, m, &key) < index_key(256, m, &key));
    }

    #[test]
    fn fingerprint_separates_parts() {
        let base = <HmacSha256 as KeyInit>::new_from_slice(&[1; 32]).expect("any length");
        let m = MerchantId::new(1).expect("valid");
        let a = fingerprint(&base, m, "r", &[b"ab", b"c"]);
        let b = fingerprint(&base, m, "r", &[b"a", b"bc"]);
        let c = fingerprint(&base, m, "ra", &[b"b", b"c"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, fingerprint(&base, m, "r", &[b"ab", b"c"]));
    }
}
