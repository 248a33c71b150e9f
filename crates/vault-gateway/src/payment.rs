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
    Brand, CardholderName, CustomerId, Expiry, MaskedPan, MerchantId, Metadata, Pan, Token,
};
use vault_service::{
    Codec, KeySpace, RevealedCard, Table, TokenizeOptions, Txn, Update, UpdateOptions, Versioned,
};

use crate::{
    Actor, Cvv, Gateway, GatewayError, NewCard, SessionKind, SessionToken, TokenInfo, VaultError,
    cvv::StoredCvvKey,
    cvv_held,
    session::{SessionRec, from_unix, spend_session},
};

/// Payments: `Y` + payment id.
const PAYMENTS: Table<[u8; 16], PaymentRec> = Table::new(KeySpace::Payment);
/// The layout version of one-click marks (the vault's per-token mark; MAC'd by the vault).
const MARK_VERSION: u8 = 2;
/// The removal index of payment records (see `due_index`).
const PAYMENT_DUE_PREFIX: u8 = KeySpace::PaymentDue.byte();
/// How long a payment record is kept for its outcome to be reported.
pub const PAYMENT_TTL: Duration = Duration::hours(24);

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
        PAYMENTS.key(&self.0)
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
    /// of the card number and customer) when the payment started. The hand-over gives the card
    /// only if the token still holds it, and a one-click mark is saved only if it still does when
    /// the outcome is reported. `None` for version-1 records and for payments of earlier builds
    /// that did not ask for one-click (both handed over unchecked).
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

impl Versioned for OneClickRec {
    const VERSION: u8 = MARK_VERSION;
}

impl Versioned for PaymentRec {
    const VERSION: u8 = PAYMENT_VERSION;

