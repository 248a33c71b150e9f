//! Audit retention: `Vault::audit_archive` moves the oldest verified blocks of entries into a
//! file and leaves a keyed anchor (the last archived entry's seq and hash) where each chain now
//! starts, so `audit_verify` of the remaining log still checks every link from that anchor on.
//!
//! The archive file is verifiable on its own with the vault key ([`Vault::audit_verify_archive`]).
//! A vault in a directory has one chain, and its archives keep their first layout:
//!
//! ```text
//! "CVAUDITARCHIVE01" | section | tag [32]
//! section = first_seq u64 BE | prev_hash [32] | block_count u64 BE | (block_len u64 BE | block)*
//! ```
//!
//! A shared (PostgreSQL) vault has a chain per daemon process; its archives hold a section per
//! chain archived, each naming its chain:
//!
//! ```text
//! "CVAUDITARCHIVE02" | section_count u64 BE | (named u8 | chain_id [8] | section)* | tag [32]
//! ```
//!
//! `named` is 1 for a process's chain (0, with a zero id, for the vault's own chain).
//! `prev_hash` is the hash a section's first entry links to (zeros from the chain's start, or the
//! previous archive's last hash); `tag` = HMAC(audit key, archive domain | everything before
//! it). Every entry inside is checked again on verification (seq, link, keyed hash).
//!
//! On a shared vault the archive runs while daemons keep appending: blocks are never rewritten
//! once committed and an archive takes only blocks up to a chain's head as read before its walk,
//! so it touches only blocks no daemon writes again, and the anchors (which only archives write)
//! under a compare-and-set. It may take a whole chain: every process that opens a shared vault
//! starts a chain of its own (admin commands, each daemon start), and most of them have ended.

use std::{io::Write, path::Path};

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::audit::{
    AuditKey, AuditReport,
    codec::{Chain, decode_block, decode_entry, window_of},
};
use crate::{Vault, VaultError};

const MAGIC: &[u8; 16] = b"CVAUDITARCHIVE01";
const MAGIC_CHAINS: &[u8; 16] = b"CVAUDITARCHIVE02";

/// The most blocks one archive takes (of all chains together; a block holds up to 64 entries and
/// 4 KiB): bounds the file held in memory and the size of the one commit that removes them.
/// Older blocks left over are taken by the next run.
pub const MAX_ARCHIVE_BLOCKS: usize = 20_000;

/// What [`Vault::audit_archive`] moved out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditArchived {
    /// Entries written to the file, of every chain (0: nothing old enough; no file written).
    pub entries: u64,
    /// Each chain archived from, in the file's order.
    pub chains: Vec<ArchivedChain>,
    /// Whole blocks older than the cut remain because the run took [`MAX_ARCHIVE_BLOCKS`]: run
    /// again (with another file) to move them.
    pub more: bool,
}

/// The entries one chain gave to an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedChain {
    /// The chain's id in hex (`None`: the vault's own chain).
    pub chain: Option<String>,
    /// The first archived seq.
    pub first_seq: u64,
    /// The last archived seq; the chain now starts after it.
    pub last_seq: u64,
}

/// One chain's whole blocks from its anchor up to the cut.
struct Section {
    chain: Chain,
    /// The chain's anchor record as the walk read it (`None`: nothing archived before).
    anchor: Option<Vec<u8>>,
    /// The seq before the first archived entry, and the hash that entry links to.
    start: u64,
    start_hash: [u8; 32],
    blocks: Vec<(Vec<u8>, Vec<u8>)>,
    last_seq: u64,
    /// The hash of entry `last_seq`, the new anchor's.
    last_hash: [u8; 32],
}

impl Section {
    fn encode_into(&self, file: &mut Vec<u8>) {
        file.extend_from_slice(&(self.start + 1).to_be_bytes());
        file.extend_from_slice(&self.start_hash);
        file.extend_from_slice(&(self.blocks.len() as u64).to_be_bytes());
        for (_, v) in &self.blocks {
            file.extend_from_slice(&(v.len() as u64).to_be_bytes());
            file.extend_from_slice(v);
        }
    }
}

