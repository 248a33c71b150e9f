//! The vault's one public write seam: its own two-step write, made public.
//!
//! A layer above the vault (a product built on it) writes through it in two steps:
//!
//! 1. [`Vault::prepare_tokenize`] validates, mints, fingerprints and seals a card on the caller's
//!    thread (the costly part);
//! 2. [`Vault::transact`] runs a closure as **one job of a group commit** on the committer thread.
//!    The closure gets a [`Txn`]: it commits the prepared tokenize ([`Txn::commit_new`]) or
//!    replaces a card ([`Txn::commit_update`]), reads and writes the caller's own records
//!    ([`Txn::get_in`], [`Txn::put_in`], [`Txn::delete_in`] on a typed [`Table`], or
//!    [`Txn::get`], [`Txn::put`], [`Txn::delete`] on raw keys: outside the vault's prefixes; and
//!    conditionally, which a vault shared by several daemons needs for every read-modify-write:
//!    [`Txn::update`], [`Txn::put_if_absent`], [`Txn::compare_and_set`]), keeps a
//!    per-token mark ([`Txn::token_mark`], [`Txn::put_token_mark`]; the vault clears it when the
//!    token is deleted or its card changes) and appends audit entries ([`Txn::audit`]).
//!
//! Everything the closure stages is durable together or not at all: the record, the caller's
//! records and the audit entries that describe them share one atomic batch. When the closure
//! returns an error, nothing it staged is written. Reads see the job's own writes and those of
//! the jobs before it in the same group.

use std::sync::Arc;

use time::OffsetDateTime;
use vault_core::{CardRecord, CustomerId, MerchantId, Token};
use vault_store::{Codec, LookupId, Table, TableKey, WriteTx};

use crate::{
    Actor, AuditAction, AuditOutcome, NewCard, RevealedCard, TokenInfo, TokenizeOptions,
    UpdateOptions, Vault, VaultError,
    audit::Draft,
    record_mac::{self, RecordKind, RecordMac},
    vault::{Core, customer_of, is_live_for},
    write::{MARK_PREFIX, Prepared, mark_key, resolve_keep_until},
};

/// A tokenize validated and sealed by [`Vault::prepare_tokenize`], ready for [`Txn::commit_new`].
pub struct PreparedTokenize(pub(crate) Prepared);

impl std::fmt::Debug for PreparedTokenize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedTokenize(..)")
    }
}

/// What a [`Txn`] shows of a live token: no card data.
#[derive(Clone, Debug)]
pub struct LiveToken {
    /// The customer the token is bound to, if any.
    pub customer: Option<CustomerId>,
    /// Names the card behind the token (a keyed digest of its number and customer): equal
    /// digests mean the same card. Changes when [`Txn::commit_update`] puts another card behind
    /// the token.
    pub card_digest: [u8; 16],
}

/// One write job of a group commit, as the layers above see it (see [`Vault::transact`]).
pub struct Txn<'j, 'g> {
    core: &'j Core,
    tx: &'j mut WriteTx<'g>,
}

impl<'j, 'g> Txn<'j, 'g> {
    pub(crate) fn new(core: &'j Core, tx: &'j mut WriteTx<'g>) -> Self {
        Self { core, tx }
    }

    /// The vault's clock, now.
    pub fn now(&self) -> OffsetDateTime {
        self.core.clock.now()
    }

    /// Commits a prepared tokenize (de-duplicated as [`Vault::tokenize`] does).
    pub fn commit_new(&mut self, prepared: &PreparedTokenize) -> Result<TokenInfo, VaultError> {
        self.core.commit_new(self.tx, &prepared.0)
    }

    /// Replaces the card behind a live token of `merchant`, as [`Vault::update`] does. Clears
    /// the token's mark when the card changes.
    pub fn commit_update(
        &mut self,
        merchant: MerchantId,
        token: &Token,
        card: NewCard,
        options: UpdateOptions,
    ) -> Result<TokenInfo, VaultError> {
        let now = self.now();
        let keep_until = resolve_keep_until(&card, options.keep_until, now)?;
        self.core.commit_update(
            self.tx,
            merchant,
            *token,
            card,
            options.metadata,
            keep_until,
            now,
        )
    }

