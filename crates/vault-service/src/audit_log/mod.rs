//! The audit log's operations: appending entries in a write job, the reveal queue's drain, the
//! throttled refusals, reading, verifying and archiving the chain. The entry types, their codec and
//! the in-memory state the vault holds live in `audit/` (a leaf below `vault`); this module
//! implements the operations on `Vault` and `Core` over them.

mod archive;
mod corrections;
mod queue;
mod reveal_group;
#[cfg(test)]
mod tests;
mod throttle;

pub use archive::{ArchivedChain, AuditArchived, MAX_ARCHIVE_BLOCKS};

use subtle::ConstantTimeEq;
use vault_core::Token;
use vault_store::WriteTx;

use crate::{
    Vault, VaultError,
    audit::{
        Actor, AuditAction, AuditEntry, AuditOutcome, AuditReport, Draft, HeadRecord,
        codec::{
            Chain, MAX_BLOCK_BYTES, MAX_BLOCK_ENTRIES, decode_block, decode_entry,
            encode_body_into, window_of,
        },
    },
    vault::Core,
};

impl Core {
    /// Appends `drafts`, in order, inside a write job (on the committer thread): reads the head,
    /// including this group's pending appends, so sequence order is commit order (on a shared
    /// vault the chain is this process's alone, so its head is read once and then kept by the
    /// committer: [`WriteTx::get_own_raw`]). The entries go
    /// into as few blocks as the block bounds allow, each under `A` + its first seq, and the head
    /// is written once.
    pub(crate) fn append_audits(
        &self,
        tx: &mut WriteTx<'_>,
        drafts: &[Draft],
    ) -> Result<(), VaultError> {
        if drafts.is_empty() {
            return Ok(());
        }
        let chain = self.audit_chain;
        let head_key = chain.head_key();
        let (mut seq, mut prev) = match tx.get_own_raw(&head_key)? {
            Some(b) => self.audit_key.decode_head(chain, &b).map_err(|_| {
                VaultError::Store(vault_store::StoreError::Corrupt(
                    vault_store::Structure::Value(vault_store::KeySpace::AuditHead),
                ))
            })?,
            None => (0, [0u8; 32]),
        };
        let at = self.clock.now();
        let capacity = (MAX_BLOCK_BYTES + 512).min(drafts.len() * 160);
        let mut block = Vec::with_capacity(capacity);
        let mut first = seq + 1;
        for d in drafts {
            seq += 1;
            let start = block.len();
            encode_body_into(&mut block, seq, at, d);
            let hash = self.audit_key.entry_hash(&prev, &block[start..]);
            block.extend_from_slice(&prev);
            block.extend_from_slice(&hash);
            prev = hash;
            if block.len() >= MAX_BLOCK_BYTES || seq - first + 1 >= MAX_BLOCK_ENTRIES {
                let full = std::mem::replace(&mut block, Vec::with_capacity(capacity));
                tx.put_raw(&chain.entry_key(first), full)?;
                first = seq + 1;
            }
        }
        if !block.is_empty() {
            tx.put_raw(&chain.entry_key(first), block)?;
        }
        tx.put_raw(&head_key, self.audit_key.encode_head(chain, seq, &prev))?;
        Ok(())
    }
}

/// How many times one chain is verified when archives keep moving its anchor under the walk.
const VERIFY_ATTEMPTS: u32 = 3;

impl Vault {
    /// Appends one audit entry naming this handle's actor, durably (one commit, shared with
    /// concurrent writers). For the layers above, to record a refusal that wrote nothing; an
    /// action that writes appends its entry in its own job ([`Txn::audit`](crate::Txn::audit)).
    pub fn audit(
        &self,
        action: AuditAction,
        token: Option<&Token>,
        outcome: AuditOutcome,
    ) -> Result<(), VaultError> {
        self.record(self.actor(), action, token, None, outcome)
    }

    /// [`audit`](Self::audit) with a `detail` (ids and counts only; cleaned and bounded).
    pub fn audit_detailed(
        &self,
        action: AuditAction,
        token: Option<&Token>,
        detail: Option<String>,
        outcome: AuditOutcome,
    ) -> Result<(), VaultError> {
        self.record(self.actor(), action, token, detail, outcome)
    }

    /// [`audit`](Self::audit) without waiting: the entry joins the next group commit (for
    /// refusals, whose callers learn nothing from it).
    pub fn audit_then(&self, action: AuditAction, token: Option<&Token>, outcome: AuditOutcome) {
        self.record_then(self.actor(), action, token, None, outcome, |_| {});
    }

