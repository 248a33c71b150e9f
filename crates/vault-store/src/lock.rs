//! One writer per vault directory: an exclusive advisory lock on `<dir>/cardvault.lock`, held for
//! the life of the `Store` and released by the OS if the process dies (so `kill -9` never leaves a
//! stale lock behind).

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::Path,
};

use crate::StoreError;

pub(crate) const LOCK_FILE: &str = "cardvault.lock";

#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::InUse(dir.to_path_buf())),
            Err(TryLockError::Error(e)) => Err(StoreError::Io(e)),
        }
    }
}
