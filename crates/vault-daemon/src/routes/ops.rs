//! `GET /health` and `GET /metrics`: no authentication. Neither says anything about a token or
//! a card; the socket's permissions and peer check decide who can ask.

use bytes::Bytes;
use hyper::{
    Response, StatusCode,
    header::{HeaderValue, RETRY_AFTER},
};
use vault_service::{Health, Unavailable};
use vault_wire::HealthResponse;

use crate::{
    http::response::{self, Body, DATABASE_UNAVAILABLE, STORE_FAILED, database_retry_after},
    state::State,
};

/// 200 `ok`; 503 `failed` once the store has hit a fatal write error (disk full, I/O error:
/// sled 0.34 then refuses every operation until the vault is reopened, so a supervisor should
/// restart the daemon; nothing acknowledged is lost); 503 `unavailable` with `Retry-After` while
/// the vault's database cannot be reached (the daemon reconnects by itself: no restart needed).
/// The database probe runs on the blocking pool, within the request timeout.
///
/// One probe runs at a time, and callers within [`HEALTH_FRESH`] of its end share its answer: a
/// probe waits on the blocking pool (and, on a database, for the server), so a busy monitor or
/// a flood of `/health` calls must not start one thread each.
pub(crate) async fn health(state: &State) -> Response<Body> {
    let mut last = state.health.lock().await;
    if let Some((at, health)) = *last
        && at.elapsed() < HEALTH_FRESH
    {
        return health_response(health);
    }
    let vault = state.vault.clone();
    let probe = tokio::task::spawn_blocking(move || vault.health());
    let health = match tokio::time::timeout(state.config.request_timeout, probe).await {
        Ok(Ok(health)) => health,
        // The probe panicked: nothing says the store can serve.
        Ok(Err(_)) => Health::Failed,
        Err(_) => Health::Unavailable(Unavailable::StatementTimeout),
    };
    *last = Some((std::time::Instant::now(), health));
    health_response(health)
}

/// How long one `/health` probe's answer is given to the callers that ask after it.
const HEALTH_FRESH: std::time::Duration = std::time::Duration::from_millis(250);

/// `/health`'s answer for `health`.
pub(crate) fn health_response(health: Health) -> Response<Body> {
    let (status, word, code, retry_after) = match health {
        Health::Failed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            Some(STORE_FAILED),
            None,
        ),
        Health::Unavailable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(DATABASE_UNAVAILABLE),
            Some(database_retry_after(why)),
        ),
        _ => (StatusCode::OK, "ok", None, None),
    };
    let mut resp = response::json(
        status,
        &HealthResponse {
            status: word.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            code: code.map(str::to_owned),
        },
    );
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

pub(crate) fn metrics(state: &State) -> Response<Body> {
    let text = state.metrics.render(&state.gateway);
    response::with_body(
        StatusCode::OK,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        Bytes::from(text),
    )
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// The JSON body (a complete buffer: collecting it never waits).
    fn body(resp: Response<Body>) -> serde_json::Value {
        let collected = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(resp.into_body().collect())
            .expect("a full body");
        serde_json::from_slice(&collected.to_bytes()).expect("a JSON body")
    }

    #[test]
    fn health_says_ok_failed_or_unavailable() {
        let ok = health_response(Health::Ok);
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().get(RETRY_AFTER).is_none());
        let v = body(ok);
        assert_eq!(v["status"], "ok");
        assert!(v.get("code").is_none(), "{v}");

        let failed = health_response(Health::Failed);
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v = body(failed);
        assert_eq!(
            (v["status"].as_str(), v["code"].as_str()),
            (Some("failed"), Some("store_failed"))
        );

        let down = health_response(Health::Unavailable(Unavailable::Connect));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            down.headers().get(RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"5"[..])
        );
        let v = body(down);
        assert_eq!(
            (v["status"].as_str(), v["code"].as_str()),
            (Some("unavailable"), Some("database_unavailable"))
        );
    }
}
