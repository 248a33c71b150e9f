//! The stored form of the audit log: entry encoding, blocks, keys and the keyed head record.
//!
//! An **entry** is `body || prev_hash || hash`; its body is self-delimiting (lengths and flags say
//! where every field ends), so entries can be concatenated. A **block** is one sled value holding
//! one or more consecutive entries, stored under `A` + the seq of its first entry. A block of one
//! entry is byte for byte what the first layout stored under that entry's key, so a log written
//! one entry per key still reads and verifies. See `docs/record-format.md`, *Audit entries*.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use vault_core::{MerchantId, Token};

use super::{Actor, AuditAction, AuditEntry, AuditOutcome, Draft};

use crate::HmacSha256;

pub(crate) const ENTRY_PREFIX: u8 = vault_store::KeySpace::AuditEntry.byte();
pub(crate) const HEAD_KEY: &[u8] = &[vault_store::KeySpace::AuditHead.byte()];
const ENTRY_VERSION: u8 = 1;
const HEAD_VERSION: u8 = 1;
const ENTRY_DOMAIN: &[u8] = b"cardvault/v1/audit";
const HEAD_DOMAIN: &[u8] = b"cardvault/v1/audit-head";
const ANCHOR_DOMAIN: &[u8] = b"cardvault/v1/audit-anchor";
const ARCHIVE_DOMAIN: &[u8] = b"cardvault/v1/audit-archive";
/// Where the log starts after an archive: the last archived entry's seq and hash, keyed.
pub(crate) const ANCHOR_KEY: &[u8] = b"a.anchor";
const _: () = assert!(ANCHOR_KEY[0] == vault_store::KeySpace::AuditHead.byte());
pub(crate) const MAX_TEXT: usize = 64;
pub(crate) const MAX_DETAIL: usize = 128;
/// A block is closed once it holds this many bytes (an entry is 88 to about 500 bytes). Small
/// enough that a sled leaf of blocks stays far below sled's blob threshold (~128 KiB).
pub(crate) const MAX_BLOCK_BYTES: usize = 4096;
/// ... or this many entries, whichever comes first. Keeps every block inside two key windows.
pub(crate) const MAX_BLOCK_ENTRIES: u64 = 64;
/// Keys are read in windows of 256 consecutive seqs: one prefix scan (`A` + the seq's top seven
/// bytes) returns every key of a window in seq order.
pub(crate) const WINDOW_BITS: u32 = 8;

/// Which audit chain: the vault's own (`A` + seq, head `a`: every directory vault) or a named
/// one (`B` + id + seq, head `b` + id): each process writing a shared vault appends to a chain of
/// its own, so no row is rewritten by every daemon's commits. The id is bound into the keyed head
/// and anchor tags, so a chain cannot be passed off under another id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Chain(Option<[u8; 8]>);

const CHAIN_ENTRY_PREFIX: u8 = vault_store::KeySpace::AuditChainEntry.byte();
const CHAIN_HEAD_PREFIX: u8 = vault_store::KeySpace::AuditChainHead.byte();

impl Chain {
    /// The vault's own chain.
    pub(crate) const LOCAL: Self = Self(None);

    /// The prefix of every named chain's head (and anchor) key.
    pub(crate) const NAMED_HEADS: [u8; 1] = [CHAIN_HEAD_PREFIX];

    /// A named chain.
    pub(crate) fn named(id: [u8; 8]) -> Self {
        Self(Some(id))
    }

    /// The chain's id (`None` for the vault's own chain).
    pub(crate) fn id(self) -> Option<[u8; 8]> {
        self.0
    }

    /// The chain's id in hex (`None` for the vault's own chain).
    pub(crate) fn id_hex(self) -> Option<String> {
        self.0.map(hex::encode)
    }

    fn prefix(self) -> Vec<u8> {
        match self.0 {
            None => vec![ENTRY_PREFIX],
            Some(id) => {
                let mut p = Vec::with_capacity(9);
                p.push(CHAIN_ENTRY_PREFIX);
                p.extend_from_slice(&id);
                p
            }
        }
    }

    /// The key of the block whose first entry is `seq`.
    pub(crate) fn entry_key(self, seq: u64) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// The prefix of every key in window `w` (seqs `w * 256 ..= w * 256 + 255`).
    pub(crate) fn window_prefix(self, w: u64) -> Vec<u8> {
        let mut k = self.entry_key(w << WINDOW_BITS);
        k.pop();
        k
    }

    /// The seq a block key of this chain names; `None` for a key of the wrong shape.
    pub(crate) fn key_seq(self, key: &[u8]) -> Option<u64> {
        let rest = key.strip_prefix(self.prefix().as_slice())?;
        Some(u64::from_be_bytes(rest.try_into().ok()?))
    }

