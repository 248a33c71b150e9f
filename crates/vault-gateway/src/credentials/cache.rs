//! The verification cache: recent successful verifications, keyed by a per-process secret.

use super::*;

/// Recent successful verifications: `HMAC(process key, merchant || stored PHC string ||
/// password)` and expiry. Bound to the stored hash, an entry stops answering as soon as the
/// stored password changes, whichever process changed it.
pub(super) struct VerifyCache {
    pub(super) mac: HmacSha256,
    pub(super) inner: Mutex<CacheInner>,
}

#[derive(Default)]
pub(super) struct CacheInner {
    /// Bumped by every password change: a login that started before one does not cache.
    pub(super) epoch: u64,
    pub(super) entries: HashMap<u64, ([u8; 32], OffsetDateTime)>,
}

impl Default for VerifyCache {
    fn default() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        {
            use rand::Rng;
            crate::os_rng().fill_bytes(key.as_mut());
        }
        Self {
            mac: <HmacSha256 as KeyInit>::new_from_slice(key.as_ref())
                .expect("HMAC accepts any key length"),
            inner: Mutex::default(),
        }
    }
}

impl VerifyCache {
    pub(super) fn tag(
        &self,
        merchant: MerchantId,
        stored_phc: &str,
        password: &MerchantPassword,
    ) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(&merchant.get().to_be_bytes());
        mac.update(&(stored_phc.len() as u64).to_be_bytes());
        mac.update(stored_phc.as_bytes());
        mac.update(password.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub(super) fn epoch(&self) -> u64 {
        self.inner.lock().epoch
    }

    pub(super) fn hit(&self, merchant: u64, tag: &[u8; 32], now: OffsetDateTime) -> bool {
        let inner = self.inner.lock();
        inner
            .entries
            .get(&merchant)
            .is_some_and(|(t, expires)| now < *expires && bool::from(t.ct_eq(tag)))
    }

    pub(super) fn insert(
        &self,
        merchant: u64,
        tag: [u8; 32],
        now: OffsetDateTime,
        ttl: time::Duration,
        epoch: u64,
    ) {
        let mut inner = self.inner.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= PRUNE_AT {
            inner.entries.retain(|_, (_, expires)| *expires > now);
        }
        inner
            .entries
            .insert(merchant, (tag, now.saturating_add(ttl)));
    }

    pub(super) fn invalidate(&self, merchant: u64) {
        let mut inner = self.inner.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        if let Some((mut tag, _)) = inner.entries.remove(&merchant) {
            tag.zeroize();
        }
    }
}
