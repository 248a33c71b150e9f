//! Housekeeping: expiry sweeps, data-key rotation, online re-wrapping, key retirement, re-keying
//! and statistics.

use std::{collections::BTreeSet, sync::mpsc};

use time::OffsetDateTime;
use vault_core::{DekId, DekState, KdfParams, KeySource, sealed_dek_id};
use vault_store::{LookupId, StoreStats};

use crate::{
    Actor, AuditAction, RewrapProgress, Vault, VaultError,
    vault::{open_stored, seal_stored},
};

/// Records examined per sweep step (each step's removals are one commit).
const SWEEP_SCAN: usize = 4096;
const REWRAP_CHUNK: usize = 256;

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
    /// (see [`sweep_idempotency`](Self::sweep_idempotency)), what
    /// [`sweep_sessions`](Self::sweep_sessions) removes, and one-click marks of removed tokens,
    /// counted together and separately from the records.
    fn sweep_expired_unaudited(&self, now: OffsetDateTime) -> Result<(u64, u64), VaultError> {
        let records = self.sweep_records(now)?;
        let idempotency = self.sweep_idempotency_at(now)?
            + self.sweep_sessions_at(now)?
            + self.sweep_one_click_orphans()?;
        Ok((records, idempotency))
    }

    /// The record part of [`sweep_expired_unaudited`](Self::sweep_expired_unaudited).
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
                        for id in due {
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
    fn rotate_key_unaudited(&self) -> Result<DekId, VaultError> {
        let inner = self.inner.core.clone();
        let rollback = self.inner.core.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner.store.submit(
            move |wtx| -> Result<DekId, VaultError> {
                let mut keyring = inner.keyring.write();
                let mut header = inner.header.lock();
                let id = header.rotate(
                    &mut keyring,
                    &mut crate::os_rng::os_rng(),
                    inner.clock.now(),
                );
                wtx.put_header(header.encode());
                Ok(id)
            },
            move |result: Result<DekId, VaultError>| {
                // Runs on the committer thread before the next group. If the group failed, the
                // new header may not be on disk: go back to whatever header the tree holds, so no
                // later write is sealed with a key the stored header might lack.
                if result.is_err()
                    && let Ok(bytes) = vault_store::Store::read_header(&rollback.dir)
                    && let Ok(h) = vault_core::KeyHeader::decode(&bytes)
                {
                    let mut keyring = rollback.keyring.write();
                    let _ = keyring.set_current(h.current_dek());
                    *rollback.header.lock() = h;
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
    fn rewrap_unaudited(
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
                            for id in stale {
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
    fn retire_unused_keys_unaudited(&self) -> Result<Vec<DekId>, VaultError> {
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
        let inner = self.inner.core.clone();
        self.inner
            .store
            .write(move |tx| -> Result<Vec<DekId>, VaultError> {
                let mut keyring = inner.keyring.write();
                let mut header = inner.header.lock();
                let candidates: Vec<DekId> = header
                    .deks()
                    .into_iter()
                    .filter(|(id, state, _)| *state == DekState::DecryptOnly && !used.contains(id))
                    .map(|(id, _, _)| id)
                    .collect();
                // Records are only ever committed under the current key (the committer re-seals
                // anything else), so a key unused at scan time stays unused.
                for id in &candidates {
                    header.retire(&mut keyring, *id)?;
                }
                if !candidates.is_empty() {
                    tx.put_header(header.encode());
                }
                Ok(candidates)
            })
    }

    /// Changes the passphrase or key file: a new key-encrypting key re-wraps every data key.
    /// Records are not touched. The old key no longer opens the vault once this returns.
    fn rekey_unaudited(&self, new_key: &KeySource, params: KdfParams) -> Result<(), VaultError> {
        let inner = self.inner.core.clone();
        // Derive outside the committer? Argon2 runs inside `rekey`; it holds the committer for the
        // KDF's duration (a fraction of a second), which is acceptable for a rare admin action.
        let new_key = match new_key {
            KeySource::Passphrase(p) => {
                KeySource::Passphrase(vault_core::Passphrase::new(p.expose().to_owned())?)
            }
            KeySource::KeyFile(k) => {
                KeySource::KeyFile(vault_core::SecretKey::from_bytes(*k.expose()))
            }
        };
        self.inner.store.write(move |tx| -> Result<(), VaultError> {
            let mut keyring = inner.keyring.write();
            let mut header = inner.header.lock();
            header.rekey(&mut keyring, &new_key, params, &mut crate::os_rng::os_rng())?;
            tx.put_header(header.encode());
            Ok(())
        })
    }

    /// Removes every record whose keep-until is at or before `now` (and its de-duplication entry).
    /// A linear scan of the records, 4,096 per step, each step's removals one commit.
    /// Returns how many records were removed. Expired records are already invisible to every read;
    /// this reclaims them. Stored idempotency answers 24 hours old or more, spent sessions, old
    /// payment records and orphaned one-click marks are removed too (not counted in the result).
    /// Audited (`sweep`, detail `removed=<records>`, plus `,idempotency=<n>` when any of those
    /// transient entries were removed).
    pub fn sweep_expired(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        self.sweep_expired_as(&Actor::local(), now)
    }

    /// [`sweep_expired`](Self::sweep_expired) on behalf of `actor`.
    pub fn sweep_expired_as(&self, actor: &Actor, now: OffsetDateTime) -> Result<u64, VaultError> {
        let r = self.sweep_expired_unaudited(now);
        self.audited(
            actor,
            AuditAction::Sweep,
            None,
            |&(n, idem)| {
                Some(match idem {
                    0 => format!("removed={n}"),
                    _ => format!("removed={n},idempotency={idem}"),
                })
            },
            r,
        )
        .map(|(n, _)| n)
    }

    /// Makes a fresh data key current. New and updated records are sealed with it; older keys stay
    /// in the header to decrypt what they sealed until [`rewrap`](Self::rewrap) and
    /// [`retire_unused_keys`](Self::retire_unused_keys) make them unnecessary. Audited
    /// (`key.rotate`).
    pub fn rotate_key(&self) -> Result<DekId, VaultError> {
        self.rotate_key_as(&Actor::local())
    }

    /// [`rotate_key`](Self::rotate_key) on behalf of `actor`.
    pub fn rotate_key_as(&self, actor: &Actor) -> Result<DekId, VaultError> {
        let r = self.rotate_key_unaudited();
        self.audited(
            actor,
            AuditAction::KeyRotate,
            None,
            |id| Some(format!("dek={id}")),
            r,
        )
    }

    /// Re-seals, online, every record not sealed with the current data key. Safe to run while the
    /// vault serves traffic; `progress` is called after each chunk. Records that fail their
    /// integrity check are counted and left unchanged. Audited (`key.rewrap`, once per pass).
    pub fn rewrap(
        &self,
        progress: impl FnMut(RewrapProgress),
    ) -> Result<RewrapProgress, VaultError> {
        self.rewrap_as(&Actor::local(), progress)
    }

    /// [`rewrap`](Self::rewrap) on behalf of `actor`.
    pub fn rewrap_as(
        &self,
        actor: &Actor,
        progress: impl FnMut(RewrapProgress),
    ) -> Result<RewrapProgress, VaultError> {
        let r = self.rewrap_unaudited(progress);
        self.audited(
            actor,
            AuditAction::KeyRewrap,
            None,
            |p| {
                Some(format!(
                    "scanned={},rewrapped={},failed={}",
                    p.scanned, p.rewrapped, p.failed
                ))
            },
            r,
        )
    }

    /// Removes from the header every decrypt-only data key that no stored record uses any more
    /// (run after [`rewrap`](Self::rewrap)). Returns the retired key ids. Audited (`key.retire`).
    pub fn retire_unused_keys(&self) -> Result<Vec<DekId>, VaultError> {
        self.retire_unused_keys_as(&Actor::local())
    }

    /// [`retire_unused_keys`](Self::retire_unused_keys) on behalf of `actor`.
    pub fn retire_unused_keys_as(&self, actor: &Actor) -> Result<Vec<DekId>, VaultError> {
        let r = self.retire_unused_keys_unaudited();
        self.audited(
            actor,
            AuditAction::KeyRetire,
            None,
            |ids| {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                Some(format!("retired=[{}]", ids.join(" ")))
            },
            r,
        )
    }

    /// Changes the passphrase or key file: a new key-encrypting key re-wraps every data key.
    /// Records are not touched. The old key no longer opens the vault once this returns.
    /// Audited (`key.rekey`; never the passphrase or key).
    pub fn rekey(&self, new_key: &KeySource, params: KdfParams) -> Result<(), VaultError> {
        self.rekey_as(&Actor::local(), new_key, params)
    }

    /// [`rekey`](Self::rekey) on behalf of `actor`.
    pub fn rekey_as(
        &self,
        actor: &Actor,
        new_key: &KeySource,
        params: KdfParams,
    ) -> Result<(), VaultError> {
        let r = self.rekey_unaudited(new_key, params);
        self.audited(actor, AuditAction::Rekey, None, |()| None, r)
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
