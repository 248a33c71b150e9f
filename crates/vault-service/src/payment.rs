//! Spending sessions: card capture (the session-token API's TOKENIZE flow, the hosted-fields session API's hosted fields) and
//! payment use of a stored card (the stored-card payment API), the card hand-over to the acquirer leg, and the
//! payment outcome that makes a card available for one-click use.
//!
//! Each spend is one job on the committer thread: the session is marked used together with the
//! card write or the payment record, so two concurrent requests can never both spend it.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use vault_core::{
    Brand, CardRecord, CardholderName, CustomerId, Cvv, Expiry, MaskedPan, MerchantId, Metadata,
    Pan, SecretKey, SessionToken, Token,
};
use vault_store::LookupId;

use crate::{
    Actor, AuditAction, NewCard, SessionKind, TokenInfo, TokenizeOptions, Vault, VaultError,
    cvv_store::CvvStore,
    record_mac::{self, MAC_VERSION, RecordKind},
    session::{SessionKeys, SessionRec, encode},
    vault::{customer_of, from_unix, is_live_for},
};

const PAYMENT_PREFIX: u8 = vault_store::KeySpace::Payment.byte();
const ONE_CLICK_PREFIX: u8 = vault_store::KeySpace::OneClick.byte();
/// The removal index of payment records (see `due_index`).
const PAYMENT_DUE_PREFIX: u8 = vault_store::KeySpace::PaymentDue.byte();
/// How long a payment record is kept for its outcome to be reported.
pub const PAYMENT_TTL: Duration = Duration::hours(24);

/// State the session and payment flows keep beside the store.
#[derive(Default)]
pub(crate) struct SessionState {
    pub(crate) keys: SessionKeys,
    pub(crate) cvv: CvvStore,
}

/// A payment's id (the stored-card payment API `txId`): a UUIDv4.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaymentId([u8; 16]);

impl PaymentId {
    fn mint() -> Self {
        let mut b = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
        Self(uuid::Builder::from_random_bytes(b).into_uuid().into_bytes())
    }

    #[cfg(test)]
    pub(crate) fn from_u128(n: u128) -> Self {
        Self(n.to_be_bytes())
    }

    /// Parses the hyphenated lowercase form.
    pub fn parse(s: &str) -> Result<Self, VaultError> {
        SessionToken::parse(s)
            .map(|t| Self(*t.as_bytes()))
            .map_err(|_| VaultError::NotFound)
    }

    fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        k.push(PAYMENT_PREFIX);
        k.extend_from_slice(&self.0);
        k
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentId({self})")
    }
}

/// The stored-card payment API's fields for using a stored card. Holds the CVV: no `Clone`, `Debug` redacted.
#[derive(Default)]
pub struct PaymentRequest {
    /// `merchantId`: must be the session's merchant.
    pub merchant: Option<MerchantId>,
    /// `specinCreditCardToken` (else the one given when the session was created).
    pub card_token: Option<Token>,
    /// `customerId` (else the session's): must equal the card token's customer binding.
    pub customer: Option<CustomerId>,
    /// `specinCreditCardCVV`: required unless the card is saved for one-click use.
    pub cvv: Option<Cvv>,
    /// `setOneClickValueSettingForCard`: save the card for one-click use once the payment is
    /// reported successful.
    pub one_click: bool,
    /// `freeText` (else the session's).
    pub free_text: Option<String>,
    /// `customerIPAddress` (else the session's); required.
    pub customer_ip: Option<Ipv4Addr>,
    /// `paymentSolutionId` (else the session's); required.
    pub payment_solution_id: Option<u64>,
    /// The caller holds the `reveal` scope for this merchant: return the card (and CVV) now.
    pub reveal: bool,
}

impl fmt::Debug for PaymentRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentRequest")
            .field("merchant", &self.merchant)
            .field("card_token", &self.card_token)
            .field("customer", &self.customer)
            .field("one_click", &self.one_click)
            .finish_non_exhaustive()
    }
}

/// A card handed to the acquirer leg. Secret: no `Clone`, `Debug` shows only the mask.
pub struct PaymentCard {
    /// Its token.
    pub token: Token,
    /// The card number.
    pub pan: Pan,
    /// Expiry month.
    pub expiry: Expiry,
    /// Cardholder name, if stored.
    pub name: Option<CardholderName>,
    /// The CVV given for this payment, the first time the card is handed over; `None` after.
    pub cvv: Option<Cvv>,
}

