//! Sessions: the short-lived, single-use tokens a merchant's server obtains (the session-token API's
//! `POST /token`, the hosted-fields session API's hosted-fields sessions) and a browser or payment step spends.
//!
//! A session is stored durably under a keyed hash of its token (the token itself, a bearer
//! credential for ten minutes, is never on disk), bound to its merchant, kind, and optionally a
//! terminal, customer, saved card (`secureTokenId`) and browser origin. Spending it is one atomic
//! step on the committer thread, together with what it is spent on, so a session can never be
//! used twice, even by concurrent requests.

use std::{fmt, net::Ipv4Addr};

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use vault_core::{CustomerId, MerchantId, Token};
use vault_service::{KeySpace, Table, Txn, Update, Versioned};

use crate::TerminalId;

use crate::{Actor, Gateway, GatewayError, SessionToken, VaultError};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How long a session lives.
pub const SESSION_TTL: Duration = Duration::minutes(10);

/// Sessions: `S` + the first 16 bytes of the keyed hash of the token.
pub(crate) const SESSIONS: Table<[u8; 16], SessionRec> = Table::new(KeySpace::Session);
/// The removal index of sessions (see `due_index`).
const SESSION_DUE_PREFIX: u8 = KeySpace::SessionDue.byte();
/// How long a session record is kept after it expires (it then holds no usable credential; see
/// [`Gateway::session_merchant`]).
const KEEP_AFTER_EXPIRY: Duration = Duration::hours(1);
const RECORD_VERSION: u8 = 1;
/// Longest `allowOriginUrl` (the session-token API: String(253)).
const MAX_ORIGIN: usize = 253;
/// Longest `cardDescription` (the session-token API: String(50)).
const MAX_CARD_DESCRIPTION: usize = 50;
/// Longest `freeText` (the stored-card payment API: String(200)).
pub(crate) const MAX_FREE_TEXT: usize = 200;

/// What a session is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionKind {
    /// The session-token API `action=TOKENIZE`: capture one card for the session's customer.
    Tokenize,
    /// The stored-card payment API `AUTH`: use a stored card for an authorisation.
    Auth,
    /// The stored-card payment API `PURCHASE`.
    Purchase,
    /// The stored-card payment API `VERIFY`.
    Verify,
    /// The hosted-fields session API `scenario=payment`: capture a card and take a payment with it.
    HostedPayment,
    /// The hosted-fields session API `scenario=tokenization`: capture a card to save (or, with `secureTokenId`,
    /// replace the card behind that token).
    HostedTokenization,
}

impl SessionKind {
    /// The gateway API `action`: `TOKENIZE`, `AUTH`, `PURCHASE` or `VERIFY` (exact case).
    pub fn from_action(s: &str) -> Option<Self> {
        Some(match s {
            "TOKENIZE" => Self::Tokenize,
            "AUTH" => Self::Auth,
            "PURCHASE" => Self::Purchase,
            "VERIFY" => Self::Verify,
            _ => return None,
        })
    }

    /// The hosted-fields session API `scenario`: `payment` or `tokenization`.
    pub fn from_scenario(s: &str) -> Option<Self> {
        Some(match s {
            "payment" => Self::HostedPayment,
            "tokenization" => Self::HostedTokenization,
            _ => return None,
        })
    }

    /// The action or scenario name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokenize => "TOKENIZE",
            Self::Auth => "AUTH",
            Self::Purchase => "PURCHASE",
            Self::Verify => "VERIFY",
            Self::HostedPayment => "payment",
            Self::HostedTokenization => "tokenization",
        }
    }

    /// Sessions spent by capturing a card (card fields in `POST /payments`).
    pub fn captures_card(self) -> bool {
        matches!(
            self,
            Self::Tokenize | Self::HostedPayment | Self::HostedTokenization
        )
    }

    /// Sessions spent by using a stored card for a payment (the stored-card payment API).
    pub fn uses_stored_card(self) -> bool {
        matches!(self, Self::Auth | Self::Purchase | Self::Verify)
    }

    fn code(self) -> u8 {
        match self {
            Self::Tokenize => 1,
            Self::Auth => 2,
            Self::Purchase => 3,
            Self::Verify => 4,
            Self::HostedPayment => 5,
            Self::HostedTokenization => 6,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::Tokenize,
            2 => Self::Auth,
            3 => Self::Purchase,
            4 => Self::Verify,
            5 => Self::HostedPayment,
            6 => Self::HostedTokenization,
            _ => return None,
        })
    }
}

