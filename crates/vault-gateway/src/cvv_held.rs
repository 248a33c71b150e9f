//! CVVs held in the store, on a vault shared by several daemons: a CVV given with a payment to
//! one daemon must reach the acquirer leg through whichever daemon it asks.
//!
//! One record per pending payment with a CVV, `H` + payment id (16 bytes; this module takes ids
//! as bytes, below `payment.rs`, which names their type), a postcard record
//! `{v: 1, merchant: u64, expires_at: i64, sealed: bytes}`. `sealed` is a `vault-core` blob
//! (XAES-256-GCM, 192-bit random nonce) of the CVV's digits under [`StoredCvvKey`], with the
//! record's store key, the merchant (u64 BE) and `expires_at` (i64 BE) as associated data: a
//! sealed CVV moved to another payment, merchant or expiry does not open. The CVV is never in the
//! store in clear.
//!
//! - It is written in the same commit as the payment record (a payment never waits for a CVV
//!   that is not there yet, and a refused payment leaves none).
//! - It is taken at most once across daemons: the hand-over's job deletes it with a
//!   compare-and-set on the bytes it read, in the same commit as the hand-over's audit entry; of
//!   two daemons taking it at once, the database lets one commit through and the other's job
//!   runs again and finds nothing. It is opened only after that commit.
//! - It is never handed out at or after `expires_at` (its session's expiry), is deleted by the
//!   payment's outcome report in the outcome's commit, and by the sweep (every minute in the
//!   daemon) once expired.

use time::OffsetDateTime;
use vault_core::MerchantId;
use vault_service::{KeySpace, Table, Txn, Update, Vault, VaultError, Versioned};

use serde::{Deserialize, Serialize};

use crate::{Cvv, cvv::StoredCvvKey};

/// Held CVVs: `H` + payment id.
const HELD: Table<[u8; 16], HeldCvvRec> = Table::new(KeySpace::HeldCvv);
const HELD_VERSION: u8 = 1;
/// Records removed per sweep commit.
const SWEEP_BATCH: usize = 1000;

#[derive(Serialize, Deserialize)]
struct HeldCvvRec {
    v: u8,
    merchant: u64,
    /// Unix seconds: not handed out at or after this instant.
    expires_at: i64,
    sealed: Vec<u8>,
}

impl Versioned for HeldCvvRec {
    const VERSION: u8 = HELD_VERSION;
}

/// The associated data of a held CVV: its store key, merchant and expiry.
fn context(id: &[u8; 16], merchant: u64, expires_at: i64) -> Vec<u8> {
    let mut aad = HELD.key(id);
    aad.extend_from_slice(&merchant.to_be_bytes());
    aad.extend_from_slice(&expires_at.to_be_bytes());
    aad
}

/// A payment's CVV sealed for the store, ready to be written with the payment ([`put`]).
pub(crate) struct SealedHeld {
    id: [u8; 16],
    bytes: Vec<u8>,
}

impl SealedHeld {
    /// Seals `cvv` for payment `id` of `merchant`, to be handed out before `expires_at` only.
    pub(crate) fn seal(
        key: &StoredCvvKey,
        id: [u8; 16],
        merchant: MerchantId,
        expires_at: i64,
        cvv: &Cvv,
    ) -> Self {
        let merchant = merchant.get();
        let sealed = key.seal(&context(&id, merchant, expires_at), cvv, &mut rand::rng());
        let bytes = HELD.encode(&HeldCvvRec {
            v: HELD_VERSION,
            merchant,
            expires_at,
            sealed,
        });
        Self { id, bytes }
    }
}

/// Writes a sealed CVV in the payment's job. A record already there (a payment id is 122 random
/// bits: not a realistic event) is refused rather than overwritten.
pub(crate) fn put(txn: &mut Txn<'_, '_>, held: &SealedHeld) -> Result<(), VaultError> {
    if txn.put_if_absent(&HELD.key(&held.id), held.bytes.clone())? {
        Ok(())
    } else {
        Err(VaultError::Store(vault_service::StoreError::Conflict(
            vault_service::ConflictKind::Exists,
        )))
    }
}

/// A CVV taken out of the store, still sealed: open it once the job's commit is durable.
pub(crate) struct Taken {
    id: [u8; 16],
    rec: HeldCvvRec,
}