    /// The live token of `merchant` by that name, if any (this group's writes included). On a
    /// vault shared by several daemons the job's commit is conditional on the token's record
    /// staying as read: a job that decides from it (which card a payment used) runs again when
    /// another daemon changed the token meanwhile.
    pub fn live_token(
        &mut self,
        merchant: MerchantId,
        token: &Token,
    ) -> Result<Option<LiveToken>, VaultError> {
        let id = self.core.lookup(token);
        match self.tx.record_checked(&id)? {
            Some(rec) if is_live_for(&rec, merchant, token, self.now()) => Ok(Some(LiveToken {
                customer: customer_of(&rec)?,
                card_digest: rec.dedupe.0,
            })),
            _ => Ok(None),
        }
    }

    /// The card behind a live token of `merchant`, in clear (`NotFound` otherwise). Not audited
    /// by itself: the caller appends the entry of what it does with the card ([`Txn::audit`]),
    /// and that entry commits with this job.
    pub fn open_card(
        &self,
        merchant: MerchantId,
        token: &Token,
    ) -> Result<RevealedCard, VaultError> {
        let id = self.core.lookup(token);
        let (rec, card) =
            self.core
                .open_live_in(self.tx, self.tx.record(&id), merchant, token, self.now())?;
        let CardRecord {
            pan, expiry, name, ..
        } = card;
        Ok(RevealedCard {
            pan,
            expiry,
            name,
            customer: customer_of(&rec)?,
        })
    }