impl fmt::Debug for PaymentCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentCard")
            .field("pan", &self.pan)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// A payment started from a session.
#[derive(Debug)]
pub struct PaymentStarted {
    /// Its id (`txId`).
    pub id: PaymentId,
    /// `AUTH`, `PURCHASE`, `VERIFY` or hosted `payment`.
    pub kind: SessionKind,
    /// The card token used.
    pub token: Token,
    /// The customer the card is bound to.
    pub customer: Option<CustomerId>,
    /// Masked card number.
    pub masked_pan: MaskedPan,
    /// Card brand.
    pub brand: Brand,
    /// `freeText`, echoed.
    pub free_text: Option<String>,
    /// `paymentSolutionId`, echoed.
    pub payment_solution_id: Option<u64>,
    /// The card saved for one-click use will be once the payment is reported successful.
    pub one_click_requested: bool,
    /// The card, for a caller holding the `reveal` scope.
    pub card: Option<PaymentCard>,
}

/// What a card capture stored.
#[derive(Debug)]
pub struct CardCapture {
    /// The token (new, or the `secureTokenId` whose card was replaced).
    pub info: TokenInfo,
    /// True when an existing token's card was replaced.
    pub replaced: bool,
    /// For a hosted `payment` session: the payment started with the captured card.
    pub payment: Option<PaymentStarted>,
}

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Started; waiting for its outcome.
    Pending,
    /// Reported successful.
    Succeeded,
    /// Reported failed.
    Failed,
}

/// A payment as stored (no card data).
#[derive(Clone, Debug)]
pub struct PaymentInfo {
    /// Its id.
    pub id: PaymentId,
    /// Its merchant.
    pub merchant: MerchantId,
    /// The card token.
    pub token: Token,
    /// What kind.
    pub kind: SessionKind,
    /// Where it stands.
    pub status: PaymentStatus,
    /// Whether the card is now saved for one-click use.
    pub one_click_saved: bool,
    /// When it started.
    pub created_at: OffsetDateTime,
}

/// Payment records since the one-click binding: version 2 adds `card`.
const PAYMENT_VERSION: u8 = 2;

#[derive(Serialize, Deserialize)]
struct PaymentRec {
    v: u8,
    merchant: u64,
    token: [u8; 24],
    kind: u8,
    status: u8,
    one_click: bool,
    created_at: i64,
    /// The card the payment was made with: the token record's de-duplication key (a keyed digest
    /// of the card number and customer) when the payment started. A one-click mark is saved only
    /// if the token still holds that card when the outcome is reported. `None` for payments that
    /// cannot save one (and for version-1 records, written before the binding existed).
    card: Option<[u8; 16]>,
}

/// The version-1 layout, read so that payments pending across an upgrade can still be reported;
/// they never save a one-click mark (their card is unknown).
#[derive(Deserialize)]
struct PaymentRecV1 {
    _v: u8,
    merchant: u64,
    token: [u8; 24],
    kind: u8,
    status: u8,
    one_click: bool,
    created_at: i64,
}

#[derive(Serialize, Deserialize)]
struct OneClickRec {
    v: u8,
    merchant: u64,
    saved_at: i64,
}

fn corrupt(what: vault_store::KeySpace) -> VaultError {
    VaultError::Store(vault_store::StoreError::Corrupt(
        vault_store::Structure::Value(what),
    ))
}

fn decode_payment(bytes: &[u8]) -> Result<PaymentRec, VaultError> {
    match bytes.first() {
        Some(&PAYMENT_VERSION) => {
            postcard::from_bytes(bytes).map_err(|_| corrupt(vault_store::KeySpace::Payment))
        }
        Some(1) => {
            let old: PaymentRecV1 =
                postcard::from_bytes(bytes).map_err(|_| corrupt(vault_store::KeySpace::Payment))?;
            Ok(PaymentRec {
                v: PAYMENT_VERSION,
                merchant: old.merchant,
                token: old.token,
                kind: old.kind,
                status: old.status,
                one_click: old.one_click,
                created_at: old.created_at,
                card: None,
            })
        }
        _ => Err(corrupt(vault_store::KeySpace::Payment)),
    }
}

fn kind_code(kind: SessionKind) -> u8 {
    match kind {
        SessionKind::Auth => 2,
        SessionKind::Purchase => 3,
        SessionKind::Verify => 4,
        _ => 5,
    }
}

