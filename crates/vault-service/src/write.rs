//! Writes: tokenize (single and batch), update, delete.
//!
//! Validation, minting, fingerprinting and sealing happen on the caller's thread; the committer
//! thread only checks what must be checked against the current state (de-duplication, the record
//! still existing, the data key still current) and stages the writes. Every write is acknowledged
//! only after its group commit is durable.

use std::sync::Arc;

use time::OffsetDateTime;
use vault_core::{
    CardRecord, CustomerId, DekStamp, Keyring, MerchantId, Metadata, RecordBinding, Token,
    seal_record,
};
use vault_store::{LookupId, StoredRecord, WriteTx};

use crate::{
    NewCard, TokenInfo, TokenizeOptions, TokenizeRequest, UpdateOptions, Vault, VaultError,
    vault::{Core, customer_of, dedupe_key, info_from, is_live_for, seal_stored},
};

/// Most items in one [`Vault::tokenize_batch`] call.
pub const MAX_BATCH: usize = 1000;

/// A tokenize request after validation and sealing, ready for the committer.
pub(crate) struct Prepared {
    merchant: MerchantId,
    id: LookupId,
    record: StoredRecord,
    /// The key `record` was sealed under, exactly (id and material).
    sealed_with: DekStamp,
    card: CardRecord,
    dedupe: bool,
    /// The answer, built on the caller's thread; the committer only patches it on a dedupe hit.
    info: TokenInfo,
}

impl Vault {
    /// Tokenizes one card for `merchant`. Returns once the token is durable.
    pub fn tokenize(
        &self,
        merchant: MerchantId,
        card: NewCard,
        options: TokenizeOptions,
    ) -> Result<TokenInfo, VaultError> {
        let prepared = self
            .inner
            .prepare(merchant, card, options, self.inner.clock.now())?;
        let inner = self.inner.core.clone();
        self.inner
            .store
            .write(move |tx| inner.commit_new(tx, &prepared))
    }

    /// Like [`tokenize`](Self::tokenize) without blocking: `done` runs once the token is durable (or
    /// the write failed). It runs on the committer thread, so it must be quick (hand the result to
    /// a channel) and must not write to the vault itself.
    pub fn tokenize_then<D>(
        &self,
        merchant: MerchantId,
        card: NewCard,
        options: TokenizeOptions,
        done: D,
    ) where
        D: FnOnce(Result<TokenInfo, VaultError>) + Send + 'static,
    {
        match self
            .inner
            .prepare(merchant, card, options, self.inner.clock.now())
        {
            Ok(prepared) => {
                let inner = self.inner.core.clone();
                self.inner
                    .store
                    .submit(move |tx| inner.commit_new(tx, &prepared), done);
            }
            Err(e) => done(Err(e)),
        }
    }

    /// Tokenizes up to [`MAX_BATCH`] cards in one durable commit. Each item gets its own result;
    /// an invalid item does not stop the others. The outer error is for failures of the whole
    /// commit (I/O), in which case nothing was stored.
    pub fn tokenize_batch(
        &self,
        merchant: MerchantId,
        items: Vec<TokenizeRequest>,
    ) -> Result<Vec<Result<TokenInfo, VaultError>>, VaultError> {
        let (prepared, inner) = self.prepare_batch(merchant, items)?;
        self.inner
            .store
            .write(move |tx| inner.commit_batch(tx, &prepared))
    }

    /// Non-blocking [`tokenize_batch`](Self::tokenize_batch); see [`tokenize_then`](Self::tokenize_then).
    pub fn tokenize_batch_then<D>(&self, merchant: MerchantId, items: Vec<TokenizeRequest>, done: D)
    where
        D: FnOnce(Result<Vec<Result<TokenInfo, VaultError>>, VaultError>) + Send + 'static,
    {
        match self.prepare_batch(merchant, items) {
            Ok((prepared, inner)) => self
                .inner
                .store
                .submit(move |tx| inner.commit_batch(tx, &prepared), done),
            Err(e) => done(Err(e)),
        }
    }

