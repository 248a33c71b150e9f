//! What goes into and comes out of the Vault.

use std::fmt;

use time::OffsetDateTime;
use vault_core::{
    Brand, CardholderName, CustomerId, Expiry, Fingerprint, MaskedPan, MerchantId, Metadata, Pan,
    Token,
};

/// A card as a caller hands it in. Holds secrets: no `Clone`, `Debug` shows only the mask.
pub struct NewCard {
    /// The card number.
    pub pan: Pan,
    /// Expiry month.
    pub expiry: Expiry,
    /// Cardholder name, if known.
    pub name: Option<CardholderName>,
}

impl NewCard {
    /// A card without a cardholder name.
    pub fn new(pan: Pan, expiry: Expiry) -> Self {
        Self {
            pan,
            expiry,
            name: None,
        }
    }

    /// An explicit copy (for a write job that may run again; see `Vault::transact`).
    pub fn duplicate(&self) -> Self {
        Self {
            pan: self.pan.duplicate(),
            expiry: self.expiry,
            name: self.name.as_ref().map(CardholderName::duplicate),
        }
    }
}

impl fmt::Debug for NewCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCard")
            .field("pan", &self.pan)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// Options of [`Vault::tokenize`](crate::Vault::tokenize).
#[derive(Clone, Debug, Default)]
pub struct TokenizeOptions {
    /// Bind the card to this customer: reveals and the layers above must present the same id.
    pub customer: Option<CustomerId>,
    /// Forget the card at this instant. Defaults to the card's own keep-until (the first instant
    /// after its expiry month); a later value is refused.
    pub keep_until: Option<OffsetDateTime>,
    /// Merchant metadata, sealed with the card.
    pub metadata: Metadata,
    /// Return the existing live token when this merchant already holds the same card (by keyed
    /// fingerprint) for the same customer, tokenized with `dedupe` too; that token's card details
    /// are refreshed with this request's (expiry, name, metadata, keep-until). Tokens created
    /// without `dedupe` are not in the de-duplication index (it would cost every token a second
    /// write) and are never returned here.
    pub dedupe: bool,
}

/// One item of [`Vault::tokenize_batch`](crate::Vault::tokenize_batch).
#[derive(Debug)]
pub struct TokenizeRequest {
    /// The card.
    pub card: NewCard,
    /// Its options.
    pub options: TokenizeOptions,
}

/// Options of [`Vault::update`](crate::Vault::update).
#[derive(Clone, Debug, Default)]
pub struct UpdateOptions {
    /// Replace the metadata (`None` keeps the stored metadata).
    pub metadata: Option<Metadata>,
    /// New keep-until (`None`: recomputed from the new expiry).
    pub keep_until: Option<OffsetDateTime>,
}

/// What can be shown about a token: everything but the card number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token.
    pub token: Token,
    /// Its merchant.
    pub merchant: MerchantId,
    /// First six and last four digits (first four and last four under 15 digits).
    pub masked_pan: MaskedPan,
    /// Card brand.
    pub brand: Brand,
    /// Expiry month.
    pub expiry: Expiry,
    /// When the token stops working.
    pub keep_until: OffsetDateTime,
    /// Customer binding, if any.
    pub customer: Option<CustomerId>,
    /// Merchant metadata.
    pub metadata: Metadata,
    /// Keyed fingerprint of the card number for this merchant (safe to store and compare).
    pub fingerprint: Fingerprint,
    /// When the token was created.
    pub created_at: OffsetDateTime,
    /// When the card behind it last changed.
    pub updated_at: OffsetDateTime,
    /// True when `tokenize` with `dedupe` returned an existing token.
    pub deduplicated: bool,
}

/// A revealed card: the PAN in clear for the caller's acquirer leg. Secret: no `Clone`, `Debug`
/// shows only the mask; zeroized on drop (through its fields).
pub struct RevealedCard {
    /// The card number.
    pub pan: Pan,
    /// Expiry month.
    pub expiry: Expiry,
    /// Cardholder name, if stored.
    pub name: Option<CardholderName>,
    /// Customer binding, if any.
    pub customer: Option<CustomerId>,
}

impl fmt::Debug for RevealedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevealedCard")
            .field("pan", &self.pan)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// Progress of [`Vault::rewrap`](crate::Vault::rewrap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Records examined so far.
    pub scanned: u64,
    /// Records re-sealed under the current data key so far.
    pub rewrapped: u64,
    /// Records that failed their integrity check and were left as they are.
    pub failed: u64,
    /// Records in the vault when the pass started (an estimate: writes continue meanwhile).
    pub total: u64,
}