impl Vault {
    /// Where the log starts: (the seq before its first entry, the hash that entry links to).
    pub(super) fn audit_start(&self, chain: Chain) -> Result<(u64, [u8; 32]), VaultError> {
        let anchor = self.inner.store.get_raw(&chain.anchor_key())?;
        self.start_of(chain, anchor.as_deref())
    }

    /// The start a stored anchor record gives (none: the chain's first entry).
    pub(super) fn start_of(
        &self,
        chain: Chain,
        anchor: Option<&[u8]>,
    ) -> Result<(u64, [u8; 32]), VaultError> {
        match anchor {
            None => Ok((0, [0; 32])),
            Some(b) => self
                .inner
                .audit_key
                .decode_anchor(chain, b)
                .map_err(|_| VaultError::Integrity),
        }
    }

    /// Moves every whole block of entries written before `before` (at most
    /// [`MAX_ARCHIVE_BLOCKS`]) into a new file `out` (which must not exist), then removes them
    /// from the log and records each chain's new anchor, in one commit. Refused (`Integrity`)
    /// unless the log verifies first. A vault in a directory keeps its newest block. On a shared
    /// vault every chain is archived (each process's that ever opened it), up to its newest
    /// entry, while the daemons keep serving.
    pub fn audit_archive(
        &self,
        before: OffsetDateTime,
        out: &Path,
    ) -> Result<AuditArchived, VaultError> {
        // Its own entry follows, in the live log: who moved how many entries out. The entries
        // are in the file and out of the log once the archive returns, so a failure to append
        // this entry (the store failing just then) does not turn the archive into a failure: the
        // caller would take the file for a failed one and might delete it.
        let result = self.audit_archive_at_most(before, out, MAX_ARCHIVE_BLOCKS);
        let detail = result
            .as_ref()
            .ok()
            .map(|a| format!("entries={}", a.entries));
        let outcome = crate::AuditOutcome::of(&result);
        let _ = self.record(
            self.actor(),
            crate::AuditAction::AuditArchive,
            None,
            detail,
            outcome,
        );
        result
    }

