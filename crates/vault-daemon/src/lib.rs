//! `vault-daemon`: cardvault's HTTP/1.1 front, over a Unix socket (or loopback TCP), on top of
//! the [`Vault`](vault_service::Vault).
//!
//! The shape is mini-redis's: bind a [`Listener`], hand it to [`serve`] with the vault, a
//! [`DaemonConfig`] and a shutdown future.
//!
//! ```no_run
//! use vault_daemon::{DaemonConfig, bind_unix, serve};
//! # async fn run(vault: vault_service::Vault) -> Result<(), vault_daemon::DaemonError> {
//! let listener = bind_unix("/run/cardvault/cardvault.sock", 0o600).await?;
//! serve(listener, vault, DaemonConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! # Routes
//!
//! [`routes()`] lists them; `docs/openapi.json` documents each (a test keeps both in step).
//!
//! | route | scope | success |
//! |---|---|---|
//! | `GET /health`, `GET /metrics` | none | 200 (`/health`: 503 when the store failed or the database is unreachable) |
//! | `POST /v2/tokens` | tokenize | 201 |
//! | `POST /v2/tokens/batch` | tokenize | 200, one result per item (`status` 201 or 400) |
//! | `GET`/`PUT`/`DELETE /v2/tokens/{token}` | tokenize | 200 / 200 / 204 |
//! | `POST /v2/tokens/{token}/reveal` | reveal | 200 (PAN and expiry) |
//! | `/admin/...` (merchants, apikeys, terminals, keys, sweep, stats, backup, audit) | admin | 200 / 201 / 204 |
//! | `POST /token` | merchant password in the form | 200, a session token |
//! | `POST /payments` | session token (optionally a reveal key) | 200 |
//! | `OPTIONS /token`, `OPTIONS /payments` | none (CORS preflight) | 204 |
//! | `POST /payments/{txId}/card` | reveal | 200 (the payment's card) |
//! | `POST /payments/{txId}/result` | tokenize or reveal | 200 |
//! | `POST /processing-terminals/{id}/hosted-fields-sessions` | sessions | 201 |
//! | `GET /hosted-fields/v1/{asset}` | none | 200 (the hosted-fields library and frame) |
//!
//! Errors of the token and admin APIs are `{"status":"<kind>","errors":[{"field","code",
//! "message"}]}` (the gateway routes answer their `{"result":"failure",...}` envelope and
//! hosted-fields sessions RFC 9457 problem details) and never echo a submitted value: 400 names every refused field (`body` when the body itself is not JSON,
//! not UTF-8, or not an object); 401 (with `WWW-Authenticate: Bearer`) for a missing or bad key;
//! 403 for a missing scope, and for a reveal whose `customer_id` does not match the token's
//! binding (code `customer_mismatch`: the caller already proved it may see this merchant's
//! token, so this reveals nothing); 404 for an unknown route and for unknown, deleted, expired,
//! malformed or another merchant's tokens alike; 405 with `Allow`; 408/503 past the request
//! timeout; 413 over the body limit; 415 unless the body is `application/json`. Every 503 has a
//! `Retry-After`: a busy vault, a timeout, code `database_unavailable` (the vault's database
//! cannot be reached or did not answer in time; never a 500) and code `write_conflict` (a write
//! kept racing another daemon's on a shared database; nothing was written). Malformed HTTP
//! framing is answered by hyper itself (400 or 431, no body) and the connection closed.
//!
//! # Access
//!
//! [`bind_unix`] makes the socket `0600` inside a `0700` directory and refuses a directory others
//! can write to; [`bind_unix_for`] opens the modes just enough for the allowed uids/gids to
//! knock (socket `0666`/`0660`, directory searchable). At accept the peer's uid/gid (`SO_PEERCRED`) must be the daemon's own uid or be
//! listed in [`DaemonConfig::allow_uids`] / [`DaemonConfig::allow_gids`]; refused peers are
//! closed without a response. `/health` and `/metrics` need no API key: metrics carry counts by
//! route template and status only, never a token or a card number, and only allowed peers reach
//! the socket at all.
//!
//! # Logs
//!
//! `tracing` events only: no per-request events above `debug`, except one `info` event per
//! reveal and key rotation on target `cardvault::audit` (merchant, key id, token, outcome; never
//! the PAN).
//!
//! # Layout
//!
//! - `net/`: the listening socket and peer credentials (`listener`), the per-peer connection
//!   bound (`peer_limit`), the write timeout, graceful shutdown.
//! - `dispatch.rs`: one request to its handler, with its metrics and trace line.
//! - `http/`: the route table and matching (`router`), responses and error bodies
//!   (`response`), reading bodies within the size and time limits (`limits`).
//! - `decode/`: bodies into typed requests: JSON against a field schema (`json`), the gateway's
//!   form or JSON fields (`form`), validation naming every refused field (`validate`).
//! - `routes/`: one file per route family (tokens, admin, audit, ops); `routes/gateway/` the
//!   gateway API (`api`: `POST /token`, `POST /payments`), payments, hosted fields, and what
//!   they share (`mod.rs`).
//! - `server`, `state`, `config`, `error`, `metrics`, `idempotency`, `reveal_audit` at the top.
//! - `fuzzing`: entry points for `fuzz/`, compiled only under `--cfg fuzzing`.
#![forbid(unsafe_code)]

mod config;
mod decode;
mod dispatch;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod idempotency;
mod metrics;
mod net;
mod reveal_audit;
mod routes;
mod server;
mod state;
pub mod views;

pub use config::{DaemonConfig, LogFormat};
pub use error::DaemonError;
pub use http::router::{Route, routes};
pub use net::listener::{Listener, bind_tcp, bind_unix, bind_unix_for};
pub use server::serve;
