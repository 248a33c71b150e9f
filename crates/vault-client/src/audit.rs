//! Audit calls (`/admin/audit...`, the key needs the `admin` scope).

use hyper::Method;
use vault_wire::{AuditArchiveRequest, AuditArchiveResponse, AuditPage, AuditVerifyResponse};

use crate::{Client, ClientError, tokens::NoBody};

/// `{}`: the body of the verify POST.
#[derive(serde::Serialize)]
struct Empty {}

impl Client {
    /// `GET /admin/audit`: up to `limit` entries after seq `after`, or (without `after`) the last
    /// `limit` entries; oldest first.
    pub async fn audit_entries(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, ClientError> {
        let path = match after {
            Some(a) => format!("/admin/audit?after={a}&limit={limit}"),
            None => format!("/admin/audit?limit={limit}"),
        };
        self.call::<NoBody, _>(Method::GET, &path, None, "audit entries")
            .await
    }

    /// `POST /admin/audit/archive`: moves the entries written before `req.before` (whole
    /// blocks) into a new file at `req.path` on the daemon's machine.
    pub async fn audit_archive(
        &self,
        req: &AuditArchiveRequest,
    ) -> Result<AuditArchiveResponse, ClientError> {
        self.call(
            Method::POST,
            "/admin/audit/archive",
            Some(req),
            "audit archive",
        )
        .await
    }

    /// `POST /admin/audit/verify`: checks the whole audit chain.
    pub async fn audit_verify(&self) -> Result<AuditVerifyResponse, ClientError> {
        self.call(
            Method::POST,
            "/admin/audit/verify",
            Some(&Empty {}),
            "audit verify",
        )
        .await
    }
}