    /// The caller's record under `key` (a key outside the vault's prefixes).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        check_foreign(key)?;
        Ok(self.tx.get_raw(key)?)
    }

    /// Stores the caller's record under `key` (a key outside the vault's prefixes).
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), VaultError> {
        check_foreign(key)?;
        Ok(self.tx.put_raw(key, value)?)
    }

    /// Removes the caller's record under `key` (a key outside the vault's prefixes).
    pub fn delete(&mut self, key: &[u8]) -> Result<(), VaultError> {
        check_foreign(key)?;
        Ok(self.tx.delete_raw_key(key)?)
    }

    /// Stores `value` under `key` (a key outside the vault's prefixes) only if the key is
    /// absent (this group's writes included); returns whether it did. On a vault shared by
    /// several daemons the database checks the absence again when the group commits (a group
    /// that lost the race runs again and then finds the key).
    pub fn put_if_absent(&mut self, key: &[u8], value: Vec<u8>) -> Result<bool, VaultError> {
        check_foreign(key)?;
        Ok(self.tx.put_if_absent(key, value)?)
    }

    /// Replaces the caller's record under `key` (a key outside the vault's prefixes; `new`
    /// `None` deletes it) only if it holds `expected` now (`None`: absent), this group's writes
    /// included; otherwise refuses with [`VaultError::Store`] of a
    /// [`Conflict`](vault_store::StoreError::Conflict) and writes nothing. The condition is
    /// checked again by the database when the group commits (the group that lost a race runs
    /// again on fresh reads). [`update`](Self::update) is the read-modify-write built on it.
    pub fn compare_and_set(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<(), VaultError> {
        check_foreign(key)?;
        Ok(self.tx.compare_and_set(key, expected, new)?)
    }

    /// A read-modify-write of the caller's record under `key` (a key outside the vault's
    /// prefixes), safe against other daemons of a shared vault: `decide` gets the value stored
    /// (`None`: absent; this group's writes included) and says what to do ([`Update`]); a write
    /// is a compare-and-set on the bytes `decide` saw, which the database checks again at
    /// commit: if another daemon changed the record meanwhile, the whole group runs again on
    /// fresh reads. (A [`get`](Self::get) followed by a [`put`](Self::put) carries no such
    /// condition: two daemons could both read and both write.)
    pub fn update<T, E>(
        &mut self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> Result<Update<T>, E>,
    ) -> Result<T, E>
    where
        E: From<VaultError>,
    {
        check_foreign(key)?;
        update_raw(self.tx, key, decide)
    }

    /// The caller's record under `key` in `table` (a table the vault does not own), decoded.
    pub fn get_in<K: TableKey + ?Sized, V: Codec>(
        &self,
        table: &Table<K, V>,
        key: &K,
    ) -> Result<Option<V>, VaultError> {
        check_foreign_table(table)?;
        Ok(table.get_in(self.tx, key)?)
    }

    /// Stores `value` under `key` in `table` (a table the vault does not own).
    pub fn put_in<K: TableKey + ?Sized, V: Codec>(
        &mut self,
        table: &Table<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(), VaultError> {
        check_foreign_table(table)?;
        Ok(table.put(self.tx, key, value)?)
    }

    /// Removes `key` from `table` (a table the vault does not own).
    pub fn delete_in<K: TableKey + ?Sized, V: Codec>(
        &mut self,
        table: &Table<K, V>,
        key: &K,
    ) -> Result<(), VaultError> {
        check_foreign_table(table)?;
        Ok(table.delete(self.tx, key)?)
    }

    /// The caller's MAC'd record under `key` in `table`: the MAC (`mac`, see
    /// [`Vault::record_mac`]) is checked on the stored bytes before they are decoded (a bad MAC
    /// is `Integrity`).
    pub fn get_sealed_in<K: TableKey + ?Sized, V: Codec>(
        &self,
        table: &Table<K, V>,
        mac: &RecordMac,
        key: &K,
    ) -> Result<Option<V>, VaultError> {
        check_foreign_table(table)?;
        open_sealed(table, mac, key, self.tx.get_raw(&table.key(key))?)
    }

    /// Stores `value` under `key` in `table`, MAC'd with `mac` and bound to its key.
    pub fn put_sealed_in<K: TableKey + ?Sized, V: Codec>(
        &mut self,
        table: &Table<K, V>,
        mac: &RecordMac,
        key: &K,
        value: &V,
    ) -> Result<(), VaultError> {
        check_foreign_table(table)?;
        Ok(self
            .tx
            .put_raw(&table.key(key), mac.seal_in(table, key, value))?)
    }

    /// The mark kept for `token` (see [`put_token_mark`](Self::put_token_mark)), if one is set
    /// and its MAC verifies (a tampered or moved mark counts as absent: callers fail closed). On
    /// a shared vault the job's commit is conditional on the mark staying as read (like
    /// [`live_token`](Self::live_token)).
    pub fn token_mark(&mut self, token: &Token) -> Result<Option<Vec<u8>>, VaultError> {
        let id = self.core.lookup(token);
        let stored = self.tx.get_checked(&mark_key(&id))?;
        Ok(open_mark(self.core, &id, stored))
    }

    /// Keeps `body` (a postcard record whose first byte is 2) for `token`, MAC'd and bound to
    /// the token. The vault removes it when the token is deleted or swept, or another card is
    /// put behind it.
    pub fn put_token_mark(&mut self, token: &Token, body: Vec<u8>) -> Result<(), VaultError> {
        let id = self.core.lookup(token);
        let key = mark_key(&id);
        let mac_key = self
            .core
            .keyring
            .read()
            .mac_key(RecordKind::TOKEN_MARK.label());
        let sealed = record_mac::seal_with(&mac_key, RecordKind::TOKEN_MARK, &key, body);
        Ok(self.tx.put_raw(&key, sealed)?)
    }

    /// Appends an audit entry in this job: it is durable with everything else the job writes.
    /// `detail` is for ids and counts only (cleaned and bounded like every entry).
    pub fn audit(
        &mut self,
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        detail: Option<String>,
        outcome: AuditOutcome,
    ) -> Result<(), VaultError> {
        let draft = Draft::new(actor, action, token, detail, outcome);
        self.core
            .append_audits(self.tx, std::slice::from_ref(&draft))
    }

    /// The store transaction, for the vault's own jobs.
    pub(crate) fn raw(&mut self) -> &mut WriteTx<'g> {
        self.tx
    }
}

impl Vault {
    /// Step one of a tokenize: validates, mints, fingerprints and seals `card` on the caller's
    /// thread. Nothing is stored until [`Txn::commit_new`].
    pub fn prepare_tokenize(
        &self,
        merchant: MerchantId,
        card: NewCard,
        options: TokenizeOptions,
    ) -> Result<PreparedTokenize, VaultError> {
        let now = self.inner.clock.now();
        self.inner
            .prepare(merchant, card, options, now)
            .map(PreparedTokenize)
    }