fn kind_of(code: u8) -> SessionKind {
    match code {
        2 => SessionKind::Auth,
        3 => SessionKind::Purchase,
        4 => SessionKind::Verify,
        _ => SessionKind::HostedPayment,
    }
}

fn status_of(code: u8) -> PaymentStatus {
    match code {
        1 => PaymentStatus::Succeeded,
        2 => PaymentStatus::Failed,
        _ => PaymentStatus::Pending,
    }
}

/// Whether `stored` (the value under a token's one-click key) is a mark this vault wrote: a mark
/// whose MAC does not verify (tampered, moved from another token, or written before MACs and
/// not migrated) counts as absent, so the payment needs its CVV: it fails closed.
fn one_click_mark(stored: Option<Vec<u8>>, key: &SecretKey, id: &LookupId) -> bool {
    stored.is_some_and(|value| {
        record_mac::open_with(key, RecordKind::OneClick, &one_click_key(id), &value).is_ok()
    })
}

pub(crate) fn one_click_key(id: &LookupId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(ONE_CLICK_PREFIX);
    k.extend_from_slice(&id.0);
    k
}

fn payment_due(id: &PaymentId, created: OffsetDateTime) -> Vec<u8> {
    crate::due_index::entry(
        PAYMENT_DUE_PREFIX,
        (created + PAYMENT_TTL).unix_timestamp(),
        &id.key(),
    )
}

/// The value pinned with the session if any (a different one in the request is `clash`), else the
/// request's.
fn pinned<T: PartialEq>(
    session: Option<T>,
    request: Option<T>,
    clash: VaultError,
) -> Result<Option<T>, VaultError> {
    match (session, request) {
        (Some(s), Some(r)) if s != r => Err(clash),
        (Some(s), _) => Ok(Some(s)),
        (None, r) => Ok(r),
    }
}

fn conflict(field: &'static str) -> VaultError {
    VaultError::field(
        field,
        "conflict",
        format!("{field} was given with the session; the payment request may not change it"),
    )
}

fn required(field: &'static str) -> VaultError {
    VaultError::field(field, "required", format!("{field} is required"))
}

impl Vault {
    /// Spends a card-capture session (`TOKENIZE`, hosted `tokenization` or `payment`) on `card`:
    /// stores it for the session's merchant and customer (or replaces the card behind the session's
    /// `secureTokenId`), and for a hosted `payment` session starts a payment with it, holding `cvv`
    /// in memory (sealed) for the acquirer leg. `origin` is the browser's `Origin` header, if any.
    /// The card is validated before the session is spent, so a mistyped card leaves it usable.
    /// Audited (`card.capture`, and `payment.use` for hosted payments).
    pub fn capture_card(
        &self,
        actor: &Actor,
        session: &SessionToken,
        origin: Option<&str>,
        card: NewCard,
        cvv: Option<Cvv>,
    ) -> Result<CardCapture, VaultError> {
        let key = self.inner.session_key(session);
        let rec = self.stored_session(&key)?;
        let kind = rec.kind()?;
        let merchant = rec.merchant()?;
        let actor = Actor {
            merchant: Some(merchant),
            ..actor.clone()
        };
        let result = self.capture_unaudited(&key, &rec, origin, card, cvv);
        let token = result.as_ref().ok().map(|c| c.info.token);
        let outcome = crate::AuditOutcome::of(&result);
        self.audit(&actor, AuditAction::CardCapture, token.as_ref(), outcome)?;
        if kind == SessionKind::HostedPayment
            && let Ok(c) = &result
        {
            self.audit(
                &actor,
                AuditAction::PaymentUse,
                Some(&c.info.token),
                crate::AuditOutcome::Ok,
            )?;
        }
        result
    }

