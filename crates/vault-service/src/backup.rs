//! Backup and restore of a whole vault (the `CVBK` file of `vault_store::Snapshot`).
//!
//! A backup holds the key header exactly as stored (data keys wrapped under the KEK, never in
//! clear) and the stored records (cards sealed, never in clear); restoring needs no key, and the
//! restored vault opens with the key that opened the original.

use std::{
    fs,
    io::{ErrorKind, Read, Write},
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    path::Path,
    time::Duration,
};

use vault_core::KeyHeader;
use vault_store::{Location, Store, StoreError};

use crate::{FieldError, Vault, VaultError};

/// Why `path` cannot receive a new backup file, found before anything is written (field `path`):
/// empty, a NUL byte, relative, naming a directory (`/` at the end, `..`), longer than Linux
/// allows (4095 bytes, 255 per name), or its directory missing, not a directory or unreachable.
/// `None` when the file may be tried; whether it already exists is for the caller (creating it
/// never overwrites). Messages never repeat the path.
pub fn backup_path_problem(path: &Path) -> Option<FieldError> {
    let bytes = path.as_os_str().as_bytes();
    let problem = |code, message: &str| Some(FieldError::new("path", code, message));
    if bytes.is_empty() {
        return problem("required", "path must not be empty");
    }
    if bytes.contains(&0) {
        return problem("invalid", "path must not contain a NUL byte");
    }
    if !path.is_absolute() {
        return problem("relative", "path must be absolute");
    }
    // `Path::file_name` skips a trailing `.` (`/dir/new/.` names `new`), so the last component
    // is read from the bytes.
    let last = bytes.rsplit(|b| *b == b'/').next().unwrap_or_default();
    if bytes.ends_with(b"/") || path.file_name().is_none() || last == b"." || last == b".." {
        return problem("not_a_file", "path must name a file, not a directory");
    }
    if bytes.len() > 4095 || path.iter().any(|c| c.len() > 255) {
        return problem(
            "too_long",
            "path is too long (at most 4095 bytes, 255 per name)",
        );
    }
    let parent = path.parent()?;
    match fs::metadata(parent) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => problem("not_a_directory", "the parent of path is not a directory"),
        Err(e) => match e.kind() {
            ErrorKind::NotFound => problem(
                "missing_directory",
                "the directory of path does not exist; create it first",
            ),
            ErrorKind::NotADirectory => {
                problem("not_a_directory", "the parent of path is not a directory")
            }
            ErrorKind::PermissionDenied => problem(
                "permission_denied",
                "the vault's user cannot reach the directory of path",
            ),
            _ => problem("unreachable", "the directory of path cannot be read"),
        },
    }
}

/// `.<name>.partial-<pid>-<nanos>` beside `path`: where a backup is written before it is whole.
fn partial_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    path.with_file_name(format!(".{name}.partial-{}-{nanos}", std::process::id()))
}

/// Gives the whole file `partial` its name `path`, never over a file that appeared there
/// meanwhile (a hard link fails on an existing name; where links are not supported, a rename
/// after a last check).
fn publish(partial: &Path, path: &Path) -> Result<(), VaultError> {
    match fs::hard_link(partial, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(VaultError::Store(
            StoreError::AlreadyExists(path.to_path_buf()),
        )),
        Err(_) if fs::symlink_metadata(path).is_err() => {
            fs::rename(partial, path).map_err(|e| VaultError::Store(StoreError::Io(e)))
        }
        Err(_) => Err(VaultError::Store(StoreError::AlreadyExists(
            path.to_path_buf(),
        ))),
    }
}

