//! Tokenize, read and update bodies.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroize;

/// What a token stands for. Only cards today.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// A payment card.
    #[default]
    Card,
}

/// The card in a tokenize or update request. Holds the PAN: `Debug` hides it and it is wiped on
/// drop. A field it does not know is refused, not dropped.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    /// 12-19 digits, Luhn-valid.
    pub pan: String,
    /// `YYMM` (3 digits: a leading zero was dropped).
    pub expiration_date: String,
    /// Cardholder name, 1-64 printable characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardholder_name: Option<String>,
}

impl CardInput {
    /// A card without a cardholder name.
    pub fn new(pan: impl Into<String>, expiration_date: impl Into<String>) -> Self {
        Self {
            pan: pan.into(),
            expiration_date: expiration_date.into(),
            cardholder_name: None,
        }
    }
}

impl fmt::Debug for CardInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardInput")
            .field("pan", &"<redacted>")
            .field("expiration_date", &self.expiration_date)
            .finish_non_exhaustive()
    }
}

impl Drop for CardInput {
    fn drop(&mut self) {
        self.pan.zeroize();
        if let Some(name) = self.cardholder_name.as_mut() {
            name.zeroize();
        }
    }
}

/// `POST /v2/tokens` body (and one item of a batch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizeRequest {
    /// Always `card`.
    #[serde(rename = "type")]
    pub kind: TokenType,
    /// The card.
    pub card: CardInput,
    /// Up to 20 string pairs, sealed with the card. A repeated key is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::unique_keys::optional"
    )]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Bind the token to this customer (1-64 of `[A-Za-z0-9._:@-]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Forget the card at this instant; defaults to the first instant after the expiry month.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub keep_until: Option<OffsetDateTime>,
    /// Return the existing token when this merchant already holds the same card for the same
    /// customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<bool>,
}

impl TokenizeRequest {
    /// A plain card request with no options.
    pub fn card(card: CardInput) -> Self {
        Self {
            kind: TokenType::Card,
            card,
            ..Self::default()
        }
    }
}

/// `PUT /v2/tokens/{token}` body: the new card behind the same token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRequest {
    /// `card` if present.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TokenType>,
    /// The new card.
    pub card: CardInput,
    /// Replaces the metadata when present; kept otherwise. A repeated key is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::unique_keys::optional"
    )]
    pub metadata: Option<BTreeMap<String, String>>,
    /// New keep-until; recomputed from the new expiry when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub keep_until: Option<OffsetDateTime>,
}

/// `status` of a token response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenStatus {
    /// The card is stored.
    #[default]
    Approved,
}

/// The masked card in a token response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    /// When the token stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub keep_until: OffsetDateTime,
    /// First six, `****`, last four (first four and last four under 15 digits).
    pub masked_pan: String,
    /// `YYMM`.
    pub expiration_date: String,
    /// `visa`, `mastercard`, `amex`, `discover`, `jcb`, `unionpay`, `maestro`, `diners`, `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
}

/// `201` of `POST /v2/tokens`, `200` of `GET`/`PUT /v2/tokens/{token}`. Never holds the PAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// 48 lower-case hex characters.
    pub token: String,
    /// `approved`.
    pub status: TokenStatus,
    /// The masked card.
    pub card: CardView,
    /// Customer binding, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Merchant metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Keyed per-merchant fingerprint of the card number (64 hex), safe to store and compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// When the token was created.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub created_at: Option<OffsetDateTime>,
    /// When the card behind it last changed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub updated_at: Option<OffsetDateTime>,
    /// True when `dedupe` returned an existing token.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deduplicated: bool,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn token_api_example_request_round_trips() {
        let json = r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"description":"Card description - optional value"}}"#;
        let req: TokenizeRequest = serde_json::from_str(json).unwrap();
        assert_eq!(req.card.pan, "4242424242424242");
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
        assert!(!format!("{req:?}").contains("4242424242424242"));
    }

    #[test]
    fn token_api_example_response_parses() {
        let json = r#"{"token":"eefb5438ff1b7a1b14b20ab5b809c61b129966b60e502390","status":"approved","card":{"keep_until":"2096-03-01T00:00:00Z","masked_pan":"411111****1111","expiration_date":"9602"}}"#;
        let resp: TokenResponse = serde_json::from_str(json).unwrap();
        assert_eq!(resp.card.masked_pan, "411111****1111");
        assert_eq!(serde_json::to_string(&resp).unwrap(), json);
    }
}
