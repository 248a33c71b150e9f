//! Detecting a data file that lost acknowledged writes.
//!
//! sled recovers its log up to the first damaged or missing part and opens without complaint, as
//! it must after a crash that tore the tail of the log. The same recovery after *damage* (a
//! truncated or partly overwritten `sled/db`) silently drops everything after the damage. So the
//! store counts its group commits: the count is in the tree (key `G`, in each group's
//! `apply_batch`), and a copy is written beside the database, in `generation`, after a durable
//! group at most once a second and exactly when the store closes. A tree whose count is lower
//! than the file's has lost writes that were acknowledged, and is refused at open.
//!
//! The file only ever lags the tree (it is written after the tree is durable), so a crash can
//! never make a sound tree look damaged. Damage to writes newer than the file's last update is not
//! detected; after a clean close the file is exact. A missing or unreadable file disables the check
//! (vaults made before it, or a restored backup) until the next commit writes one.

use std::{
    fs,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use crate::StoreError;

/// The file beside `sled/`.
pub(crate) const FILE: &str = "generation";
/// How often a running store refreshes the file.
const EVERY: Duration = Duration::from_secs(1);
const MAGIC: &str = "cardvault-generation 1 ";

/// The count in the file, if there is a readable one.
pub(crate) fn read(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join(FILE)).ok()?;
    text.strip_prefix(MAGIC)?.trim_end().parse().ok()
}

/// Replaces the file (write to a temporary file, rename); with `sync`, durably.
pub(crate) fn write(dir: &Path, generation: u64, sync: bool) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(format!("{MAGIC}{generation}\n").as_bytes())?;
    if sync {
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(FILE))?;
    if sync {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Refuses a tree at `stored` when the file says `expected` was reached.
pub(crate) fn check(dir: &Path, stored: u64) -> Result<(), StoreError> {
    match read(dir) {
        Some(expected) if stored < expected => Err(StoreError::LostWrites { stored, expected }),
        _ => Ok(()),
    }
}

/// When the committer last wrote the file.
pub(crate) struct Refresh {
    last: Option<Instant>,
}

impl Refresh {
    pub(crate) fn new() -> Self {
        Self { last: None }
    }

    /// Writes `generation` (reached and durable) unless the file was written less than a second
    /// ago. Failing to write it is not a failed commit: the check only weakens.
    pub(crate) fn after_durable_group(&mut self, dir: &Path, generation: u64) {
        if self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        if write(dir, generation, false).is_ok() {
            self.last = Some(Instant::now());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_check() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        assert!(check(dir.path(), 0).is_ok(), "no file: no check");
        write(dir.path(), 42, true).unwrap();
        assert_eq!(read(dir.path()), Some(42));
        assert!(check(dir.path(), 42).is_ok());
        assert!(check(dir.path(), 43).is_ok());
        assert!(matches!(
            check(dir.path(), 41),
            Err(StoreError::LostWrites {
                stored: 41,
                expected: 42
            })
        ));
        fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
