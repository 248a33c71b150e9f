//! Audit retention: `Vault::audit_archive` moves the oldest verified blocks of entries into a
//! file and leaves a keyed anchor (the last archived entry's seq and hash) where the log now
//! starts, so `audit_verify` of the remaining log still checks every link from that anchor on.
//!
//! The archive file is verifiable on its own with the vault key ([`Vault::audit_verify_archive`]):
//!
//! ```text
//! "CVAUDITARCHIVE01" | first_seq u64 BE | prev_hash [32] | block_count u64 BE
//!   | (block_len u64 BE | block)* | tag [32]
//! ```
//!
//! `prev_hash` is the hash the first archived entry links to (zeros from the log's start, or
//! the previous archive's last hash); `tag` = HMAC(audit key, archive domain | everything
//! before it). Every entry inside is checked again on verification (seq, link, keyed hash).

use std::{io::Write, path::Path};

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::audit::{
    AuditReport,
    codec::{Chain, decode_block, decode_entry, window_of},
};
use crate::{Vault, VaultError};

const MAGIC: &[u8; 16] = b"CVAUDITARCHIVE01";

/// What [`Vault::audit_archive`] moved out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditArchived {
    /// Entries written to the file (0: nothing old enough; no file written).
    pub entries: u64,
    /// The first and last archived seq (when `entries > 0`).
    pub first_seq: u64,
    /// The last archived seq; the remaining log starts after it.
    pub last_seq: u64,
}

impl Vault {
    /// Where the log starts: (the seq before its first entry, the hash that entry links to).
    pub(super) fn audit_start(&self, chain: Chain) -> Result<(u64, [u8; 32]), VaultError> {
        match self.inner.store.get_raw(&chain.anchor_key())? {
            None => Ok((0, [0; 32])),
            Some(b) => self
                .inner
                .audit_key
                .decode_anchor(chain, &b)
                .map_err(|_| VaultError::Integrity),
        }
    }

