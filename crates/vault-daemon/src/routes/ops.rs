//! `GET /health` and `GET /metrics`: no authentication. Neither says anything about a token or
//! a card; the socket's permissions and peer check decide who can ask.

use bytes::Bytes;
use hyper::{Response, StatusCode, header::HeaderValue};
use vault_wire::HealthResponse;

use crate::{
    response::{self, Body},
    state::State,
};

pub(crate) fn health() -> Response<Body> {
    response::json(
        StatusCode::OK,
        &HealthResponse {
            status: "ok".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )
}

pub(crate) fn metrics(state: &State) -> Response<Body> {
    let text = state.metrics.render(&state.vault);
    response::with_body(
        StatusCode::OK,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        Bytes::from(text),
    )
}
