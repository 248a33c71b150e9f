//! The audit log: append-only, hash-chained entries in the store.
//!
//! One entry per reveal, admin action, key operation, sweep and failed authentication (and, for
//! the layers above, per session creation and payment use): when, who (merchant, API key id,
//! peer uid), what, which token, and the outcome. Never a PAN, CVV, password or API-key secret:
//! an entry has no field that could hold one (the free-text `detail` is written only by this
//! crate, from ids and counts).
//!
//! Entry `n` (from 1) is stored under `A` + `n` (u64 BE) and carries
//! `hash = HMAC-SHA256(audit key, "cardvault/v1/audit" || prev_hash || body)` where `prev_hash`
//! is entry `n - 1`'s hash (zeros for the first) and `body` the entry's canonical encoding. The
//! audit key is the vault's `mac_key("audit")`: someone who can write the disk but does not hold
//! the vault key cannot recompute the chain. The head (last seq and hash) is kept under `a`,
//! tagged with the same key, and replaced in the same atomic batch as each append; appends run on
//! the committer thread, so sequence order is commit order. See `docs/record-format.md`.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use vault_core::{MerchantId, Token};
use vault_store::WriteTx;

use crate::{Vault, VaultError, vault::Core};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;
/// A decoded head record `(seq, hash)`, or why it did not verify.
type HeadRecord = Result<(u64, [u8; 32]), &'static str>;

const ENTRY_PREFIX: u8 = b'A';
const HEAD_KEY: &[u8] = b"a";
const ENTRY_VERSION: u8 = 1;
const HEAD_VERSION: u8 = 1;
const ENTRY_DOMAIN: &[u8] = b"cardvault/v1/audit";
const HEAD_DOMAIN: &[u8] = b"cardvault/v1/audit-head";
const MAX_TEXT: usize = 64;
const MAX_DETAIL: usize = 128;

/// Who acted. Every field is optional: a direct library call (the CLI offline, a linked payment
/// service) is the empty actor, shown as "local".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    /// The merchant the caller authenticated as.
    pub merchant: Option<MerchantId>,
    /// The public id of the API key used (never its secret).
    pub key_id: Option<String>,
    /// The uid of the Unix-socket peer.
    pub peer_uid: Option<u32>,
}

impl Actor {
    /// The empty actor: a direct call on the library.
    pub fn local() -> Self {
        Self::default()
    }

    /// The actor behind an authenticated principal.
    pub fn principal(p: &crate::Principal) -> Self {
        Self {
            merchant: Some(p.merchant),
            key_id: Some(p.key_id.clone()),
            peer_uid: None,
        }
    }

    /// The same actor, seen on a socket peer with this uid.
    #[must_use]
    pub fn with_peer_uid(mut self, uid: Option<u32>) -> Self {
        self.peer_uid = uid;
        self
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(m) = self.merchant {
            parts.push(format!("merchant={m}"));
        }
        if let Some(k) = &self.key_id {
            parts.push(format!("key={k}"));
        }
        if let Some(u) = self.peer_uid {
            parts.push(format!("uid={u}"));
        }
        if parts.is_empty() {
            f.write_str("local")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

macro_rules! actions {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// What was done.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AuditAction {
            $($(#[$doc])* $name,)*
        }

        impl AuditAction {
            fn code(self) -> u8 {
                match self { $(Self::$name => $code,)* }
            }

            fn from_code(c: u8) -> Option<Self> {
                match c { $($code => Some(Self::$name),)* _ => None }
            }

            /// Stable lower-case name (`reveal`, `key.rotate`, ...).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$name => $text,)* }
            }
        }
    };
}

actions! {
    /// A card was revealed (or a reveal was refused).
    Reveal = 1, "reveal";
    /// A card was used for a payment.
    PaymentUse = 2, "payment.use";
    /// A hosted-fields or gateway session was created.
    SessionCreate = 3, "session.create";
    /// A card was captured (stored or updated) through a session.
    CardCapture = 4, "card.capture";
    /// A payment's card (and CVV, once) was handed to the acquirer leg.
    PaymentCard = 5, "payment.card";
    /// The outcome of a payment was reported.
    PaymentResult = 6, "payment.result";
    /// A merchant was added.
    AdminMerchantAdd = 10, "admin.merchant.add";
    /// An API key was created.
    AdminApiKeyCreate = 11, "admin.apikey.create";
    /// An API key was revoked.
    AdminApiKeyRevoke = 12, "admin.apikey.revoke";
    /// A terminal was added.
    AdminTerminalAdd = 13, "admin.terminal.add";
    /// A merchant's gateway password was set or changed.
    AdminMerchantPassword = 14, "admin.merchant.password";
    /// A fresh data key was made current.
    KeyRotate = 20, "key.rotate";
    /// Records were re-sealed under the current data key.
    KeyRewrap = 21, "key.rewrap";
    /// Unused decrypt-only data keys were retired.
    KeyRetire = 22, "key.retire";
    /// The passphrase or key file changed.
    Rekey = 23, "key.rekey";
    /// Expired records were swept.
    Sweep = 30, "sweep";
    /// An API key failed to authenticate.
    AuthFailed = 40, "auth.failed";
    /// A merchant password login failed (wrong password, unknown merchant or rate limited).
    LoginFailed = 41, "login.failed";
}

/// How it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Done.
    Ok,
    /// Refused, with a reason code (`not_found`, `customer_mismatch`, `unauthorized`, ...; only
    /// `[a-z_.-]` is kept).
    Denied(String),
    /// Failed (store or integrity error).
    Error,
}

impl AuditOutcome {
    /// The outcome of a call that returned `r`.
    pub fn of<T>(r: &Result<T, VaultError>) -> Self {
        match r {
            Ok(_) => Self::Ok,
            Err(e) => Self::from_error(e),
        }
    }

