//! CVVs waiting for their one use on a directory vault, held only in memory and only sealed (see
//! [`EphemeralKey`](crate::EphemeralKey)): never written to the store, gone on restart, taken at
//! most once, never handed out after their session's expiry, and dropped by the sweep. (A vault
//! shared by several daemons holds them in the store: `cvv_held.rs`.)

use std::collections::HashMap;

use parking_lot::Mutex;
use vault_core::MerchantId;

use crate::{Cvv, EphemeralKey, SealedCvv, VaultError, payment::PaymentId};

/// Most CVVs held at once; beyond it new payments with a CVV are refused (`Busy`) rather than
/// grow memory without bound. Each entry is under 150 bytes.
pub(crate) const MAX_HELD: usize = 100_000;
/// Most CVVs one merchant may hold at once, so that one merchant's sessions cannot exhaust the
/// store for the others.
pub(crate) const MAX_HELD_PER_MERCHANT: usize = 20_000;

struct Held {
    merchant: MerchantId,
    /// `None` while reserved: the payment's commit has not finished yet.
    sealed: Option<SealedCvv>,
    /// Unix seconds: not handed out at or after this instant.
    expires_at: i64,
}

#[derive(Default)]
struct Inner {
    held: HashMap<PaymentId, Held>,
    per_merchant: HashMap<MerchantId, usize>,
}

impl Inner {
    fn remove(&mut self, id: &PaymentId) -> Option<Held> {
        let h = self.held.remove(id)?;
        if let Some(n) = self.per_merchant.get_mut(&h.merchant) {
            *n -= 1;
            if *n == 0 {
                self.per_merchant.remove(&h.merchant);
            }
        }
        Some(h)
    }

    fn purge(&mut self, now: i64) -> usize {
        let due: Vec<PaymentId> = self
            .held
            .iter()
            .filter(|(_, h)| h.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.remove(id);
        }
        due.len()
    }
}

pub(crate) struct CvvStore {
    key: EphemeralKey,
    inner: Mutex<Inner>,
    /// On a vault shared by several daemons CVVs are held in the store instead
    /// (`cvv_held.rs`), under this key, derived from the vault's keys once.
    pub(crate) stored_key: std::sync::OnceLock<crate::cvv::StoredCvvKey>,
}

impl Default for CvvStore {
    fn default() -> Self {
        Self {
            key: EphemeralKey::generate(&mut crate::os_rng()),
            inner: Mutex::default(),
            stored_key: std::sync::OnceLock::new(),
        }
    }
}

impl CvvStore {
    /// Reserves a place for payment `id`'s CVV *before* the payment is committed, so a full store
    /// refuses the request (`Busy`) while its session is still unspent. Expired entries are purged
    /// first.
    pub(crate) fn reserve(
        &self,
        id: PaymentId,
        merchant: MerchantId,
        expires_at: i64,
        now: i64,
    ) -> Result<(), VaultError> {
        let mut inner = self.inner.lock();
        let full = |i: &Inner| {
            i.held.len() >= MAX_HELD
                || i.per_merchant.get(&merchant).copied().unwrap_or(0) >= MAX_HELD_PER_MERCHANT
        };
        if full(&inner) {
            inner.purge(now);
            if full(&inner) {
                return Err(VaultError::Busy);
            }
        }
        inner.held.insert(
            id,
            Held {
                merchant,
                sealed: None,
                expires_at,
            },
        );
        *inner.per_merchant.entry(merchant).or_insert(0) += 1;
        Ok(())
    }

    /// Fills a reservation with the sealed CVV (after the payment committed).
    pub(crate) fn fill(&self, id: PaymentId, cvv: &Cvv) {
        let sealed = self.key.seal_cvv(&id_bytes(&id), cvv, &mut rand::rng());
        if let Some(h) = self.inner.lock().held.get_mut(&id) {
            h.sealed = Some(sealed);
        }
    }

    /// Gives a reservation back (the payment was not committed).
    pub(crate) fn release(&self, id: &PaymentId) {
        self.inner.lock().remove(id);
    }

    /// Takes the CVV of payment `id` out of memory (so a second call gets `None`); `None` too at or
    /// after its session's expiry (`now`, unix seconds), whether or not a sweep ran since.
    pub(crate) fn take(&self, id: &PaymentId, now: i64) -> Option<Cvv> {
        let held = self.inner.lock().remove(id)?;
        if held.expires_at <= now {
            return None;
        }
        self.key.open_cvv(&id_bytes(id), &held.sealed?).ok()
    }

    /// Drops every CVV whose session expired at or before `now` (unix seconds); returns how many.
    pub(crate) fn purge(&self, now: i64) -> usize {
        self.inner.lock().purge(now)
    }

    /// How many CVVs are held (reservations included).
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().held.len()
    }
}

fn id_bytes(id: &PaymentId) -> Vec<u8> {
    id.to_string().into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u128) -> PaymentId {
        PaymentId::from_u128(n)
    }

    #[test]
    fn reserve_fill_take_once_and_never_after_expiry() {
        let store = CvvStore::default();
        let m = MerchantId::new(1).unwrap();
        store.reserve(id(1), m, 100, 0).unwrap();
        // A reservation not filled yet has no CVV to give.
        store.fill(id(1), &Cvv::parse("123").unwrap());
        assert_eq!(store.take(&id(1), 99).unwrap().expose_digits(), "123");
        assert!(store.take(&id(1), 99).is_none());
        store.reserve(id(2), m, 100, 0).unwrap();
        store.fill(id(2), &Cvv::parse("456").unwrap());
        assert!(
            store.take(&id(2), 100).is_none(),
            "expired, though no sweep ran"
        );
        assert_eq!(store.len(), 0);
        store.reserve(id(3), m, 100, 0).unwrap();
        store.release(&id(3));
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn one_merchant_cannot_fill_the_store_for_the_others() {
        let store = CvvStore::default();
        let a = MerchantId::new(1).unwrap();
        let b = MerchantId::new(2).unwrap();
        for n in 0..MAX_HELD_PER_MERCHANT {
            store.reserve(id(n as u128), a, 100, 0).unwrap();
        }
        assert!(matches!(
            store.reserve(id(u128::MAX), a, 100, 0),
            Err(VaultError::Busy)
        ));
        store.reserve(id(u128::MAX), b, 100, 0).unwrap();
        // Expired ones make room again.
        store.reserve(id(u128::MAX - 1), a, 200, 100).unwrap();
    }
}