    fn capture_unaudited(
        &self,
        key: &[u8],
        rec: &SessionRec,
        origin: Option<&str>,
        card: NewCard,
        cvv: Option<Cvv>,
    ) -> Result<CardCapture, VaultError> {
        let kind = rec.kind()?;
        let merchant = rec.merchant()?;
        if !kind.captures_card() {
            return Err(VaultError::field(
                "token",
                "wrong_session",
                "this session pays with a stored card token (specinCreditCardToken), not card fields",
            ));
        }
        if kind == SessionKind::HostedPayment && cvv.is_none() {
            return Err(required("cvv"));
        }
        let now = self.inner.clock.now();
        let key = key.to_vec();
        let origin = origin.map(str::to_owned);
        let core = self.inner.core.clone();
        if let Some(secure) = rec.secure_token.map(Token::from_bytes) {
            // Replace the card behind the saved token, keeping its token and customer binding.
            let keep_until = crate::write::resolve_keep_until(&card, None, now)?;
            let info = self.inner.store.write(move |tx| {
                core.spend_session(tx, &key, Some(merchant), origin.as_deref(), now)?;
                core.commit_update(tx, merchant, secure, card, None, keep_until, now)
            })?;
            return Ok(CardCapture {
                info,
                replaced: true,
                payment: None,
            });
        }
        let mut metadata = BTreeMap::new();
        if let Some(d) = &rec.card_description_ref() {
            metadata.insert("cardDescription".to_owned(), (*d).to_owned());
        }
        let options = TokenizeOptions {
            customer: rec.customer()?,
            metadata: Metadata::new(metadata)?,
            ..TokenizeOptions::default()
        };
        let prepared = self.inner.prepare(merchant, card, options, now)?;
        let payment = (kind == SessionKind::HostedPayment).then(PaymentId::mint);
        let cvvs = &self.inner.sessions.cvv;
        if let Some(id) = payment {
            cvvs.reserve(id, merchant, rec.expires_at, now.unix_timestamp())?;
        }
        let written = self.inner.store.write(move |tx| {
            core.spend_session(tx, &key, Some(merchant), origin.as_deref(), now)?;
            let info = core.commit_new(tx, prepared)?;
            if let Some(id) = payment {
                let p = PaymentRec {
                    v: PAYMENT_VERSION,
                    merchant: merchant.get(),
                    token: *info.token.as_bytes(),
                    kind: kind_code(kind),
                    status: 0,
                    one_click: false,
                    created_at: now.unix_timestamp(),
                    card: None,
                };
                tx.put_raw(&id.key(), encode(&p))?;
                tx.put_raw(&payment_due(&id, now), Vec::new())?;
            }
            Ok::<_, VaultError>((info, payment))
        });
        let (info, payment_started) = written.inspect_err(|_| {
            if let Some(id) = &payment {
                cvvs.release(id);
            }
        })?;
        let payment = match (payment_started, cvv) {
            (Some(id), Some(cvv)) => {
                cvvs.fill(id, &cvv);
                Some(PaymentStarted {
                    id,
                    kind,
                    token: info.token,
                    customer: info.customer.clone(),
                    masked_pan: info.masked_pan.clone(),
                    brand: info.brand,
                    free_text: rec.free_text.clone(),
                    payment_solution_id: rec.payment_solution_id,
                    one_click_requested: false,
                    card: None,
                })
            }
            _ => None,
        };
        Ok(CardCapture {
            info,
            replaced: false,
            payment,
        })
    }

    /// Spends an `AUTH`/`PURCHASE`/`VERIFY` session on a stored card (the stored-card payment API). The card token
    /// must be a live token of the session's merchant (`NotFound` otherwise) bound to the customer
    /// given (`CustomerMismatch` otherwise); a failed binding check spends the session too, so it
    /// cannot be used to guess. The CVV is required unless the card is saved for one-click use.
    /// With `reveal`, the card (and this CVV) is returned now; otherwise the CVV is held in memory,
    /// sealed, until [`payment_card`](Self::payment_card) takes it or the session's expiry.
    /// Audited (`payment.use`).
    pub fn start_payment(
        &self,
        actor: &Actor,
        session: &SessionToken,
        origin: Option<&str>,
        request: PaymentRequest,
    ) -> Result<PaymentStarted, VaultError> {
        let key = self.inner.session_key(session);
        let rec = self.stored_session(&key)?;
        let merchant = rec.merchant()?;
        let actor = Actor {
            merchant: Some(merchant),
            ..actor.clone()
        };
        let token = rec.card_token.map(Token::from_bytes).or(request.card_token);
        let result = self.start_payment_unaudited(key, &rec, origin, request);
        self.audit(
            &actor,
            AuditAction::PaymentUse,
            token.as_ref(),
            crate::AuditOutcome::of(&result),
        )?;
        result
    }

