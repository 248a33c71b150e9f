//! The key header's own file, `<dir>/keyheader`: kept outside sled so the key can be checked
//! before the database is opened (a wrong key then changes nothing on disk), and replaced
//! atomically: write `keyheader.tmp`, fsync it, rename over `keyheader`, fsync the directory.
//! A crash leaves either the old or the new header, never a torn one.
//!
//! Layout: `b"CVHF"` | u32 BE length | header bytes | u32 BE CRC-less length repeat. The header
//! bytes carry their own MAC (see `vault_core::KeyHeader`); the framing only catches truncation.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use crate::{StoreError, Structure};

const NAME: &str = "keyheader";
const TMP: &str = "keyheader.tmp";
const MAGIC: &[u8; 4] = b"CVHF";
/// Headers are small (a few hundred bytes per data key); refuse absurd sizes from disk.
const MAX_LEN: usize = 16 * 1024 * 1024;

pub(crate) fn write(dir: &Path, header: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(header.len())
        .map_err(|_| StoreError::Corrupt(Structure::KeyHeaderTooLarge))?;
    let mut buf = Vec::with_capacity(header.len() + 12);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(header);
    buf.extend_from_slice(&len.to_be_bytes());
    let tmp = dir.join(TMP);
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(NAME))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

pub(crate) fn read(dir: &Path) -> Result<Vec<u8>, StoreError> {
    const BAD: StoreError = StoreError::Corrupt(Structure::KeyHeaderFile);
    let bytes = match fs::read(dir.join(NAME)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BAD),
        Err(e) => return Err(e.into()),
    };
    if bytes.len() < 12 || bytes.len() > MAX_LEN + 12 || &bytes[..4] != MAGIC {
        return Err(BAD);
    }
    let len = u32::from_be_bytes(bytes[4..8].try_into().map_err(|_| BAD)?) as usize;
    if bytes.len() != len + 12 || bytes[8 + len..] != bytes[4..8] {
        return Err(BAD);
    }
    Ok(bytes[8..8 + len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), b"header bytes").expect("write");
        assert_eq!(read(dir.path()).expect("read"), b"header bytes");
        write(dir.path(), b"second").expect("write");
        assert_eq!(read(dir.path()).expect("read"), b"second");
        let full = fs::read(dir.path().join(NAME)).expect("read file");
        for n in 0..full.len() {
            fs::write(dir.path().join(NAME), &full[..n]).expect("write file");
            assert!(read(dir.path()).is_err(), "a {n}-byte prefix was accepted");
        }
    }
}
