//! The payment service's gateway calls: hosted-fields sessions (the hosted-fields session API), and the acquirer
//! leg of a payment started through `POST /payments` (card hand-over, outcome).

use hyper::{Method, header::HeaderValue};
use vault_wire::{
    GatewayResult, HostedFieldsSessionRequest, HostedFieldsSessionResponse, PaymentCardResponse,
    PaymentResultRequest, PaymentResultResponse,
};

use crate::{Client, ClientError, client::segment, tokens::NoBody};

impl Client {
    /// `POST /processing-terminals/{terminal}/hosted-fields-sessions` (`sessions` scope). The
    /// `idempotency_key` (a UUID v4 the caller generates per logical request and reuses on
    /// retries) makes a retry return the same session.
    pub async fn hosted_fields_session(
        &self,
        terminal: &str,
        idempotency_key: &str,
        req: &HostedFieldsSessionRequest,
    ) -> Result<HostedFieldsSessionResponse, ClientError> {
        let key = HeaderValue::from_str(idempotency_key)
            .map_err(|_| ClientError::InvalidInput("idempotency key is not a valid header"))?;
        let path = format!(
            "/processing-terminals/{}/hosted-fields-sessions",
            segment(terminal)
        );
        let bytes = self
            .call_raw_with(
                Method::POST,
                &path,
                Some(req),
                Some(("idempotency-key", key)),
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::decode("hosted-fields session", &e))
    }

    /// `POST /payments/{txId}/card` (`reveal` scope): the card of a pending payment, with its CVV
    /// the first time only.
    pub async fn payment_card(&self, tx_id: &str) -> Result<PaymentCardResponse, ClientError> {
        let path = format!("/payments/{}/card", segment(tx_id));
        self.call::<NoBody, _>(Method::POST, &path, None, "payment card")
            .await
    }

    /// `POST /payments/{txId}/result`: what the acquirer answered (once per payment).
    pub async fn report_payment(
        &self,
        tx_id: &str,
        succeeded: bool,
    ) -> Result<PaymentResultResponse, ClientError> {
        let path = format!("/payments/{}/result", segment(tx_id));
        let body = PaymentResultRequest {
            result: if succeeded {
                GatewayResult::Success
            } else {
                GatewayResult::Failure
            },
        };
        self.call(Method::POST, &path, Some(&body), "payment result")
            .await
    }
}
