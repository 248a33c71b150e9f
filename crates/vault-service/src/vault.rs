//! The `Vault`: opening a vault (a directory or a PostgreSQL database) and reading from it.

use std::{path::Path, sync::Arc};

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use vault_core::{
    CardRecord, CustomerId, Fingerprint, KdfParams, KeyHeader, KeySource, Keyring, MerchantId,
    RecordBinding, Token, open_record,
};
use vault_store::{
    DedupeKey, Durability, Location, LookupId, Store, StoreError, StoreOptions, StoredRecord,
    WriteTx,
};

use crate::{Actor, AuditAction, Clock, RevealedCard, SystemClock, TokenInfo, VaultError};

/// How a [`Vault`] is opened.
#[derive(Clone)]
pub struct VaultOptions {
    /// When writes are acknowledged; the default ([`Durability::Sync`]) survives `kill -9` and power loss.
    pub durability: Durability,
    /// Argon2id parameters for a new passphrase-protected vault (ignored by `open`, which reads
    /// them from the vault header, and for key files).
    pub kdf: KdfParams,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// sled page-cache size in bytes (a directory vault).
    pub cache_capacity: u64,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            kdf: KdfParams::DEFAULT,
            clock: Arc::new(SystemClock),
            cache_capacity: StoreOptions::default().cache_capacity,
        }
    }
}

impl std::fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultOptions")
            .field("durability", &self.durability)
            .field("kdf", &self.kdf)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

/// Most queued (not yet committed) reveal audit entries before reveals wait for durability.
pub const MAX_QUEUED_AUDIT: usize = 1024;

/// A card vault. Cheap to clone (a handle); `Send + Sync`; share it across threads.
///
/// **Who acts.** A handle acts for one [`Actor`], named in the audit entry of every audited
/// operation it performs (reveals, admin and key operations, sweeps, and what layers above
/// write through [`transact`](Self::transact)). A
/// handle from [`create`](Self::create) or [`open`](Self::open) acts as [`Actor::local`] (a direct
/// call on the library); [`as_actor`](Self::as_actor) gives a handle acting for someone else
/// (what the daemon does per request). There is one method per operation, never an `x_as`
/// variant.
#[derive(Clone)]
pub struct Vault {
    pub(crate) inner: Arc<Inner>,
    pub(crate) actor: Arc<Actor>,
}

/// The vault: its store, and the state write jobs may use.
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) core: Arc<Core>,
}

impl std::ops::Deref for Inner {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// Everything a write job may need, and **not** the store: jobs run on the committer thread and
/// may drop the last reference they hold there. Were that a reference to the `Store`, dropping it
/// would make the committer join itself and keep the vault locked after the caller let go of it.
pub(crate) struct Core {
    /// Where the vault lives, as it was opened (a database URL keeps its password for
    /// reconnecting; it shows only masked).
    pub(crate) location: Location,
    pub(crate) header: Mutex<KeyHeader>,
    pub(crate) keyring: RwLock<Keyring>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: crate::api_key_cache::KeyCache,
    /// Failed API-key authentications, aggregated per socket peer per minute in the audit log.
    pub(crate) auth_failures: crate::audit::AuditThrottle,
    /// Idempotency keys being answered right now.
    pub(crate) idempotency: crate::idempotency_state::InFlight,
    /// The audit log's MAC, derived once.
    pub(crate) audit_key: crate::audit::AuditKey,
    /// The audit chain this process appends to: the vault's own, or on a shared vault a chain
    /// of this process's own (a random id per open), so daemons never rewrite one head row.
    pub(crate) audit_chain: crate::audit::Chain,
    /// [`RevealAudit::Queued`](crate::RevealAudit::Queued) is in force.
    pub(crate) reveal_audit_queued: std::sync::atomic::AtomicBool,
    /// Queued reveal audit entries not yet committed (the back-pressure bound of `Queued`).
    pub(crate) audit_in_flight: std::sync::atomic::AtomicUsize,
    /// Reveal audit entries waiting for the next group commit (one drain job per group).
    pub(crate) reveal_queue: crate::audit::RevealQueue,
    /// On a shared vault, reveals waiting to be read and audited in the next group commit.
    pub(crate) reveal_reads: crate::audit::RevealReads,
    /// Entries correcting guarded reveals whose card did not open (`audit_log/corrections.rs`).
    pub(crate) audit_corrections: Mutex<Vec<crate::audit::Draft>>,
    /// Distinct cards per API key and masked form (the masked-form limit).
    pub(crate) masked_forms: crate::masked_forms::MaskedForms,
    /// Per-merchant fingerprint keys, derived once (the MAC root never changes for a vault).
    fingerprint_keys: RwLock<std::collections::HashMap<MerchantId, vault_core::FingerprintKey>>,
}

impl std::fmt::Debug for Vault {
    /// The location only: a directory, or a database URL with its password masked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("location", &format_args!("{}", self.inner.location))
            .finish_non_exhaustive()
    }
}

