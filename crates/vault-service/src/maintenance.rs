//! Housekeeping: expiry sweeps, data-key rotation, online re-wrapping, key retirement, re-keying
//! and statistics.

use std::{
    collections::BTreeSet,
    sync::{Arc, mpsc},
};

use parking_lot::Mutex;
use time::OffsetDateTime;
use vault_core::{
    DekId, DekStamp, DekState, KdfParams, KeyHeader, KeySource, Keyring, sealed_dek_id,
};
use vault_store::{LookupId, StoreStats};

use crate::{
    AuditAction, RewrapProgress, Vault, VaultError,
    txn::{Entry, Txn},
    vault::{open_stored, seal_stored},
};

/// Records examined per sweep step (each step's removals are one commit).
const SWEEP_SCAN: usize = 4096;
const REWRAP_CHUNK: usize = 256;

/// The keys as they were before a key-header change, and the header that change wrote.
struct KeysBefore {
    header: KeyHeader,
    keyring: Keyring,
    new_header: Vec<u8>,
    /// The key the change made current, when it made one (a rotation).
    made_key: Option<DekStamp>,
}

impl KeysBefore {
    /// Whether `stored` holds the change this job made: it is the new header, or (a rotation)
    /// a header that holds the key the rotation made, which another daemon's change has since
    /// built on. `keyring` opens it (the same key-encryption key).
    fn made_in(&self, stored: &[u8], keyring: &Keyring) -> bool {
        if stored == self.new_header.as_slice() {
            return true;
        }
        let Some(made) = self.made_key else {
            return false;
        };
        KeyHeader::decode(stored)
            .and_then(|h| h.unlock_with(keyring))
            .is_ok_and(|stored| stored.stamp(made.id()) == Some(made))
    }
}

/// A snapshot of the vault's state.
#[derive(Clone, Debug)]
pub struct VaultStats {
    /// Records stored (live, plus expired ones the sweep has not removed yet).
    pub records: u64,
    /// The data key new records are sealed with.
    pub current_dek: DekId,
    /// Every data key in the header, with its state and creation time.
    pub deks: Vec<(DekId, DekState, OffsetDateTime)>,
    /// Store counters (group commits, flushes, size on disk).
    pub store: StoreStats,
}

impl Vault {
    /// Removes every record whose keep-until is at or before `now` (and its de-duplication entry).
    /// A linear scan of the records, 4,096 per step, each step's removals one commit.
    /// Returns how many records were removed. Expired records are already invisible to every read;
    /// this reclaims them. Then removes the idempotency records 24 hours old or more as of `now`
    /// (see [`sweep_idempotency`](Self::sweep_idempotency)), what `also` (the layer above's sweep)
    /// removes, and the marks of removed tokens, counted together and separately from the records.
    fn sweep_all(
        &self,
        now: OffsetDateTime,
        also: impl FnOnce(OffsetDateTime) -> Result<u64, VaultError>,
    ) -> Result<(u64, u64), VaultError> {
        let records = self.sweep_records(now)?;
        let idempotency =
            self.sweep_idempotency_at(now)? + also(now)? + self.sweep_orphan_marks()?;
        Ok((records, idempotency))
    }

    /// The record part of [`sweep_all`](Self::sweep_all).
    fn sweep_records(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        let at = now.unix_timestamp();
        let mut removed = 0;
        let mut cursor = None;
        loop {
            let (due, next) = self.inner.store.scan_expired(cursor, at, SWEEP_SCAN)?;
            if !due.is_empty() {
                removed += self
                    .inner
                    .store
                    .write(move |tx| -> Result<u64, VaultError> {
                        let mut n = 0;
                        for &id in &due {
                            // Re-checked inside the commit: the record may have been updated (with a
                            // later keep-until) or deleted since the scan.
                            if let Ok(Some(rec)) = tx.record(&id)
                                && rec.keep_until <= at
                            {
                                tx.delete_record(&id)?;
                                n += 1;
                            }
                        }
                        Ok(n)
                    })?;
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(removed),
            }
        }
    }