/// What a session is bound to, besides its merchant and kind. Every field is optional.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// The processing terminal (hosted-fields sessions). Must be one of the merchant's.
    pub terminal: Option<TerminalId>,
    /// The customer. A `TOKENIZE` session without one gets a generated id (returned).
    pub customer: Option<CustomerId>,
    /// A live token of the merchant whose card a `tokenization` session replaces.
    pub secure_token: Option<Token>,
    /// The only browser origin allowed to spend the session (`*`: any). `None`: no browser may
    /// (a request carrying an `Origin` header is refused). Requests without an `Origin` header
    /// (server-to-server) are not browser requests and are not refused by it.
    pub allow_origin: Option<String>,
    /// The session-token API `cardDescription` (up to 50 characters), kept with the session.
    pub card_description: Option<String>,
    /// The stored-card payment API `freeText` given up front (up to 200 characters).
    pub free_text: Option<String>,
    /// The stored-card payment API `customerIPAddress` given up front.
    pub customer_ip: Option<Ipv4Addr>,
    /// The stored-card payment API `paymentSolutionId` given up front.
    pub payment_solution_id: Option<u64>,
    /// The stored-card payment API `specinCreditCardToken` given up front.
    pub card_token: Option<Token>,
}

/// A created session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session token (UUIDv4): the bearer credential the browser or payment step presents.
    pub token: SessionToken,
    /// Its merchant.
    pub merchant: MerchantId,
    /// What it is for.
    pub kind: SessionKind,
    /// Its terminal, if any.
    pub terminal: Option<TerminalId>,
    /// Its customer: the one given, or the generated one for `TOKENIZE` sessions.
    pub customer: Option<CustomerId>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working ([`SESSION_TTL`] after creation).
    pub expires_at: OffsetDateTime,
}

/// A session as stored.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct SessionRec {
    v: u8,
    pub(crate) merchant: u64,
    kind: u8,
    pub(crate) terminal: Option<String>,
    pub(crate) customer: Option<String>,
    pub(crate) secure_token: Option<[u8; 24]>,
    pub(crate) allow_origin: Option<String>,
    card_description: Option<String>,
    pub(crate) free_text: Option<String>,
    pub(crate) customer_ip: Option<[u8; 4]>,
    pub(crate) payment_solution_id: Option<u64>,
    pub(crate) card_token: Option<[u8; 24]>,
    created_at: i64,
    pub(crate) expires_at: i64,
    used_at: Option<i64>,
}

impl SessionRec {
    pub(crate) fn kind(&self) -> Result<SessionKind, GatewayError> {
        SessionKind::from_code(self.kind).ok_or(GatewayError::corrupt(KeySpace::Session))
    }

    pub(crate) fn customer(&self) -> Result<Option<CustomerId>, GatewayError> {
        self.customer
            .as_deref()
            .map(CustomerId::parse)
            .transpose()
            .map_err(|_| GatewayError::corrupt(KeySpace::Session))
    }

    pub(crate) fn card_description_ref(&self) -> Option<&str> {
        self.card_description.as_deref()
    }

    pub(crate) fn merchant(&self) -> Result<MerchantId, GatewayError> {
        MerchantId::new(self.merchant).map_err(|_| GatewayError::corrupt(KeySpace::Session))
    }

    /// Whether a request from browser `origin` (`None`: no `Origin` header, a server) may spend
    /// this session. A session created without an allowed origin is for servers only: a browser
    /// request (one carrying `Origin`) is refused, so a page on any origin cannot spend it.
    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match (self.allow_origin.as_deref(), origin) {
            (_, None) | (Some("*"), _) => true,
            (None, Some(_)) => false,
            (Some(allowed), Some(origin)) => allowed
                .trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/')),
        }
    }
}

impl Versioned for SessionRec {
    const VERSION: u8 = RECORD_VERSION;
}

/// The keyed hash a session is stored under, so the token itself is never on disk.
#[derive(Default)]
pub(crate) struct SessionKeys {
    lookup: std::sync::OnceLock<HmacSha256>,
}

