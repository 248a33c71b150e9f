//! What every request handler shares: the vault, the limits, the metrics; and the steps every
//! handler takes (authenticate, read a JSON body, wait for the vault within the time limit).

use std::future::Future;

use bytes::Bytes;
use hyper::{
    HeaderMap, Request,
    body::Incoming,
    header::{AUTHORIZATION, CONTENT_LENGTH},
};
use vault_gateway::{Gateway, GatewayError};
use vault_service::{Actor, Caller, Operator, Principal, Scope, Vault, VaultError};

use crate::{
    DaemonConfig,
    http::headers::{Given, given},
    http::limits,
    http::response::ApiError,
    metrics::Metrics,
};

tokio::task_local! {
    /// The uid of the Unix-socket peer whose request is being handled (`None` over TCP).
    pub(crate) static PEER_UID: Option<u32>;

    /// Set while the work of a request with an `Idempotency-Key` runs (see `idempotency::run`):
    /// its waits for the vault are not cut at the request timeout. `run` answers the caller at
    /// the timeout itself and lets the work end, so that its answer is stored for a retry.
    pub(crate) static UNBOUNDED: ();
}

/// Whether the waits of the running task end at the request timeout (see [`UNBOUNDED`]).
fn bounded() -> bool {
    UNBOUNDED.try_with(|()| ()).is_err()
}

/// The peer uid of the request being handled, if known.
pub(crate) fn peer_uid() -> Option<u32> {
    PEER_UID.try_with(|u| *u).ok().flatten()
}

/// The audit actor for an operator request: its key id and peer uid.
pub(crate) fn operator_actor(o: &Operator) -> Actor {
    Actor::operator(o).with_peer_uid(peer_uid())
}

/// The audit actor for an authenticated request: its merchant, key id and peer uid.
pub(crate) fn actor(p: &Principal) -> Actor {
    Actor::principal(p).with_peer_uid(peer_uid())
}

pub(crate) struct State {
    pub(crate) vault: Vault,
    /// The payment gateway over the same vault (one per daemon: it holds the pending CVVs).
    pub(crate) gateway: Gateway,
    pub(crate) config: DaemonConfig,
    pub(crate) metrics: Metrics,
    /// `/health`'s last probe and when it ended: one probe at a time, and callers within
    /// `HEALTH_FRESH` of the last share its answer (see `routes/ops.rs`).
    pub(crate) health: tokio::sync::Mutex<Option<(std::time::Instant, vault_service::Health)>>,
}

impl State {
    pub(crate) fn new(gateway: impl Into<Gateway>, config: DaemonConfig) -> Self {
        let gateway = gateway.into();
        Self {
            vault: gateway.vault().clone(),
            gateway,
            config,
            metrics: Metrics::default(),
            health: tokio::sync::Mutex::new(None),
        }
    }

    /// The merchant key behind `Authorization: Bearer <key>`, holding `scope`: 401 / 403
    /// otherwise (an operator key is 403 `merchant_key_required`: it acts for no merchant).
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Principal, ApiError> {
        let principal = match self.caller(headers)? {
            Caller::Merchant(p) => p,
            Caller::Operator(_) => {
                return Err(ApiError::forbidden(
                    "authorization",
                    "merchant_key_required",
                    "operator keys act for no merchant; use a merchant API key",
                ));
            }
        };
        principal.require(scope).map_err(|_| {
            ApiError::forbidden(
                "authorization",
                "missing_scope",
                match scope {
                    Scope::Reveal => "the API key lacks the reveal scope",
                    s if s == vault_gateway::SESSIONS => "the API key lacks the sessions scope",
                    _ => "the API key lacks the tokenize scope",
                },
            )
        })?;
        Ok(principal)
    }

    /// The operator key behind `Authorization: Bearer <key>`, holding `admin`: 401, or 403
    /// `operator_key_required` for a merchant key (merchant keys cannot administer the vault).
    pub(crate) fn authorize_operator(&self, headers: &HeaderMap) -> Result<Operator, ApiError> {
        match self.caller(headers)? {
            Caller::Operator(o) if o.require(Scope::Admin).is_ok() => Ok(o),
            _ => Err(ApiError::forbidden(
                "authorization",
                "operator_key_required",
                "admin routes need an operator API key with the admin scope",
            )),
        }
    }

    /// The audit actor of whoever `Authorization: Bearer <key>` authenticates as (a merchant
    /// key or an operator key); `None` if it does not. For recording a refusal that came after
    /// authentication.
    pub(crate) fn actor_of(&self, headers: &HeaderMap) -> Option<Actor> {
        match self.caller(headers).ok()? {
            Caller::Merchant(p) => Some(actor(&p)),
            Caller::Operator(o) => Some(operator_actor(&o)),
        }
    }