    #[allow(clippy::type_complexity)]
    fn prepare_batch(
        &self,
        merchant: MerchantId,
        items: Vec<TokenizeRequest>,
    ) -> Result<(Vec<Result<Prepared, VaultError>>, Arc<Core>), VaultError> {
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(VaultError::field(
                "items",
                "invalid_length",
                format!("a batch holds 1-{MAX_BATCH} items"),
            ));
        }
        let now = self.inner.clock.now();
        let prepared = items
            .into_iter()
            .map(|item| self.inner.prepare(merchant, item.card, item.options, now))
            .collect();
        Ok((prepared, self.inner.core.clone()))
    }

    /// Replaces the card behind `token` (same token, same customer binding). The keep-until is
    /// recomputed from the new expiry unless `options.keep_until` says otherwise; metadata is kept
    /// unless replaced.
    pub fn update(
        &self,
        merchant: MerchantId,
        token: &Token,
        card: NewCard,
        options: UpdateOptions,
    ) -> Result<TokenInfo, VaultError> {
        let now = self.inner.clock.now();
        let keep_until = resolve_keep_until(&card, options.keep_until, now)?;
        let inner = self.inner.core.clone();
        let token = *token;
        self.inner.store.write(move |tx| {
            inner.commit_update(
                tx,
                merchant,
                token,
                card.duplicate(),
                options.metadata.clone(),
                keep_until,
                now,
            )
        })
    }

    /// Deletes a live token of `merchant`. Its record and de-duplication entry are removed in one durable
    /// commit; see `docs/durability.md` for what remains in sled's log until it is reclaimed.
    pub fn delete(&self, merchant: MerchantId, token: &Token) -> Result<(), VaultError> {
        let inner = self.inner.core.clone();
        let token = *token;
        self.inner
            .store
            .write(move |tx| inner.commit_delete(tx, merchant, token))
    }

    /// Non-blocking [`delete`](Self::delete); see [`tokenize_then`](Self::tokenize_then).
    pub fn delete_then<D>(&self, merchant: MerchantId, token: &Token, done: D)
    where
        D: FnOnce(Result<(), VaultError>) + Send + 'static,
    {
        let inner = self.inner.core.clone();
        let token = *token;
        self.inner
            .store
            .submit(move |tx| inner.commit_delete(tx, merchant, token), done);
    }
}