impl Gateway {
    /// The id (in [`SESSIONS`]) of the session behind `token`.
    pub(crate) fn session_id(&self, token: &SessionToken) -> [u8; 16] {
        let mac = self.state.sessions.lookup.get_or_init(|| {
            let key = self.vault.purpose_key("session-lookup");
            // HMAC accepts keys of any length.
            HmacSha256::new_from_slice(key.expose()).expect("HMAC takes any key length")
        });
        let mut mac = mac.clone();
        mac.update(token.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }

    /// A stand-in for a session token in an idempotent request's fingerprint: the keyed lookup
    /// key under which the vault already stores that session (never the token itself, nor a new
    /// digest of it).
    pub fn idempotency_session_part(&self, token: &SessionToken) -> Vec<u8> {
        SESSIONS.key(&self.session_id(token))
    }
}

/// Marks the session used, in the caller's write job, after checking that it exists, is
/// unused, unexpired, of `merchant` (when given) and allows `origin`. The caller's writes in
/// the same job commit (or roll back) with it.
///
/// The spend is a compare-and-set on the session record's bytes as read: on a vault shared by
/// several daemons, two daemons spending one session at once both read it unused, but the
/// database lets only one of the two commits through; the other's job runs again, finds the
/// session used and fails `SessionInvalid` (with everything it staged).
pub(crate) fn spend_session(
    txn: &mut Txn<'_, '_>,
    id: &[u8; 16],
    merchant: Option<MerchantId>,
    origin: Option<&str>,
    now: OffsetDateTime,
) -> Result<SessionRec, GatewayError> {
    txn.update(&SESSIONS.key(id), |read| {
        let read = read.ok_or(GatewayError::SessionInvalid)?;
        let mut rec = SESSIONS.decode(read).map_err(VaultError::from)?;
        check_usable(&rec, merchant, origin, now)?;
        rec.used_at = Some(now.unix_timestamp());
        Ok(Update::Put(SESSIONS.encode(&rec), rec))
    })
}

fn check_usable(
    rec: &SessionRec,
    merchant: Option<MerchantId>,
    origin: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), GatewayError> {
    if rec.used_at.is_some()
        || now.unix_timestamp() >= rec.expires_at
        || merchant.is_some_and(|m| m.get() != rec.merchant)
    {
        return Err(GatewayError::SessionInvalid);
    }
    if !rec.origin_allowed(origin) {
        return Err(GatewayError::OriginMismatch);
    }
    Ok(())
}

/// A generated customer id: `cus_` and 16 hex digits (20 characters, the session-token API's limit).
fn generated_customer() -> CustomerId {
    let mut b = [0u8; 8];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
    // Always valid: `[a-z0-9_]`, 20 characters.
    CustomerId::parse(&format!("cus_{}", hex::encode(b))).expect("generated customer id is valid")
}

fn bounded(
    value: Option<String>,
    max: usize,
    field: &'static str,
) -> Result<Option<String>, GatewayError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(GatewayError::field(
                field,
                "invalid_length",
                format!("{field} must be 1-{max} characters without control characters"),
            ))
        }
        v => Ok(v),
    }
}

impl Gateway {
    /// Creates a session for `merchant` (durable, audited `session.create`, the entry in the
    /// session's commit). Checks that the terminal is the merchant's (`Forbidden` when it is
    /// another merchant's or unknown), that `secure_token` is a live token of the merchant
    /// (`Invalid` `secureTokenId`), and the lengths of the free-text fields.
    pub fn create_session(
        &self,
        merchant: MerchantId,
        kind: SessionKind,
        options: SessionOptions,
    ) -> Result<Session, GatewayError> {
        let actor = Actor {
            merchant: Some(merchant),
            ..self.vault.actor().clone()
        };
        let result = self.create_session_in_one_commit(&actor, merchant, kind, options);
        if result.is_err() {
            // Refused: nothing was written, and the entry is written alone.
            let outcome = GatewayError::outcome(&result);
            self.vault
                .as_actor(&actor)
                .audit(crate::audit::SESSION_CREATE, None, outcome)?;
        }
        result
    }