    /// Whoever `Authorization: Bearer <key>` authenticates as: 401 otherwise.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let value = match given(headers, &AUTHORIZATION) {
            Given::Once(value) => value,
            Given::Absent => {
                return Err(ApiError::unauthorized(
                    "missing",
                    "an Authorization: Bearer <api key> header is required",
                ));
            }
            // Two keys in one request: which one acts is not for the daemon to guess.
            Given::Repeated => {
                return Err(ApiError::unauthorized(
                    "invalid",
                    "send exactly one Authorization header",
                ));
            }
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        let Some(key) = key else {
            return Err(ApiError::unauthorized(
                "invalid",
                "the Authorization header must be Bearer <api key>",
            ));
        };
        // A cache miss reads the database; the PostgreSQL engine itself waits inside
        // `block_in_place`, so a slow database does not stall this runtime worker's other tasks.
        Ok(self
            .vault
            .as_actor(&Actor::local().with_peer_uid(peer_uid()))
            .authenticate_caller(key)?)
    }

    /// The JSON body of `req`: 415 unless it is declared JSON, 413 over `limit`.
    pub(crate) async fn json_body(
        &self,
        req: Request<Incoming>,
        limit: usize,
    ) -> Result<Bytes, ApiError> {
        limits::require_json(req.headers())?;
        limits::read_body(req.into_body(), limit, self.config.request_timeout).await
    }

    /// Like [`json_body`](Self::json_body), for routes whose body is optional: a request with
    /// no body (or `Content-Length: 0`) needs no content type and reads as empty.
    pub(crate) async fn optional_json_body(
        &self,
        req: Request<Incoming>,
    ) -> Result<Bytes, ApiError> {
        let empty = req
            .headers()
            .get(CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
            && !req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
        if empty {
            return Ok(Bytes::new());
        }
        self.json_body(req, self.config.max_body_bytes).await
    }

    /// Waits for `fut`, 503 after the request timeout, unless the task's waits are not cut
    /// there (see [`UNBOUNDED`]).
    pub(crate) async fn in_time<F: Future>(&self, fut: F) -> Result<F::Output, ApiError> {
        if !bounded() {
            return Ok(fut.await);
        }
        tokio::time::timeout(self.config.request_timeout, fut)
            .await
            .map_err(|_| ApiError::unavailable("the request took too long"))
    }

    /// Waits for a vault result, 503 after the request timeout.
    pub(crate) async fn within<T>(
        &self,
        fut: impl Future<Output = Result<T, VaultError>>,
    ) -> Result<T, ApiError> {
        self.in_time(fut).await?.map_err(ApiError::from)
    }

    /// Runs a blocking vault call on the blocking pool, within the request timeout.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Vault) -> Result<T, VaultError> + Send + 'static,
        T: Send + 'static,
    {
        let vault = self.vault.clone();
        self.on_pool(move || f(&vault)).await
    }

    /// Runs a blocking gateway call on the blocking pool, within the request timeout.
    pub(crate) async fn gateway<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Gateway) -> Result<T, GatewayError> + Send + 'static,
        T: Send + 'static,
    {
        let gateway = self.gateway.clone();
        self.on_pool(move || f(&gateway)).await
    }

    /// Runs an operator's whole-vault pass (re-wrap, retire, sweep, backup, audit archive or
    /// verify) on the blocking pool **without** the request timeout: the pass runs to its end in
    /// any case, and what the operator waits for is its result (a 503 at 30 s would leave a
    /// `keys rewrap --retire` without its retire, and the operator without the count).
    pub(crate) async fn pass<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Gateway) -> Result<T, GatewayError> + Send + 'static,
        T: Send + 'static,
    {
        let gateway = self.gateway.clone();
        joined(tokio::task::spawn_blocking(move || f(&gateway)).await)
    }

    async fn on_pool<T, E, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        ApiError: From<E>,
    {
        joined(self.in_time(tokio::task::spawn_blocking(f)).await?)
    }
}

/// The result of a blocking task: its error as an answer, a task that panicked as a 500.
fn joined<T, E>(r: Result<Result<T, E>, tokio::task::JoinError>) -> Result<T, ApiError>
where
    ApiError: From<E>,
{
    match r {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ApiError::internal()),
    }
}

/// Waits for a `*_then` completion handed to a oneshot channel.
pub(crate) async fn completion<T>(
    rx: tokio::sync::oneshot::Receiver<Result<T, VaultError>>,
) -> Result<T, VaultError> {
    rx.await
        .unwrap_or(Err(VaultError::Store(vault_service::StoreError::Closed)))
}
