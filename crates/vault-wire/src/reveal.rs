//! `POST /v2/tokens/{token}/reveal`.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Reveal body: the customer the token must be bound to (omit for an unbound token). An empty
/// body is the same as `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealRequest {
    /// Must equal the token's customer binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// The card in clear. `Debug` shows only the mask; the PAN is wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealResponse {
    /// The token.
    pub token: String,
    /// The card number.
    pub pan: String,
    /// `YYMM`.
    pub expiration_date: String,
    /// Cardholder name, if stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardholder_name: Option<String>,
    /// First six, `****`, last four.
    pub masked_pan: String,
    /// Customer binding, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

impl fmt::Debug for RevealResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevealResponse")
            .field("token", &self.token)
            .field("masked_pan", &self.masked_pan)
            .field("expiration_date", &self.expiration_date)
            .finish_non_exhaustive()
    }
}

impl Drop for RevealResponse {
    fn drop(&mut self) {
        self.pan.zeroize();
        if let Some(name) = self.cardholder_name.as_mut() {
            name.zeroize();
        }
    }
}