    /// Appends one entry (see [`audit`](Self::audit)) with a vault-written `detail`, durably.
    pub(crate) fn record(
        &self,
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        detail: Option<String>,
        outcome: AuditOutcome,
    ) -> Result<(), VaultError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.record_then(actor, action, token, detail, outcome, move |r| {
            let _ = tx.send(r);
        });
        rx.recv()
            .unwrap_or(Err(VaultError::Store(vault_store::StoreError::Closed)))
    }

    /// Like [`record`](Self::record) without blocking: the entry joins the next group commit (as a
    /// job, and a block, of its own) and `done` runs (on the committer thread) once it is durable
    /// or failed.
    pub(crate) fn record_then(
        &self,
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        detail: Option<String>,
        outcome: AuditOutcome,
        done: impl FnOnce(Result<(), VaultError>) + Send + 'static,
    ) {
        let draft = Draft::new(actor, action, token, detail, outcome);
        let core = self.inner.core.clone();
        self.inner.store.submit(
            move |tx| core.append_audits(tx, std::slice::from_ref(&draft)),
            done,
        );
    }

    fn audit_head(&self, chain: Chain) -> Result<Option<HeadRecord>, VaultError> {
        Ok(self
            .inner
            .store
            .get_raw(&chain.head_key())?
            .map(|b| self.inner.audit_key.decode_head(chain, &b)))
    }

    /// Every chain of this vault: its own (when it holds anything), then each named chain (one
    /// per process that wrote the vault while it was shared), in id order.
    pub(crate) fn audit_chains(&self) -> Result<Vec<Chain>, VaultError> {
        let mut chains = Vec::new();
        let local_used = self
            .inner
            .store
            .get_raw(&Chain::LOCAL.head_key())?
            .is_some()
            || !self.audit_window(Chain::LOCAL, 0)?.is_empty()
            || self
                .inner
                .store
                .get_raw(&Chain::LOCAL.anchor_key())?
                .is_some();
        if local_used || !self.shared() {
            chains.push(Chain::LOCAL);
        }
        for (k, _) in self.inner.store.scan_raw(&Chain::NAMED_HEADS, usize::MAX)? {
            if let Some(c) = Chain::from_head_key(&k) {
                chains.push(c);
            }
        }
        // Chains found by their entries too (one skip per chain), so a chain whose head record
        // was removed is still verified, and reported for its missing head.
        let mut after = Chain::NAMED_ENTRIES.to_vec();
        while let Some((k, _)) = self
            .inner
            .store
            .first_raw_after(&Chain::NAMED_ENTRIES, &after)?
        {
            match Chain::from_entry_key(&k) {
                Some(c) => {
                    if !chains.contains(&c) {
                        chains.push(c);
                    }
                    after = c.last_entry_key();
                }
                // A key of the wrong shape: step over it (verify of its neighbours reports it).
                None => after = k,
            }
        }
        chains.sort();
        chains.dedup();
        let own = self.inner.core.audit_chain;
        if !chains.contains(&own) {
            chains.push(own);
        }
        Ok(chains)
    }

    /// Every key of window `w` with its value, in seq order.
    #[allow(clippy::type_complexity)]
    fn audit_window(&self, chain: Chain, w: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>, VaultError> {
        Ok(self
            .inner
            .store
            .scan_raw(&chain.window_prefix(w), usize::MAX)?)
    }

    /// The last seq reachable by following the blocks from seq 1 (when the head cannot be
    /// trusted).
    fn audit_walk_end(&self, chain: Chain) -> Result<u64, VaultError> {
        let mut next = self.audit_start(chain).map_or(1, |(start, _)| start + 1);
        let mut w = window_of(next);
        loop {
            for (k, v) in self.audit_window(chain, w)? {
                if chain.key_seq(&k) == Some(next) {
                    let n = decode_block(&v).len();
                    if n == 0 {
                        return Ok(next - 1);
                    }
                    next += u64::try_from(n).unwrap_or(u64::MAX);
                }
            }
            if window_of(next) > w {
                w += 1;
            } else {
                return Ok(next - 1);
            }
        }
    }

    /// The last `n` entries, oldest first. Entries that do not decode are skipped (run
    /// [`audit_verify`](Self::audit_verify) to find them). On a shared vault, the last `n` of
    /// every chain merged by time (each entry names its chain).
    pub fn audit_tail(&self, n: usize) -> Result<Vec<AuditEntry>, VaultError> {
        self.barrier()?;
        let mut all = Vec::new();
        for chain in self.audit_chains()? {
            all.extend(self.audit_tail_of(chain, n)?);
        }
        if all.iter().any(|e| e.chain.is_some()) {
            all.sort_by(|a, b| (a.at, &a.chain, a.seq).cmp(&(b.at, &b.chain, b.seq)));
            let skip = all.len().saturating_sub(n);
            all.drain(..skip);
        }
        Ok(all)
    }

    fn audit_tail_of(&self, chain: Chain, n: usize) -> Result<Vec<AuditEntry>, VaultError> {
        let last = match self.audit_head(chain)? {
            Some(Ok((seq, _))) => seq,
            // No trustworthy head: find the end by walking.
            _ => self.audit_walk_end(chain)?,
        };
        if n == 0 || last == 0 {
            return Ok(Vec::new());
        }
        let first = last.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX)) + 1;
        self.audit_between(chain, first, last)
    }

    /// Up to `limit` entries with a seq greater than `after`, oldest first (for paging through
    /// the log: pass the last seq seen as `after`); entries archived away are not counted, so
    /// paging from 0 starts at the first entry still held. Entries that do not decode are
    /// skipped. This process's own chain on a shared vault.
    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, VaultError> {
        self.barrier()?;
        let chain = self.inner.core.audit_chain;
        let end = match self.audit_head(chain)? {
            Some(Ok((seq, _))) => seq,
            _ => self.audit_walk_end(chain)?,
        };
        // The first entry held (those before it were archived).
        let held = self.audit_start(chain).map_or(1, |(start, _)| start + 1);
        let first = after.saturating_add(1).max(held);
        if limit == 0 || first > end {
            return Ok(Vec::new());
        }
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let last = end.min(first.saturating_add(limit - 1));
        self.audit_between(chain, first, last)
    }

    /// The entries `first..=last` (`1 <= first <= last`) of `chain`, oldest first.
    fn audit_between(
        &self,
        chain: Chain,
        first: u64,
        last: u64,
    ) -> Result<Vec<AuditEntry>, VaultError> {
        // Blocks newest first, each block's entries oldest first.
        let mut blocks: Vec<Vec<AuditEntry>> = Vec::new();
        let mut w = window_of(last);
        loop {
            let mut reached = false;
            for (k, v) in self.audit_window(chain, w)?.iter().rev() {
                let Some(start) = chain.key_seq(k) else {
                    continue;
                };
                if start > last {
                    continue;
                }
                let mut entries = decode_block(v);
                entries.retain(|e| (first..=last).contains(&e.seq));
                for e in &mut entries {
                    e.chain = chain.id_hex();
                }
                blocks.push(entries);
                if start <= first {
                    reached = true;
                    break;
                }
            }
            if reached || w == 0 {
                break;
            }
            w -= 1;
        }
        Ok(blocks.into_iter().rev().flatten().collect())
    }

    /// Walks the whole chain from seq 1 and checks every entry's position, link and keyed hash,
    /// then the (keyed) head record. Detects an edited, inserted, reordered or removed entry
    /// (or block), and removal of the last entries unless the head record was also rolled back
    /// to an older value of itself (see SECURITY.md).
    ///
    /// The log may grow while it is verified (a serving daemon, other daemons on a shared
    /// vault): the head is read before and after the walk; every entry the first names must be
    /// found (the last with its hash), and the second must cover every entry found.
    ///
    /// On a shared vault every chain is verified (each process's own); the
    /// report counts the entries of all of them and names the chain of the first problem.
    pub fn audit_verify(&self) -> Result<AuditReport, VaultError> {
        self.barrier()?;
        let mut total = 0;
        for chain in self.audit_chains()? {
            let mut report = self.audit_verify_chain(chain)?;
            if !report.is_ok() {
                if let (Some(id), Some(problem)) = (chain.id_hex(), report.problem.as_mut()) {
                    *problem = format!("chain {id}: {problem}");
                }
                report.entries += total;
                return Ok(report);
            }
            total += report.entries;
        }
        Ok(AuditReport {
            entries: total,
            first_bad: None,
            problem: None,
        })
    }

    /// [`audit_verify_chain_from`](Self::audit_verify_chain_from) the chain's anchor, again
    /// (a few times) when a problem was found and the anchor moved meanwhile: an archive removed
    /// blocks under the walk, so the problem says nothing about the log.
    fn audit_verify_chain(&self, chain: Chain) -> Result<AuditReport, VaultError> {
        let mut attempts = 0;
        loop {
            let anchor = self.inner.store.get_raw(&chain.anchor_key())?;
            let report = self.audit_verify_chain_from(chain, anchor.as_deref())?;
            attempts += 1;
            if report.is_ok()
                || attempts == VERIFY_ATTEMPTS
                || self.inner.store.get_raw(&chain.anchor_key())? == anchor
            {
                return Ok(report);
            }
        }
    }

    /// Verifies `chain` from `anchor` (its anchor record as read before the walk).
    fn audit_verify_chain_from(
        &self,
        chain: Chain,
        anchor: Option<&[u8]>,
    ) -> Result<AuditReport, VaultError> {
        let key = &self.inner.audit_key;
        let bad = |seq: u64, entries: u64, problem: String| AuditReport {
            entries,
            first_bad: Some(seq),
            problem: Some(problem),
        };
        // From the archive anchor, if entries were archived (keyed: it cannot be forged, and a
        // removed anchor leaves the first entries missing).
        let (start, mut prev) = match self.start_of(chain, anchor) {
            Ok(a) => a,
            Err(_) => {
                return Ok(bad(
                    1,
                    0,
                    "the archive anchor record is malformed or its tag does not verify".to_owned(),
                ));
            }
        };
        // The head as it was before the walk: entries appended meanwhile (a serving daemon, or
        // another daemon's chain) run past it, and every entry it names must be found.
        let before = self.audit_head(chain)?;
        let named = match before {
            Some(Ok((seq, _))) => seq,
            _ => 0,
        };
        // The hash of entry `named`, once the walk passes it.
        let mut named_hash = None;
        // The next seq expected; every entry before it verified.
        let mut seq = start + 1;
        let mut w = window_of(seq);
        loop {
            for (k, v) in self.audit_window(chain, w)? {
                let entries = seq - 1;
                match chain.key_seq(&k) {
                    None => {
                        return Ok(bad(
                            seq,
                            entries,
                            "a key among the entries has the wrong length".to_owned(),
                        ));
                    }
                    Some(start) if start < seq => {
                        return Ok(bad(
                            start,
                            start.saturating_sub(1),
                            format!(
                                "a value is stored under entry {start}, inside an earlier block"
                            ),
                        ));
                    }
                    Some(start) if start > seq => {
                        return Ok(bad(seq, entries, format!("entry {seq} is missing")));
                    }
                    Some(_) => {}
                }
                let mut rest = v.as_slice();
                if rest.is_empty() {
                    return Ok(bad(seq, entries, format!("entry {seq} is malformed")));
                }
                while !rest.is_empty() {
                    let entries = seq - 1;
                    let Some(d) = decode_entry(rest) else {
                        return Ok(bad(seq, entries, format!("entry {seq} is malformed")));
                    };
                    let e = &d.entry;
                    if e.seq != seq {
                        return Ok(bad(
                            seq,
                            entries,
                            format!("entry {seq} holds entry {} (moved or reordered)", e.seq),
                        ));
                    }
                    if e.prev_hash != prev {
                        return Ok(bad(
                            seq,
                            entries,
                            format!("entry {seq} does not link to entry {}", seq - 1),
                        ));
                    }
                    let expect = key.entry_hash(&prev, &rest[..d.body_len]);
                    if !bool::from(expect.ct_eq(&e.hash)) {
                        return Ok(bad(seq, entries, format!("entry {seq} was altered")));
                    }
                    prev = e.hash;
                    if seq == named {
                        named_hash = Some(e.hash);
                    }
                    seq += 1;
                    rest = &rest[d.len..];
                }
            }
            // A block may run on into the next window; otherwise the chain ends here.
            if window_of(seq) > w {
                w += 1;
            } else {
                break;
            }
        }
        let entries = seq - 1;
        let next = seq;
        // The head read before the walk names entries that must all have been found, the last
        // with its hash; the head read after it must cover every entry found (so entries added
        // during the walk count, and removing the newest entries is found unless the head was
        // rolled back too, see SECURITY.md).
        if let Some(Ok((named, hash))) = before {
            if named > entries {
                return Ok(bad(
                    next,
                    entries,
                    format!("entries {next}..={named} are missing (the head says {named})"),
                ));
            }
            if named > start && named_hash != Some(hash) {
                return Ok(bad(
                    named,
                    entries,
                    format!("entry {named} differs from the head record"),
                ));
            }
        }
        match self.audit_head(chain)? {
            None if entries == 0 => {}
            None => {
                return Ok(bad(next, entries, "the head record is missing".to_owned()));
            }
            Some(Err(problem)) => return Ok(bad(next, entries, problem.to_owned())),
            Some(Ok((seq, _))) if seq < entries => {
                return Ok(bad(
                    seq + 1,
                    entries,
                    format!("entries after {seq} are not covered by the head record"),
                ));
            }
            Some(Ok((seq, hash))) if seq == entries && hash != prev => {
                return Ok(bad(
                    entries,
                    entries,
                    format!("entry {entries} differs from the head record"),
                ));
            }
            Some(Ok(_)) => {}
        }
        Ok(AuditReport {
            entries,
            first_bad: None,
            problem: None,
        })
    }
}