    fn from_error(e: &VaultError) -> Self {
        let code = match e {
            VaultError::Invalid(f) => f.code,
            VaultError::NotFound => "not_found",
            VaultError::CustomerMismatch => "customer_mismatch",
            VaultError::Unauthorized => "unauthorized",
            VaultError::Forbidden => "forbidden",
            VaultError::Key(_) => "key",
            VaultError::RateLimited => "rate_limited",
            VaultError::Busy => "busy",
            VaultError::Conflict(code) => code,
            VaultError::SessionInvalid => "session_invalid",
            VaultError::OriginMismatch => "origin_mismatch",
            _ => return Self::Error,
        };
        Self::Denied(code.to_owned())
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Denied(code) => write!(f, "denied:{code}"),
            Self::Error => f.write_str("error"),
        }
    }
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When it was appended (the vault clock, at commit).
    pub at: OffsetDateTime,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// Which token, if one was involved.
    pub token: Option<Token>,
    /// Ids and counts written by the vault (`merchant=890490`, `dek=3`, `removed=12`); never
    /// card data or secrets.
    pub detail: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The previous entry's hash (zeros for the first).
    pub prev_hash: [u8; 32],
    /// This entry's chained, keyed hash.
    pub hash: [u8; 32],
}

/// When a reveal hands back the card, relative to its audit entry ([`Vault::set_reveal_audit`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RevealAudit {
    /// The default. The entry joins the next group commit (normally within a millisecond or two)
    /// and the card is returned at once. A crash in that window can lose the entries of reveals
    /// already answered, never more than [`MAX_QUEUED_AUDIT`](crate::MAX_QUEUED_AUDIT): past that
    /// many uncommitted entries, reveals wait for durability (back-pressure). A store failure while
    /// committing a queued entry is not reported to the revealer.
    #[default]
    Queued,
    /// The card is returned only once its entry is durable (under the vault's
    /// [`Durability`](crate::Durability)); if the entry cannot be written the reveal fails. Each
    /// reveal then waits for a group commit: about 2,400 reveals/s from 2 threads under
    /// `Durability::Sync` on the reference machine (concurrent revealers share commits).
    Durable,
}

/// What [`Vault::audit_verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries that verified, from seq 1.
    pub entries: u64,
    /// The first sequence number at which the chain is broken (an edited, inserted, reordered or
    /// missing entry, or entries missing at the tail); `None` when the whole log verifies.
    pub first_bad: Option<u64>,
    /// What is wrong, for humans.
    pub problem: Option<String>,
}

impl AuditReport {
    /// Whether the whole log verified.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// An entry before it is chained.
struct Draft {
    actor: Actor,
    action: AuditAction,
    token: Option<Token>,
    detail: Option<String>,
    outcome: AuditOutcome,
}

fn entry_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ENTRY_PREFIX;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Keeps a text field short and printable (ids and codes only ever reach here).
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect()
}