    /// Moves every whole block of entries written before `before` (never the newest block) into
    /// a new file `out` (which must not exist), then removes them from the log and records the
    /// anchor, in one commit. Refused (`Integrity`) unless the log verifies first.
    pub fn audit_archive(
        &self,
        before: OffsetDateTime,
        out: &Path,
    ) -> Result<AuditArchived, VaultError> {
        if self.shared() {
            return Err(VaultError::Store(vault_store::StoreError::Unsupported(
                "audit archive on a shared (PostgreSQL) vault: keep the log with the database's own backups (pg_dump, PITR)",
            )));
        }
        if out.exists() {
            let exists = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err(VaultError::Store(exists.into()));
        }
        let report = self.audit_verify()?;
        if !report.is_ok() {
            return Err(VaultError::Integrity);
        }
        let chain = Chain::LOCAL;
        let (start, start_hash) = self.audit_start(chain)?;
        // Whole blocks from the start, each entirely older than `before`.
        let mut blocks: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut next = start + 1;
        let end = report.entries;
        'walk: loop {
            let w = window_of(next);
            let mut advanced = false;
            for (k, v) in self.audit_window(chain, w)? {
                if chain.key_seq(&k) != Some(next) {
                    continue;
                }
                let entries = decode_block(&v);
                let n = entries.len() as u64;
                // Never the newest block; only blocks entirely before the cut.
                if n == 0 || next + n > end || entries.iter().any(|e| e.at >= before) {
                    break 'walk;
                }
                next += n;
                blocks.push((k, v));
                advanced = true;
            }
            if !advanced && window_of(next) == w {
                break;
            }
        }
        if blocks.is_empty() {
            return Ok(AuditArchived {
                entries: 0,
                first_seq: 0,
                last_seq: start,
            });
        }
        let last_seq = next - 1;
        let last_hash = blocks
            .last()
            .and_then(|(_, v)| decode_block(v).last().map(|e| e.hash))
            .ok_or(VaultError::Integrity)?;
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&(start + 1).to_be_bytes());
        file.extend_from_slice(&start_hash);
        file.extend_from_slice(&(blocks.len() as u64).to_be_bytes());
        for (_, v) in &blocks {
            file.extend_from_slice(&(v.len() as u64).to_be_bytes());
            file.extend_from_slice(v);
        }
        let tag = self.inner.audit_key.archive_tag(&file);
        file.extend_from_slice(&tag);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(out)
            .map_err(|e| VaultError::Store(e.into()))?;
        f.write_all(&file)
            .map_err(|e| VaultError::Store(e.into()))?;
        f.sync_all().map_err(|e| VaultError::Store(e.into()))?;
        drop(f);
        let anchor = self
            .inner
            .audit_key
            .encode_anchor(chain, last_seq, &last_hash);
        let anchor_key = chain.anchor_key();
        let expected = self.inner.store.get_raw(&anchor_key)?;
        let keys: Vec<Vec<u8>> = blocks.into_iter().map(|(k, _)| k).collect();
        self.inner
            .store
            .write(move |tx| -> Result<(), VaultError> {
                // Another archive since the walk (in this process or another one sharing the
                // database): refuse rather than drop its anchor.
                match tx.compare_and_set(&anchor_key, expected.as_deref(), Some(anchor.clone())) {
                    Ok(()) => {}
                    Err(vault_store::StoreError::Conflict(_)) => {
                        return Err(VaultError::Conflict(
                            crate::VaultConflict::AuditArchiveInProgress,
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
                for k in &keys {
                    tx.delete_raw_key(k)?;
                }
                Ok(())
            })?;
        Ok(AuditArchived {
            entries: last_seq - start,
            first_seq: start + 1,
            last_seq,
        })
    }

    /// Checks an archive file written by [`audit_archive`](Self::audit_archive) with this vault's
    /// key: its tag, then every entry's seq, link and keyed hash. A file that is not an archive
    /// or whose tag does not verify is reported bad at its first seq.
    pub fn audit_verify_archive(&self, bytes: &[u8]) -> AuditReport {
        let key = &self.inner.audit_key;
        let bad = |seq: u64, entries: u64, problem: &str| AuditReport {
            entries,
            first_bad: Some(seq),
            problem: Some(problem.to_owned()),
        };
        let header = 16 + 8 + 32 + 8;
        if bytes.len() < header + 32 || &bytes[..16] != MAGIC {
            return bad(0, 0, "not an audit archive");
        }
        let (body, tag) = bytes.split_at(bytes.len() - 32);
        let first = u64::from_be_bytes(body[16..24].try_into().unwrap_or([0; 8]));
        if !bool::from(key.archive_tag(body).ct_eq(tag)) {
            return bad(
                first,
                0,
                "the archive's tag does not verify (altered, or another vault's)",
            );
        }
        let mut prev: [u8; 32] = body[24..56].try_into().unwrap_or([0; 32]);
        let count = u64::from_be_bytes(body[56..64].try_into().unwrap_or([0; 8]));
        let mut rest = &body[64..];
        let mut seq = first;
        for _ in 0..count {
            let Some(len) = rest
                .get(..8)
                .and_then(|b| usize::try_from(u64::from_be_bytes(b.try_into().ok()?)).ok())
            else {
                return bad(seq, seq - first, "a block is truncated");
            };
            let Some(mut block) = rest.get(8..8 + len) else {
                return bad(seq, seq - first, "a block is truncated");
            };
            rest = &rest[8 + len..];
            while !block.is_empty() {
                let Some(d) = decode_entry(block) else {
                    return bad(seq, seq - first, "an entry is malformed");
                };
                if d.entry.seq != seq || d.entry.prev_hash != prev {
                    return bad(seq, seq - first, "an entry is out of place or unlinked");
                }
                let expect = key.entry_hash(&prev, &block[..d.body_len]);
                if !bool::from(expect.ct_eq(&d.entry.hash)) {
                    return bad(seq, seq - first, "an entry was altered");
                }
                prev = d.entry.hash;
                seq += 1;
                block = &block[d.len..];
            }
        }
        if !rest.is_empty() {
            return bad(seq, seq - first, "bytes after the last block");
        }
        AuditReport {
            entries: seq - first,
            first_bad: None,
            problem: None,
        }
    }
}
