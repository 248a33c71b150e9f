//! The gateway shapes of the gateway API (`POST /token`, `POST /payments`) and of the hosted-fields session API
//! (hosted-fields sessions, with RFC 9457 problem details for errors).

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// `"success"` or `"failure"`, as the seeds spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayResult {
    /// The request was processed.
    Success,
    /// It was not; `errors` says why.
    Failure,
}

/// One refused field of a gateway request (the gateway API error shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayError {
    /// What is wrong: `This field is required in [REQUEST]` (absent), `field.nonempty` (present
    /// but empty), `field.invalid`, `field.length`, `timestamp.stale`, `credentials.invalid`, ...
    pub message_code: String,
    /// The request field it is about.
    pub field_name: String,
}

/// `POST /token` success (the session-token API): the session token, and the customer it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTokenResponse {
    /// Always `success`.
    pub result: GatewayResult,
    /// A fresh UUID per response.
    pub result_id: String,
    /// The merchant, as a string of digits.
    pub merchant_id: String,
    /// Always `{}`.
    pub additional_details: BTreeMap<String, String>,
    /// Milliseconds spent on the request.
    pub processing_time: u64,
    /// The session token (UUIDv4), valid for 10 minutes, single use.
    pub token: String,
    /// The customer the session (and any card captured with it) is bound to: the one given, or
    /// a generated one for `TOKENIZE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// Any gateway failure (the gateway API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayFailure {
    /// Always `failure`.
    pub result: GatewayResult,
    /// A fresh UUID per response.
    pub result_id: String,
    /// Always `{}`.
    pub additional_details: BTreeMap<String, String>,
    /// Every refused field.
    pub errors: Vec<GatewayError>,
    /// Milliseconds spent on the request.
    pub processing_time: u64,
}

/// A card in clear for the acquirer leg (`POST /payments` with the `reveal` scope, and
/// `POST /payments/{txId}/card`). `Debug` shows nothing secret; wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCardView {
    /// The card number.
    pub number: String,
    /// `MM`.
    pub expiry_month: String,
    /// `YYYY`.
    pub expiry_year: String,
    /// Cardholder name, if stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_on_card: Option<String>,
    /// The CVV given with the payment: present the first time the card is handed over only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvv: Option<String>,
}

impl fmt::Debug for PaymentCardView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentCardView").finish_non_exhaustive()
    }
}

impl Drop for PaymentCardView {
    fn drop(&mut self) {
        self.number.zeroize();
        self.cvv.zeroize();
        self.name_on_card.zeroize();
    }
}

/// `POST /payments` success: a captured card (TOKENIZE / hosted sessions) or a started payment
/// (AUTH / PURCHASE / VERIFY).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    /// Always `success`.
    pub result: GatewayResult,
    /// A fresh UUID per response.
    pub result_id: String,
    /// The merchant, as a string of digits.
    pub merchant_id: String,
    /// `TOKENIZE`, `AUTH`, `PURCHASE`, `VERIFY`, or the hosted scenario.
    pub action: String,
    /// The card token (48 hex characters).
    pub card_token: String,
    /// The customer the card is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// First six, `****`, last four.
    pub masked_pan: String,
    /// Card brand.
    pub brand: String,
    /// The payment id, for payments (`AUTH`/`PURCHASE`/`VERIFY`, hosted `payment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<String>,
    /// `PENDING` for a payment waiting for its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Echoed `paymentSolutionId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_solution_id: Option<u64>,
    /// Echoed `freeText`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_text: Option<String>,
    /// True when the card will be saved for one-click use if the payment is reported successful.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_click_requested: bool,
    /// True when an existing token's card was replaced (`secureTokenId` sessions).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
    /// The card, for a caller holding the `reveal` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<PaymentCardView>,
    /// Always `{}`.
    pub additional_details: BTreeMap<String, String>,
    /// Milliseconds spent on the request.
    pub processing_time: u64,
}

/// `POST /payments/{txId}/card` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCardResponse {
    /// The payment.
    pub tx_id: String,
    /// Its card token.
    pub card_token: String,
    /// The card (with the CVV the first time only).
    pub card: PaymentCardView,
}

/// `POST /payments/{txId}/result` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentResultRequest {
    /// `success` or `failure`: what the acquirer answered.
    pub result: GatewayResult,
}

/// `POST /payments/{txId}/result` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResultResponse {
    /// The payment.
    pub tx_id: String,
    /// `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// Its card token.
    pub card_token: String,
    /// Whether the card is now saved for one-click use.
    pub one_click_saved: bool,
}

/// The hosted-fields session API request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostedFieldsSessionRequest {
    /// Hosted Fields library version, `^\d{1,2}\.\d{1,2}\.\d{1,2}(?:-beta)?\.\d+$`.
    pub lib_version: String,
    /// `payment` or `tokenization`.
    pub scenario: String,
    /// A saved card's token to update (tokenization only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_token_id: Option<String>,
    /// Extension: the browser origin allowed to use the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origin_url: Option<String>,
}

/// The hosted-fields session API 201 body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostedFieldsSessionResponse {
    /// The terminal.
    pub processing_terminal_id: String,
    /// The session token for the Hosted Fields config.
    pub token: String,
    /// When it expires (ISO 8601, 10 minutes after creation).
    pub expires_at: String,
}

/// One parameter named by a problem-details error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemError {
    /// The parameter (`processingTerminalId`, `Idempotency-Key`, `libVersion`, ...).
    pub parameter: String,
    /// What is wrong with it.
    pub detail: String,
    /// A stable machine-readable code.
    pub message: String,
}

/// An RFC 9457 problem-details body (`application/problem+json`), as the hosted-fields API uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `about:blank`: the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// A human-readable summary.
    pub detail: String,
    /// The parameters at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemError>,
}
