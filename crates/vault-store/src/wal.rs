//! The write-ahead log in front of sled (`<dir>/wal`), used under `Durability::Sync`.
//!
//! A durable group commit is **one** append of the group's batch to this file and **one**
//! `fdatasync` of it; only then is the batch applied to sled, without a sled flush. sled writes
//! and syncs its own log in the background (`flush_every_ms`), and the committer makes the log
//! redundant from time to time with a *checkpoint*: `sled::Db::flush`, `fdatasync` of sled's data
//! file, then the log restarts under a new *epoch* (its header is rewritten and synced; older
//! entries are ignored from then on). On open, the log is read and verified whole, and its entries
//! are applied again in order (see `replay_log` in `sled_engine.rs`).
//!
//! The file is preallocated with zeros in 1 MiB steps and overwritten in place, so the
//! `fdatasync` of an append finds no file-size change to commit (no file-system journal commit)
//! except once per step.
//!
//! Layout (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `CVWAL\0\0\0` |
//! | 2 | log format version (`1`) |
//! | 2 | zero |
//! | 4 | epoch: entries of another epoch are not part of the log |
//!
//! then entries, each:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `len`: length of the payload |
//! | 4 | CRC-32 (IEEE) of `len` and the payload |
//! | 4 | payload: epoch (the header's) |
//! | 8 | payload: `generation` the batch sets |
//! | 8 | payload: `synced`, the newest generation known durable when this entry was written |
//! | 4 | payload: number of operations |
//! | ... | payload: operations: tag (`1` insert, `0` remove), key length u32, key, and for an insert value length u32, value |
//!
//! Reading stops at the first intact entry of another epoch (left from before a checkpoint) or at
//! zeros. A damaged entry (bad length, bad checksum, undecodable payload) is a **torn tail**
//! (the last append was cut by the crash; it was never acknowledged, since an entry is
//! acknowledged only after its `fdatasync`) when no intact entry follows it, or when every intact
//! entry that follows was written before the damaged one was known durable (its `synced` is
//! older): the log ends there. Otherwise it is damage to an acknowledged entry and the vault is
//! refused (`StoreError::Corrupt(Structure::Wal(WalPart::Entry))`), never skipped.

use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
};

use crate::{StoreError, Structure, WalPart};

/// The file beside `sled/`.
pub(crate) const FILE: &str = "wal";
const MAGIC: [u8; 8] = *b"CVWAL\0\0\0";
/// Version of the log layout.
pub(crate) const VERSION: u16 = 1;
/// Length of the file header.
pub(crate) const HEADER_LEN: u64 = 16;
const HEADER_BYTES: usize = 16;
/// Length and checksum before each payload.
const ENTRY_HEAD: usize = 8;
/// Largest payload accepted when reading (a group of 1,024 batches of 1,000 cards fits easily).
const MAX_PAYLOAD: usize = 1 << 30;
/// Epoch, generation, `synced` and the operation count.
const PAYLOAD_FIXED: usize = 24;
/// The file grows by this many zero bytes at a time.
const GROW: u64 = 1 << 20;

/// One write of a batch: `Some(value)` inserts, `None` removes.
pub(crate) type Op = (Vec<u8>, Option<Vec<u8>>);

/// One verified entry of the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) generation: u64,
    pub(crate) ops: Vec<Op>,
}

/// The log open for appending.
pub(crate) struct Wal {
    file: fs::File,
    /// Where the next entry goes (header included).
    len: u64,
    /// Bytes of the file already written (zeros past `len`).
    allocated: u64,
    epoch: u32,
    buf: Vec<u8>,
}

fn header(epoch: u32) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_be_bytes());
    h[12..16].copy_from_slice(&epoch.to_be_bytes());
    h
}