/// Why this build cannot open a PostgreSQL vault (the text `vault_store` gives for the same
/// refusal).
#[cfg(not(feature = "postgres"))]
const NO_POSTGRES: &str = "a PostgreSQL vault (build with the `postgres` feature)";

impl Vault {
    /// Creates a new vault in `dir` (created with mode 0700 if missing) protected by `key`:
    /// [`create_at`](Self::create_at) a [`Location::Dir`].
    pub fn create(
        dir: impl AsRef<Path>,
        key: &KeySource,
        options: VaultOptions,
    ) -> Result<Self, VaultError> {
        Self::create_at(&Location::Dir(dir.as_ref().to_path_buf()), key, options)
    }

    /// Creates a new vault at `location` protected by `key`: in a directory (created with mode
    /// 0700 if missing; it must not hold a vault), or in a PostgreSQL database (feature
    /// `postgres`; its schema and the key header are created, and a database that holds a vault
    /// already is refused with
    /// [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists)). A location this build
    /// cannot open is refused before the key is derived.
    pub fn create_at(
        location: &Location,
        key: &KeySource,
        options: VaultOptions,
    ) -> Result<Self, VaultError> {
        Self::check_supported(location)?;
        let now = options.clock.now();
        let (header, keyring) =
            KeyHeader::create(key, options.kdf, &mut crate::os_rng::os_rng(), now)?;
        let store = Store::create_at(location, &header.encode(), store_options(&options))?;
        Ok(Self::assemble(
            store,
            location.clone(),
            header,
            keyring,
            options,
        ))
    }

    /// Opens the vault in `dir`: [`open_at`](Self::open_at) a [`Location::Dir`]. A wrong
    /// passphrase or key file is reported as `VaultError::Key(KeyError::WrongKey)` and changes
    /// nothing on disk.
    pub fn open(
        dir: impl AsRef<Path>,
        key: &KeySource,
        options: VaultOptions,
    ) -> Result<Self, VaultError> {
        Self::open_at(&Location::Dir(dir.as_ref().to_path_buf()), key, options)
    }

    /// Opens the vault at `location`: a directory (held by this process alone: another process
    /// holding it gives [`StoreError::InUse`](crate::StoreError::InUse)) or a PostgreSQL
    /// database (feature `postgres`; shared with any number of processes, no lock). The key is
    /// checked against the stored key header before the store is opened: a wrong key
    /// (`VaultError::Key(KeyError::WrongKey)`) changes nothing.
    pub fn open_at(
        location: &Location,
        key: &KeySource,
        options: VaultOptions,
    ) -> Result<Self, VaultError> {
        Self::check_supported(location)?;
        // Check the key against the stored header before opening the store: a wrong key must
        // leave the vault exactly as it was.
        let bytes = Store::read_header_at(location)?;
        let mut header = KeyHeader::decode(&bytes)?;
        let mut keyring = header.unlock(key)?;
        let store = Store::open_at(location, store_options(&options))?;
        // Another process may have rotated keys between the read and the open.
        let locked = store.header()?;
        if locked != bytes {
            header = KeyHeader::decode(&locked)?;
            keyring = header.unlock(key)?;
        }
        let vault = Self::assemble(store, location.clone(), header, keyring, options);
        // Records that decide access written before they carried a MAC get one, once.
        vault.migrate_record_macs()?;
        Ok(vault)
    }