    fn start_payment_unaudited(
        &self,
        key: Vec<u8>,
        rec: &SessionRec,
        origin: Option<&str>,
        request: PaymentRequest,
    ) -> Result<PaymentStarted, VaultError> {
        let kind = rec.kind()?;
        let merchant = rec.merchant()?;
        if request.merchant.is_some_and(|m| m != merchant) {
            return Err(VaultError::SessionInvalid);
        }
        if !kind.uses_stored_card() {
            return Err(VaultError::field(
                "token",
                "wrong_session",
                "this session captures card fields (number, expiryMonth, expiryYear)",
            ));
        }
        // The stored-card payment API: a value given with the session wins ("otherwise ignored"); a different value
        // in the payment request is refused rather than silently ignored, so the browser side
        // can never change what the merchant's server pinned.
        let token = pinned(
            rec.card_token.map(Token::from_bytes),
            request.card_token,
            conflict("specinCreditCardToken"),
        )?
        .ok_or_else(|| required("specinCreditCardToken"))?;
        let customer = pinned(
            rec.customer()?,
            request.customer,
            VaultError::CustomerMismatch,
        )?
        .ok_or_else(|| required("customerId"))?;
        pinned(
            rec.customer_ip.map(Ipv4Addr::from),
            request.customer_ip,
            conflict("customerIPAddress"),
        )?
        .ok_or_else(|| required("customerIPAddress"))?;
        let payment_solution_id = pinned(
            rec.payment_solution_id,
            request.payment_solution_id,
            conflict("paymentSolutionId"),
        )?
        .ok_or_else(|| required("paymentSolutionId"))?;
        let free_text = pinned(
            rec.free_text.clone(),
            request.free_text,
            conflict("freeText"),
        )?;
        if let Some(t) = &free_text
            && (t.chars().count() > crate::session::MAX_FREE_TEXT
                || t.chars().any(char::is_control))
        {
            return Err(VaultError::field(
                "freeText",
                "invalid_length",
                "freeText must be at most 200 characters without control characters",
            ));
        }
        let has_cvv = request.cvv.is_some();
        let now = self.inner.clock.now();
        let id = PaymentId::mint();
        // Held only when the caller cannot take the card now; reserved before the session is
        // spent, so a full store refuses the request while the session is still usable.
        let hold = has_cvv && !request.reveal;
        let cvvs = &self.inner.sessions.cvv;
        if hold {
            cvvs.reserve(id, merchant, rec.expires_at, now.unix_timestamp())?;
        }
        let core = self.inner.core.clone();
        let oc_key = self.record_mac_key(RecordKind::OneClick);
        let origin_owned = origin.map(str::to_owned);
        let one_click = request.one_click;
        let check_customer = customer.clone();
        // Binding failures are returned inside Ok so the session's spend commits with them.
        let outcome = self.inner.store.write(move |tx| {
            core.spend_session(tx, &key, Some(merchant), origin_owned.as_deref(), now)?;
            let lookup = core.lookup(&token);
            let live = tx
                .record(&lookup)?
                .filter(|r| is_live_for(r, merchant, &token, now));
            let Some(card_rec) = live else {
                return Ok(Err(VaultError::NotFound));
            };
            if card_rec.customer.as_deref() != Some(check_customer.as_str()) {
                return Ok(Err(VaultError::CustomerMismatch));
            }
            if !has_cvv && !one_click_mark(tx.get_raw(&one_click_key(&lookup))?, &oc_key, &lookup) {
                // A missing field is the caller's slip, not a guess: the session stays usable.
                return Err(required("specinCreditCardCVV"));
            }
            let p = PaymentRec {
                v: PAYMENT_VERSION,
                merchant: merchant.get(),
                token: *token.as_bytes(),
                kind: kind_code(kind),
                status: 0,
                one_click,
                created_at: now.unix_timestamp(),
                card: one_click.then_some(card_rec.dedupe.0),
            };
            tx.put_raw(&id.key(), encode(&p))?;
            tx.put_raw(&payment_due(&id, now), Vec::new())?;
            Ok::<_, VaultError>(Ok(()))
        });
        if !matches!(outcome, Ok(Ok(()))) && hold {
            cvvs.release(&id);
        }
        outcome??;
        let (stored, card) = self.inner.load(merchant, &token, now)?;
        let CardRecord {
            pan, expiry, name, ..
        } = card;
        let masked_pan = pan.masked();
        let brand = pan.brand();
        let card = if request.reveal {
            Some(PaymentCard {
                token,
                pan,
                expiry,
                name,
                cvv: request.cvv,
            })
        } else {
            if let Some(cvv) = &request.cvv {
                cvvs.fill(id, cvv);
            }
            None
        };
        Ok(PaymentStarted {
            id,
            kind,
            token,
            customer: customer_of(&stored)?,
            masked_pan,
            brand,
            free_text,
            payment_solution_id: Some(payment_solution_id),
            one_click_requested: one_click,
            card,
        })
    }