    /// The head record's key.
    pub(crate) fn head_key(self) -> Vec<u8> {
        match self.0 {
            None => HEAD_KEY.to_vec(),
            Some(id) => {
                let mut k = Vec::with_capacity(9);
                k.push(CHAIN_HEAD_PREFIX);
                k.extend_from_slice(&id);
                k
            }
        }
    }

    /// The archive anchor's key.
    pub(crate) fn anchor_key(self) -> Vec<u8> {
        match self.0 {
            None => ANCHOR_KEY.to_vec(),
            Some(_) => {
                let mut k = self.head_key();
                k.extend_from_slice(b".anchor");
                k
            }
        }
    }

    /// The prefix of every named chain's entries.
    pub(crate) const NAMED_ENTRIES: [u8; 1] = [CHAIN_ENTRY_PREFIX];

    /// The named chain an entry key (`B` + id + seq) belongs to.
    pub(crate) fn from_entry_key(key: &[u8]) -> Option<Self> {
        match key {
            [CHAIN_ENTRY_PREFIX, rest @ ..] if rest.len() == 16 => {
                Some(Self::named(rest[..8].try_into().ok()?))
            }
            _ => None,
        }
    }

    /// The last possible entry key of this named chain (to skip past it).
    pub(crate) fn last_entry_key(self) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&[0xff; 8]);
        k
    }

    /// The named chain whose head is stored under `key` (`b` + 8 bytes; not an anchor key).
    pub(crate) fn from_head_key(key: &[u8]) -> Option<Self> {
        match key {
            [CHAIN_HEAD_PREFIX, id @ ..] => Some(Self::named(id.try_into().ok()?)),
            _ => None,
        }
    }
}

/// The window holding `seq`.
pub(crate) fn window_of(seq: u64) -> u64 {
    seq >> WINDOW_BITS
}

/// Keeps a text field short and printable (ids and codes only ever reach here).
pub(crate) fn clean(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect()
}

/// A reason code keeps only `[a-z_.-]`: no digits, so no caller can smuggle a card number into
/// an entry through it.
pub(crate) fn reason_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_lowercase() || matches!(c, '_' | '.' | '-'))
        .take(MAX_TEXT)
        .collect()
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    // `clean` bounds every text to at most 128 ASCII bytes.
    let len = u8::try_from(s.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// Appends the canonical encoding of everything but `prev_hash` and `hash` to `out`.
pub(crate) fn encode_body_into(out: &mut Vec<u8>, seq: u64, at: OffsetDateTime, d: &Draft) {
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&at.unix_timestamp().to_be_bytes());
    out.extend_from_slice(&at.nanosecond().to_be_bytes());
    let flags = u8::from(d.actor.merchant.is_some())
        | u8::from(d.actor.key_id.is_some()) << 1
        | u8::from(d.actor.peer_uid.is_some()) << 2
        | u8::from(d.token.is_some()) << 3
        | u8::from(d.detail.is_some()) << 4;
    out.push(flags);
    if let Some(m) = d.actor.merchant {
        out.extend_from_slice(&m.get().to_be_bytes());
    }
    if let Some(k) = &d.actor.key_id {
        put_text(out, k);
    }
    if let Some(u) = d.actor.peer_uid {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out.push(d.action.code());
    if let Some(t) = &d.token {
        out.extend_from_slice(t.as_bytes());
    }
    if let Some(s) = &d.detail {
        put_text(out, s);
    }
    match &d.outcome {
        AuditOutcome::Ok => out.push(0),
        AuditOutcome::Denied(code) => {
            out.push(1);
            put_text(out, code);
        }
        AuditOutcome::Error => out.push(2),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn text(&mut self) -> Option<String> {
        let n = self.u8()?;
        let b = self.take(usize::from(n))?;
        String::from_utf8(b.to_vec()).ok()
    }
}

/// One entry decoded from the front of a block.
pub(crate) struct Decoded {
    pub(crate) entry: AuditEntry,
    /// The length of its body (the bytes its hash covers after `prev_hash`).
    pub(crate) body_len: usize,
    /// The length of the whole entry (body and both hashes).
    pub(crate) len: usize,
}

/// Decodes the entry at the front of `bytes`; `None` if it is malformed.
pub(crate) fn decode_entry(bytes: &[u8]) -> Option<Decoded> {
    let mut r = Reader(bytes);
    if r.u8()? != ENTRY_VERSION {
        return None;
    }
    let seq = u64::from_be_bytes(r.arr()?);
    let secs = i64::from_be_bytes(r.arr()?);
    let nanos = u32::from_be_bytes(r.arr()?);
    let at = OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .replace_nanosecond(nanos)
        .ok()?;
    let flags = r.u8()?;
    let merchant = if flags & 1 != 0 {
        Some(MerchantId::new(u64::from_be_bytes(r.arr()?)).ok()?)
    } else {
        None
    };
    let key_id = if flags & 2 != 0 {
        Some(r.text()?)
    } else {
        None
    };
    let peer_uid = if flags & 4 != 0 {
        Some(u32::from_be_bytes(r.arr()?))
    } else {
        None
    };
    let action = AuditAction::from_code(r.u8()?)?;
    let token = if flags & 8 != 0 {
        Some(Token::from_bytes(r.arr()?))
    } else {
        None
    };
    let detail = if flags & 16 != 0 {
        Some(r.text()?)
    } else {
        None
    };
    let outcome = match r.u8()? {
        0 => AuditOutcome::Ok,
        1 => AuditOutcome::Denied(r.text()?),
        2 => AuditOutcome::Error,
        _ => return None,
    };
    let body_len = bytes.len() - r.0.len();
    let prev_hash = r.arr()?;
    let hash = r.arr()?;
    let len = bytes.len() - r.0.len();
    let entry = AuditEntry {
        seq,
        at,
        actor: Actor {
            merchant,
            key_id,
            peer_uid,
        },
        action,
        token,
        detail,
        outcome,
        prev_hash,
        hash,
        chain: None,
    };
    Some(Decoded {
        entry,
        body_len,
        len,
    })
}

/// Every entry of a block that decodes, in order, stopping at the first that does not.
pub(crate) fn decode_block(mut bytes: &[u8]) -> Vec<AuditEntry> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some(d) = decode_entry(bytes) else {
            break;
        };
        bytes = &bytes[d.len..];
        out.push(d.entry);
    }
    out
}