    fn create_session_in_one_commit(
        &self,
        actor: &Actor,
        merchant: MerchantId,
        kind: SessionKind,
        options: SessionOptions,
    ) -> Result<Session, GatewayError> {
        let now = self.vault.now();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        if let Some(t) = &options.terminal {
            match self.terminal(t)? {
                Some(term) if term.merchant == merchant => {}
                // Another merchant's terminal and an unknown one look the same (the hosted-fields session API
                // list no 404): which terminal ids exist is not the caller's business.
                _ => return Err(GatewayError::Vault(VaultError::Forbidden)),
            }
        }
        let mut customer = options.customer;
        if let Some(secure) = &options.secure_token {
            if kind != SessionKind::HostedTokenization {
                return Err(GatewayError::field(
                    "secureTokenId",
                    "not_allowed",
                    "secureTokenId is only accepted with scenario tokenization",
                ));
            }
            let Some(live) = self.vault.live_token(merchant, secure)? else {
                return Err(GatewayError::field(
                    "secureTokenId",
                    "unknown",
                    "secureTokenId is not a live token of this merchant",
                ));
            };
            // The replacement card keeps the saved card's customer binding.
            customer = live.customer;
        }
        if customer.is_none() && kind == SessionKind::Tokenize {
            customer = Some(generated_customer());
        }
        let allow_origin = bounded(options.allow_origin, MAX_ORIGIN, "allowOriginUrl")?;
        let card_description = bounded(
            options.card_description,
            MAX_CARD_DESCRIPTION,
            "cardDescription",
        )?;
        let free_text = bounded(options.free_text, MAX_FREE_TEXT, "freeText")?;
        let token = SessionToken::mint(&mut rand::rng());
        let expires_at = now + SESSION_TTL;
        let rec = SessionRec {
            v: RECORD_VERSION,
            merchant: merchant.get(),
            kind: kind.code(),
            terminal: options.terminal.as_ref().map(|t| t.as_str().to_owned()),
            customer: customer.as_ref().map(|c| c.as_str().to_owned()),
            secure_token: options.secure_token.map(|t| *t.as_bytes()),
            allow_origin,
            card_description,
            free_text,
            customer_ip: options.customer_ip.map(|ip| ip.octets()),
            payment_solution_id: options.payment_solution_id,
            card_token: options.card_token.map(|t| *t.as_bytes()),
            created_at: now.unix_timestamp(),
            expires_at: expires_at.unix_timestamp(),
            used_at: None,
        };
        let id = self.session_id(&token);
        let due = crate::due_index::entry(
            SESSION_DUE_PREFIX,
            (expires_at + KEEP_AFTER_EXPIRY).unix_timestamp(),
            &SESSIONS.key(&id),
        );
        let detail = Some(match &options.terminal {
            Some(t) => format!("kind={} terminal={t}", kind.as_str()),
            None => format!("kind={}", kind.as_str()),
        });
        let actor = actor.clone();
        let bytes = SESSIONS.encode(&rec);
        self.vault.transact(move |txn| {
            // 122 random bits: a collision is not a realistic event, but never overwrite (a
            // conditional write: the database checks it too on a shared vault).
            if !txn.put_if_absent(&SESSIONS.key(&id), bytes.clone())? {
                return Err(GatewayError::SessionExists);
            }
            txn.put(&due, Vec::new())?;
            let ok = vault_service::AuditOutcome::Ok;
            txn.audit(
                &actor,
                crate::audit::SESSION_CREATE,
                None,
                detail.clone(),
                ok,
            )?;
            Ok(())
        })?;
        Ok(Session {
            token,
            merchant,
            kind,
            terminal: options.terminal,
            customer,
            created_at: now,
            expires_at,
        })
    }

    /// The live (unused, unexpired) session behind `token`, without spending it; `SessionInvalid`
    /// otherwise. For the layers above to pick the flow (card capture or payment) and answer CORS.
    pub fn session(&self, token: &SessionToken) -> Result<SessionView, GatewayError> {
        let rec = self.stored_session(&self.session_id(token))?;
        check_usable(&rec, None, None, self.vault.now())?;
        Ok(SessionView {
            merchant: rec.merchant()?,
            kind: rec.kind()?,
            customer: rec.customer()?,
            allow_origin: rec.allow_origin.clone(),
            expires_at: from_unix(rec.expires_at)?,
        })
    }

    /// The merchant of a session the vault still knows, live or not (spent and expired sessions
    /// are kept for an hour after their expiry, so an idempotent retry of the request that spent
    /// one can still be matched to its merchant's stored answer); `SessionInvalid` when unknown.
    pub fn session_merchant(&self, token: &SessionToken) -> Result<MerchantId, GatewayError> {
        self.stored_session(&self.session_id(token))?.merchant()
    }

    /// The session stored under `id` (see [`Gateway::session_id`]), in whatever state;
    /// `SessionInvalid` when there is none.
    pub(crate) fn stored_session(&self, id: &[u8; 16]) -> Result<SessionRec, GatewayError> {
        self.vault
            .read_in(&SESSIONS, id)?
            .ok_or(GatewayError::SessionInvalid)
    }

    /// Removes sessions [`KEEP_AFTER_EXPIRY`] past their expiry (used or not), oldest first.
    /// Returns how many.
    pub(crate) fn sweep_expired_sessions(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        crate::due_index::sweep_due(&self.vault, SESSION_DUE_PREFIX, now)
    }
}

/// A stored time as a date.
pub(crate) fn from_unix(t: i64) -> Result<OffsetDateTime, GatewayError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| GatewayError::Vault(VaultError::Integrity))
}

/// A live session as the layers above see it (no token).
#[derive(Clone, Debug)]
pub struct SessionView {
    /// Its merchant.
    pub merchant: MerchantId,
    /// What it is for.
    pub kind: SessionKind,
    /// Its customer, if bound.
    pub customer: Option<CustomerId>,
    /// The allowed browser origin, if any (`*`: any).
    pub allow_origin: Option<String>,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