    /// Refuses at once a location this build cannot open: a database URL in a build without the
    /// `postgres` feature gives [`StoreError::Unsupported`](crate::StoreError::Unsupported).
    /// Callers may ask before they ask for a key; [`create_at`](Self::create_at) and
    /// [`open_at`](Self::open_at) ask first too.
    pub fn check_supported(location: &Location) -> Result<(), VaultError> {
        match location {
            Location::Dir(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Location::Database(_) => Ok(()),
            #[cfg(not(feature = "postgres"))]
            Location::Database(_) => Err(StoreError::Unsupported(NO_POSTGRES).into()),
        }
    }

    /// Where this vault lives. Its `Display` (and `Debug`) show a database URL without its
    /// password.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    fn assemble(
        store: Store,
        location: Location,
        header: KeyHeader,
        keyring: Keyring,
        options: VaultOptions,
    ) -> Self {
        let core = Arc::new(Core {
            audit_key: crate::audit::AuditKey::new(&keyring),
            audit_chain: if store.shared() {
                crate::audit::Chain::named(rand::random())
            } else {
                crate::audit::Chain::LOCAL
            },
            reveal_audit_queued: std::sync::atomic::AtomicBool::new(false),
            audit_in_flight: std::sync::atomic::AtomicUsize::new(0),
            reveal_queue: crate::audit::RevealQueue::default(),
            reveal_reads: crate::audit::RevealReads::default(),
            audit_corrections: Mutex::default(),
            location,
            header: Mutex::new(header),
            keyring: RwLock::new(keyring),
            clock: options.clock,
            keys: crate::api_key_cache::KeyCache::default(),
            auth_failures: crate::audit::AuditThrottle::default(),
            idempotency: crate::idempotency_state::InFlight::default(),
            fingerprint_keys: RwLock::default(),
            masked_forms: crate::masked_forms::MaskedForms::default(),
        });
        let inner = Arc::new(Inner { store, core });
        Inner::start_key_follower(&inner);
        Self {
            inner,
            actor: Arc::new(Actor::local()),
        }
    }

    /// This vault, acting for `actor`: the audit entries of the operations called on the
    /// returned handle name it. Cheap (shares the vault).
    pub fn as_actor(&self, actor: &Actor) -> Self {
        Self {
            inner: self.inner.clone(),
            actor: Arc::new(actor.clone()),
        }
    }

    /// Whether other processes may write this vault at the same time (several daemons on one
    /// PostgreSQL database). State a process caches from the store must then be re-read within a
    /// stated bound, and cross-process limits kept in the store.
    pub fn shared(&self) -> bool {
        self.inner.store.shared()
    }

    /// The actor this handle acts for (see [`as_actor`](Self::as_actor)).
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The masked view of a live token of `merchant`.
    pub fn get(&self, merchant: MerchantId, token: &Token) -> Result<TokenInfo, VaultError> {
        let now = self.inner.clock.now();
        let loaded = self.inner.load(merchant, token, now);
        self.inner.info_of(merchant, loaded)
    }

    /// [`get`](Self::get) without waiting for the store: `done` receives the view on this thread
    /// or, on an engine whose reads wait on a network (PostgreSQL) and a caller inside a tokio
    /// runtime, on one of the engine's threads once the read is answered. `done` must be quick
    /// (hand the result to a channel) and must not wait on the vault.
    pub fn get_then<D>(&self, merchant: MerchantId, token: &Token, done: D)
    where
        D: FnOnce(Result<TokenInfo, VaultError>) + Send + 'static,
    {
        let inner = self.inner.clone();
        self.inner
            .load_then(merchant, token, self.inner.clock.now(), move |loaded| {
                done(inner.info_of(merchant, loaded));
            });
    }