    /// Step two: runs `job` on the committer thread as one job of a group commit and returns its
    /// result once the group is durable. An error from `job` discards what it staged. `E` is the
    /// caller's error type (the vault's, or one that wraps it).
    ///
    /// `job` may run more than once: on a database shared by several daemons, a group that raced
    /// another daemon's write to a key it read is run again on fresh reads, and only the last
    /// run counts. So `job` decides from what it reads through the [`Txn`] and changes nothing
    /// outside it.
    pub fn transact<T, E, F>(&self, mut job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<VaultError> + Send + 'static,
        F: FnMut(&mut Txn<'_, '_>) -> Result<T, E> + Send + 'static,
    {
        let core = self.inner.core.clone();
        let written = self
            .inner
            .store
            .write(move |tx| job(&mut Txn::new(&core, tx)).map_err(JobError::Job));
        written.map_err(|e| match e {
            JobError::Job(e) => e,
            JobError::Store(e) => E::from(VaultError::from(e)),
        })
    }

    /// The live token of `merchant` by that name, if any (see [`Txn::live_token`]), read outside
    /// a job.
    pub fn live_token(
        &self,
        merchant: MerchantId,
        token: &Token,
    ) -> Result<Option<LiveToken>, VaultError> {
        let id = self.inner.lookup(token);
        match self.inner.store.record(&id)? {
            Some(rec) if is_live_for(&rec, merchant, token, self.inner.clock.now()) => {
                Ok(Some(LiveToken {
                    customer: customer_of(&rec)?,
                    card_digest: rec.dedupe.0,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The mark kept for a live token of `merchant` (see [`Txn::token_mark`]), read outside a job.
    pub fn token_mark(
        &self,
        merchant: MerchantId,
        token: &Token,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let id = self.inner.lookup(token);
        let live = self
            .inner
            .store
            .record(&id)?
            .is_some_and(|r| is_live_for(&r, merchant, token, self.inner.clock.now()));
        if !live {
            return Ok(None);
        }
        let stored = self.inner.store.get_raw(&mark_key(&id))?;
        Ok(open_mark(&self.inner.core, &id, stored))
    }

    /// Runs an audited action: `run` gets the action's [`Entry`], which its write job stages so
    /// that the entry commits with the action. A failure (before or in the job, or of the commit)
    /// committed nothing of the action, and its entry is then written on its own; so is the
    /// entry of an action that succeeded without staging it (one that writes nothing, or writes
    /// in several commits), with `detail` of its result. A failure to record turns a success into
    /// that failure: nothing the vault does goes unaudited without the caller hearing of it.
    pub(crate) fn audited<T>(
        &self,
        action: AuditAction,
        token: Option<&Token>,
        detail: impl FnOnce(&T) -> Option<String>,
        run: impl FnOnce(Entry) -> Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let staged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let actor = self.actor();
        let entry = Entry {
            actor: actor.clone(),
            action,
            staged: staged.clone(),
        };
        let result = run(entry);
        let staged = staged.load(std::sync::atomic::Ordering::Acquire);
        if result.is_err() || !staged {
            let detail = result.as_ref().ok().and_then(detail);
            self.record(actor, action, token, detail, AuditOutcome::of(&result))?;
        }
        result
    }
}

/// What [`Txn::update`] does with the record it read, and the result it hands back.
#[derive(Debug)]
pub enum Update<T> {
    /// Write nothing.
    Keep(T),
    /// Store these bytes.
    Put(Vec<u8>, T),
    /// Remove the record.
    Delete(T),
}

/// [`Txn::update`] on the store's transaction, for the vault's own jobs (any key outside the
/// store's prefixes).
pub(crate) fn update_raw<T, E>(
    tx: &mut WriteTx<'_>,
    key: &[u8],
    decide: impl FnOnce(Option<&[u8]>) -> Result<Update<T>, E>,
) -> Result<T, E>
where
    E: From<VaultError>,
{
    let read = tx.get_raw(key).map_err(VaultError::from)?;
    let (new, out) = match decide(read.as_deref())? {
        Update::Keep(out) => return Ok(out),
        Update::Put(bytes, out) => (Some(bytes), out),
        Update::Delete(out) => (None, out),
    };
    // The store reads each key once per group: this sees what `decide` saw, and the condition
    // it records is checked by the database at commit.
    tx.compare_and_set(key, read.as_deref(), new)
        .map_err(VaultError::from)?;
    Ok(out)
}

/// A [`Vault::transact`] job's error, or the store's.
enum JobError<E> {
    Job(E),
    Store(vault_store::StoreError),
}

impl<E> From<vault_store::StoreError> for JobError<E> {
    fn from(e: vault_store::StoreError) -> Self {
        Self::Store(e)
    }
}

/// The audit entry of one action, staged by the action's own write job (see [`Vault::audited`]).
pub(crate) struct Entry {
    actor: Actor,
    action: AuditAction,
    staged: Arc<std::sync::atomic::AtomicBool>,
}

impl Entry {
    /// Stages the action's success entry in `txn`; call it last in the job.
    pub(crate) fn stage(
        &self,
        txn: &mut Txn<'_, '_>,
        token: Option<&Token>,
        detail: Option<String>,
    ) -> Result<(), VaultError> {
        txn.audit(&self.actor, self.action, token, detail, AuditOutcome::Ok)?;
        self.staged
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

fn open_mark(core: &Core, id: &LookupId, stored: Option<Vec<u8>>) -> Option<Vec<u8>> {
    let value = stored?;
    let key = core.keyring.read().mac_key(RecordKind::TOKEN_MARK.label());
    record_mac::open_with(&key, RecordKind::TOKEN_MARK, &mark_key(id), &value)
        .ok()
        .map(<[u8]>::to_vec)
}

/// Refuses keys of the vault's own key spaces ([`Owner::Vault`](vault_store::Owner::Vault) in the
/// registry: audit, API keys, merchants, idempotency answers, per-token marks, markers) as keys of
/// the caller's own records; the store refuses its own.
fn check_foreign(key: &[u8]) -> Result<(), VaultError> {
    match key
        .first()
        .and_then(|&b| vault_store::KeySpace::from_byte(b))
    {
        Some(kind) if kind.owner() == vault_store::Owner::Vault => Err(VaultError::Store(
            vault_store::StoreError::Corrupt(vault_store::Structure::VaultKey),
        )),
        _ => Ok(()),
    }
}

/// The value of a MAC'd record read from `table` under `key`, if any: MAC first, then decode.
fn open_sealed<K: TableKey + ?Sized, V: Codec>(
    table: &Table<K, V>,
    mac: &RecordMac,
    key: &K,
    stored: Option<Vec<u8>>,
) -> Result<Option<V>, VaultError> {
    stored.map(|b| mac.open_in(table, key, &b)).transpose()
}

/// [`check_foreign`] for a whole table; the store's own key spaces are refused too (as the store
/// refuses them), also for reads.
fn check_foreign_table<K: TableKey + ?Sized, V: Codec>(
    table: &Table<K, V>,
) -> Result<(), VaultError> {
    if table.space().is_reserved() {
        return Err(VaultError::Store(vault_store::StoreError::Corrupt(
            vault_store::Structure::ReservedKey,
        )));
    }
    check_foreign(&[table.space().byte()])
}

impl Vault {
    /// Removes the marks whose token is gone (part of [`sweep_expired`](Self::sweep_expired),
    /// after the records it removed). Returns how many.
    pub(crate) fn sweep_orphan_marks(&self) -> Result<u64, VaultError> {
        let mut due = Vec::new();
        for (k, _) in self.inner.store.scan_raw(&[MARK_PREFIX], usize::MAX)? {
            let Some(id) = k.get(1..17).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                continue;
            };
            if self.inner.store.record(&LookupId(id))?.is_none() {
                due.push(k);
            }
        }
        let removed = due.len() as u64;
        for chunk in due.chunks(1000) {
            let chunk = chunk.to_vec();
            self.inner
                .store
                .write(move |tx| -> Result<(), VaultError> {
                    for k in &chunk {
                        tx.delete_raw_key(k)?;
                    }
                    Ok(())
                })?;
        }
        Ok(removed)
    }
}

impl Vault {
    /// The caller's record under `key` (a key outside the vault's prefixes), read outside a job.
    pub fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        check_foreign(key)?;
        Ok(self.inner.store.get_raw(key)?)
    }

    /// The caller's record under `key` in `table` (a table the vault does not own), decoded,
    /// read outside a job.
    pub fn read_in<K: TableKey + ?Sized, V: Codec>(
        &self,
        table: &Table<K, V>,
        key: &K,
    ) -> Result<Option<V>, VaultError> {
        check_foreign_table(table)?;
        Ok(table.get(&self.inner.store, key)?)
    }

    /// The caller's MAC'd record under `key` in `table` (see [`Txn::get_sealed_in`]), read
    /// outside a job.
    pub fn read_sealed_in<K: TableKey + ?Sized, V: Codec>(
        &self,
        table: &Table<K, V>,
        mac: &RecordMac,
        key: &K,
    ) -> Result<Option<V>, VaultError> {
        check_foreign_table(table)?;
        let stored = self.inner.store.get_raw(&table.key(key))?;
        open_sealed(table, mac, key, stored)
    }

    /// Up to `limit` of the caller's records whose keys start with `prefix` (outside the vault's
    /// prefixes), in key order.
    #[allow(clippy::type_complexity)]
    pub fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError> {
        check_foreign(prefix)?;
        Ok(self.inner.store.scan_raw(prefix, limit)?)
    }

    /// A key derived from the vault's key hierarchy for `purpose`, for a layer above's own keyed
    /// hashes and lookups. Stable for the life of the vault; never stored.
    pub fn purpose_key(&self, purpose: &str) -> vault_core::SecretKey {
        self.inner.keyring.read().mac_key(purpose)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};
    use vault_core::{KdfParams, KeySource, SecretKey};
    use vault_store::{Durability, KeySpace, StoreError, Structure, Versioned};

    use super::*;
    use crate::{ManualClock, VaultOptions};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rec {
        v: u8,
        n: u64,
    }

    impl Versioned for Rec {
        const VERSION: u8 = 1;
    }

    const OURS: Table<[u8; 4], Rec> = Table::new(KeySpace::Session);
    const VAULTS: Table<u64, Rec> = Table::new(KeySpace::Merchant);
    const STORES: Table<[u8; 16], Rec> = Table::new(KeySpace::Record);

    fn vault(dir: &std::path::Path) -> Vault {
        let options = VaultOptions {
            durability: Durability::Flush,
            kdf: KdfParams::insecure_for_tests(),
            clock: Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH)),
            cache_capacity: 1024 * 1024,
        };
        let key = KeySource::KeyFile(SecretKey::from_bytes([9; 32]));
        Vault::create(dir, &key, options).expect("vault")
    }

    #[test]
    fn typed_tables_through_a_txn_and_only_outside_the_vault_and_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = vault(dir.path());
        let rec = Rec { v: 1, n: 7 };
        vault
            .transact(move |txn| -> Result<(), VaultError> {
                txn.put_in(&OURS, b"abcd", &rec)?;
                assert_eq!(txn.get_in(&OURS, b"abcd")?.map(|r| r.n), Some(7));
                // The same bytes as a raw put of the encoded record.
                assert_eq!(txn.get(&OURS.key(b"abcd"))?, Some(vec![1, 7]));
                txn.put(&OURS.key(b"bad!"), vec![2, 7])?;
                Ok(())
            })
            .expect("commit");
        assert_eq!(
            vault.read_in(&OURS, b"abcd").expect("read"),
            Some(Rec { v: 1, n: 7 })
        );
        assert!(matches!(
            vault.read_in(&OURS, b"bad!"),
            Err(VaultError::Store(StoreError::Corrupt(Structure::Value(
                KeySpace::Session
            ))))
        ));
        vault
            .transact(|txn| -> Result<(), VaultError> {
                txn.delete_in(&OURS, b"abcd")?;
                assert!(txn.get_in(&OURS, b"abcd")?.is_none());
                for refused in [
                    txn.get_in(&VAULTS, &1).map(drop),
                    txn.put_in(&VAULTS, &1, &Rec { v: 1, n: 0 }),
                    txn.delete_in(&VAULTS, &1),
                    txn.get_in(&STORES, &[0; 16]).map(drop),
                    txn.put_in(&STORES, &[0; 16], &Rec { v: 1, n: 0 }),
                ] {
                    assert!(matches!(
                        refused,
                        Err(VaultError::Store(StoreError::Corrupt(
                            Structure::VaultKey | Structure::ReservedKey
                        )))
                    ));
                }
                Ok(())
            })
            .expect("commit");
        assert!(vault.read_in(&VAULTS, &1).is_err());
        assert!(vault.read_in(&STORES, &[0; 16]).is_err());
    }
}
