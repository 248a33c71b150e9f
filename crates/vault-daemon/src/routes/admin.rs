//! `/admin/...` (the `admin` scope): merchants, API keys, terminals, vault keys, sweeps and
//! statistics, for the CLI. An admin key acts on every merchant, not only its own.

use bytes::Bytes;
use hyper::{Request, Response, StatusCode, body::Incoming};
use vault_gateway::{MerchantPassword, TerminalId};
use vault_service::{MerchantId, Scopes};
use vault_wire::{
    ApiKeyCreateRequest, ApiKeyCreated, ApiKeyList, BackupRequest, FieldErrorBody,
    MerchantAddRequest, MerchantList, MerchantPasswordRequest, RotateResponse, SweepResponse,
    TerminalAddRequest, TerminalList,
};

use crate::{
    decode::json,
    http::response::{self, ApiError, Body},
    http::router::Param,
    idempotency::{self, KeyRule},
    state::{State, operator_actor},
    views,
};

type Answer = Result<Response<Body>, ApiError>;

pub(crate) async fn merchant_list(state: &State, req: Request<Incoming>) -> Answer {
    state.authorize_operator(req.headers())?;
    no_query(req.uri().query())?;
    let merchants = state.blocking(|v| v.merchants()).await?;
    let body = MerchantList {
        merchants: merchants.iter().map(views::merchant).collect(),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// An admin POST that creates something: admin scope, an optional `Idempotency-Key` (scoped to
/// the key's merchant), a JSON body handed to `create`.
async fn admin_create<F, Fut>(
    state: &State,
    req: Request<Incoming>,
    route: &'static str,
    create: F,
) -> Answer
where
    F: FnOnce(vault_service::Operator, Bytes) -> Fut,
    Fut: Future<Output = Answer>,
{
    let p = state.authorize_operator(req.headers())?;
    let key = idempotency::key_from(req.headers(), KeyRule::Optional)?;
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let shape = idempotency::json_shape(state, OPERATOR_NAMESPACE, &body);
    idempotency::run(
        state,
        OPERATOR_NAMESPACE,
        route,
        key,
        vec![shape],
        ApiError::into_response,
        || create(p, body),
    )
    .await
}

/// The idempotency namespace of operator requests (operator keys belong to no merchant).
/// Merchant keys cannot call admin routes, and the route is part of every idempotency
/// fingerprint, so sharing the number of the largest merchant id mixes no answers.
const OPERATOR_NAMESPACE: MerchantId = MerchantId::LARGEST;

pub(crate) async fn merchant_add(state: &State, req: Request<Incoming>) -> Answer {
    admin_create(state, req, "POST /admin/merchants", |p, body| async move {
        let r: MerchantAddRequest = json::typed(&body, json::MERCHANT_ADD)?;
        let id = merchant_id(&r.merchant_id)?;
        let who = operator_actor(&p);
        let m = state
            .blocking(move |v| v.as_actor(&who).add_merchant(id, &r.name))
            .await?;
        Ok(response::json(StatusCode::CREATED, &views::merchant(&m)))
    })
    .await
}

/// `POST /admin/merchants/{id}/password`: sets or replaces a merchant's gateway password
/// (`{"password": "..."}`, 12-64 characters); 204. Hashing runs on the blocking pool.
pub(crate) async fn merchant_password(
    state: &State,
    req: Request<Incoming>,
    param: Param,
) -> Answer {
    let who = operator_actor(&state.authorize_operator(req.headers())?);
    let Param::Text(id) = param else {
        return Err(ApiError::no_route());
    };
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let password = password_body(body);
    let id = MerchantId::parse(&id)
        .map_err(|e| FieldErrorBody::new("merchantId", e.code(), e.to_string()));
    let (id, password) = match (id, password) {
        (Ok(id), Ok(p)) => (id, p),
        (id, password) => {
            let errors = [id.err(), password.err()].into_iter().flatten().collect();
            return Err(ApiError::invalid(errors));
        }
    };
    state
        .gateway(move |g| g.as_actor(&who).set_merchant_password(id, &password))
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `POST /admin/merchants/{id}/unlock`: clears the merchant's counted login failures (lifts a
/// lockout); 204. No body. Audited (`admin.merchant.unlock`).
pub(crate) async fn merchant_unlock(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let who = operator_actor(&state.authorize_operator(req.headers())?);
    let Param::Text(id) = param else {
        return Err(ApiError::no_route());
    };
    let id = MerchantId::parse(&id).map_err(|e| {
        ApiError::invalid(vec![FieldErrorBody::new(
            "merchantId",
            e.code(),
            e.to_string(),
        )])
    })?;
    state
        .gateway(move |g| g.as_actor(&who).unlock_merchant(id))
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// The password of a `MerchantPasswordRequest` body, or the one field error saying why not. The
/// body buffer and every parsed copy of the password are wiped (hyper's own read buffers are
/// beyond reach). serde's messages are never returned: they quote what they refuse.
fn password_body(body: Bytes) -> Result<MerchantPassword, FieldErrorBody> {
    // serde would read `["..."]` as the struct by position: only an object is a request.
    let typed = if json::starts_as_object(&body) {
        serde_json::from_slice::<MerchantPasswordRequest>(&body).map_err(|_| ())
    } else {
        Err(())
    };
    let result = match typed {
        Ok(mut r) => MerchantPassword::new(std::mem::take(&mut r.password)).map_err(|e| match e {
            vault_gateway::GatewayError::Vault(vault_service::VaultError::Invalid(f)) => {
                FieldErrorBody::new(f.field, f.code, f.message)
            }
            _ => FieldErrorBody::new("password", "invalid", "password is not acceptable"),
        }),
        Err(_) => Err(password_shape(&body)),
    };
    if let Ok(mut b) = body.try_into_mut() {
        b.fill(0);
        std::hint::black_box(&b);
    }
    result
}

/// Why a body is not `{"password": "<string>"}`.
fn password_shape(body: &[u8]) -> FieldErrorBody {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return FieldErrorBody::new("body", "invalid_json", "the body is not valid JSON");
    };
    let Some(obj) = v.as_object_mut() else {
        return FieldErrorBody::new("body", "invalid_type", "the body must be a JSON object");
    };
    match obj.get_mut("password") {
        None | Some(serde_json::Value::Null) => {
            FieldErrorBody::new("password", "required", "is required")
        }
        Some(serde_json::Value::String(s)) => {
            // Wiped by `MerchantPassword`, which zeroizes even what it refuses.
            drop(MerchantPassword::new(std::mem::take(s)));
            FieldErrorBody::new(
                "body",
                "invalid",
                "the body could not be read as this request (duplicate, unknown or conflicting fields)",
            )
        }
        Some(_) => FieldErrorBody::new("password", "invalid_type", "must be a string"),
    }
}

pub(crate) async fn apikey_list(state: &State, req: Request<Incoming>) -> Answer {
    state.authorize_operator(req.headers())?;
    let filter = merchant_filter(req.uri().query())?;
    let keys = state.blocking(move |v| v.api_keys(filter)).await?;
    let body = ApiKeyList {
        api_keys: keys.iter().map(views::api_key).collect(),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// `POST /admin/apikeys`: a merchant key (`merchant_id`) or, with `"operator": true` and no
/// `merchant_id`, an operator key (scopes: `admin` only).
pub(crate) async fn apikey_create(state: &State, req: Request<Incoming>) -> Answer {
    let who = operator_actor(&state.authorize_operator(req.headers())?);
    // A key's secret is shown once and never stored, so this answer cannot be replayed: a retry
    // honoured by "ignoring" the header would mint a second live key. Refused, not ignored.
    if req.headers().contains_key(idempotency::KEY_HEADER) {
        return Err(ApiError::field(
            "Idempotency-Key",
            "unsupported",
            "this route takes no Idempotency-Key: a key's secret is shown once and never stored, \
             so its answer cannot be replayed; list the keys (GET /admin/apikeys) to see whether \
             an earlier request created one",
        ));
    }
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let r: ApiKeyCreateRequest = json::typed(&body, json::APIKEY_CREATE)?;
    let scopes = Scopes::parse(&r.scopes.join(","))?;
    let key = match (r.operator, r.merchant_id.as_deref()) {
        (false, Some(m)) => {
            let id = merchant_id(m)?;
            state
                .blocking(move |v| v.as_actor(&who).create_api_key(id, scopes, &r.label))
                .await?
        }
        (true, None) => {
            state
                .blocking(move |v| v.as_actor(&who).create_operator_key(scopes, &r.label))
                .await?
        }
        (false, None) => {
            return Err(ApiError::field(
                "merchant_id",
                "required",
                "merchant_id is required (or \"operator\": true for an operator key)",
            ));
        }
        (true, Some(_)) => {
            return Err(ApiError::field(
                "merchant_id",
                "operator_has_no_merchant",
                "an operator key belongs to no merchant; leave merchant_id out",
            ));
        }
    };
    let body = ApiKeyCreated {
        key: key.expose().to_owned(),
        api_key: views::api_key(&key.info),
    };
    Ok(response::json(StatusCode::CREATED, &body))
}

pub(crate) async fn apikey_revoke(state: &State, req: Request<Incoming>, param: Param) -> Answer {
    let who = operator_actor(&state.authorize_operator(req.headers())?);
    let Param::Text(id) = param else {
        return Err(ApiError::no_route());
    };
    match state
        .blocking(move |v| v.as_actor(&who).revoke_api_key(&id))
        .await
    {
        Ok(()) => Ok(response::empty(StatusCode::NO_CONTENT)),
        // The generic 404 names a token; this one is an API key.
        Err(e) if e.status() == StatusCode::NOT_FOUND => {
            Err(ApiError::not_found("key_id", "no such API key"))
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn terminal_list(state: &State, req: Request<Incoming>) -> Answer {
    state.authorize_operator(req.headers())?;
    let filter = merchant_filter(req.uri().query())?;
    let terminals = state.gateway(move |g| g.terminals(filter)).await?;
    let body = TerminalList {
        terminals: terminals.iter().map(views::terminal).collect(),
    };
    Ok(response::json(StatusCode::OK, &body))
}

pub(crate) async fn terminal_add(state: &State, req: Request<Incoming>) -> Answer {
    admin_create(state, req, "POST /admin/terminals", |p, body| async move {
        let r: TerminalAddRequest = json::typed(&body, json::TERMINAL_ADD)?;
        let merchant = merchant_id(&r.merchant_id)?;
        let id = TerminalId::parse(&r.terminal_id).map_err(|_| {
            ApiError::field(
                "terminal_id",
                "invalid",
                "terminal id must be 4-50 characters of [A-Za-z0-9_-]",
            )
        })?;
        let who = operator_actor(&p);
        let t = state
            .gateway(move |g| g.as_actor(&who).add_terminal(merchant, id))
            .await?;
        Ok(response::json(StatusCode::CREATED, &views::terminal(&t)))
    })
    .await
}

pub(crate) async fn key_status(state: &State, req: Request<Incoming>) -> Answer {
    state.authorize_operator(req.headers())?;
    no_query(req.uri().query())?;
    let body = views::key_status(&state.vault.stats());
    Ok(response::json(StatusCode::OK, &body))
}

pub(crate) async fn key_rotate(state: &State, req: Request<Incoming>) -> Answer {
    let p = state.authorize_operator(req.headers())?;
    let who = operator_actor(&p);
    let id = state
        .blocking(move |v| v.as_actor(&who).rotate_key())
        .await?;
    tracing::info!(target: "cardvault::audit", key_id = %p.key_id, dek = %id, "data key rotated");
    let body = RotateResponse {
        current_dek: id.get(),
    };
    Ok(response::json(StatusCode::OK, &body))
}

pub(crate) async fn key_rewrap(state: &State, req: Request<Incoming>) -> Answer {
    let who = operator_actor(&state.authorize_operator(req.headers())?);
    // A full pass may take minutes on a large vault: answered when it is done.
    let p = state
        .pass(move |g| Ok(g.vault().as_actor(&who).rewrap(|_| {})?))
        .await?;
    Ok(response::json(StatusCode::OK, &views::rewrap(&p)))
}

pub(crate) async fn key_retire(state: &State, req: Request<Incoming>) -> Answer {
    let who = operator_actor(&state.authorize_operator(req.headers())?);
    let retired = state
        .pass(move |g| Ok(g.vault().as_actor(&who).retire_unused_keys()?))
        .await?;
    Ok(response::json(StatusCode::OK, &views::retired(&retired)))
}

pub(crate) async fn sweep(state: &State, req: Request<Incoming>) -> Answer {
    let who = operator_actor(&state.authorize_operator(req.headers())?);
    let removed = state
        .pass(move |g| Ok(g.as_actor(&who).sweep_expired(g.vault().now())?))
        .await?;
    Ok(response::json(StatusCode::OK, &SweepResponse { removed }))
}

/// `POST /admin/backup`: writes a consistent backup file on the daemon's machine. The path must be
/// absolute and must not exist (the file is created 0600, never overwritten). Writers are held only
/// while the snapshot is taken; the file is written afterwards. Answered when the file is written,
/// however long that takes (no request timeout).
pub(crate) async fn backup(state: &State, req: Request<Incoming>) -> Answer {
    let p = state.authorize_operator(req.headers())?;
    let body = state.json_body(req, state.config.max_body_bytes).await?;
    let r: BackupRequest = json::typed(&body, json::BACKUP)?;
    let target = new_file_path(&r.path)?;
    let who = operator_actor(&p);
    let report = state
        .pass(move |g| {
            Ok(g.vault()
                .as_actor(&who)
                .backup_to_file(&target, |_, _| {})?)
        })
        .await?;
    tracing::info!(target: "cardvault::audit", key_id = %p.key_id, records = report.records,
        bytes = report.bytes, "backup written");
    Ok(response::json(
        StatusCode::OK,
        &views::backup(r.path, &report),
    ))
}

/// `path`, a file the daemon is asked to create on its machine (a backup, an audit archive):
/// absolute, in an existing directory, and not there yet.
pub(crate) fn new_file_path(path: &str) -> Result<std::path::PathBuf, ApiError> {
    let path = std::path::PathBuf::from(path);
    if let Some(problem) = vault_service::backup_path_problem(&path) {
        return Err(vault_service::VaultError::Invalid(problem).into());
    }
    if path.symlink_metadata().is_ok() {
        return Err(ApiError::field(
            "path",
            "exists",
            "a file exists at path; not overwriting it",
        ));
    }
    Ok(path)
}

pub(crate) async fn stats(state: &State, req: Request<Incoming>) -> Answer {
    state.authorize_operator(req.headers())?;
    no_query(req.uri().query())?;
    let body = views::stats(&state.vault.stats());
    Ok(response::json(StatusCode::OK, &body))
}

fn merchant_id(s: &str) -> Result<MerchantId, ApiError> {
    MerchantId::parse(s).map_err(|e| ApiError::field("merchant_id", e.code(), &e.to_string()))
}

/// A route that takes no query parameters refuses any (400), as the admin routes that take some
/// refuse unknown ones: a mistyped filter must not be taken for an answer to it.
fn no_query(query: Option<&str>) -> Result<(), ApiError> {
    match query {
        Some(q) if !q.is_empty() => Err(ApiError::field(
            "query",
            "invalid",
            "this route takes no query parameters",
        )),
        _ => Ok(()),
    }
}

/// `merchant_id` from the query string (percent-decoded, at most once); anything else there ->
/// 400, as on `/admin/audit`: a mistyped filter must not list every merchant's keys.
fn merchant_filter(query: Option<&str>) -> Result<Option<MerchantId>, ApiError> {
    let mut filter = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name != "merchant_id" {
            return Err(ApiError::field(
                "query",
                "invalid",
                "only merchant_id may be given",
            ));
        }
        if filter.is_some() {
            return Err(ApiError::field(
                "merchant_id",
                "duplicate",
                "each query parameter may be given once",
            ));
        }
        filter = Some(merchant_id(&value)?);
    }
    Ok(filter)
}
