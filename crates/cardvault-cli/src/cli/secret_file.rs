//! A new file for a secret, opened BEFORE the secret exists: `apikey create --out FILE` checks
//! that FILE can be created (parent exists, no file there, writable) before it creates a key, so
//! a bad path never leaves behind an active key that nobody saw.

use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context;

/// An empty file created with `O_CREAT | O_EXCL` and mode 0600. Removed on drop unless
/// [`write`](Self::write) succeeded.
#[derive(Debug)]
pub(crate) struct PendingSecretFile {
    file: Option<File>,
    path: PathBuf,
}

impl PendingSecretFile {
    /// Creates `path` (refusing an existing file or symlink).
    pub(crate) fn create(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => {
                    anyhow::anyhow!("{} exists; not overwriting it", path.display())
                }
                ErrorKind::NotFound => anyhow::anyhow!(
                    "cannot create {}: its directory does not exist",
                    path.display()
                ),
                _ => anyhow::Error::new(e).context(format!("creating {}", path.display())),
            })?;
        Ok(Self {
            file: Some(file),
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` and a newline, syncs, and keeps the file.
    pub(crate) fn write(mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let Some(mut f) = self.file.take() else {
            anyhow::bail!("{} was already written", self.path.display());
        };
        let r = f
            .write_all(bytes)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", self.path.display()));
        if r.is_ok() {
            // Written: keep it.
            self.path = PathBuf::new();
        }
        r
    }
}

/// Creates `path` with mode 0600 (refusing to overwrite) and writes `bytes` and a newline; a
/// failed write leaves no file behind.
pub(crate) fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    PendingSecretFile::create(path)?.write(bytes)
}

impl Drop for PendingSecretFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_existing_and_missing_parent_and_cleans_up_unwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let existing = dir.path().join("existing");
        std::fs::write(&existing, "keep me").expect("write");
        let msg = PendingSecretFile::create(&existing)
            .expect_err("exists")
            .to_string();
        assert!(msg.contains("not overwriting"), "{msg}");
        assert_eq!(std::fs::read_to_string(&existing).expect("read"), "keep me");

        let missing = dir.path().join("no-such-dir").join("key");
        let msg = PendingSecretFile::create(&missing)
            .expect_err("no parent")
            .to_string();
        assert!(msg.contains("directory does not exist"), "{msg}");

        let abandoned = dir.path().join("abandoned");
        drop(PendingSecretFile::create(&abandoned).expect("create"));
        assert!(!abandoned.exists());

        let kept = dir.path().join("kept");
        PendingSecretFile::create(&kept)
            .expect("create")
            .write(b"secret")
            .expect("write");
        assert_eq!(std::fs::read_to_string(&kept).expect("read"), "secret\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