    /// The card behind a live token of `merchant`, in clear. When the token is bound to a customer,
    /// `customer` must name the same one; presenting a customer for an unbound token is refused too.
    /// Every reveal, refused ones included, is recorded in the audit log (naming this handle's
    /// [`actor`](Self::actor)) before the card is returned. Under the
    /// default [`RevealAudit::Durable`](crate::RevealAudit::Durable) the entry joins the next group
    /// commit and the card is returned only once that group is durable; the reveal fails if the
    /// entry cannot be written (on a vault shared with other daemons the record is read in that
    /// same group: as it commits, or one round trip before; see `audit_log/reveal_group.rs`).
    /// Under the opt-in `Queued` (while fewer than `MAX_QUEUED_AUDIT` entries wait) the card is
    /// returned at once.
    pub fn reveal(
        &self,
        merchant: MerchantId,
        token: &Token,
        customer: Option<&CustomerId>,
    ) -> Result<RevealedCard, VaultError> {
        if self.reveals_in_group() {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.reveal_in_group(
                merchant,
                token,
                customer.cloned(),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            return rx
                .recv()
                .unwrap_or(Err(VaultError::Store(StoreError::Closed)));
        }
        let result = self.read_card(merchant, token, customer);
        let draft = reveal_draft(&self.actor, token, &result);
        match self.queue_reveal_audit(draft) {
            None => result,
            Some(draft) => {
                self.log_reveal_durably(draft)?;
                result
            }
        }
    }

    /// Non-blocking [`reveal`](Self::reveal): the card is read (without blocking an async caller;
    /// on a shared vault, in the group commit below), its audit entry joins the next group
    /// commit, and `done` receives the card (or the refusal) once that entry is durable. `done`
    /// runs on the committer thread: it must be quick (hand the result to a channel) and must not
    /// write to the vault.
    pub fn reveal_then<D>(
        &self,
        merchant: MerchantId,
        token: &Token,
        customer: Option<&CustomerId>,
        done: D,
    ) where
        D: FnOnce(Result<RevealedCard, VaultError>) + Send + 'static,
    {
        if self.reveals_in_group() {
            self.reveal_in_group(merchant, token, customer.cloned(), Box::new(done));
            return;
        }
        let vault = self.clone();
        let token = *token;
        let customer = customer.cloned();
        self.inner
            .load_then(merchant, &token, self.inner.clock.now(), move |loaded| {
                let result = revealed(loaded, customer.as_ref());
                let draft = reveal_draft(&vault.actor, &token, &result);
                match vault.queue_reveal_audit(draft) {
                    None => done(result),
                    Some(draft) => vault.queue_reveal_entry(
                        draft,
                        Some(Box::new(move |logged| {
                            done(match logged {
                                Ok(()) => result,
                                Err(e) => Err(e),
                            });
                        })),
                    ),
                }
            });
    }

    /// Whether a reveal's record is read in the group commit that carries its audit entry (see
    /// `audit_log/reveal_group.rs`): on a vault shared with other daemons, whose reads wait on a
    /// network, under the default `Durable` mode. One stage (usually one round trip), instead of a
    /// read and then a commit, each a round trip and a wait for the batch in flight. Elsewhere (a
    /// local store's reads are quick; `Queued` answers before the commit) the record is read
    /// first.
    fn reveals_in_group(&self) -> bool {
        self.inner.store.shared()
            && !self
                .inner
                .reveal_audit_queued
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues a reveal's audit entry for the next group commit without waiting, when the mode is
    /// `Queued` and one of the [`MAX_QUEUED_AUDIT`] slots is free (`None`); otherwise hands the draft back,
    /// and the caller then waits for the entry to be durable (back-pressure: a crash can never
    /// lose more than that many answered reveals' entries).
    fn queue_reveal_audit(&self, draft: crate::audit::Draft) -> Option<crate::audit::Draft> {
        use std::sync::atomic::Ordering;
        if !self.inner.reveal_audit_queued.load(Ordering::Relaxed) {
            return Some(draft);
        }
        let in_flight = &self.inner.core.audit_in_flight;
        if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_AUDIT {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            return Some(draft);
        }
        // The slot is released once the entry's group is durable (or failed).
        self.queue_reveal_entry(draft, None);
        None
    }

    /// Chooses when a reveal returns relative to its audit entry (default
    /// [`RevealAudit::Durable`](crate::RevealAudit::Durable)). Applies to every handle of this vault.
    pub fn set_reveal_audit(&self, mode: crate::RevealAudit) {
        self.inner.reveal_audit_queued.store(
            mode == crate::RevealAudit::Queued,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The card, read; its audit entry is the caller's.
    fn read_card(
        &self,
        merchant: MerchantId,
        token: &Token,
        customer: Option<&CustomerId>,
    ) -> Result<RevealedCard, VaultError> {
        revealed(
            self.inner.load(merchant, token, self.inner.clock.now()),
            customer,
        )
    }

    /// The clock this vault uses.
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Bounds the store's write queue to `jobs` waiting jobs (default
    /// [`vault_store::DEFAULT_MAX_QUEUE`]); a write submitted while the queue is full fails at once
    /// with [`VaultError::Busy`] (the daemon answers 503 with `Retry-After`). Reveal audit entries
    /// are not refused: they ride on one queued job, whatever their number.
    pub fn set_write_queue_limit(&self, jobs: usize) {
        self.inner.store.set_max_queue(jobs);
    }

    /// `false` once the store has hit a fatal write error (disk full, I/O error): sled 0.34 then
    /// refuses every operation until the vault is reopened, so the process should be restarted.
    /// Everything acknowledged before the failure is intact on disk.
    pub fn is_healthy(&self) -> bool {
        !self.inner.store.has_failed()
    }

    /// Returns once every write submitted before the call (including queued reveal audit entries)
    /// has been committed: the committer runs jobs in order, so an empty job that completes is a
    /// barrier.
    pub fn barrier(&self) -> Result<(), VaultError> {
        self.inner.store.write(|_| Ok::<(), VaultError>(()))
    }

    /// Flushes everything written so far (writes are already durable under the default durability).
    pub fn flush(&self) -> Result<(), VaultError> {
        Ok(self.inner.store.flush()?)
    }
}

impl Core {
    /// The keyed fingerprint of `pan` for `merchant`, with the merchant's key cached.
    pub(crate) fn fingerprint(
        &self,
        keyring: &Keyring,
        merchant: MerchantId,
        pan: &vault_core::Pan,
    ) -> Fingerprint {
        if let Some(k) = self.fingerprint_keys.read().get(&merchant) {
            return k.fingerprint(pan);
        }
        let key = keyring.fingerprint_key(merchant);
        let fp = key.fingerprint(pan);
        let mut cache = self.fingerprint_keys.write();
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(merchant, key);
        fp
    }

    pub(crate) fn lookup(&self, token: &Token) -> LookupId {
        LookupId(self.keyring.read().lookup_key().lookup(token))
    }
}

impl Inner {
    /// Reads and opens a live record of `merchant`. Absent, expired, other-merchant and token
    /// mismatches are all `NotFound`; a record that fails to decode or open is `Integrity`.
    pub(crate) fn load(
        &self,
        merchant: MerchantId,
        token: &Token,
        now: OffsetDateTime,
    ) -> Result<(StoredRecord, CardRecord), VaultError> {
        let read = self.store.record(&self.lookup(token));
        self.opened(read, merchant, token, now)
    }

    /// [`load`](Self::load) without waiting for the store: `done` receives the result, on this
    /// thread or on one of the store engine's (see [`Store::record_then`]).
    pub(crate) fn load_then(
        self: &Arc<Self>,
        merchant: MerchantId,
        token: &Token,
        now: OffsetDateTime,
        done: impl FnOnce(Result<(StoredRecord, CardRecord), VaultError>) + Send + 'static,
    ) {
        let inner = self.clone();
        let token = *token;
        self.store.record_then(&self.lookup(&token), move |read| {
            done(inner.opened(read, merchant, &token, now));
        });
    }

    /// The masked view of what a load found.
    fn info_of(
        &self,
        merchant: MerchantId,
        loaded: Result<(StoredRecord, CardRecord), VaultError>,
    ) -> Result<TokenInfo, VaultError> {
        let (rec, card) = loaded?;
        let fingerprint = self.fingerprint(&self.keyring.read(), merchant, &card.pan);
        info_from(merchant, &rec, &card, fingerprint, false)
    }

    /// The rest of a load, once the record is read: live checks, then the card opened.
    fn opened(
        &self,
        read: Result<Option<StoredRecord>, StoreError>,
        merchant: MerchantId,
        token: &Token,
        now: OffsetDateTime,
    ) -> Result<(StoredRecord, CardRecord), VaultError> {
        let shared = self.store.shared();
        self.core.open_live(read, merchant, token, now, || {
            if shared {
                self.follow_keys()?;
            }
            Ok(())
        })
    }
}

impl Core {
    /// A record read, checked live for `merchant` and `token` at `now`, and opened. A record
    /// sealed under a data key this process has not loaded yet (another daemon rotated) is
    /// opened after `follow` (which follows the stored key header), and so is one sealed under
    /// the current key's id that does not open: for the moment between making a key and
    /// finding that another daemon's key with the same id reached the header first, this process
    /// holds a key the header does not (`Keyring::current_stamp`).
    pub(crate) fn open_live(
        &self,
        read: Result<Option<StoredRecord>, StoreError>,
        merchant: MerchantId,
        token: &Token,
        now: OffsetDateTime,
        follow: impl FnOnce() -> Result<(), VaultError>,
    ) -> Result<(StoredRecord, CardRecord), VaultError> {
        let rec = read?.ok_or(VaultError::NotFound)?;
        if !is_live_for(&rec, merchant, token, now) {
            return Err(VaultError::NotFound);
        }
        let dek = vault_core::sealed_dek_id(&rec.sealed).ok();
        let mut follow = Some(follow);
        let mut keyring = self.keyring.read();
        if let Some(dek) = dek
            && !keyring.has_dek(dek)
            && let Some(follow) = follow.take()
        {
            drop(keyring);
            follow()?;
            keyring = self.keyring.read();
        }
        let opened = open_stored(&keyring, &rec);
        // Only the current key's id can be held with another daemon's key under it.
        let under_current = dek == Some(keyring.current_dek());
        drop(keyring);
        let card = match (opened, follow) {
            (Err(VaultError::Integrity), Some(follow)) if under_current => {
                // A header that cannot be followed leaves the card refused as it was.
                follow().map_err(|_| VaultError::Integrity)?;
                open_stored(&self.keyring.read(), &rec)?
            }
            (opened, _) => opened?,
        };
        Ok((rec, card))
    }

    /// [`open_live`](Self::open_live) inside a job: the stored key header it may follow is read
    /// through the job's own transaction.
    pub(crate) fn open_live_in(
        &self,
        tx: &WriteTx<'_>,
        read: Result<Option<StoredRecord>, StoreError>,
        merchant: MerchantId,
        token: &Token,
        now: OffsetDateTime,
    ) -> Result<(StoredRecord, CardRecord), VaultError> {
        // Sealed under a data key another daemon made: follow the stored header.
        self.open_live(read, merchant, token, now, || {
            self.follow_stored(&tx.stored_header()?).map(drop)
        })
    }
}

/// The card a reveal hands out from what a load found, once the caller's `customer` matched the
/// stored binding.
pub(crate) fn revealed(
    loaded: Result<(StoredRecord, CardRecord), VaultError>,
    customer: Option<&CustomerId>,
) -> Result<RevealedCard, VaultError> {
    let (rec, card) = loaded?;
    if rec.customer.as_deref() != customer.map(CustomerId::as_str) {
        return Err(VaultError::CustomerMismatch);
    }
    // Equal to the stored binding (checked above), so no need to parse the stored copy again.
    let customer = customer.cloned();
    let CardRecord {
        pan, expiry, name, ..
    } = card;
    Ok(RevealedCard {
        pan,
        expiry,
        name,
        customer,
    })
}

/// True when `rec` is `token`'s record, belongs to `merchant` and has not reached its keep-until.
pub(crate) fn is_live_for(
    rec: &StoredRecord,
    merchant: MerchantId,
    token: &Token,
    now: OffsetDateTime,
) -> bool {
    rec.merchant == merchant.get()
        && Token::from_bytes(rec.token) == *token
        && rec.keep_until > now.unix_timestamp()
}

/// Runs `f` with the binding a stored record's public fields claim (merchant, token, customer,
/// keep-until): what its sealed card is, or is to be, bound to.
fn with_binding<T>(
    rec: &StoredRecord,
    f: impl FnOnce(&RecordBinding<'_>) -> T,
) -> Result<T, VaultError> {
    let merchant = MerchantId::new(rec.merchant).map_err(|_| VaultError::Integrity)?;
    let customer = customer_of(rec)?;
    let token = Token::from_bytes(rec.token);
    let binding = RecordBinding {
        merchant,
        token: &token,
        customer: customer.as_ref(),
        keep_until: from_unix(rec.keep_until)?,
    };
    Ok(f(&binding))
}

/// Opens a stored record's sealed card with the binding its public fields claim.
pub(crate) fn open_stored(keyring: &Keyring, rec: &StoredRecord) -> Result<CardRecord, VaultError> {
    with_binding(rec, |b| open_record(keyring, b, &rec.sealed))?.map_err(|_| VaultError::Integrity)
}

/// Seals `card` (under the current data key) for the binding `rec`'s public fields claim: the
/// inverse of [`open_stored`].
pub(crate) fn seal_stored(
    keyring: &Keyring,
    rec: &StoredRecord,
    card: &CardRecord,
) -> Result<Vec<u8>, VaultError> {
    with_binding(rec, |b| {
        vault_core::seal_record(keyring, b, card, &mut rand::rng())
    })
}

pub(crate) fn customer_of(rec: &StoredRecord) -> Result<Option<CustomerId>, VaultError> {
    rec.customer
        .as_deref()
        .map(CustomerId::parse)
        .transpose()
        .map_err(|_| VaultError::Integrity)
}

pub(crate) fn from_unix(t: i64) -> Result<OffsetDateTime, VaultError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| VaultError::Integrity)
}

pub(crate) fn info_from(
    merchant: MerchantId,
    rec: &StoredRecord,
    card: &CardRecord,
    fingerprint: Fingerprint,
    deduplicated: bool,
) -> Result<TokenInfo, VaultError> {
    Ok(TokenInfo {
        token: Token::from_bytes(rec.token),
        merchant,
        masked_pan: card.pan.masked(),
        brand: card.pan.brand(),
        expiry: card.expiry,
        keep_until: from_unix(rec.keep_until)?,
        customer: customer_of(rec)?,
        metadata: card.metadata.clone(),
        fingerprint,
        created_at: from_unix(rec.created_at)?,
        updated_at: from_unix(rec.updated_at)?,
        deduplicated,
    })
}

/// The de-duplication key of a card (by its keyed, per-merchant fingerprint) and customer.
pub(crate) fn dedupe_key(fingerprint: &Fingerprint, customer: Option<&CustomerId>) -> DedupeKey {
    let mut h = Sha256::new();
    h.update(b"cardvault/v1/dedupe");
    h.update(fingerprint.as_bytes());
    let c = customer.map(CustomerId::as_str).unwrap_or("");
    h.update([u8::try_from(c.len()).unwrap_or(u8::MAX)]);
    h.update(c.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    DedupeKey(k)
}

/// The audit entry of a reveal that ended with `result`.
pub(crate) fn reveal_draft<T>(
    actor: &Actor,
    token: &Token,
    result: &Result<T, VaultError>,
) -> crate::audit::Draft {
    crate::audit::Draft::new(
        actor,
        AuditAction::Reveal,
        Some(token),
        None,
        crate::AuditOutcome::of(result),
    )
}

fn store_options(options: &VaultOptions) -> StoreOptions {
    StoreOptions {
        durability: options.durability,
        cache_capacity: options.cache_capacity,
        ..StoreOptions::default()
    }
}