/// A reason code keeps only `[a-z_.-]`: no digits, so no caller can smuggle a card number into
/// an entry through it.
fn reason_code(s: &str) -> String {
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

/// The canonical encoding of everything but `prev_hash` and `hash`.
fn encode_body(seq: u64, at: OffsetDateTime, d: &Draft) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
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
        put_text(&mut out, k);
    }
    if let Some(u) = d.actor.peer_uid {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out.push(d.action.code());
    if let Some(t) = &d.token {
        out.extend_from_slice(t.as_bytes());
    }
    if let Some(s) = &d.detail {
        put_text(&mut out, s);
    }
    match &d.outcome {
        AuditOutcome::Ok => out.push(0),
        AuditOutcome::Denied(code) => {
            out.push(1);
            put_text(&mut out, code);
        }
        AuditOutcome::Error => out.push(2),
    }
    out
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

/// Decodes a stored entry; `None` if it is malformed. Returns the entry and the length of its body.
fn decode(bytes: &[u8]) -> Option<(AuditEntry, usize)> {
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
    if !r.0.is_empty() {
        return None;
    }
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
    };
    Some((entry, body_len))
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

    fn entry_hash(&self, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(ENTRY_DOMAIN);
        mac.update(prev);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    fn head_tag(&self, seq: u64, hash: &[u8; 32]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(HEAD_DOMAIN);
        mac.update(&seq.to_be_bytes());
        mac.update(hash);
        mac.finalize().into_bytes().into()
    }

    /// The head record `(seq, hash)`: `Ok(None)` when absent, `Err` when malformed or its tag
    /// does not verify.
    fn decode_head(&self, bytes: &[u8]) -> Result<(u64, [u8; 32]), &'static str> {
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
        if bool::from(self.head_tag(seq, &hash).ct_eq(&tag)) {
            Ok((seq, hash))
        } else {
            Err("the head record's tag does not verify")
        }
    }

    fn encode_head(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(73);
        out.push(HEAD_VERSION);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(hash);
        out.extend_from_slice(&self.head_tag(seq, hash));
        out
    }
}

impl Core {
    /// Appends an entry inside a write job (on the committer thread): reads the head, including
    /// this group's pending appends, so sequence order is commit order.
    fn append_audit(&self, tx: &mut WriteTx<'_>, d: &Draft) -> Result<(), VaultError> {
        let (last, prev) = match tx.get_raw(HEAD_KEY)? {
            Some(b) => self
                .audit_key
                .decode_head(&b)
                .map_err(|_| VaultError::Store(vault_store::StoreError::Corrupt("audit head")))?,
            None => (0, [0u8; 32]),
        };
        let seq = last + 1;
        let body = encode_body(seq, self.clock.now(), d);
        let hash = self.audit_key.entry_hash(&prev, &body);
        let mut value = body;
        value.extend_from_slice(&prev);
        value.extend_from_slice(&hash);
        tx.put_raw(&entry_key(seq), value)?;
        tx.put_raw(HEAD_KEY, self.audit_key.encode_head(seq, &hash))?;
        Ok(())
    }
}

impl Vault {
    /// Appends one audit entry, durably (one commit, shared with concurrent writers). For the
    /// layers above (session creation, payment use); the vault records its own actions itself.
    pub fn audit(
        &self,
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        outcome: AuditOutcome,
    ) -> Result<(), VaultError> {
        self.record(actor, action, token, None, outcome)
    }