impl Wal {
    /// Creates an empty log in `dir`, replacing any file there (written to a temporary file,
    /// synced, renamed, directory synced), and opens it for appending.
    pub(crate) fn create(dir: &Path) -> Result<Self, StoreError> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&header(1))?;
            f.write_all(&vec![0u8; usize::try_from(GROW - HEADER_LEN).unwrap_or(0)])?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(FILE))?;
        fs::File::open(dir)?.sync_all()?;
        let file = fs::OpenOptions::new().write(true).open(dir.join(FILE))?;
        Ok(Self {
            file,
            len: HEADER_LEN,
            allocated: GROW,
            epoch: 1,
            buf: Vec::new(),
        })
    }

    /// Bytes in the file (header included).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Appends the batch that sets `generation` and makes it durable: one `write` and one
    /// `fdatasync`. `synced` is the newest generation already durable.
    pub(crate) fn append(
        &mut self,
        generation: u64,
        synced: u64,
        ops: &[Op],
    ) -> Result<(), StoreError> {
        encode(&mut self.buf, self.epoch, generation, synced, ops)?;
        let end = self.len + self.buf.len() as u64;
        if end > self.allocated {
            // Grow by whole steps of zeros, written (not just reserved): the appends that follow
            // then change no file size, and their `fdatasync` commits no metadata.
            let grown = end.div_ceil(GROW) * GROW;
            let zeros = vec![0u8; usize::try_from(grown - self.allocated).unwrap_or(0)];
            self.file.write_all_at(&zeros, self.allocated)?;
            self.allocated = grown;
        }
        self.file.write_all_at(&self.buf, self.len)?;
        self.len = end;
        self.file.sync_data()?;
        Ok(())
    }

    /// Restarts the log under a new epoch (every entry is durable in sled): the header is
    /// rewritten in place and synced; the old entries stay in the file but are no longer read.
    pub(crate) fn reset(&mut self) -> Result<(), StoreError> {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.file.write_all_at(&header(self.epoch), 0)?;
        self.file.sync_data()?;
        self.len = HEADER_LEN;
        Ok(())
    }
}

fn encode(
    buf: &mut Vec<u8>,
    epoch: u32,
    generation: u64,
    synced: u64,
    ops: &[Op],
) -> Result<(), StoreError> {
    let too_big = || StoreError::Corrupt(Structure::Wal(WalPart::EntryTooLarge));
    buf.clear();
    buf.extend_from_slice(&[0u8; ENTRY_HEAD]);
    buf.extend_from_slice(&epoch.to_be_bytes());
    buf.extend_from_slice(&generation.to_be_bytes());
    buf.extend_from_slice(&synced.to_be_bytes());
    buf.extend_from_slice(
        &u32::try_from(ops.len())
            .map_err(|_| too_big())?
            .to_be_bytes(),
    );
    for (k, v) in ops {
        buf.push(u8::from(v.is_some()));
        buf.extend_from_slice(&u32::try_from(k.len()).map_err(|_| too_big())?.to_be_bytes());
        buf.extend_from_slice(k);
        if let Some(v) = v {
            buf.extend_from_slice(&u32::try_from(v.len()).map_err(|_| too_big())?.to_be_bytes());
            buf.extend_from_slice(v);
        }
    }
    let len = buf.len() - ENTRY_HEAD;
    if len > MAX_PAYLOAD {
        return Err(too_big());
    }
    let len = u32::try_from(len).map_err(|_| too_big())?.to_be_bytes();
    buf[..4].copy_from_slice(&len);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(&buf[ENTRY_HEAD..]);
    buf[4..8].copy_from_slice(&crc.finalize().to_be_bytes());
    Ok(())
}

/// An intact entry at `pos`: its generation, `synced`, ops and end offset.
struct Parsed {
    epoch: u32,
    generation: u64,
    synced: u64,
    ops: Vec<Op>,
    end: usize,
}