    /// The card of a pending payment of `merchant`, for its acquirer leg; the CVV given with the
    /// payment comes with it the first time only (it is then gone from memory). Callers must hold
    /// the `reveal` scope. Audited (`payment.card`).
    pub fn payment_card(
        &self,
        actor: &Actor,
        merchant: MerchantId,
        id: &PaymentId,
    ) -> Result<PaymentCard, VaultError> {
        let result = self.payment_card_unaudited(merchant, id);
        let token = result.as_ref().ok().map(|c| c.token);
        self.audit(
            actor,
            AuditAction::PaymentCard,
            token.as_ref(),
            crate::AuditOutcome::of(&result),
        )?;
        result
    }

    fn payment_card_unaudited(
        &self,
        merchant: MerchantId,
        id: &PaymentId,
    ) -> Result<PaymentCard, VaultError> {
        let rec = self.payment_rec(merchant, id)?;
        if status_of(rec.status) != PaymentStatus::Pending {
            return Err(VaultError::NotFound);
        }
        let token = Token::from_bytes(rec.token);
        let (_, card) = self.inner.load(merchant, &token, self.inner.clock.now())?;
        let cvv = self
            .inner
            .sessions
            .cvv
            .take(id, self.inner.clock.now().unix_timestamp());
        let CardRecord {
            pan, expiry, name, ..
        } = card;
        Ok(PaymentCard {
            token,
            pan,
            expiry,
            name,
            cvv,
        })
    }

    fn payment_rec(&self, merchant: MerchantId, id: &PaymentId) -> Result<PaymentRec, VaultError> {
        let bytes = self
            .inner
            .store
            .get_raw(&id.key())?
            .ok_or(VaultError::NotFound)?;
        let rec = decode_payment(&bytes)?;
        if rec.merchant != merchant.get() {
            return Err(VaultError::NotFound);
        }
        Ok(rec)
    }

    /// Records a pending payment's outcome (once; a second report is refused as `Invalid`
    /// `result`). A successful payment with `setOneClickValueSettingForCard` saves its card for
    /// one-click use; a failed one does not. Any CVV still held for it is dropped. Audited
    /// (`payment.result`).
    pub fn report_payment(
        &self,
        actor: &Actor,
        merchant: MerchantId,
        id: &PaymentId,
        succeeded: bool,
    ) -> Result<PaymentInfo, VaultError> {
        let result = self.report_payment_unaudited(merchant, id, succeeded);
        let token = result.as_ref().ok().map(|p| p.token);
        self.audit(
            actor,
            AuditAction::PaymentResult,
            token.as_ref(),
            crate::AuditOutcome::of(&result),
        )?;
        result
    }

    fn report_payment_unaudited(
        &self,
        merchant: MerchantId,
        id: &PaymentId,
        succeeded: bool,
    ) -> Result<PaymentInfo, VaultError> {
        let core = self.inner.core.clone();
        let oc_key = self.record_mac_key(RecordKind::OneClick);
        let id = *id;
        let now = self.inner.clock.now();
        if self.payment_rec(merchant, &id).is_ok() {
            // Before the outcome is committed: no hand-over racing this report can take the CVV
            // once the payment is no longer pending.
            drop(self.inner.sessions.cvv.take(&id, now.unix_timestamp()));
        }
        let info = self.inner.store.write(move |tx| {
            let bytes = tx.get_raw(&id.key())?.ok_or(VaultError::NotFound)?;
            let mut rec = decode_payment(&bytes)?;
            if rec.merchant != merchant.get() {
                return Err(VaultError::NotFound);
            }
            if status_of(rec.status) != PaymentStatus::Pending {
                return Err(VaultError::field(
                    "result",
                    "already_reported",
                    "this payment's outcome was already reported",
                ));
            }
            rec.status = if succeeded { 1 } else { 2 };
            tx.put_raw(&id.key(), encode(&rec))?;
            let token = Token::from_bytes(rec.token);
            let lookup = core.lookup(&token);
            // Only the card the payment was made with (and its CVV checked with): if another
            // card was put behind the token since, it is not saved for one-click use.
            let same_card = match rec.card {
                Some(card) => tx
                    .record(&lookup)?
                    .filter(|r| is_live_for(r, merchant, &token, now))
                    .is_some_and(|r| r.dedupe.0 == card),
                None => false,
            };
            let saved = succeeded && rec.one_click && same_card;
            if saved {
                let marker = OneClickRec {
                    v: MAC_VERSION,
                    merchant: merchant.get(),
                    saved_at: now.unix_timestamp(),
                };
                let key = one_click_key(&lookup);
                let sealed =
                    record_mac::seal_with(&oc_key, RecordKind::OneClick, &key, encode(&marker));
                tx.put_raw(&key, sealed)?;
            }
            Ok(PaymentInfo {
                id,
                merchant,
                token,
                kind: kind_of(rec.kind),
                status: status_of(rec.status),
                one_click_saved: saved,
                created_at: from_unix(rec.created_at)?,
            })
        })?;
        Ok(info)
    }

