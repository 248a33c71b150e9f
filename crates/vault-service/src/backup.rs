//! Backup and restore of a whole vault (the `CVBK` file of `vault_store::Snapshot`).
//!
//! A backup holds the key header exactly as stored (data keys wrapped under the KEK, never in
//! clear) and the stored records (cards sealed, never in clear); restoring needs no key, and the
//! restored vault opens with the key that opened the original.

use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::Duration,
};

use vault_core::KeyHeader;
use vault_store::{Store, StoreError};

use crate::{Vault, VaultError};

/// What [`Vault::backup`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Key/value entries in the file (records, index entries, counters, admin data).
    pub entries: u64,
    /// Token records among them.
    pub records: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The SHA-256 in the file's trailer.
    pub sha256: [u8; 32],
    /// The longest time writes were held by one backup step.
    pub pause: Duration,
    /// The total time writes were held by the backup's steps.
    pub held: Duration,
    /// Committer steps the export took (4,096 keys each).
    pub steps: u64,
}

/// What [`Vault::restore`] imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// Key/value entries imported.
    pub entries: u64,
    /// Token records among them.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// The verified SHA-256 of the file.
    pub sha256: [u8; 32],
    /// The restored vault's id (from its key header; the same as the original's).
    pub vault_id: [u8; 16],
}

impl Vault {
    /// Writes a consistent backup of the vault to `out` while the vault keeps serving.
    ///
    /// The backup is the vault at one instant between two group commits: it holds every write
    /// acknowledged before the call and nothing applied after that instant. It is exported in
    /// steps of 4,096 keys, each run on the committer, which meanwhile saves the old value of any
    /// not-yet-exported key a write changes (see `vault_store::Store::backup`); writers wait for
    /// one step at a time only ([`BackupReport::pause`]). `progress(done, estimate)` is called
    /// after each step. `out` is flushed, not synced. One backup at a time per vault.
    pub fn backup(
        &self,
        out: impl Write,
        progress: impl FnMut(u64, u64),
    ) -> Result<BackupReport, VaultError> {
        let s = self.inner.store.backup(out, progress)?;
        Ok(BackupReport {
            entries: s.entries,
            records: s.records,
            bytes: s.bytes,
            sha256: s.sha256,
            pause: s.longest_pause,
            held: s.held,
            steps: s.steps,
        })
    }

    /// [`backup`](Self::backup) into a new file at `path` (mode 0600; an existing file is refused),
    /// synced to disk before returning. A failed backup removes the partial file.
    pub fn backup_to_file(
        &self,
        path: &Path,
        progress: impl FnMut(u64, u64),
    ) -> Result<BackupReport, VaultError> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    VaultError::Store(StoreError::AlreadyExists(path.to_path_buf()))
                }
                _ => VaultError::Store(StoreError::Io(e)),
            })?;
        let result = self.backup(&file, progress).and_then(|r| {
            file.sync_all().map_err(StoreError::Io)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(StoreError::Io)?;
            }
            Ok(r)
        });
        if result.is_err() {
            let _ = fs::remove_file(path);
        }
        result
    }

    /// Restores a backup read from `input` into `dir`, which must not exist or be empty. No key is
    /// needed: the key header is restored as it was, so the original's key opens the result.
    /// Everything (magic, versions, lengths, order, counts, every record's layout, the key header's
    /// layout, the SHA-256, end of file) is verified before `dir` appears; `progress` gets the
    /// entries imported so far; a truncated, altered or
    /// foreign file is refused and leaves nothing behind. The vault is not opened.
    pub fn restore(
        input: impl Read,
        dir: impl AsRef<Path>,
        progress: impl FnMut(u64),
    ) -> Result<RestoreReport, VaultError> {
        let s = Store::restore(
            input,
            dir.as_ref(),
            |h| {
                KeyHeader::decode(h)
                    .map(|_| ())
                    .map_err(|_| StoreError::Corrupt("backup file (key header)"))
            },
            progress,
        )?;
        let vault_id = KeyHeader::decode(&s.header)?.vault_id();
        Ok(RestoreReport {
            entries: s.entries,
            records: s.records,
            bytes: s.bytes,
            sha256: s.sha256,
            vault_id,
        })
    }
}