fn parse_at(bytes: &[u8], pos: usize) -> Option<Parsed> {
    let head = bytes.get(pos..pos.checked_add(ENTRY_HEAD)?)?;
    let len_bytes: [u8; 4] = head[..4].try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    if !(PAYLOAD_FIXED..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let crc = u32::from_be_bytes(head[4..8].try_into().ok()?);
    let start = pos + ENTRY_HEAD;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(payload);
    if h.finalize() != crc {
        return None;
    }
    let (epoch, generation, synced, ops) = decode_payload(payload)?;
    Some(Parsed {
        epoch,
        generation,
        synced,
        ops,
        end: start + len,
    })
}

fn decode_payload(p: &[u8]) -> Option<(u32, u64, u64, Vec<Op>)> {
    let mut r = p;
    let mut take = |n: usize| -> Option<&[u8]> {
        if r.len() < n {
            return None;
        }
        let (a, b) = r.split_at(n);
        r = b;
        Some(a)
    };
    let epoch = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let generation = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let synced = u64::from_be_bytes(take(8)?.try_into().ok()?);
    let n = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut ops = Vec::new();
    for _ in 0..n {
        let tag = take(1)?[0];
        let klen = usize::try_from(u32::from_be_bytes(take(4)?.try_into().ok()?)).ok()?;
        let key = take(klen)?.to_vec();
        let value = match tag {
            0 => None,
            1 => {
                let vlen = usize::try_from(u32::from_be_bytes(take(4)?.try_into().ok()?)).ok()?;
                Some(take(vlen)?.to_vec())
            }
            _ => return None,
        };
        ops.push((key, value));
    }
    if !r.is_empty() {
        return None;
    }
    Some((epoch, generation, synced, ops))
}

/// Reads and verifies the log in `dir`: its entries in order (a torn tail dropped), or `None`
/// when there is no log. Refuses a damaged header, a newer log version, damage before intact
/// acknowledged entries, and entries whose generations do not follow one another.
pub(crate) fn read(dir: &Path) -> Result<Option<Vec<Entry>>, StoreError> {
    let mut file = match fs::File::open(dir.join(FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.len() < HEADER_BYTES || bytes[..8] != MAGIC {
        return Err(StoreError::Corrupt(Structure::Wal(WalPart::Header)));
    }
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    let epoch = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if version == 0 || version > VERSION {
        return Err(StoreError::Corrupt(Structure::Wal(WalPart::UnknownVersion)));
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut pos = HEADER_BYTES;
    while pos < bytes.len() {
        match parse_at(&bytes, pos) {
            // An entry of an earlier epoch: the log ends here.
            Some(p) if p.epoch != epoch => break,
            Some(p) => {
                if let Some(last) = entries.last()
                    && p.generation != last.generation + 1
                {
                    return Err(StoreError::Corrupt(Structure::Wal(WalPart::GenerationGap)));
                }
                entries.push(Entry {
                    generation: p.generation,
                    ops: p.ops,
                });
                pos = p.end;
            }
            None => {
                let expected = entries.last().map(|e| e.generation + 1);
                if acknowledged_after(&bytes, pos, epoch, expected) {
                    return Err(StoreError::Corrupt(Structure::Wal(WalPart::Entry)));
                }
                break; // A torn tail: never acknowledged.
            }
        }
    }
    Ok(Some(entries))
}

/// Whether an intact entry after the damaged one at `pos` proves that the damaged one had been
/// acknowledged: an intact later entry written when generation `expected` (the damaged one's) or
/// newer was already durable. Without an intact entry before it (`expected` unknown), any intact
/// later entry counts.
fn acknowledged_after(bytes: &[u8], pos: usize, epoch: u32, expected: Option<u64>) -> bool {
    let epoch_bytes = epoch.to_be_bytes();
    for at in pos + 1..bytes.len().saturating_sub(ENTRY_HEAD + PAYLOAD_FIXED - 1) {
        // Cheap filters before the checksum: this epoch, a plausible generation.
        let e_at = at + ENTRY_HEAD;
        if bytes.get(e_at..e_at + 4) != Some(&epoch_bytes[..]) {
            continue;
        }
        let Some(g) = bytes
            .get(e_at + 4..e_at + 12)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            break;
        };
        if let Some(e) = expected
            && !(g > e && g - e <= bytes.len() as u64)
        {
            continue;
        }
        if let Some(p) = parse_at(bytes, at) {
            match expected {
                Some(e) if p.synced < e => {}
                _ => return true,
            }
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ops(i: u8) -> Vec<Op> {
        vec![
            (vec![b'G'], Some(vec![i; 8])),
            (vec![b'R', i], Some(vec![0xAB; 100])),
            (vec![b'D', i], None),
        ]
    }

    fn log(n: u64) -> (tempfile::TempDir, Vec<usize>) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::create(dir.path()).unwrap();
        let mut ends = Vec::new();
        for g in 1..=n {
            w.append(g, g - 1, &ops(u8::try_from(g).unwrap())).unwrap();
            ends.push(usize::try_from(w.len()).unwrap());
        }
        (dir, ends)
    }

    fn bytes(dir: &Path) -> Vec<u8> {
        fs::read(dir.join(FILE)).unwrap()
    }

    #[test]
    fn entries_round_trip_and_reset_empties() {
        let (dir, _) = log(3);
        let got = read(dir.path()).unwrap().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].generation, 2);
        assert_eq!(got[1].ops, ops(2));
        let mut w = Wal::create(dir.path()).unwrap();
        assert!(read(dir.path()).unwrap().unwrap().is_empty());
        w.append(7, 6, &ops(7)).unwrap();
        w.reset().unwrap();
        assert!(read(dir.path()).unwrap().unwrap().is_empty());
        assert!(read(tempfile::tempdir().unwrap().path()).unwrap().is_none());
    }

    #[test]
    fn a_torn_tail_is_dropped() {
        let (dir, ends) = log(3);
        let full = bytes(dir.path());
        // The last entry cut anywhere, or followed by zeros or half an entry: the first two stay.
        for cut in [ends[1] + 1, ends[1] + 9, ends[2] - 1] {
            fs::write(dir.path().join(FILE), &full[..cut]).unwrap();
            assert_eq!(read(dir.path()).unwrap().unwrap().len(), 2, "cut at {cut}");
        }
        let mut zeros = full.clone();
        zeros.extend_from_slice(&[0; 4096]);
        fs::write(dir.path().join(FILE), &zeros).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().len(), 3);
        let mut last_bad = full.clone();
        last_bad[ends[2] - 3] ^= 1;
        fs::write(dir.path().join(FILE), &last_bad).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().len(), 2);
    }

    #[test]
    fn damage_before_acknowledged_entries_is_refused() {
        let (dir, ends) = log(4);
        let full = bytes(dir.path());
        for at in [HEADER_BYTES + 2, HEADER_BYTES + 30, ends[1] + 5] {
            let mut b = full.clone();
            b[at] ^= 0x40;
            fs::write(dir.path().join(FILE), &b).unwrap();
            assert!(
                matches!(
                    read(dir.path()),
                    Err(StoreError::Corrupt(Structure::Wal(WalPart::Entry)))
                ),
                "flip at {at}"
            );
        }
        // A whole entry missing in the middle: the generations do not follow.
        let mut b = full[..ends[0]].to_vec();
        b.extend_from_slice(&full[ends[1]..]);
        fs::write(dir.path().join(FILE), &b).unwrap();
        assert!(matches!(read(dir.path()), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn an_unsynced_entry_torn_before_a_later_unsynced_one_is_a_torn_tail() {
        // Entry 3 torn, entry 4 intact but written when only 2 was durable: neither was
        // acknowledged, so the log ends after 2.
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::create(dir.path()).unwrap();
        w.append(1, 0, &ops(1)).unwrap();
        w.append(2, 1, &ops(2)).unwrap();
        let cut = usize::try_from(w.len()).unwrap();
        w.append(3, 2, &ops(3)).unwrap();
        w.append(4, 2, &ops(4)).unwrap();
        let mut b = bytes(dir.path());
        b[cut + 20] ^= 0xff;
        fs::write(dir.path().join(FILE), &b).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().len(), 2);
    }

    #[test]
    fn a_bad_header_or_newer_version_is_refused() {
        let (dir, _) = log(1);
        let full = bytes(dir.path());
        let mut b = full.clone();
        b[0] = b'X';
        fs::write(dir.path().join(FILE), &b).unwrap();
        assert!(matches!(read(dir.path()), Err(StoreError::Corrupt(_))));
        let mut b = full.clone();
        b[8..10].copy_from_slice(&2u16.to_be_bytes());
        fs::write(dir.path().join(FILE), &b).unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        fs::write(dir.path().join(FILE), &full[..10]).unwrap();
        assert!(matches!(read(dir.path()), Err(StoreError::Corrupt(_))));
    }
}