/// The keep-until for `card`: the requested one if it is in the future and not after the card's
/// own, else the card's own. An expired card is refused.
pub(crate) fn resolve_keep_until(
    card: &NewCard,
    requested: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, VaultError> {
    if card.expiry.is_expired(now) {
        return Err(vault_core::CardError::Expired.into());
    }
    let card_limit = card.expiry.keep_until();
    match requested {
        None => Ok(card_limit),
        Some(t) if t > card_limit => Err(VaultError::field(
            "keep_until",
            "after_card_expiry",
            "keep_until must not be later than the card's expiry",
        )),
        Some(t) if t <= now => Err(VaultError::field(
            "keep_until",
            "in_the_past",
            "keep_until must be in the future",
        )),
        // Stored with whole-second precision.
        Some(t) => Ok(t.replace_nanosecond(0).unwrap_or(t)),
    }
}

impl Core {
    pub(crate) fn prepare(
        &self,
        merchant: MerchantId,
        card: NewCard,
        options: TokenizeOptions,
        now: OffsetDateTime,
    ) -> Result<Prepared, VaultError> {
        let keep_until = resolve_keep_until(&card, options.keep_until, now)?;
        let mut rng = rand::rng();
        let token = Token::mint(&mut rng);
        let card = CardRecord {
            pan: card.pan,
            expiry: card.expiry,
            name: card.name,
            metadata: options.metadata,
        };
        let keyring = self.keyring.read();
        let id = LookupId(keyring.lookup_key().lookup(&token));
        let fingerprint = self.fingerprint(&keyring, merchant, &card.pan);
        let sealed = seal(
            &keyring,
            merchant,
            &token,
            options.customer.as_ref(),
            keep_until,
            &card,
        );
        let sealed_with = keyring.current_stamp();
        drop(keyring);
        let record = StoredRecord {
            merchant: merchant.get(),
            token: *token.as_bytes(),
            created_at: now.unix_timestamp(),
            updated_at: now.unix_timestamp(),
            keep_until: keep_until.unix_timestamp(),
            dedupe: dedupe_key(&fingerprint, options.customer.as_ref()),
            dedupe_indexed: options.dedupe,
            customer: options.customer.map(|c| c.as_str().to_owned()),
            sealed,
        };
        let info = info_from(merchant, &record, &card, fingerprint, false)?;
        Ok(Prepared {
            merchant,
            id,
            record,
            sealed_with,
            card,
            dedupe: options.dedupe,
            info,
        })
    }

    /// Stages a prepared token on the committer thread.
    pub(crate) fn commit_new(
        &self,
        tx: &mut WriteTx<'_>,
        p: &Prepared,
    ) -> Result<TokenInfo, VaultError> {
        let now = self.clock.now();
        let keyring = self.keyring.read();
        if p.dedupe
            && let Some(existing) = tx.dedupe(&p.record.dedupe)?
        {
            let existing = Token::from_bytes(existing);
            let id = LookupId(keyring.lookup_key().lookup(&existing));
            if let Some(old) = tx.record(&id)?
                && is_live_for(&old, p.merchant, &existing, now)
                && old.dedupe == p.record.dedupe
                && old.dedupe_indexed
            {
                // Same card, same merchant and customer: refresh the existing token's card.
                let mut rec = StoredRecord {
                    token: old.token,
                    created_at: old.created_at,
                    updated_at: now.unix_timestamp(),
                    sealed: Vec::new(),
                    ..p.record.clone()
                };
                rec.sealed = seal_stored(&keyring, &rec, &p.card)?;
                tx.put_record(&id, &rec)?;
                let created_at = crate::vault::from_unix(rec.created_at)?;
                // Whole seconds, as stored and as every other answer gives them.
                let updated_at = crate::vault::from_unix(rec.updated_at)?;
                return Ok(TokenInfo {
                    token: existing,
                    created_at,
                    updated_at,
                    deduplicated: true,
                    ..p.info.clone()
                });
            }
        }
        if p.sealed_with != keyring.current_stamp() {
            // The keys changed between sealing and committing: re-seal under the current key, so
            // no record is ever committed under a key the header might not hold. The stamp, not
            // the id: on a shared vault the key this process made and sealed under may have lost
            // to another daemon's key with the same id (both rotated at once), which is the one
            // the header now holds under that id.
            let mut record = p.record.clone();
            record.sealed = seal_stored(&keyring, &record, &p.card)?;
            tx.insert_new_record(&p.id, &record)?;
        } else {
            tx.insert_new_record(&p.id, &p.record)?;
        }
        if p.record.dedupe_indexed {
            tx.put_dedupe(&p.record.dedupe, &p.record.token)?;
        }
        Ok(p.info.clone())
    }

    fn commit_batch(
        &self,
        tx: &mut WriteTx<'_>,
        items: &[Result<Prepared, VaultError>],
    ) -> Result<Vec<Result<TokenInfo, VaultError>>, VaultError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match item {
                Ok(p) => Ok(self.commit_new(tx, p)?),
                Err(e) => Err(e.clone()),
            });
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_update(
        &self,
        tx: &mut WriteTx<'_>,
        merchant: MerchantId,
        token: Token,
        card: NewCard,
        metadata: Option<Metadata>,
        keep_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<TokenInfo, VaultError> {
        let id = self.lookup(&token);
        let (old, old_card) = self.open_live_in(tx, tx.record(&id), merchant, &token, now)?;
        let keyring = self.keyring.read();
        let customer = customer_of(&old)?;
        let new_card = CardRecord {
            pan: card.pan,
            expiry: card.expiry,
            name: card.name,
            metadata: metadata.unwrap_or_else(|| old_card.metadata.clone()),
        };
        let fingerprint = self.fingerprint(&keyring, merchant, &new_card.pan);
        let dedupe = dedupe_key(&fingerprint, customer.as_ref());
        let sealed = seal(
            &keyring,
            merchant,
            &token,
            customer.as_ref(),
            keep_until,
            &new_card,
        );
        if old.dedupe_indexed && old.dedupe != dedupe && tx.dedupe(&old.dedupe)? == Some(old.token)
        {
            tx.delete_dedupe(&old.dedupe)?;
        }
        let rec = StoredRecord {
            updated_at: now.unix_timestamp(),
            keep_until: keep_until.unix_timestamp(),
            dedupe,
            sealed,
            ..old
        };
        if old.dedupe != rec.dedupe {
            // Another card behind the token: a mark kept for the old card (a layer above's, such
            // as a saved-for-reuse flag) does not carry over to it.
            tx.delete_raw_key(&mark_key(&id))?;
        }
        tx.put_record(&id, &rec)?;
        if rec.dedupe_indexed {
            tx.put_dedupe(&dedupe, &rec.token)?;
        }
        info_from(merchant, &rec, &new_card, fingerprint, false)
    }

    fn commit_delete(
        &self,
        tx: &mut WriteTx<'_>,
        merchant: MerchantId,
        token: Token,
    ) -> Result<(), VaultError> {
        let now = self.clock.now();
        let id = self.lookup(&token);
        let rec = tx.record(&id)?.ok_or(VaultError::NotFound)?;
        if !is_live_for(&rec, merchant, &token, now) {
            return Err(VaultError::NotFound);
        }
        tx.delete_record(&id)?;
        tx.delete_raw_key(&mark_key(&id))?;
        Ok(())
    }
}

fn seal(
    keyring: &Keyring,
    merchant: MerchantId,
    token: &Token,
    customer: Option<&CustomerId>,
    keep_until: OffsetDateTime,
    card: &CardRecord,
) -> Vec<u8> {
    let binding = RecordBinding {
        merchant,
        token,
        customer,
        keep_until,
    };
    seal_record(keyring, &binding, card, &mut rand::rng())
}

/// The store-key prefix of per-token marks (`O` + the token's lookup id): the vault clears a
/// token's mark when the token is deleted or its card changes.
pub(crate) const MARK_PREFIX: u8 = vault_store::KeySpace::OneClick.byte();

/// The store key of `id`'s mark.
pub(crate) fn mark_key(id: &LookupId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(MARK_PREFIX);
    k.extend_from_slice(&id.0);
    k
}

#[cfg(test)]
mod tests;