    /// Appends one entry (see [`audit`](Self::audit)) with a vault-written `detail`, durably.
    pub(crate) fn record(
        &self,
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        detail: Option<String>,
        outcome: AuditOutcome,
    ) -> Result<(), VaultError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.record_then(actor, action, token, detail, outcome, move |r| {
            let _ = tx.send(r);
        });
        rx.recv()
            .unwrap_or(Err(VaultError::Store(vault_store::StoreError::Closed)))
    }

    /// Like [`record`](Self::record) without blocking: the entry joins the next group commit and
    /// `done` runs (on the committer thread) once it is durable or failed.
    pub(crate) fn record_then(
        &self,
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        detail: Option<String>,
        outcome: AuditOutcome,
        done: impl FnOnce(Result<(), VaultError>) + Send + 'static,
    ) {
        let draft = Draft {
            actor: Actor {
                merchant: actor.merchant,
                key_id: actor.key_id.as_deref().map(|k| clean(k, MAX_TEXT)),
                peer_uid: actor.peer_uid,
            },
            action,
            token: token.copied(),
            detail: detail.map(|s| clean(&s, MAX_DETAIL)),
            outcome: match outcome {
                AuditOutcome::Denied(c) => AuditOutcome::Denied(reason_code(&c)),
                o => o,
            },
        };
        let core = self.inner.core.clone();
        self.inner
            .store
            .submit(move |tx| core.append_audit(tx, &draft), done);
    }

    /// Records the outcome of an action and passes its result on. A failure to record turns a
    /// success into that failure: nothing the vault does goes unaudited without the caller
    /// hearing of it.
    pub(crate) fn audited<T>(
        &self,
        actor: &Actor,
        action: AuditAction,
        token: Option<&Token>,
        detail: impl FnOnce(&T) -> Option<String>,
        result: Result<T, VaultError>,
    ) -> Result<T, VaultError> {
        let detail = result.as_ref().ok().and_then(detail);
        self.record(actor, action, token, detail, AuditOutcome::of(&result))?;
        result
    }

    fn audit_head(&self) -> Result<Option<HeadRecord>, VaultError> {
        Ok(self
            .inner
            .store
            .get_raw(HEAD_KEY)?
            .map(|b| self.inner.audit_key.decode_head(&b)))
    }

    /// The last `n` entries, oldest first. Entries that do not decode are skipped (run
    /// [`audit_verify`](Self::audit_verify) to find them).
    pub fn audit_tail(&self, n: usize) -> Result<Vec<AuditEntry>, VaultError> {
        self.barrier()?;
        let last = match self.audit_head()? {
            Some(Ok((seq, _))) => seq,
            // No trustworthy head: find the end by walking.
            _ => {
                let mut seq = 0;
                while self.inner.store.get_raw(&entry_key(seq + 1))?.is_some() {
                    seq += 1;
                }
                seq
            }
        };
        let first = last.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX)) + 1;
        let mut out = Vec::new();
        for seq in first..=last {
            if let Some(b) = self.inner.store.get_raw(&entry_key(seq))?
                && let Some((e, _)) = decode(&b)
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Walks the whole chain from seq 1 and checks every entry's position, link and keyed hash,
    /// then the (keyed) head record. Detects an edited, inserted, reordered or removed entry, and
    /// removal of the last entries unless the head record was also rolled back to an older value
    /// of itself (see SECURITY.md).
    pub fn audit_verify(&self) -> Result<AuditReport, VaultError> {
        self.barrier()?;
        let key = &self.inner.audit_key;
        let mut prev = [0u8; 32];
        let mut entries = 0u64;
        let bad = |seq: u64, entries: u64, problem: String| AuditReport {
            entries,
            first_bad: Some(seq),
            problem: Some(problem),
        };
        loop {
            let seq = entries + 1;
            let Some(bytes) = self.inner.store.get_raw(&entry_key(seq))? else {
                break;
            };
            let Some((e, body_len)) = decode(&bytes) else {
                return Ok(bad(seq, entries, format!("entry {seq} is malformed")));
            };
            if e.seq != seq {
                return Ok(bad(
                    seq,
                    entries,
                    format!("entry {seq} holds entry {} (moved or reordered)", e.seq),
                ));
            }
            if e.prev_hash != prev {
                return Ok(bad(
                    seq,
                    entries,
                    format!("entry {seq} does not link to entry {}", seq - 1),
                ));
            }
            let expect = key.entry_hash(&prev, &bytes[..body_len]);
            if !bool::from(expect.ct_eq(&e.hash)) {
                return Ok(bad(seq, entries, format!("entry {seq} was altered")));
            }
            prev = e.hash;
            entries = seq;
        }
        let next = entries + 1;
        match self.audit_head()? {
            None if entries == 0 => {}
            None => {
                return Ok(bad(next, entries, "the head record is missing".to_owned()));
            }
            Some(Err(problem)) => return Ok(bad(next, entries, problem.to_owned())),
            Some(Ok((seq, _))) if seq > entries => {
                return Ok(bad(
                    next,
                    entries,
                    format!("entries {next}..={seq} are missing (the head says {seq})"),
                ));
            }
            Some(Ok((seq, _))) if seq < entries => {
                return Ok(bad(
                    seq + 1,
                    entries,
                    format!("entries after {seq} are not covered by the head record"),
                ));
            }
            Some(Ok((_, hash))) if hash != prev => {
                return Ok(bad(
                    entries,
                    entries,
                    format!("entry {entries} differs from the head record"),
                ));
            }
            Some(Ok(_)) => {}
        }
        Ok(AuditReport {
            entries,
            first_bad: None,
            problem: None,
        })
    }
}
