//! CVVs waiting for their one use, held only in memory and only sealed (see
//! [`vault_core::EphemeralKey`]): never written to the store, gone on restart, taken at most once,
//! dropped at their session's expiry.

use std::collections::HashMap;

use parking_lot::Mutex;
use vault_core::{Cvv, EphemeralKey, SealedCvv};

use crate::{VaultError, payment::PaymentId};

/// Most CVVs held at once; beyond it new ones are refused (`Busy`) rather than grow memory
/// without bound. Each entry is under 100 bytes.
pub(crate) const MAX_HELD: usize = 100_000;

pub(crate) struct CvvStore {
    key: EphemeralKey,
    held: Mutex<HashMap<PaymentId, (SealedCvv, i64)>>,
}

impl Default for CvvStore {
    fn default() -> Self {
        Self {
            key: EphemeralKey::generate(&mut rand::rng()),
            held: Mutex::default(),
        }
    }
}

impl CvvStore {
    /// Holds `cvv` for payment `id` until `expires_at` (unix seconds).
    pub(crate) fn put(&self, id: PaymentId, cvv: &Cvv, expires_at: i64) -> Result<(), VaultError> {
        let sealed = self.key.seal_cvv(&id_bytes(&id), cvv, &mut rand::rng());
        let mut held = self.held.lock();
        if held.len() >= MAX_HELD {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            held.retain(|_, (_, exp)| *exp > now);
            if held.len() >= MAX_HELD {
                return Err(VaultError::Busy);
            }
        }
        held.insert(id, (sealed, expires_at));
        Ok(())
    }

    /// Takes the CVV of payment `id` out of memory (so a second call gets `None`).
    pub(crate) fn take(&self, id: &PaymentId) -> Option<Cvv> {
        let (sealed, _) = self.held.lock().remove(id)?;
        self.key.open_cvv(&id_bytes(id), &sealed).ok()
    }

    /// Drops every CVV whose session expired at or before `now` (unix seconds); returns how many.
    pub(crate) fn purge(&self, now: i64) -> usize {
        let mut held = self.held.lock();
        let before = held.len();
        held.retain(|_, (_, exp)| *exp > now);
        before - held.len()
    }

    /// How many CVVs are held.
    pub(crate) fn len(&self) -> usize {
        self.held.lock().len()
    }
}

fn id_bytes(id: &PaymentId) -> Vec<u8> {
    id.to_string().into_bytes()
}