    /// Makes a fresh data key current. New and updated records are sealed with it; older keys stay
    /// in the header to decrypt what they sealed until [`rewrap`](Self::rewrap) and
    /// [`retire_unused_keys`](Self::retire_unused_keys) make them unnecessary.
    fn rotate_key_with(&self, entry: Entry) -> Result<DekId, VaultError> {
        let clock = self.inner.core.clock.clone();
        self.change_keys(
            move |header, keyring| {
                Ok(header.rotate(keyring, &mut crate::os_rng::os_rng(), clock.now()))
            },
            entry,
            |id| Some(format!("dek={id}")),
        )
    }

    /// Runs one change of the key header (rotate, retire, re-key) in a group commit of its own
    /// (`Store::submit_alone`). The change is made on the live header and keyring, so requests
    /// seal with it from then on (a card sealed under a key that does not reach the header is
    /// sealed again at its commit: `Keyring::current_stamp`); if the change itself fails, or its
    /// group never becomes durable, the in-memory keys are
    /// put back to match the header on disk: the header and keyring as they were before, unless
    /// the new header did reach the disk (it is written before the group's batch). A failed key
    /// operation therefore never leaves the process sealing or wrapping under keys the stored
    /// header does not hold. Run again after a race once its header was stored, the job keeps
    /// that change rather than making a second one (one rotation, one key, one audit entry).
    ///
    /// `entry` (the operation's audit entry, with `detail` of its result) commits with the header.
    fn change_keys<T: Clone + Send + 'static>(
        &self,
        mut change: impl FnMut(&mut KeyHeader, &mut Keyring) -> Result<T, VaultError> + Send + 'static,
        entry: Entry,
        mut detail: impl FnMut(&T) -> Option<String> + Send + 'static,
    ) -> Result<T, VaultError> {
        let inner = self.inner.core.clone();
        let rollback = self.inner.core.clone();
        let shared = self.inner.store.shared();
        // Set by the job, taken by the completion, both on the committer thread.
        let undo: Arc<Mutex<Option<KeysBefore>>> = Arc::default();
        let undo_job = undo.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        // What the last run's change returned, for a run again after its header was stored.
        let mut made: Option<T> = None;
        // Alone in its group: run again after a race, this job puts the keys back before it
        // changes them anew, and a job grouped before it would run again first, on the keys the
        // first run made (and could seal a card under a key the header will not hold).
        self.inner.store.submit_alone(
            move |wtx| -> Result<T, VaultError> {
                // On a shared vault another daemon may have changed the keys: start from the
                // stored header, and replace it only if it is still that one. Read before the
                // key locks are taken, so requests keep sealing during the round trip.
                let stored = if shared {
                    Some(wtx.stored_header()?)
                } else {
                    None
                };
                let mut keyring = inner.keyring.write();
                let mut header = inner.header.lock();
                // A run again after a race with another writer of a shared database starts from
                // the keys as they were before the first run...
                let before = undo_job.lock().take();
                if let Some(before) = before {
                    // ...unless the first run's header was stored (it is written before the
                    // rest of the group, which then raced), or a header another daemon built on
                    // it holds the key this rotation made: that change is made, and making
                    // another would rotate twice, or retire nothing and audit no retirement.
                    if let Some(value) = made.clone()
                        && let Some(stored) = &stored
                        && before.made_in(stored, &keyring)
                    {
                        let kept = crate::key_follow::follow(stored, &mut header, &mut keyring);
                        // Kept for the completion either way: the header on disk is the new one.
                        *undo_job.lock() = Some(before);
                        kept?;
                        drop((keyring, header));
                        entry.stage(&mut Txn::new(&inner, wtx), None, detail(&value))?;
                        return Ok(value);
                    }
                    *header = before.header;
                    *keyring = before.keyring;
                }
                made = None;
                if let Some(stored) = &stored {
                    crate::key_follow::follow(stored, &mut header, &mut keyring)?;
                }
                let (old_header, old_keyring) = (header.clone(), keyring.duplicate());
                match change(&mut header, &mut keyring) {
                    Ok(value) => {
                        let encoded = header.encode();
                        let current = keyring.current_stamp();
                        let made_key = (current != old_keyring.current_stamp()).then_some(current);
                        match &stored {
                            Some(stored) => wtx.replace_header(stored.clone(), encoded.clone()),
                            None => wtx.put_header(encoded.clone()),
                        }
                        *undo_job.lock() = Some(KeysBefore {
                            header: old_header,
                            keyring: old_keyring,
                            new_header: encoded,
                            made_key,
                        });
                        made = Some(value.clone());
                        // The audit key does not change with the data keys: the entry can be
                        // chained while the key locks are held.
                        drop((keyring, header));
                        entry.stage(&mut Txn::new(&inner, wtx), None, detail(&value))?;
                        Ok(value)
                    }
                    Err(e) => {
                        *header = old_header;
                        *keyring = old_keyring;
                        Err(e)
                    }
                }
            },
            move |result: Result<T, VaultError>| {
                // Runs on the committer thread before the next group starts.
                if result.is_err()
                    && let Some(before) = undo.lock().take()
                {
                    // Read from where the vault lives (its directory's header file, or the
                    // database), not from the committer's view of the failed group.
                    let on_disk = vault_store::Store::read_header_at(&rollback.location).ok();
                    if on_disk.as_deref() != Some(before.new_header.as_slice()) {
                        *rollback.keyring.write() = before.keyring;
                        *rollback.header.lock() = before.header;
                    }
                }
                let _ = tx.send(result);
            },
        );
        rx.recv()
            .unwrap_or(Err(VaultError::Store(vault_store::StoreError::Closed)))
    }

    /// Re-seals, online, every record not sealed with the current data key. Safe to run while the
    /// vault serves traffic; `progress` is called after each chunk. Records that fail their
    /// integrity check are counted and left unchanged.
    fn rewrap_all(
        &self,
        mut progress: impl FnMut(RewrapProgress),
    ) -> Result<RewrapProgress, VaultError> {
        let mut p = RewrapProgress {
            total: self.inner.store.stats().records,
            ..RewrapProgress::default()
        };
        let mut after: Option<LookupId> = None;
        loop {
            let chunk = self.inner.store.scan_records(after, REWRAP_CHUNK)?;
            let Some((last, _)) = chunk.last() else {
                progress(p);
                return Ok(p);
            };
            after = Some(*last);
            let current = self.inner.keyring.read().current_dek();
            let mut stale = Vec::new();
            for (id, rec) in chunk {
                p.scanned += 1;
                match rec {
                    Ok(rec) if sealed_dek_id(&rec.sealed).ok() == Some(current) => {}
                    Ok(_) => stale.push(id),
                    Err(_) => p.failed += 1,
                }
            }
            if !stale.is_empty() {
                let inner = self.inner.core.clone();
                let (done, failed) =
                    self.inner
                        .store
                        .write(move |tx| -> Result<(u64, u64), VaultError> {
                            let keyring = inner.keyring.read();
                            let current = keyring.current_dek();
                            let (mut done, mut failed) = (0, 0);
                            for &id in &stale {
                                // Re-read inside the commit: the record may have changed or gone since the scan.
                                let Ok(Some(rec)) = tx.record(&id) else {
                                    continue;
                                };
                                if sealed_dek_id(&rec.sealed).ok() == Some(current) {
                                    continue;
                                }
                                let Ok(card) = open_stored(&keyring, &rec) else {
                                    failed += 1;
                                    continue;
                                };
                                let sealed = seal_stored(&keyring, &rec, &card)?;
                                tx.put_record(&id, &vault_store::StoredRecord { sealed, ..rec })?;
                                done += 1;
                            }
                            Ok((done, failed))
                        })?;
                p.rewrapped += done;
                p.failed += failed;
            }
            progress(p);
        }
    }

    /// Removes from the header every decrypt-only data key that no stored record uses any more
    /// (run after [`rewrap`](Self::rewrap)). Returns the retired key ids.
    /// [`retire_unused_keys`](Self::retire_unused_keys) with `after_scan` run between the scan of
    /// the records and the commit that retires keys: lets a test interleave a rotation with it.
    #[doc(hidden)]
    pub fn retire_unused_keys_after_scan(
        &self,
        after_scan: impl FnOnce(),
    ) -> Result<Vec<DekId>, VaultError> {
        self.audited(
            AuditAction::KeyRetire,
            None,
            |ids: &Vec<DekId>| retired_detail(ids),
            |entry| self.retire_with(after_scan, entry),
        )
    }

    fn retire_with(
        &self,
        after_scan: impl FnOnce(),
        entry: Entry,
    ) -> Result<Vec<DekId>, VaultError> {
        // On a shared vault, start from the stored keys, and let every other daemon follow the
        // current key first (they re-read the header within KEY_FOLLOW_INTERVAL; a tokenize
        // prepared before that is re-sealed at commit): wait until the current key has been
        // current for twice that bound, so no daemon still seals under an older one.
        if self.inner.store.shared() {
            self.inner.follow_keys()?;
            let settle = time::Duration::try_from(crate::KEY_FOLLOW_INTERVAL * 2)
                .unwrap_or(time::Duration::seconds(2));
            let since = {
                let header = self.inner.header.lock();
                let current = header.current_dek();
                header
                    .deks()
                    .into_iter()
                    .find(|(id, _, _)| *id == current)
                    .map(|(_, _, at)| at)
            };
            if let Some(at) = since {
                let ready = at + settle;
                let now = self.inner.clock.now();
                if now < ready {
                    std::thread::sleep(
                        std::time::Duration::try_from(ready - now)
                            .unwrap_or_default()
                            .min(crate::KEY_FOLLOW_INTERVAL * 2),
                    );
                }
            }
        }
        // Every record written from now on is sealed under this key or a newer one (the committer
        // re-seals anything else), so only keys older than it stay unused once the scan has
        // passed them. The key current now, or one rotated in during the scan, may seal records
        // written behind the scan's cursor: never a candidate.
        let current_at_start = self.inner.keyring.read().current_dek();
        let mut used = BTreeSet::new();
        let mut after = None;
        loop {
            let chunk = self.inner.store.scan_records(after, 4096)?;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(*last);
            for (_, rec) in chunk {
                if let Ok(rec) = rec
                    && let Ok(id) = sealed_dek_id(&rec.sealed)
                {
                    used.insert(id);
                }
            }
        }
        after_scan();
        self.change_keys(
            move |header, keyring| {
                // Re-checked inside the commit, against the header as it is now.
                let candidates: Vec<DekId> = header
                    .deks()
                    .into_iter()
                    .filter(|(id, state, _)| {
                        *state == DekState::DecryptOnly
                            && *id < current_at_start
                            && !used.contains(id)
                    })
                    .map(|(id, _, _)| id)
                    .collect();
                for id in &candidates {
                    header.retire(keyring, *id)?;
                }
                Ok(candidates)
            },
            entry,
            |ids: &Vec<DekId>| retired_detail(ids),
        )
    }

    /// Changes the passphrase or key file: a new key-encrypting key re-wraps every data key.
    /// Records are not touched. The old key no longer opens the vault once this returns; if it
    /// fails, the old key still does and the keys in memory are as they were.
    fn rekey_with(
        &self,
        new_key: &KeySource,
        params: KdfParams,
        entry: Entry,
    ) -> Result<(), VaultError> {
        // Argon2 runs inside `rekey`; it holds the committer for the KDF's duration (a fraction
        // of a second), which is acceptable for a rare admin action.
        let new_key = match new_key {
            KeySource::Passphrase(p) => {
                KeySource::Passphrase(vault_core::Passphrase::new(p.expose().to_owned())?)
            }
            KeySource::KeyFile(k) => {
                KeySource::KeyFile(vault_core::SecretKey::from_bytes(*k.expose()))
            }
        };
        self.change_keys(
            move |header, keyring| {
                header.rekey(keyring, &new_key, params, &mut crate::os_rng::os_rng())?;
                Ok(())
            },
            entry,
            |()| None,
        )
    }

    /// Removes every record whose keep-until is at or before `now` (and its de-duplication entry).
    /// A linear scan of the records, 4,096 per step, each step's removals one commit.
    /// Returns how many records were removed. Expired records are already invisible to every read;
    /// this reclaims them. Stored idempotency answers 24 hours old or more and the marks of
    /// removed tokens are removed too (not counted in the result); a layer above adds its own
    /// short-lived records with [`sweep_expired_with`](Self::sweep_expired_with).
    /// Audited (`sweep`, detail `removed=<records>`, plus `,idempotency=<n>` when any of those
    /// transient entries were removed).
    ///
    /// The sweep removes in many commits; its entry, with the totals, follows the last of them.
    pub fn sweep_expired(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        self.sweep_expired_with(now, |_| Ok(0))
    }

    /// [`sweep_expired`](Self::sweep_expired) that also runs `also` (a layer above's sweep of its
    /// own short-lived records, given `now`) after the idempotency answers; what it removes is
    /// counted with them, in the one `sweep` entry.
    pub fn sweep_expired_with(
        &self,
        now: OffsetDateTime,
        also: impl FnOnce(OffsetDateTime) -> Result<u64, VaultError>,
    ) -> Result<u64, VaultError> {
        self.audited(
            AuditAction::Sweep,
            None,
            |&(n, idem)| {
                Some(match idem {
                    0 => format!("removed={n}"),
                    _ => format!("removed={n},idempotency={idem}"),
                })
            },
            |_| self.sweep_all(now, also),
        )
        .map(|(n, _)| n)
    }

    /// Makes a fresh data key current. New and updated records are sealed with it; older keys stay
    /// in the header to decrypt what they sealed until [`rewrap`](Self::rewrap) and
    /// [`retire_unused_keys`](Self::retire_unused_keys) make them unnecessary. Audited
    /// (`key.rotate`).
    pub fn rotate_key(&self) -> Result<DekId, VaultError> {
        self.audited(
            AuditAction::KeyRotate,
            None,
            |_| None,
            |entry| self.rotate_key_with(entry),
        )
    }

    /// Re-seals, online, every record not sealed with the current data key. Safe to run while the
    /// vault serves traffic; `progress` is called after each chunk. Records that fail their
    /// integrity check are counted and left unchanged. Audited (`key.rewrap`, once per pass).
    ///
    /// The pass re-seals in many commits; its entry, with the totals, follows the last of them.
    pub fn rewrap(
        &self,
        progress: impl FnMut(RewrapProgress),
    ) -> Result<RewrapProgress, VaultError> {
        self.audited(
            AuditAction::KeyRewrap,
            None,
            |p: &RewrapProgress| {
                Some(format!(
                    "scanned={},rewrapped={},failed={}",
                    p.scanned, p.rewrapped, p.failed
                ))
            },
            |_| self.rewrap_all(progress),
        )
    }

    /// Removes from the header every decrypt-only data key that no stored record uses any more
    /// (run after [`rewrap`](Self::rewrap)). Returns the retired key ids. Audited (`key.retire`).
    pub fn retire_unused_keys(&self) -> Result<Vec<DekId>, VaultError> {
        self.retire_unused_keys_after_scan(|| {})
    }

    /// Changes the passphrase or key file: a new key-encrypting key re-wraps every data key.
    /// Records are not touched. The old key no longer opens the vault once this returns.
    /// Audited (`key.rekey`; never the passphrase or key).
    pub fn rekey(&self, new_key: &KeySource, params: KdfParams) -> Result<(), VaultError> {
        self.audited(
            AuditAction::Rekey,
            None,
            |()| None,
            |entry| self.rekey_with(new_key, params, entry),
        )
    }

    /// Counters and key state.
    pub fn stats(&self) -> VaultStats {
        let header = self.inner.header.lock();
        VaultStats {
            records: self.inner.store.stats().records,
            current_dek: header.current_dek(),
            deks: header.deks(),
            store: self.inner.store.stats(),
        }
    }
}

/// The detail of `key.retire`.
fn retired_detail(ids: &[DekId]) -> Option<String> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Some(format!("retired=[{}]", ids.join(" ")))
}
