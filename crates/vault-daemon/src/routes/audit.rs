//! `/admin/audit` (the `admin` scope): the audit log read, checked and archived through a running
//! daemon, so `cardvault audit tail|verify|archive` need not stop it.

use hyper::{Request, Response, StatusCode, body::Incoming};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use vault_wire::{AuditArchiveRequest, AuditPage};

use crate::{
    decode::json,
    http::response::{self, ApiError, Body},
    state::State,
    views,
};

type Answer = Result<Response<Body>, ApiError>;

/// Most entries one `GET /admin/audit` answers.
pub(crate) const MAX_LIMIT: usize = 1000;
/// Entries answered when `limit` is not given.
const DEFAULT_LIMIT: usize = 20;

/// `GET /admin/audit?after=SEQ&limit=N` -> 200: up to `limit` (1-1000, default 20) entries with
/// a seq above `after`, oldest first; without `after`, the last `limit` entries.
pub(crate) async fn entries(state: &State, req: Request<Incoming>) -> Answer {
    state.authorize_operator(req.headers())?;
    let (after, limit) = query(req.uri().query().unwrap_or(""))?;
    let entries = state
        .blocking(move |v| match after {
            Some(after) => v.audit_after(after, limit),
            None => v.audit_tail(limit),
        })
        .await?;
    let body = AuditPage {
        entries: entries.iter().map(views::audit_entry).collect(),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// `POST /admin/audit/verify` -> 200 with the result of checking the whole chain (`ok: false`
/// and the first bad entry when it is broken).
pub(crate) async fn verify(state: &State, req: Request<Incoming>) -> Answer {
    state.authorize_operator(req.headers())?;
    let report = state.pass(|g| Ok(g.vault().audit_verify()?)).await?;
    Ok(response::json(StatusCode::OK, &views::audit_verify(report)))
}

/// `POST /admin/audit/archive` -> 200: moves the whole blocks of entries written before
/// `before` into a new file at `path` on the daemon's machine (absolute, must not exist; created
/// 0600), while the daemon serves; what `cardvault audit archive` runs through a daemon. Nothing
/// old enough: 200 with `entries: 0` and no file.
pub(crate) async fn archive(state: &State, req: Request<Incoming>) -> Answer {
    let p = state.authorize_operator(req.headers())?;
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let r: AuditArchiveRequest = json::typed(&body, json::AUDIT_ARCHIVE)?;
    let before = OffsetDateTime::parse(&r.before, &Rfc3339).map_err(|_| {
        ApiError::field(
            "before",
            "invalid",
            "before must be an RFC 3339 time (2026-01-01T00:00:00Z)",
        )
    })?;
    let path = super::admin::new_file_path(&r.path)?;
    let who = crate::state::operator_actor(&p);
    let archived = state
        .pass(move |g| Ok(g.vault().as_actor(&who).audit_archive(before, &path)?))
        .await?;
    tracing::info!(target: "cardvault::audit", key_id = %p.key_id, entries = archived.entries,
        chains = archived.chains.len(), "audit log archived");
    Ok(response::json(
        StatusCode::OK,
        &views::audit_archived(r.path, &archived),
    ))
}

/// `after` and `limit` from the query string (percent-decoded, each at most once); anything
/// else there, or a bad value -> 400.
fn query(q: &str) -> Result<(Option<u64>, usize), ApiError> {
    let (mut after, mut limit) = (None, None);
    for (name, value) in form_urlencoded::parse(q.as_bytes()) {
        let twice = match name.as_ref() {
            "after" => after.is_some(),
            "limit" => limit.is_some(),
            _ => false,
        };
        if twice {
            return Err(ApiError::field(
                name.as_ref(),
                "duplicate",
                "each query parameter may be given once",
            ));
        }
        match name.as_ref() {
            "after" => {
                after = Some(value.parse::<u64>().map_err(|_| {
                    ApiError::field("after", "invalid", "after must be an entry number")
                })?);
            }
            "limit" => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::field("limit", "invalid", "limit must be 1-1000")
                        })?,
                );
            }
            _ => {
                return Err(ApiError::field(
                    "query",
                    "invalid",
                    "only after and limit may be given",
                ));
            }
        }
    }
    Ok((after, limit.unwrap_or(DEFAULT_LIMIT)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_rules() {
        assert_eq!(query("").unwrap(), (None, DEFAULT_LIMIT));
        assert_eq!(query("after=5&limit=7").unwrap(), (Some(5), 7));
        assert_eq!(query("limit=%31").unwrap(), (None, 1), "percent-decoded");
        for bad in [
            "after=x",
            "limit=0",
            "limit=1001",
            "limit=",
            "seq=1",
            "limit=1&limit=2",
            "after=1&after=2",
        ] {
            assert!(query(bad).is_err(), "{bad}");
        }
    }
}
