//! `POST /v2/tokens/batch`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{CardView, FieldErrorBody, TokenResponse, TokenStatus, tokens::is_false};

/// `{"items":[TokenizeRequest, ...]}`, 1-1000 items, stored in one durable commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The cards.
    pub items: Vec<crate::TokenizeRequest>,
}

/// `{"results":[...]}`: one result per item, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// One per request item.
    pub results: Vec<BatchItemResult>,
}

/// One item's outcome: `{"status":201, <token fields>}` or `{"status":400,"errors":[...]}`.
///
/// The token fields are those of [`TokenResponse`] except its `status` (the HTTP-like number
/// takes that name here). Field names inside `errors` are relative to the item (`card.pan`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemResult {
    /// 201 (stored) or 400 (refused).
    pub status: u16,
    /// The token (201 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The masked card (201 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardView>,
    /// Customer binding, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Merchant metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Keyed fingerprint (201 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Creation time (201 only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub created_at: Option<OffsetDateTime>,
    /// Last change (201 only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub updated_at: Option<OffsetDateTime>,
    /// True when `dedupe` returned an existing token.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deduplicated: bool,
    /// Why the item was refused (400 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorBody>>,
}

impl BatchItemResult {
    /// A stored item.
    pub fn stored(t: TokenResponse) -> Self {
        Self {
            status: 201,
            token: Some(t.token),
            card: Some(t.card),
            customer_id: t.customer_id,
            metadata: t.metadata,
            fingerprint: t.fingerprint,
            created_at: t.created_at,
            updated_at: t.updated_at,
            deduplicated: t.deduplicated,
            errors: None,
        }
    }

    /// A refused item.
    pub fn refused(errors: Vec<FieldErrorBody>) -> Self {
        Self {
            status: 400,
            errors: Some(errors),
            ..Self::default()
        }
    }

    /// The token response of a stored item, or the errors of a refused one.
    pub fn into_result(self) -> Result<TokenResponse, Vec<FieldErrorBody>> {
        match (self.token, self.card) {
            (Some(token), Some(card)) if self.status == 201 => Ok(TokenResponse {
                token,
                status: TokenStatus::Approved,
                card,
                customer_id: self.customer_id,
                metadata: self.metadata,
                fingerprint: self.fingerprint,
                created_at: self.created_at,
                updated_at: self.updated_at,
                deduplicated: self.deduplicated,
            }),
            _ => Err(self.errors.unwrap_or_default()),
        }
    }
}
