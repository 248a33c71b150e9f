//! `GET /health` and `GET /metrics`: no authentication. Neither says anything about a token or
//! a card; the socket's permissions and peer check decide who can ask.

use bytes::Bytes;
use hyper::{Response, StatusCode, header::HeaderValue};
use vault_wire::HealthResponse;

use crate::{
    http::response::{self, Body},
    state::State,
};

/// 200 `ok`, or 503 `failed` once the store has hit a fatal write error (disk full, I/O error):
/// sled 0.34 then refuses every operation until the vault is reopened, so a supervisor should
/// restart the daemon (nothing acknowledged is lost).
pub(crate) fn health(state: &State) -> Response<Body> {
    let (status, word) = if state.vault.is_healthy() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failed")
    };
    response::json(
        status,
        &HealthResponse {
            status: word.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )
}

pub(crate) fn metrics(state: &State) -> Response<Body> {
    let text = state.metrics.render(&state.gateway);
    response::with_body(
        StatusCode::OK,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        Bytes::from(text),
    )
}