    /// [`audit_archive`](Self::audit_archive) taking at most `max_blocks` blocks.
    pub(super) fn audit_archive_at_most(
        &self,
        before: OffsetDateTime,
        out: &Path,
        max_blocks: usize,
    ) -> Result<AuditArchived, VaultError> {
        if out.exists() {
            let exists = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err(VaultError::Store(exists.into()));
        }
        let report = self.audit_verify()?;
        if !report.is_ok() {
            return Err(VaultError::Integrity);
        }
        let shared = self.shared();
        let chains = if shared {
            self.audit_chains()?
        } else {
            vec![Chain::LOCAL]
        };
        let mut sections = Vec::new();
        let mut budget = max_blocks;
        let mut more = false;
        for chain in chains {
            let Some(s) = self.archivable(chain, before, &mut budget, &mut more)? else {
                continue;
            };
            sections.push(s);
        }
        if sections.is_empty() {
            return Ok(AuditArchived {
                entries: 0,
                chains: Vec::new(),
                more,
            });
        }
        let mut file = Vec::new();
        if shared {
            file.extend_from_slice(MAGIC_CHAINS);
            file.extend_from_slice(&(sections.len() as u64).to_be_bytes());
            for s in &sections {
                let id = s.chain.id();
                file.push(u8::from(id.is_some()));
                file.extend_from_slice(&id.unwrap_or([0; 8]));
                s.encode_into(&mut file);
            }
        } else {
            file.extend_from_slice(MAGIC);
            sections[0].encode_into(&mut file);
        }
        let tag = self.inner.audit_key.archive_tag(&file);
        file.extend_from_slice(&tag);
        // Owner-only, like a backup: the entries name tokens, merchants and API key ids.
        let mut f = crate::backup::create_private_file(out)?;
        f.write_all(&file)
            .map_err(|e| VaultError::Store(e.into()))?;
        f.sync_all().map_err(|e| VaultError::Store(e.into()))?;
        drop(f);

        let archived = AuditArchived {
            entries: sections.iter().map(|s| s.last_seq - s.start).sum(),
            chains: sections
                .iter()
                .map(|s| ArchivedChain {
                    chain: s.chain.id_hex(),
                    first_seq: s.start + 1,
                    last_seq: s.last_seq,
                })
                .collect(),
            more,
        };
        // Per chain: its anchor as the walk read it (the compare-and-set's expectation), the
        // new one, and the keys to remove.
        let changes: Vec<_> = sections
            .into_iter()
            .map(|s| {
                let anchor = self
                    .inner
                    .audit_key
                    .encode_anchor(s.chain, s.last_seq, &s.last_hash);
                let keys: Vec<Vec<u8>> = s.blocks.into_iter().map(|(k, _)| k).collect();
                (s.chain.anchor_key(), s.anchor, anchor, keys)
            })
            .collect();
        let committed = self.inner.store.write(move |tx| -> Result<(), VaultError> {
            for (anchor_key, expected, anchor, keys) in &changes {
                // Another archive since the walk (in this process or another one sharing
                // the database): refuse rather than drop its anchor.
                match tx.compare_and_set(anchor_key, expected.as_deref(), Some(anchor.clone())) {
                    Ok(()) => {}
                    Err(vault_store::StoreError::Conflict(_)) => {
                        return Err(VaultError::Conflict(
                            crate::VaultConflict::AuditArchiveInProgress,
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
                for k in keys {
                    tx.delete_raw_key(k)?;
                }
            }
            Ok(())
        });
        if let Err(e) = committed {
            // Refused, so nothing was removed: the file would only repeat entries still in the
            // log. (After an error whose outcome is unknown, such as a lost connection, the
            // file is kept: the entries may be gone from the log.)
            if matches!(
                e,
                VaultError::Conflict(crate::VaultConflict::AuditArchiveInProgress)
            ) {
                let _ = std::fs::remove_file(out);
            }
            return Err(e);
        }
        Ok(archived)
    }

    /// `chain`'s whole blocks from its anchor that are entirely older than `before`, stopping
    /// at its head (before its newest block on a directory vault) and when `budget` blocks are
    /// taken (then `more` is set if an older block was left); `None` when there is none.
    fn archivable(
        &self,
        chain: Chain,
        before: OffsetDateTime,
        budget: &mut usize,
        more: &mut bool,
    ) -> Result<Option<Section>, VaultError> {
        // The newest entry as the head says now. A block is never written again once committed
        // (a daemon appending to this chain writes new blocks after it), so on a shared vault
        // the chain may go up to its head: every open makes a chain of its own, and most end
        // with their process (admin commands, restarted daemons). A vault in a directory keeps
        // its newest block.
        let end = match self.audit_head(chain)? {
            Some(Ok((seq, _))) => seq + u64::from(self.shared()),
            Some(Err(_)) => return Err(VaultError::Integrity),
            None => return Ok(None),
        };
        // The anchor the walk starts from is the one the commit replaces (compare-and-set): an
        // archive committed meanwhile (which moved the anchor and removed blocks this walk may
        // hold) makes this one refused rather than anchored behind it.
        let anchor = self.inner.store.get_raw(&chain.anchor_key())?;
        let (start, start_hash) = self.start_of(chain, anchor.as_deref())?;
        let mut blocks: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut next = start + 1;
        let mut last_hash = start_hash;
        'walk: loop {
            let w = window_of(next);
            let mut advanced = false;
            for (k, v) in self.audit_window(chain, w)? {
                if chain.key_seq(&k) != Some(next) {
                    continue;
                }
                let entries = decode_block(&v);
                let n = entries.len() as u64;
                // Only blocks up to `end` (excluded), each entirely before the cut.
                if n == 0 || next + n > end || entries.iter().any(|e| e.at >= before) {
                    break 'walk;
                }
                if *budget == 0 {
                    *more = true;
                    break 'walk;
                }
                *budget -= 1;
                next += n;
                last_hash = entries.last().map_or(last_hash, |e| e.hash);
                blocks.push((k, v));
                advanced = true;
            }
            if !advanced && window_of(next) == w {
                break;
            }
        }
        if blocks.is_empty() {
            return Ok(None);
        }
        Ok(Some(Section {
            chain,
            anchor,
            start,
            start_hash,
            blocks,
            last_seq: next - 1,
            last_hash,
        }))
    }

    /// Checks an archive file written by [`audit_archive`](Self::audit_archive) with this vault's
    /// key: its tag, then every entry's seq, link and keyed hash, section by section. A file that
    /// is not an archive or whose tag does not verify is reported bad at its first seq.
    pub fn audit_verify_archive(&self, bytes: &[u8]) -> AuditReport {
        let key = &self.inner.audit_key;
        let magic = bytes.get(..16);
        if bytes.len() < 16 + 32 || (magic != Some(MAGIC) && magic != Some(MAGIC_CHAINS)) {
            return bad(0, 0, "not an audit archive".to_owned());
        }
        let (body, tag) = bytes.split_at(bytes.len() - 32);
        let first = |at: usize| read_u64(body, at).unwrap_or(0);
        if !bool::from(key.archive_tag(body).ct_eq(tag)) {
            let at = if magic == Some(MAGIC) { 16 } else { 16 + 8 + 9 };
            return bad(
                first(at),
                0,
                "the archive's tag does not verify (altered, or another vault's)".to_owned(),
            );
        }
        if magic == Some(MAGIC) {
            return match verify_section(key, &body[16..]) {
                Ok((entries, [])) => ok(entries),
                Ok((entries, _)) => bad(
                    first(16) + entries,
                    entries,
                    "bytes after the last block".to_owned(),
                ),
                Err(report) => report,
            };
        }
        let Some(count) = read_u64(body, 16) else {
            return bad(0, 0, "the archive is truncated".to_owned());
        };
        let mut rest = &body[24..];
        let mut total = 0;
        for _ in 0..count {
            let Some((&named, tail)) = rest.split_first() else {
                return bad(0, total, "the archive is truncated".to_owned());
            };
            let Some((id, section)) = tail.split_first_chunk::<8>() else {
                return bad(0, total, "the archive is truncated".to_owned());
            };
            let name = match named {
                0 => "the vault's own chain".to_owned(),
                _ => format!("chain {}", hex::encode(id)),
            };
            match verify_section(key, section) {
                Ok((entries, after)) => {
                    total += entries;
                    rest = after;
                }
                Err(mut report) => {
                    report.entries += total;
                    report.problem = report.problem.map(|p| format!("{name}: {p}"));
                    return report;
                }
            }
        }
        if !rest.is_empty() {
            return bad(0, total, "bytes after the last section".to_owned());
        }
        ok(total)
    }
}

/// Checks one section (see the module's documentation) with `key`: its entries and the bytes
/// after it, or the report of its first problem.
fn verify_section<'a>(key: &AuditKey, bytes: &'a [u8]) -> Result<(u64, &'a [u8]), AuditReport> {
    let (Some(first), Some(prev), Some(count)) =
        (read_u64(bytes, 0), bytes.get(8..40), read_u64(bytes, 40))
    else {
        return Err(bad(0, 0, "the archive is truncated".to_owned()));
    };
    let mut prev: [u8; 32] = prev.try_into().unwrap_or([0; 32]);
    let mut rest = &bytes[48..];
    let mut seq = first;
    for _ in 0..count {
        let Some(len) = read_u64(rest, 0).and_then(|l| usize::try_from(l).ok()) else {
            return Err(bad(seq, seq - first, "a block is truncated".to_owned()));
        };
        let Some(mut block) = rest.get(8..8usize.saturating_add(len)) else {
            return Err(bad(seq, seq - first, "a block is truncated".to_owned()));
        };
        rest = &rest[8 + len..];
        while !block.is_empty() {
            let Some(d) = decode_entry(block) else {
                return Err(bad(seq, seq - first, "an entry is malformed".to_owned()));
            };
            if d.entry.seq != seq || d.entry.prev_hash != prev {
                return Err(bad(
                    seq,
                    seq - first,
                    "an entry is out of place or unlinked".to_owned(),
                ));
            }
            let expect = key.entry_hash(&prev, &block[..d.body_len]);
            if !bool::from(expect.ct_eq(&d.entry.hash)) {
                return Err(bad(seq, seq - first, "an entry was altered".to_owned()));
            }
            prev = d.entry.hash;
            seq += 1;
            block = &block[d.len..];
        }
    }
    Ok((seq - first, rest))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn bad(seq: u64, entries: u64, problem: String) -> AuditReport {
    AuditReport {
        entries,
        first_bad: Some(seq),
        problem: Some(problem),
    }
}

fn ok(entries: u64) -> AuditReport {
    AuditReport {
        entries,
        first_bad: None,
        problem: None,
    }
}