    fn upgrade(version: u8, bytes: &[u8]) -> Option<Self> {
        if version != 1 {
            return None;
        }
        let old: PaymentRecV1 = postcard::from_bytes(bytes).ok()?;
        Some(PaymentRec {
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
}

#[cfg(test)]
fn decode_payment(bytes: &[u8]) -> Result<PaymentRec, GatewayError> {
    Ok(PAYMENTS.decode(bytes).map_err(VaultError::from)?)
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
    clash: GatewayError,
) -> Result<Option<T>, GatewayError> {
    match (session, request) {
        (Some(s), Some(r)) if s != r => Err(clash),
        (Some(s), _) => Ok(Some(s)),
        (None, r) => Ok(r),
    }
}

fn conflict(field: &'static str) -> GatewayError {
    GatewayError::field(
        field,
        "conflict",
        format!("{field} was given with the session; the payment request may not change it"),
    )
}

fn required(field: &'static str) -> GatewayError {
    GatewayError::field(field, "required", format!("{field} is required"))
}

impl Gateway {
    /// Spends a card-capture session (`TOKENIZE`, hosted `tokenization` or `payment`) on `card`:
    /// stores it for the session's merchant and customer (or replaces the card behind the session's
    /// `secureTokenId`), and for a hosted `payment` session starts a payment with it, holding `cvv`
    /// sealed for the acquirer leg (in memory, or in the store on a shared vault). `origin` is the
    /// browser's `Origin` header, if any. The card is validated before the session is spent, so
    /// a mistyped card leaves it usable. Audited (`card.capture`, and `payment.use` for hosted
    /// payments).
    pub fn capture_card(
        &self,
        session: &SessionToken,
        origin: Option<&str>,
        card: NewCard,
        cvv: Option<Cvv>,
    ) -> Result<CardCapture, GatewayError> {
        let key = self.session_id(session);
        let rec = self.stored_session(&key)?;
        rec.kind()?;
        let merchant = rec.merchant()?;
        let actor = Actor {
            merchant: Some(merchant),
            ..self.vault.actor().clone()
        };
        // The entries of a capture (`card.capture`, and `payment.use` for a hosted payment)
        // commit with it; a refused capture committed nothing, and its entry is written alone.
        let result = self.capture_in_one_commit(&actor, &key, &rec, origin, card, cvv);
        if result.is_err() {
            let outcome = GatewayError::outcome(&result);
            let vault = self.vault.as_actor(&actor);
            vault.audit(crate::audit::CARD_CAPTURE, None, outcome)?;
        }
        result
    }

    fn capture_in_one_commit(
        &self,
        actor: &Actor,
        key: &[u8; 16],
        rec: &SessionRec,
        origin: Option<&str>,
        card: NewCard,
        cvv: Option<Cvv>,
    ) -> Result<CardCapture, GatewayError> {
        let kind = rec.kind()?;
        let merchant = rec.merchant()?;
        if !kind.captures_card() {
            return Err(GatewayError::field(
                "token",
                "wrong_session",
                "this session pays with a stored card token (specinCreditCardToken), not card fields",
            ));
        }
        if kind == SessionKind::HostedPayment && cvv.is_none() {
            return Err(required("cvv"));
        }
        let now = self.vault.now();
        let key = *key;
        let origin = origin.map(str::to_owned);
        let actor = actor.clone();
        if let Some(secure) = rec.secure_token.map(Token::from_bytes) {
            // Replace the card behind the saved token, keeping its token and customer binding.
            let info = self.vault.transact(move |txn| -> Result<_, GatewayError> {
                spend_session(txn, &key, Some(merchant), origin.as_deref(), now)?;
                let info = txn.commit_update(
                    merchant,
                    &secure,
                    card.duplicate(),
                    UpdateOptions::default(),
                )?;
                let ok = vault_service::AuditOutcome::Ok;
                txn.audit(
                    &actor,
                    crate::audit::CARD_CAPTURE,
                    Some(&info.token),
                    None,
                    ok,
                )?;
                Ok(info)
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
        let prepared = self.vault.prepare_tokenize(merchant, card, options)?;
        let payment = (kind == SessionKind::HostedPayment).then(PaymentId::mint);
        let cvvs = &self.state.cvv;
        // A shared vault holds the CVV in the store, written with the payment; a directory
        // vault in memory, in a place reserved before the session is spent.
        let shared = self.vault.shared();
        let held = match (payment, &cvv) {
            (Some(id), Some(cvv)) if shared => Some(cvv_held::SealedHeld::seal(
                self.stored_cvv_key(),
                id.0,
                merchant,
                rec.expires_at,
                cvv,
            )),
            _ => None,
        };
        if let Some(id) = payment
            && !shared
        {
            cvvs.reserve(id, merchant, rec.expires_at, now.unix_timestamp())?;
        }
        let written = self.vault.transact(move |txn| -> Result<_, GatewayError> {
            spend_session(txn, &key, Some(merchant), origin.as_deref(), now)?;
            let info = txn.commit_new(&prepared)?;
            let token = Some(&info.token);
            let ok = vault_service::AuditOutcome::Ok;
            txn.audit(&actor, crate::audit::CARD_CAPTURE, token, None, ok.clone())?;
            if let Some(id) = payment {
                txn.audit(&actor, crate::audit::PAYMENT_USE, token, None, ok)?;
                // The card captured, so that the hand-over gives this card or none (a card put
                // behind the token before then is refused as `card_changed`).
                // Just written in this job: a record that cannot be read back is a fault, and
                // a payment without its card would be handed over unchecked.
                let card = txn
                    .live_token(merchant, &info.token)?
                    .map(|live| live.card_digest)
                    .ok_or(VaultError::Integrity)?;
                let p = PaymentRec {
                    v: PAYMENT_VERSION,
                    merchant: merchant.get(),
                    token: *info.token.as_bytes(),
                    kind: kind_code(kind),
                    status: 0,
                    one_click: false,
                    created_at: now.unix_timestamp(),
                    card: Some(card),
                };
                txn.put_in(&PAYMENTS, &id.0, &p)?;
                txn.put(&payment_due(&id, now), Vec::new())?;
                if let Some(held) = &held {
                    cvv_held::put(txn, held)?;
                }
            }
            Ok((info, payment))
        });
        let (info, payment_started) = written.inspect_err(|_| {
            if let Some(id) = &payment
                && !shared
            {
                cvvs.release(id);
            }
        })?;
        let payment = match (payment_started, cvv) {
            (Some(id), Some(cvv)) => {
                if !shared {
                    cvvs.fill(id, &cvv);
                }
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
    /// With `reveal`, the card (and this CVV) is returned now; otherwise the CVV is held, sealed
    /// (in memory, or in the store on a shared vault, where any daemon can hand it over), until
    /// [`payment_card`](Self::payment_card) takes it or the session's expiry.
    /// Audited (`payment.use`).
    pub fn start_payment(
        &self,
        session: &SessionToken,
        origin: Option<&str>,
        request: PaymentRequest,
    ) -> Result<PaymentStarted, GatewayError> {
        let key = self.session_id(session);
        let rec = self.stored_session(&key)?;
        let merchant = rec.merchant()?;
        let actor = Actor {
            merchant: Some(merchant),
            ..self.vault.actor().clone()
        };
        let token = rec.card_token.map(Token::from_bytes).or(request.card_token);
        // Once the session is spent, the entry commits with the spend (and the payment record);
        // a refusal before that committed nothing, and its entry is written alone.
        let result = match self.start_payment_in_one_commit(&actor, key, &rec, origin, request) {
            Ok(audited) => return audited,
            Err(e) => Err(e),
        };
        let outcome = GatewayError::outcome(&result);
        let vault = self.vault.as_actor(&actor);
        vault.audit(crate::audit::PAYMENT_USE, token.as_ref(), outcome)?;
        result
    }

    /// `Err`: refused before anything was staged (not audited yet); `Ok`: the outcome, whose
    /// entry committed with the session's spend.
    fn start_payment_in_one_commit(
        &self,
        actor: &Actor,
        key: [u8; 16],
        rec: &SessionRec,
        origin: Option<&str>,
        request: PaymentRequest,
    ) -> Result<Result<PaymentStarted, GatewayError>, GatewayError> {
        let kind = rec.kind()?;
        let merchant = rec.merchant()?;
        if request.merchant.is_some_and(|m| m != merchant) {
            return Err(GatewayError::SessionInvalid);
        }
        if !kind.uses_stored_card() {
            return Err(GatewayError::field(
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
            VaultError::CustomerMismatch.into(),
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
            return Err(GatewayError::field(
                "freeText",
                "invalid_length",
                "freeText must be at most 200 characters without control characters",
            ));
        }
        let has_cvv = request.cvv.is_some();
        let now = self.vault.now();
        let id = PaymentId::mint();
        // Held only when the caller cannot take the card now; reserved before the session is
        // spent, so a full store refuses the request while the session is still usable.
        let hold = has_cvv && !request.reveal;
        let cvvs = &self.state.cvv;
        // A shared vault holds the CVV in the store, written with the payment (any daemon may
        // hand it over); a directory vault in memory.
        let shared = self.vault.shared();
        let held = match &request.cvv {
            Some(cvv) if hold && shared => Some(cvv_held::SealedHeld::seal(
                self.stored_cvv_key(),
                id.0,
                merchant,
                rec.expires_at,
                cvv,
            )),
            _ => None,
        };
        let hold_in_memory = hold && !shared;
        if hold_in_memory {
            cvvs.reserve(id, merchant, rec.expires_at, now.unix_timestamp())?;
        }
        let origin_owned = origin.map(str::to_owned);
        let one_click = request.one_click;
        let check_customer = customer.clone();
        let actor = actor.clone();
        // Binding failures are returned inside Ok so the session's spend commits with them.
        let outcome = self.vault.transact(move |txn| -> Result<_, GatewayError> {
            spend_session(txn, &key, Some(merchant), origin_owned.as_deref(), now)?;
            let bound = Self::bind_card(txn, merchant, &token, &check_customer, has_cvv)?;
            let opened = bound.and_then(|card_digest| {
                let p = PaymentRec {
                    v: PAYMENT_VERSION,
                    merchant: merchant.get(),
                    token: *token.as_bytes(),
                    kind: kind_code(kind),
                    status: 0,
                    one_click,
                    created_at: now.unix_timestamp(),
                    card: Some(card_digest),
                };
                txn.put_in(&PAYMENTS, &id.0, &p)?;
                txn.put(&payment_due(&id, now), Vec::new())?;
                if let Some(held) = &held {
                    cvv_held::put(txn, held)?;
                }
                Ok(txn.open_card(merchant, &token)?)
            });
            let outcome = GatewayError::outcome(&opened);
            txn.audit(
                &actor,
                crate::audit::PAYMENT_USE,
                Some(&token),
                None,
                outcome,
            )?;
            Ok(opened)
        });
        if !matches!(outcome, Ok(Ok(_))) && hold_in_memory {
            cvvs.release(&id);
        }
        let card = match outcome? {
            Ok(card) => card,
            Err(e) => return Ok(Err(e)),
        };
        let RevealedCard {
            pan,
            expiry,
            name,
            customer: bound_customer,
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
            if let Some(cvv) = &request.cvv
                && hold_in_memory
            {
                cvvs.fill(id, cvv);
            }
            None
        };
        Ok(Ok(PaymentStarted {
            id,
            kind,
            token,
            customer: bound_customer,
            masked_pan,
            brand,
            free_text,
            payment_solution_id: Some(payment_solution_id),
            one_click_requested: one_click,
            card,
        }))
    }

    /// Checks the card a payment is to use, inside the spend's job: `Ok(Err)` for a binding failure
    /// (the spend commits with it, so a session cannot be used to guess), `Err` for a missing CVV
    /// (the caller's slip, not a guess: nothing commits and the session stays usable). `Ok(Ok)`
    /// names the card.
    #[allow(clippy::type_complexity)]
    fn bind_card(
        txn: &mut Txn<'_, '_>,
        merchant: MerchantId,
        token: &Token,
        customer: &CustomerId,
        has_cvv: bool,
    ) -> Result<Result<[u8; 16], GatewayError>, GatewayError> {
        let Some(live) = txn.live_token(merchant, token)? else {
            return Ok(Err(VaultError::NotFound.into()));
        };
        if live.customer.as_ref() != Some(customer) {
            return Ok(Err(VaultError::CustomerMismatch.into()));
        }
        // A mark whose MAC does not verify counts as absent: the payment needs its CVV.
        if !has_cvv && txn.token_mark(token)?.is_none() {
            return Err(required("specinCreditCardCVV"));
        }
        Ok(Ok(live.card_digest))
    }

    /// The card of a pending payment of `merchant`, for its acquirer leg; the CVV given with the
    /// payment comes with it the first time only (it is then gone, on every daemon). Callers
    /// must hold the `reveal` scope. Audited (`payment.card`).
    pub fn payment_card(
        &self,
        merchant: MerchantId,
        id: &PaymentId,
    ) -> Result<PaymentCard, GatewayError> {
        // A read: the entry is its only commit, and the card (and CVV) is handed over only once
        // the entry is durable.
        let result = self.read_payment_card(merchant, id);
        if result.is_err() {
            let outcome = GatewayError::outcome(&result);
            self.vault
                .audit(crate::audit::PAYMENT_CARD, None, outcome)?;
        }
        let (token, card, taken) = result?;
        // A shared vault's CVV was taken out of the store in the hand-over's commit; a directory
        // vault's is taken out of memory now.
        let cvv = match taken {
            Some(taken) => taken.open(self.stored_cvv_key()),
            None if self.vault.shared() => None,
            None => self.state.cvv.take(id, self.vault.now().unix_timestamp()),
        };
        let RevealedCard {
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

    /// The card of a pending payment, read in a job that also appends its `payment.card` entry
    /// and, on a shared vault, takes the payment's CVV out of the store (still sealed).
    #[allow(clippy::type_complexity)]
    fn read_payment_card(
        &self,
        merchant: MerchantId,
        id: &PaymentId,
    ) -> Result<(Token, RevealedCard, Option<cvv_held::Taken>), GatewayError> {
        let rec = self.payment_rec(merchant, id)?;
        if status_of(rec.status) != PaymentStatus::Pending {
            return Err(VaultError::NotFound.into());
        }
        let token = Token::from_bytes(rec.token);
        let actor = self.vault.actor().clone();
        let shared = self.vault.shared();
        let id = *id;
        let bound = rec.card;
        self.vault.transact(move |txn| -> Result<_, GatewayError> {
            // Only the card the payment was made with (and, for a one-click payment, allowed
            // without a CVV for): a card put behind the token since (a PUT, a hosted update) is
            // refused, and audited as such by `payment_card`. Payments made before the card was
            // recorded with every payment name none (version 1, and those of earlier builds
            // without one-click): they are handed over unchecked, as before.
            let same_card = match (bound, txn.live_token(merchant, &token)?) {
                // Deleted (or expired) since: not found, as before the check.
                (_, None) => return Err(VaultError::NotFound.into()),
                (Some(card), Some(live)) => live.card_digest == card,
                (None, Some(_)) => true,
            };
            if !same_card {
                return Err(card_changed());
            }
            let card = txn.open_card(merchant, &token)?;
            // The outcome report deletes the CVV in its own commit: a report that got in first
            // leaves none to take here.
            let taken = if shared {
                cvv_held::take(txn, &id.0, merchant, txn.now())?
            } else {
                None
            };
            let ok = vault_service::AuditOutcome::Ok;
            txn.audit(&actor, crate::audit::PAYMENT_CARD, Some(&token), None, ok)?;
            Ok((token, card, taken))
        })
    }

    fn payment_rec(
        &self,
        merchant: MerchantId,
        id: &PaymentId,
    ) -> Result<PaymentRec, GatewayError> {
        let rec = self
            .vault
            .read_in(&PAYMENTS, &id.0)?
            .ok_or(VaultError::NotFound)?;
        if rec.merchant != merchant.get() {
            return Err(VaultError::NotFound.into());
        }
        Ok(rec)
    }

    /// Records a pending payment's outcome (once; a second report is refused as `Invalid`
    /// `result`). A successful payment with `setOneClickValueSettingForCard` saves its card for
    /// one-click use; a failed one does not. Any CVV still held for it is dropped. Audited
    /// (`payment.result`).
    pub fn report_payment(
        &self,
        merchant: MerchantId,
        id: &PaymentId,
        succeeded: bool,
    ) -> Result<PaymentInfo, GatewayError> {
        // The entry commits with the outcome; a refused report committed nothing, and its entry
        // is written alone.
        let result = self.report_payment_in_one_commit(self.vault.actor(), merchant, id, succeeded);
        if result.is_err() {
            let outcome = GatewayError::outcome(&result);
            self.vault
                .audit(crate::audit::PAYMENT_RESULT, None, outcome)?;
        }
        result
    }

    fn report_payment_in_one_commit(
        &self,
        actor: &Actor,
        merchant: MerchantId,
        id: &PaymentId,
        succeeded: bool,
    ) -> Result<PaymentInfo, GatewayError> {
        let actor = actor.clone();
        let id = *id;
        let now = self.vault.now();
        let shared = self.vault.shared();
        if !shared && self.payment_rec(merchant, &id).is_ok() {
            // Before the outcome is committed: no hand-over racing this report can take the CVV
            // once the payment is no longer pending.
            drop(self.state.cvv.take(&id, now.unix_timestamp()));
        }
        let info = self.vault.transact(move |txn| -> Result<_, GatewayError> {
            // Conditional on the record read: of two reports racing on two daemons of a shared
            // vault, one commits and the other runs again and finds the outcome reported.
            let rec = txn.update(&id.key(), |read| {
                let read = read.ok_or(VaultError::NotFound)?;
                let mut rec = PAYMENTS.decode(read).map_err(VaultError::from)?;
                if rec.merchant != merchant.get() {
                    return Err(VaultError::NotFound.into());
                }
                if status_of(rec.status) != PaymentStatus::Pending {
                    return Err(GatewayError::field(
                        "result",
                        "already_reported",
                        "this payment's outcome was already reported",
                    ));
                }
                rec.status = if succeeded { 1 } else { 2 };
                Ok(Update::Put(PAYMENTS.encode(&rec), rec))
            })?;
            if shared {
                // In the outcome's commit: a hand-over committing after it finds no CVV.
                cvv_held::discard(txn, &id.0)?;
            }
            let token = Token::from_bytes(rec.token);
            // Only the card the payment was made with (and its CVV checked with): if another
            // card was put behind the token since, it is not saved for one-click use.
            let same_card = match rec.card {
                Some(card) => txn
                    .live_token(merchant, &token)?
                    .is_some_and(|t| t.card_digest == card),
                None => false,
            };
            let saved = succeeded && rec.one_click && same_card;
            if saved {
                let marker = OneClickRec {
                    v: MARK_VERSION,
                    merchant: merchant.get(),
                    saved_at: now.unix_timestamp(),
                };
                txn.put_token_mark(&token, marker.encode())?;
            }
            let ok = vault_service::AuditOutcome::Ok;
            txn.audit(&actor, crate::audit::PAYMENT_RESULT, Some(&token), None, ok)?;
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

    /// How many payment CVVs are held right now (sealed, waiting for their one use): in this
    /// process's memory, or on a vault shared by several daemons, in the store (every daemon's;
    /// expired ones not swept yet included; 0 if the store cannot be read).
    pub fn held_cvvs(&self) -> usize {
        if self.vault.shared() {
            return cvv_held::count(&self.vault).unwrap_or(0);
        }
        self.state.cvv.len()
    }

    /// The key held CVVs are sealed under in the store (a shared vault), derived once.
    fn stored_cvv_key(&self) -> &StoredCvvKey {
        self.state
            .cvv
            .stored_key
            .get_or_init(|| StoredCvvKey::new(self.vault.purpose_key(StoredCvvKey::PURPOSE)))
    }

    /// Whether a live token of `merchant` is saved for one-click use.
    pub fn is_one_click(&self, merchant: MerchantId, token: &Token) -> Result<bool, GatewayError> {
        Ok(self.vault.token_mark(merchant, token)?.is_some())
    }

    /// Removes sessions an hour past their expiry, payment records older than [`PAYMENT_TTL`]
    /// and CVVs past their session's expiry, reading only what is due. Returns how many went.
    /// The daemon runs it every minute.
    pub fn sweep_sessions(&self) -> Result<u64, VaultError> {
        self.sweep_sessions_at(self.vault.now())
    }

    pub(crate) fn sweep_sessions_at(&self, now: OffsetDateTime) -> Result<u64, VaultError> {
        // CVVs first: dropping those in memory must not depend on the store answering.
        let mut removed = self.state.cvv.purge(now.unix_timestamp()) as u64;
        // A shared vault's held CVVs and failed-login records (a directory vault has none).
        removed += cvv_held::sweep(&self.vault, now)?;
        removed += self.sweep_login_failures(now)?;
        removed += self.sweep_expired_sessions(now)?;
        removed += crate::due_index::sweep_due(&self.vault, PAYMENT_DUE_PREFIX, now)?;
        Ok(removed)
    }
}

/// The hand-over of a payment whose token now holds another card than the one it was made with.
fn card_changed() -> GatewayError {
    GatewayError::field(
        "token",
        "card_changed",
        "the token holds another card than the one this payment was made with; start a new payment",
    )
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
        let again = decode_payment(&PAYMENTS.encode(&rec)).expect("version 2");
        assert_eq!(again.v, PAYMENT_VERSION);
        assert!(again.card.is_none());
        assert!(decode_payment(&[9, 1, 2]).is_err());
    }
}