/// Creates the new file `path` (mode 0600; an existing file is refused) for a backup or an audit
/// archive. Why it cannot be created is the caller's to fix (a field error on `path`), whatever
/// the reason: a directory without write permission, a read-only or special file system (such as
/// `/proc`), a directory at `path`.
pub(crate) fn create_private_file(path: &Path) -> Result<fs::File, VaultError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => {
                VaultError::Store(StoreError::AlreadyExists(path.to_path_buf()))
            }
            ErrorKind::PermissionDenied => VaultError::field(
                "path",
                "permission_denied",
                "the vault's user cannot create a file in the directory of path",
            ),
            ErrorKind::ReadOnlyFilesystem => VaultError::field(
                "path",
                "read_only",
                "the directory of path is on a read-only file system",
            ),
            ErrorKind::IsADirectory => VaultError::field(
                "path",
                "not_a_file",
                "path must name a file, not a directory",
            ),
            _ => VaultError::field(
                "path",
                "cannot_create",
                "a file cannot be created at path (its file system refuses new files)",
            ),
        })
}

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
        self.audited_backup(|| self.backup_unaudited(out, progress))
    }

    /// Runs `write` (a whole backup) and audits it once it is done (or failed), with what it
    /// holds: a backup is a copy of every sealed card, useless without the key, but still worth
    /// knowing of.
    fn audited_backup(
        &self,
        write: impl FnOnce() -> Result<BackupReport, VaultError>,
    ) -> Result<BackupReport, VaultError> {
        self.audited(
            crate::AuditAction::Backup,
            None,
            |r: &BackupReport| Some(format!("records={},bytes={}", r.records, r.bytes)),
            |_| write(),
        )
    }

    fn backup_unaudited(
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
    /// synced to disk before returning. A failed backup removes the partial file. Audited once the
    /// file has its name (or the backup failed).
    pub fn backup_to_file(
        &self,
        path: &Path,
        progress: impl FnMut(u64, u64),
    ) -> Result<BackupReport, VaultError> {
        self.audited_backup(|| self.backup_to_new_file(path, progress))
    }

    fn backup_to_new_file(
        &self,
        path: &Path,
        progress: impl FnMut(u64, u64),
    ) -> Result<BackupReport, VaultError> {
        if let Some(problem) = backup_path_problem(path) {
            return Err(VaultError::Invalid(problem));
        }
        if fs::symlink_metadata(path).is_ok() {
            return Err(VaultError::Store(StoreError::AlreadyExists(
                path.to_path_buf(),
            )));
        }
        // Written under a name of its own, next to `path`, and given its name only once whole
        // and synced: a backup cut short (a kill, a full disk) never looks like one.
        let partial = partial_name(path);
        let file = create_private_file(&partial)?;
        let result = self.backup_unaudited(&file, progress).and_then(|r| {
            file.sync_all().map_err(StoreError::Io)?;
            publish(&partial, path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(StoreError::Io)?;
            }
            Ok(r)
        });
        let _ = fs::remove_file(&partial);
        result
    }

    /// Restores a backup read from `input` at `location`: into a directory as
    /// [`restore`](Self::restore) does, or into an empty PostgreSQL database (feature
    /// `postgres`; a database that holds anything is refused, and nothing is committed unless the
    /// whole file verifies). No key is needed; the original's key opens the result.
    pub fn restore_at(
        input: impl Read,
        location: &Location,
        progress: impl FnMut(u64),
    ) -> Result<RestoreReport, VaultError> {
        let s = Store::restore_at(input, location, check_backup_header, progress)?;
        let vault_id = KeyHeader::decode(&s.header)?.vault_id();
        Ok(RestoreReport {
            entries: s.entries,
            records: s.records,
            bytes: s.bytes,
            sha256: s.sha256,
            vault_id,
        })
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
        Self::restore_at(input, &Location::Dir(dir.as_ref().to_path_buf()), progress)
    }
}

/// Vets a backup's key header: it must decode (the store does not decode it).
fn check_backup_header(header: &[u8]) -> Result<(), StoreError> {
    KeyHeader::decode(header).map(|_| ()).map_err(|_| {
        StoreError::Corrupt(vault_store::Structure::Backup(
            vault_store::BackupPart::KeyHeader,
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backup_paths_are_checked_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let code = |p: &Path| backup_path_problem(p).map(|e| e.code);
        let long = format!("/tmp/{}", "a".repeat(256));
        let nul = std::ffi::OsStr::from_bytes(b"/tmp/a\0b");
        for (p, want) in [
            (Path::new(""), "required"),
            (Path::new(nul), "invalid"),
            (Path::new("backup.cvbk"), "relative"),
            (Path::new("/tmp/"), "not_a_file"),
            (Path::new("/tmp/.."), "not_a_file"),
            (Path::new(long.as_str()), "too_long"),
            (&dir.path().join("missing/b.cvbk"), "missing_directory"),
            (&file.join("b.cvbk"), "not_a_directory"),
        ] {
            assert_eq!(code(p), Some(want), "{}", p.display());
            let e = backup_path_problem(p).unwrap();
            assert_eq!(e.field, "path");
            assert!(!e.message.contains("/tmp"), "{}", e.message);
        }
        assert_eq!(code(&dir.path().join("b.cvbk")), None);
    }
}