/// The audit MAC, derived once per vault.
pub(crate) struct AuditKey(HmacSha256);

impl AuditKey {
    pub(crate) fn new(keyring: &vault_core::Keyring) -> Self {
        let k = keyring.mac_key("audit");
        Self(
            <HmacSha256 as KeyInit>::new_from_slice(k.expose())
                .expect("HMAC accepts any key length"),
        )
    }

    pub(crate) fn entry_hash(&self, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(ENTRY_DOMAIN);
        mac.update(prev);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The keyed tag of an archive file's contents.
    pub(crate) fn archive_tag(&self, contents: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(ARCHIVE_DOMAIN);
        mac.update(contents);
        mac.finalize().into_bytes().into()
    }

    /// The anchor record `(seq, hash)`, or `Err` when malformed or its tag does not verify.
    pub(crate) fn decode_anchor(
        &self,
        chain: Chain,
        bytes: &[u8],
    ) -> Result<(u64, [u8; 32]), &'static str> {
        self.decode_position(chain, ANCHOR_DOMAIN, bytes)
            .map_err(|_| "the archive anchor record is malformed or its tag does not verify")
    }

    pub(crate) fn encode_anchor(&self, chain: Chain, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        self.encode_position(chain, ANCHOR_DOMAIN, seq, hash)
    }

    fn position_tag(&self, chain: Chain, domain: &[u8], seq: u64, hash: &[u8; 32]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(domain);
        if let Some(id) = chain.0 {
            mac.update(b"/chain/");
            mac.update(&id);
        }
        mac.update(&seq.to_be_bytes());
        mac.update(hash);
        mac.finalize().into_bytes().into()
    }

    /// The head record `(seq, hash)`, or `Err` when malformed or its tag does not verify.
    pub(crate) fn decode_head(
        &self,
        chain: Chain,
        bytes: &[u8],
    ) -> Result<(u64, [u8; 32]), &'static str> {
        self.decode_position(chain, HEAD_DOMAIN, bytes)
    }

    fn decode_position(
        &self,
        chain: Chain,
        domain: &[u8],
        bytes: &[u8],
    ) -> Result<(u64, [u8; 32]), &'static str> {
        let mut r = Reader(bytes);
        let parsed = (|| {
            if r.u8()? != HEAD_VERSION {
                return None;
            }
            let seq = u64::from_be_bytes(r.arr()?);
            let hash: [u8; 32] = r.arr()?;
            let tag: [u8; 32] = r.arr()?;
            r.0.is_empty().then_some((seq, hash, tag))
        })();
        let Some((seq, hash, tag)) = parsed else {
            return Err("the head record is malformed");
        };
        if bool::from(self.position_tag(chain, domain, seq, &hash).ct_eq(&tag)) {
            Ok((seq, hash))
        } else {
            Err("the head record's tag does not verify")
        }
    }

    pub(crate) fn encode_head(&self, chain: Chain, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        self.encode_position(chain, HEAD_DOMAIN, seq, hash)
    }

    fn encode_position(&self, chain: Chain, domain: &[u8], seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(73);
        out.push(HEAD_VERSION);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(hash);
        out.extend_from_slice(&self.position_tag(chain, domain, seq, hash));
        out
    }
}
