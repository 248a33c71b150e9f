//! Admin calls (`/admin/...`, the key needs the `admin` scope).

use hyper::Method;
use vault_wire::{
    ApiKeyCreateRequest, ApiKeyCreated, ApiKeyList, BackupRequest, BackupResponse,
    KeyStatusResponse, MerchantAddRequest, MerchantList, MerchantPasswordRequest, MerchantResponse,
    RetireResponse, RewrapResponse, RotateResponse, StatsResponse, SweepResponse,
    TerminalAddRequest, TerminalList, TerminalResponse,
};

use crate::{Client, ClientError, client::segment, tokens::NoBody};

/// `{}`: the body of admin POSTs that take no parameters.
#[derive(serde::Serialize)]
struct Empty {}

const EMPTY: &Empty = &Empty {};

fn by_merchant(base: &str, merchant: Option<&str>) -> String {
    match merchant {
        Some(m) => format!("{base}?merchant_id={}", segment(m)),
        None => base.to_owned(),
    }
}

impl Client {
    /// `POST /admin/merchants`.
    pub async fn merchant_add(
        &self,
        req: &MerchantAddRequest,
    ) -> Result<MerchantResponse, ClientError> {
        self.call(Method::POST, "/admin/merchants", Some(req), "merchant")
            .await
    }

    /// `GET /admin/merchants`.
    pub async fn merchants(&self) -> Result<MerchantList, ClientError> {
        self.call::<NoBody, _>(Method::GET, "/admin/merchants", None, "merchants")
            .await
    }

    /// `POST /admin/merchants/{id}/password`: sets or replaces the merchant's gateway password.
    pub async fn merchant_password(
        &self,
        merchant_id: &str,
        req: &MerchantPasswordRequest,
    ) -> Result<(), ClientError> {
        let path = format!("/admin/merchants/{}/password", segment(merchant_id));
        self.call_raw(Method::POST, &path, Some(req)).await?;
        Ok(())
    }

    /// `POST /admin/merchants/{id}/unlock`: clears the merchant's counted login failures.
    pub async fn merchant_unlock(&self, merchant_id: &str) -> Result<(), ClientError> {
        let path = format!("/admin/merchants/{}/unlock", segment(merchant_id));
        self.call_raw(Method::POST, &path, Some(EMPTY)).await?;
        Ok(())
    }

    /// `POST /admin/apikeys`: the answer holds the key, the only time it is shown.
    pub async fn api_key_create(
        &self,
        req: &ApiKeyCreateRequest,
    ) -> Result<ApiKeyCreated, ClientError> {
        self.call(Method::POST, "/admin/apikeys", Some(req), "api key")
            .await
    }

    /// `GET /admin/apikeys[?merchant_id=...]`.
    pub async fn api_keys(&self, merchant: Option<&str>) -> Result<ApiKeyList, ClientError> {
        let path = by_merchant("/admin/apikeys", merchant);
        self.call::<NoBody, _>(Method::GET, &path, None, "api keys")
            .await
    }

    /// `POST /admin/apikeys/{id}/revoke`: revokes a key at once.
    pub async fn api_key_revoke(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/admin/apikeys/{}/revoke", segment(id));
        self.call_raw(Method::POST, &path, Some(EMPTY)).await?;
        Ok(())
    }

    /// `POST /admin/terminals`.
    pub async fn terminal_add(
        &self,
        req: &TerminalAddRequest,
    ) -> Result<TerminalResponse, ClientError> {
        self.call(Method::POST, "/admin/terminals", Some(req), "terminal")
            .await
    }

    /// `GET /admin/terminals[?merchant_id=...]`.
    pub async fn terminals(&self, merchant: Option<&str>) -> Result<TerminalList, ClientError> {
        let path = by_merchant("/admin/terminals", merchant);
        self.call::<NoBody, _>(Method::GET, &path, None, "terminals")
            .await
    }

    /// `GET /admin/keys`: data keys and which one is current.
    pub async fn key_status(&self) -> Result<KeyStatusResponse, ClientError> {
        self.call::<NoBody, _>(Method::GET, "/admin/keys", None, "key status")
            .await
    }

    /// `POST /admin/keys/rotate`: a fresh data key becomes current.
    pub async fn rotate_key(&self) -> Result<RotateResponse, ClientError> {
        self.call(Method::POST, "/admin/keys/rotate", Some(EMPTY), "rotate")
            .await
    }

    /// `POST /admin/keys/rewrap`: re-seals every record under the current key (returns when done).
    pub async fn rewrap(&self) -> Result<RewrapResponse, ClientError> {
        self.call(Method::POST, "/admin/keys/rewrap", Some(EMPTY), "rewrap")
            .await
    }

    /// `POST /admin/keys/retire`: drops decrypt-only keys no record uses.
    pub async fn retire_keys(&self) -> Result<RetireResponse, ClientError> {
        self.call(Method::POST, "/admin/keys/retire", Some(EMPTY), "retire")
            .await
    }

    /// `POST /admin/sweep`: removes expired records.
    pub async fn sweep(&self) -> Result<SweepResponse, ClientError> {
        self.call(Method::POST, "/admin/sweep", Some(EMPTY), "sweep")
            .await
    }

    /// `POST /admin/backup`: the daemon writes a consistent backup to `req.path` (an absolute path
    /// on its machine that must not exist yet).
    pub async fn backup(&self, req: &BackupRequest) -> Result<BackupResponse, ClientError> {
        self.call(Method::POST, "/admin/backup", Some(req), "backup")
            .await
    }

    /// `GET /admin/stats`.
    pub async fn stats(&self) -> Result<StatsResponse, ClientError> {
        self.call::<NoBody, _>(Method::GET, "/admin/stats", None, "stats")
            .await
    }
}