/// Takes payment `id`'s CVV out of the store in the caller's job (a conditional delete: exactly
/// once across daemons); `None` when there is none, when it is another merchant's (left in
/// place), or when it expired at or before `now` (deleted all the same).
pub(crate) fn take(
    txn: &mut Txn<'_, '_>,
    id: &[u8; 16],
    merchant: MerchantId,
    now: OffsetDateTime,
) -> Result<Option<Taken>, VaultError> {
    txn.update(&HELD.key(id), |bytes| {
        let Some(bytes) = bytes else {
            return Ok(Update::Keep(None));
        };
        let Ok(rec) = HELD.decode(bytes) else {
            // Damaged: it can never be handed out; it goes.
            return Ok(Update::Delete(None));
        };
        if rec.merchant != merchant.get() {
            return Ok(Update::Keep(None));
        }
        if rec.expires_at <= now.unix_timestamp() {
            return Ok(Update::Delete(None));
        }
        Ok(Update::Delete(Some(Taken { id: *id, rec })))
    })
}

impl Taken {
    /// The CVV, opened (`None` if it does not open: a moved or altered record).
    pub(crate) fn open(self, key: &StoredCvvKey) -> Option<Cvv> {
        let Self { id, rec } = self;
        key.open(&context(&id, rec.merchant, rec.expires_at), &rec.sealed)
            .ok()
    }
}

/// Deletes payment `id`'s CVV, if any, in the caller's job (the payment's outcome was reported).
pub(crate) fn discard(txn: &mut Txn<'_, '_>, id: &[u8; 16]) -> Result<(), VaultError> {
    txn.delete_in(&HELD, id)
}

/// Deletes the CVVs whose session expired at or before `now`; returns how many.
pub(crate) fn sweep(vault: &Vault, now: OffsetDateTime) -> Result<u64, VaultError> {
    let now = now.unix_timestamp();
    let due: Vec<(Vec<u8>, Vec<u8>)> = vault
        .scan(&[KeySpace::HeldCvv.byte()], usize::MAX)?
        .into_iter()
        .filter(|(_, v)| HELD.decode(v).map_or(true, |r| r.expires_at <= now))
        .collect();
    let mut removed = 0;
    for chunk in due.chunks(SWEEP_BATCH) {
        let chunk = chunk.to_vec();
        removed += vault.transact(move |txn| -> Result<u64, VaultError> {
            let mut n = 0;
            for (key, value) in &chunk {
                // Taken meanwhile by a hand-over: nothing to do.
                n += txn.update(key, |current| {
                    Ok::<_, VaultError>(match current {
                        Some(c) if c == value.as_slice() => Update::Delete(1),
                        _ => Update::Keep(0),
                    })
                })?;
            }
            Ok(n)
        })?;
    }
    Ok(removed)
}

/// How many CVVs the store holds (expired ones the sweep has not removed yet included).
pub(crate) fn count(vault: &Vault) -> Result<usize, VaultError> {
    Ok(vault.scan(&[KeySpace::HeldCvv.byte()], usize::MAX)?.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_under_the_derived_key_bound_to_payment_merchant_and_expiry() {
        let key = StoredCvvKey::new(vault_core::SecretKey::from_bytes([7; 32]));
        let id = 9u128.to_be_bytes();
        let m = MerchantId::new(1).unwrap();
        let held = SealedHeld::seal(&key, id, m, 100, &Cvv::parse("1234").unwrap());
        assert!(
            !held.bytes.windows(4).any(|w| w == b"1234"),
            "never in clear"
        );
        let rec = HELD.decode(&held.bytes).unwrap();
        assert_eq!((rec.merchant, rec.expires_at), (1, 100));
        let open = |id: [u8; 16], merchant: u64, expires_at: i64| {
            let rec = HELD.decode(&held.bytes).unwrap();
            Taken {
                id,
                rec: HeldCvvRec {
                    merchant,
                    expires_at,
                    ..rec
                },
            }
            .open(&key)
            .map(|c| c.expose_digits().to_owned())
        };
        assert_eq!(open(id, 1, 100).as_deref(), Some("1234"));
        assert_eq!(open(8u128.to_be_bytes(), 1, 100), None, "another payment");
        assert_eq!(open(id, 2, 100), None, "another merchant");
        assert_eq!(open(id, 1, 200), None, "a later expiry");
        let other = StoredCvvKey::new(vault_core::SecretKey::from_bytes([8; 32]));
        let rec = HELD.decode(&held.bytes).unwrap();
        assert!(
            Taken { id, rec }.open(&other).is_none(),
            "another vault's key"
        );
    }
}
