//! Token calls: tokenize, batch, get, update, delete, reveal; and health.

use hyper::Method;
use vault_wire::{
    BatchRequest, BatchResponse, HealthResponse, RevealRequest, RevealResponse, TokenResponse,
    TokenizeRequest, UpdateRequest,
};

use crate::{Client, ClientError, client::segment};

/// An empty JSON body, for calls that take none.
pub(crate) type NoBody = ();

impl Client {
    /// `GET /health`: the daemon is up (needs no API key).
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.call::<NoBody, _>(Method::GET, "/health", None, "health")
            .await
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let bytes = self
            .call_raw::<NoBody>(Method::GET, "/metrics", None)
            .await?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ClientError::Decode {
            what: "metrics",
            line: 0,
            column: 0,
        })
    }

    /// `POST /v2/tokens`: stores a card, returns its token (durable when this returns).
    pub async fn tokenize(&self, req: &TokenizeRequest) -> Result<TokenResponse, ClientError> {
        self.call(Method::POST, "/v2/tokens", Some(req), "token")
            .await
    }

    /// `POST /v2/tokens/batch`: up to 1000 cards in one durable commit; one result per item.
    pub async fn tokenize_batch(&self, req: &BatchRequest) -> Result<BatchResponse, ClientError> {
        self.call(Method::POST, "/v2/tokens/batch", Some(req), "batch")
            .await
    }

    /// `GET /v2/tokens/{token}`: the masked view.
    pub async fn get(&self, token: &str) -> Result<TokenResponse, ClientError> {
        let path = format!("/v2/tokens/{}", segment(token));
        self.call::<NoBody, _>(Method::GET, &path, None, "token")
            .await
    }

    /// `PUT /v2/tokens/{token}`: replaces the card behind the token.
    pub async fn update(
        &self,
        token: &str,
        req: &UpdateRequest,
    ) -> Result<TokenResponse, ClientError> {
        let path = format!("/v2/tokens/{}", segment(token));
        self.call(Method::PUT, &path, Some(req), "token").await
    }

    /// `DELETE /v2/tokens/{token}`: the card is gone for good.
    pub async fn delete(&self, token: &str) -> Result<(), ClientError> {
        let path = format!("/v2/tokens/{}", segment(token));
        self.call_raw::<NoBody>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `POST /v2/tokens/{token}/reveal`: the card in clear (needs the `reveal` scope).
    pub async fn reveal(
        &self,
        token: &str,
        req: &RevealRequest,
    ) -> Result<RevealResponse, ClientError> {
        let path = format!("/v2/tokens/{}/reveal", segment(token));
        self.call(Method::POST, &path, Some(req), "reveal").await
    }
}