    /// How many payment CVVs are held in memory right now (sealed, waiting for their one use).
    pub fn held_cvvs(&self) -> usize {
        self.inner.sessions.cvv.len()
    }

    /// Whether a live token of `merchant` is saved for one-click use.
    pub fn is_one_click(&self, merchant: MerchantId, token: &Token) -> Result<bool, VaultError> {
        let lookup = self.inner.lookup(token);
        let live = self
            .inner
            .store
            .record(&lookup)?
            .is_some_and(|r| is_live_for(&r, merchant, token, self.inner.clock.now()));
        let key = self.record_mac_key(RecordKind::OneClick);
        Ok(live
            && one_click_mark(
                self.inner.store.get_raw(&one_click_key(&lookup))?,
                &key,
                &lookup,
            ))
    }

    /// Removes sessions an hour past their expiry, payment records older than [`PAYMENT_TTL`]
    /// and CVVs past their session's expiry, reading only what is due. Returns how many went.
    /// The daemon runs it every minute.
    pub fn sweep_sessions(&self) -> Result<u64, VaultError> {
        self.sweep_sessions_at(self.inner.clock.now())
    }

    pub(crate) fn sweep_sessions_at(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        // CVVs first: dropping them must not depend on the store answering.
        let mut removed = self.inner.sessions.cvv.purge(now.unix_timestamp()) as u64;
        removed += self.sweep_expired_sessions(now)?;
        removed += self.sweep_due(PAYMENT_DUE_PREFIX, now)?;
        Ok(removed)
    }

    /// Removes one-click marks whose token is gone (part of [`sweep_expired`](Self::sweep_expired),
    /// after the records it removed).
    pub(crate) fn sweep_one_click_orphans(&self) -> Result<u64, VaultError> {
        let mut due = Vec::new();
        for (k, _) in self.inner.store.scan_raw(&[ONE_CLICK_PREFIX], usize::MAX)? {
            let Some(id) = k.get(1..17).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                continue;
            };
            if self.inner.store.record(&LookupId(id))?.is_none() {
                due.push(k);
            }
        }
        let removed = due.len() as u64;
        for chunk in due.chunks(1000) {
            let chunk = chunk.to_vec();
            self.inner
                .store
                .write(move |tx| -> Result<(), VaultError> {
                    for k in &chunk {
                        tx.delete_raw_key(k)?;
                    }
                    Ok(())
                })?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_payments_decode_without_a_card_binding() {
        #[derive(Serialize)]
        struct V1 {
            v: u8,
            merchant: u64,
            token: [u8; 24],
            kind: u8,
            status: u8,
            one_click: bool,
            created_at: i64,
        }
        let bytes = postcard::to_allocvec(&V1 {
            v: 1,
            merchant: 890_490,
            token: [7; 24],
            kind: 3,
            status: 0,
            one_click: true,
            created_at: 1_800_000_000,
        })
        .expect("encode");
        let rec = decode_payment(&bytes).expect("a version-1 payment is read");
        assert_eq!((rec.merchant, rec.token, rec.kind), (890_490, [7; 24], 3));
        assert!(rec.one_click && rec.card.is_none());
        // Re-written in the current layout, it reads back the same.
        let again = decode_payment(&encode(&rec)).expect("version 2");
        assert_eq!(again.v, PAYMENT_VERSION);
        assert!(again.card.is_none());
        assert!(decode_payment(&[9, 1, 2]).is_err());
    }
}
