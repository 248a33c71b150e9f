//! The `Idempotency-Key` header on the POSTs that create something.
//!
//! A handler reads the key with [`key_from`] (after authenticating, so keys are scoped to the
//! authenticated merchant) and wraps its work in [`run`]:
//!
//! - no key: the work runs as usual;
//! - a key answered less than 24 hours ago for the same route and request bytes: the stored
//!   answer is sent again (same status, `Content-Type`, `Location` and body) with
//!   `Idempotent-Replayed: true`, and the work does not run;
//! - the same key with a different request, or while its first request is still being answered
//!   (by this daemon or, on a vault shared by several daemons, by any of them):
//!   **409** (`idempotency_mismatch` / `idempotency_in_progress`). On the token routes the
//!   caller's view is part of the request: an answer that named the card's fingerprint and
//!   customer (to a key with `fingerprint` or `reveal`) is never replayed to a key without them;
//! - otherwise the work runs and its answer, errors included, is stored sealed for replay, unless
//!   it is a server error (5xx, which a retry may cure) or carries [`NoStore`].
//!
//! A replay is the first answer as it was. A route may refuse to replay it ([`run_checked`]):
//! `POST /v2/tokens` sends it only while the token it names is live, and answers 409
//! `idempotency_token_gone` once that token has been deleted or has expired
//! (`routes::tokens::create`).
//!
//! If storing the answer fails after the work succeeded, the answer is still returned (the work
//! was done; answering 500 would only make the client retry it with no stored answer either) and
//! the failure is logged without any request or response content. A retry with the same key then
//! runs the work again.
//!
//! **The work is detached from the connection.** A request carrying the header runs on a task of
//! its own (`dispatch::handle`), whose answer reaches the connection through [`ANSWERING`]: a
//! client that goes away does not stop the work. Its waits for the vault are not cut at the
//! request timeout ([`UNBOUNDED`](crate::state::UNBOUNDED)); at the timeout [`run`] answers the
//! caller 503 itself and lets the work end and store its answer. A retry with the key meanwhile
//! is answered 409 `idempotency_in_progress`, and once the work ended, its stored answer: a
//! request that timed out is never run twice. (Without the key nothing changes: a request that
//! times out answers 503 and its work, if it was under way, may still complete.)
//!
//! **On a vault shared with other daemons** the key is claimed in the database with a lease
//! (`IDEMPOTENCY_LEASE`, 60 s). While the work and the storing of its answer run, [`run`] renews
//! the claim every `IDEMPOTENCY_RENEWAL` (20 s), so work of any length keeps its key while this
//! daemon lives and reaches the database; the key is taken over only after a whole lease without
//! a renewal (this daemon killed or cut off), and then the late answer is not stored.

use std::{convert::Infallible, future::Future, sync::Mutex, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    HeaderMap, Response, StatusCode,
    header::{CONTENT_TYPE, HeaderName, HeaderValue, LOCATION},
};
use vault_service::{
    ClaimRenewal, IDEMPOTENCY_RENEWAL, IdempotencyKey, IdempotencyStart, IdempotentResponse,
    MerchantId,
};

use crate::{
    http::headers::{Given, given},
    http::response::{ApiError, Body},
    state::{State, UNBOUNDED},
};

/// The request header.
pub(crate) const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The header marking a replayed answer.
pub(crate) const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Whether a route demands an `Idempotency-Key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyRule {
    /// Missing -> 400 `required`.
    Required,
    /// Missing -> no idempotency; honoured when sent.
    Optional,
}

/// The `Idempotency-Key` header: missing and `Required` -> 400 field `Idempotency-Key` code
/// `required`; empty (blank) -> 400 code `required` when the route needs a key, `empty`
/// otherwise; sent more than once (even with an empty copy), not a UUID v4, or not visible
/// ASCII -> 400 code `invalid`. A key is never silently ignored.
pub(crate) fn key_from(
    headers: &HeaderMap,
    rule: KeyRule,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let invalid = || {
        ApiError::field(
            "Idempotency-Key",
            "invalid",
            "Idempotency-Key must be one UUID v4 (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx)",
        )
    };
    let required = || {
        ApiError::field(
            "Idempotency-Key",
            "required",
            "an Idempotency-Key header (a UUID v4) is required",
        )
    };
    let value = match given(headers, &KEY_HEADER) {
        Given::Once(value) => value,
        Given::Absent => {
            return match rule {
                KeyRule::Required => Err(required()),
                KeyRule::Optional => Ok(None),
            };
        }
        Given::Repeated => return Err(invalid()),
    };
    if value.as_bytes().trim_ascii().is_empty() {
        return Err(match rule {
            KeyRule::Required => required(),
            KeyRule::Optional => ApiError::field(
                "Idempotency-Key",
                "empty",
                "Idempotency-Key is empty: send a UUID v4 or leave the header out",
            ),
        });
    }
    let text = value.to_str().map_err(|_| invalid())?;
    IdempotencyKey::parse(text.trim())
        .map(Some)
        .map_err(ApiError::from)
}

/// Whether a request field is a secret that must not shape the idempotency fingerprint in any
/// form: a CVV, a password or a session token. (A keyed digest of a 3-4 digit CVV or of a
/// password could be tested against guesses by anyone holding the vault key, for 24 hours.)
fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "password" || lower == "token" || lower.contains("cvv") || lower.contains("cvc")
}

/// Whether a request field holds a card number.
fn is_card_number_field(name: &str) -> bool {
    matches!(name, "number" | "pan")
}

/// A card number's stand-in in a fingerprint: the merchant's keyed card fingerprint (already
/// at rest for every stored card); a value that is not a card number is one fixed marker.
fn card_number_part(state: &State, merchant: MerchantId, value: &str) -> String {
    match vault_service::Pan::parse(value) {
        Ok(pan) => state
            .vault
            .idempotency_pan_part(merchant, &pan)
            .iter()
            .fold(String::from("card:"), |mut s, b| {
                s.push_str(&format!("{b:02x}"));
                s
            }),
        Err(_) => "card:invalid".to_owned(),
    }
}

/// What defines a gateway form request for idempotency: its non-secret fields (sorted by name),
/// with a card number replaced by its keyed card fingerprint and CVV, password and session
/// token fields left out entirely.
pub(crate) fn form_shape(
    state: &State,
    merchant: MerchantId,
    fields: &crate::decode::form::Fields,
) -> Bytes {
    let mut out = Vec::new();
    for (name, value) in fields.iter() {
        if is_secret_field(name) {
            continue;
        }
        let value = if is_card_number_field(name) {
            card_number_part(state, merchant, value)
        } else {
            value.to_owned()
        };
        for part in [name, value.as_str()] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    Bytes::from(out)
}

/// What defines a JSON request for idempotency: the parsed body with every secret member (CVV,
/// password, session token) removed at any depth and every card number replaced by its keyed card
/// fingerprint (outside `metadata`, which is kept whole), re-serialised with members sorted. A body that is not JSON is one fixed marker
/// (its bytes may hold a card number; it is refused the same way each time).
pub(crate) fn json_shape(state: &State, merchant: MerchantId, body: &[u8]) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Bytes::from_static(b"unparsed body");
    };
    scrub(state, merchant, &mut value);
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

fn scrub(state: &State, merchant: MerchantId, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            members.retain(|name, _| name == "metadata" || !is_secret_field(name));
            for (name, v) in members.iter_mut() {
                if name == "metadata" {
                    // The caller's own labels, stored whole (sealed) with the record: kept whole
                    // here too, so that `{"number":"order-1"}` and `{"number":"order-2"}` are
                    // two requests, not one.
                    continue;
                }
                if is_card_number_field(name) {
                    let part = match v {
                        serde_json::Value::String(s) => card_number_part(state, merchant, s),
                        _ => "card:invalid".to_owned(),
                    };
                    *v = serde_json::Value::String(part);
                } else {
                    scrub(state, merchant, v);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                scrub(state, merchant, v);
            }
        }
        _ => {}
    }
}

/// Stored instead of the sent body when a response carries this extension (for answers holding
/// card data that must never be stored, even sealed).
#[derive(Clone)]
pub(crate) struct StoreAs(pub(crate) Bytes);

/// A response carrying this extension is sent but not stored (for example a 200 whose body
/// reports a server failure for part of the work), so a retry with the key runs the work again.
#[derive(Clone, Copy)]
pub(crate) struct NoStore;

tokio::task_local! {
    /// Where the answer of a request carrying an `Idempotency-Key` goes, set by
    /// `dispatch::handle` on the request's own task (see the module documentation).
    pub(crate) static ANSWERING: Answering;
}

/// The answer of a request running on a task of its own: the first one sent reaches the caller.
pub(crate) struct Answering(Mutex<Option<tokio::sync::oneshot::Sender<Response<Body>>>>);

impl Answering {
    pub(crate) fn new(to: tokio::sync::oneshot::Sender<Response<Body>>) -> Self {
        Self(Mutex::new(Some(to)))
    }

    /// Sends `resp` to the caller, unless an answer went already.
    pub(crate) fn send(&self, resp: Response<Body>) {
        let to = self.0.lock().map(|mut to| to.take()).unwrap_or(None);
        if let Some(to) = to {
            let _ = to.send(resp);
        }
    }
}

/// What the caller of a request whose work outlasts the request timeout is told (the work goes
/// on; see the module documentation).
const STILL_RUNNING: &str = "the request took too long; its work goes on and its answer is \
     kept: retry with the same Idempotency-Key";

/// Runs `f` under the idempotency key, if any (see the module documentation). `route` is a
/// stable route name (`"POST /v2/tokens"`), `request` the parts that define the request (path
/// parameters, and the body's [`json_shape`] or [`form_shape`], never the raw body: no secret may
/// shape the fingerprint); both go into the keyed fingerprint that tells a retry from a different
/// request. `timed_out` shapes the route's 503 for a caller answered before its work ended.
pub(crate) async fn run<F, Fut>(
    state: &State,
    merchant: MerchantId,
    route: &'static str,
    key: Option<IdempotencyKey>,
    request: Vec<Bytes>,
    timed_out: impl FnOnce(ApiError) -> Response<Body>,
    f: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let replayable = |stored| std::future::ready(Ok(stored));
    run_checked(
        state, merchant, route, key, request, timed_out, replayable, f,
    )
    .await
}

/// [`run`], with a stored answer replayed only once `replayable` passed it (a route's rule for
/// answers that name something which may be gone since; its error is the answer instead).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_checked<C, CFut, F, Fut>(
    state: &State,
    merchant: MerchantId,
    route: &'static str,
    key: Option<IdempotencyKey>,
    request: Vec<Bytes>,
    timed_out: impl FnOnce(ApiError) -> Response<Body>,
    replayable: C,
    f: F,
) -> Result<Response<Body>, ApiError>
where
    C: FnOnce(IdempotentResponse) -> CFut,
    CFut: Future<Output = Result<IdempotentResponse, ApiError>>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let Some(key) = key else {
        return f().await;
    };
    let start = state
        .blocking(move |v| {
            let parts: Vec<&[u8]> = request.iter().map(|b| b.as_ref()).collect();
            v.idempotency_begin(merchant, route, &key, &parts)
        })
        .await?;
    let guard = match start {
        IdempotencyStart::Replay(stored) => return Ok(replay(replayable(stored).await?)),
        IdempotencyStart::Proceed(guard) => guard,
    };
    // On the request's own task (always, through the daemon): the work and the storing of its
    // answer run to their end, their waits not cut at the request timeout.
    let detached = ANSWERING.try_with(|_| ()).is_ok();
    let renewing = keep_claimed(
        guard.renewal(),
        IDEMPOTENCY_RENEWAL,
        move |r: ClaimRenewal| async move { state.blocking(move |_| r.renew()).await },
    );
    let answered = async move {
        let work = f();
        tokio::pin!(work);
        let resp = if detached {
            match tokio::time::timeout(state.config.request_timeout, &mut work).await {
                Ok(resp) => resp,
                Err(_) => {
                    let early = timed_out(ApiError::unavailable(STILL_RUNNING));
                    let _ = ANSWERING.try_with(|a| a.send(early));
                    work.await
                }
            }
        } else {
            work.await
        };
        store(state, merchant, route, guard, resp).await
    };
    // The claim is renewed until the answer is stored (or the key released).
    let rest = async move {
        tokio::select! {
            answer = answered => answer,
            never = renewing => match never {},
        }
    };
    if detached {
        UNBOUNDED.scope((), rest).await
    } else {
        rest.await
    }
}

/// Renews `renewal`'s claim every `every`, for as long as it is polled (never ends). A renewal
/// that fails for want of the database is tried again at the next tick (the lease is three ticks
/// long); once the claim is found lost (`IdempotencyInProgress`: another request took the key
/// over) it stops renewing. Nothing of the request is logged.
async fn keep_claimed<R, F, Fut>(renewal: Option<R>, every: Duration, renew: F) -> Infallible
where
    R: Clone,
    F: Fn(R) -> Fut,
    Fut: Future<Output = Result<(), ApiError>>,
{
    if let Some(renewal) = renewal {
        loop {
            tokio::time::sleep(every).await;
            match renew(renewal.clone()).await {
                Ok(()) => {}
                // `renew`'s only conflict: the claim is another request's now.
                Err(e) if e.status() == StatusCode::CONFLICT => {
                    tracing::warn!(
                        "an idempotency claim was taken over while its request ran: its answer \
                         will not be stored"
                    );
                    break;
                }
                Err(e) => tracing::warn!(
                    status = e.status().as_u16(),
                    "an idempotency claim could not be renewed; trying again"
                ),
            }
        }
    }
    std::future::pending().await
}

/// Stores `resp` (unless it is a server error or [`NoStore`]) as the answer of `guard`'s key,
/// and returns it.
async fn store(
    state: &State,
    merchant: MerchantId,
    route: &'static str,
    guard: vault_service::IdempotencyGuard,
    resp: Result<Response<Body>, ApiError>,
) -> Result<Response<Body>, ApiError> {
    let resp = resp.unwrap_or_else(ApiError::into_response);
    let (resp, stored) = capture(resp).await;
    let Some(stored) = stored else {
        // Dropping the guard frees the key without storing anything.
        return Ok(resp);
    };
    if let Err(e) = state.blocking(move |_| guard.finish(&stored)).await {
        // The work is done: answer it. Nothing of the request or answer is logged.
        tracing::warn!(
            route,
            merchant = %merchant,
            status = resp.status().as_u16(),
            error = ?e,
            "idempotent answer could not be stored"
        );
    }
    Ok(resp)
}

/// The stored answer for `key`, if any, without running or storing anything (for a request that
/// can no longer be served, such as one on a spent session: only a retry of the request that
/// spent it has an answer).
pub(crate) async fn replay_only(
    state: &State,
    merchant: MerchantId,
    route: &'static str,
    key: IdempotencyKey,
    request: Vec<Bytes>,
) -> Result<Option<Response<Body>>, ApiError> {
    // A look-up only: no key is taken (on a shared vault, no claim is written).
    let stored = state
        .blocking(move |v| {
            let parts: Vec<&[u8]> = request.iter().map(|b| b.as_ref()).collect();
            v.idempotency_lookup(merchant, route, &key, &parts)
        })
        .await?;
    Ok(stored.map(replay))
}

/// Collects `resp`'s in-memory body, and returns the response to send plus what to store:
/// `None` for server errors and [`NoStore`] answers.
async fn capture(resp: Response<Body>) -> (Response<Body>, Option<IdempotentResponse>) {
    let (mut parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let store_as = parts.extensions.remove::<StoreAs>();
    let no_store = parts.extensions.remove::<NoStore>().is_some();
    let stored = (!no_store && !parts.status.is_server_error()).then(|| IdempotentResponse {
        status: parts.status.as_u16(),
        content_type: header_text(&parts.headers, &CONTENT_TYPE).unwrap_or_default(),
        location: header_text(&parts.headers, &LOCATION),
        body: store_as.map_or_else(|| body.to_vec(), |s| s.0.to_vec()),
    });
    (Response::from_parts(parts, Full::new(body)), stored)
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The stored answer, as sent the first time, plus `Idempotent-Replayed: true`.
fn replay(stored: IdempotentResponse) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(stored.status) else {
        tracing::error!(
            status = stored.status,
            "stored idempotent answer has a bad status"
        );
        return ApiError::internal().into_response();
    };
    let mut resp = Response::new(Full::new(Bytes::from(stored.body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&stored.content_type)
        && !stored.content_type.is_empty()
    {
        headers.insert(CONTENT_TYPE, v);
    }
    if let Some(v) = stored
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        headers.insert(LOCATION, v);
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const KEY: &str = "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(KEY_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn refused(r: Result<Option<IdempotencyKey>, ApiError>) -> String {
        let resp = r.expect_err("refused").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        format!("{:?}", resp.body())
    }

    #[test]
    fn header_rules() {
        assert_eq!(key_from(&headers(&[]), KeyRule::Optional).unwrap(), None);
        let e = refused(key_from(&headers(&[]), KeyRule::Required));
        assert!(
            e.contains("Idempotency-Key") && e.contains("required"),
            "{e}"
        );
        let e = refused(key_from(&headers(&[" "]), KeyRule::Required));
        assert!(e.contains("required"), "{e}");
        let k = key_from(&headers(&[KEY]), KeyRule::Required).unwrap();
        assert_eq!(k.map(|k| k.to_string()).as_deref(), Some(KEY));
        let e = refused(key_from(&headers(&[""]), KeyRule::Optional));
        assert!(e.contains("Idempotency-Key") && e.contains("empty"), "{e}");
        for bad in [
            &["nope"][..],
            &[KEY, KEY][..],
            &["", KEY][..],
            &[KEY, ""][..],
            &[" ", KEY][..],
        ] {
            let e = refused(key_from(&headers(bad), KeyRule::Optional));
            assert!(
                e.contains("Idempotency-Key") && e.contains("invalid"),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn capture_keeps_the_body_and_honours_the_extensions() {
        let mut resp = crate::http::response::with_body(
            StatusCode::CREATED,
            crate::http::response::json_type(),
            Bytes::from_static(b"{\"pan\":\"secret\"}"),
        );
        resp.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/x"));
        resp.extensions_mut()
            .insert(StoreAs(Bytes::from_static(b"{}")));
        let (sent, stored) = capture(resp).await;
        let stored = stored.expect("a 201 is stored");
        assert_eq!(stored.body, b"{}");
        assert_eq!(stored.location.as_deref(), Some("/x"));
        assert_eq!(stored.content_type, "application/json");
        let sent = sent.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"{\"pan\":\"secret\"}");

        let (_, stored) = capture(ApiError::internal().into_response()).await;
        assert!(stored.is_none(), "5xx is not stored");
        let mut resp = crate::http::response::empty(StatusCode::OK);
        resp.extensions_mut().insert(NoStore);
        assert!(capture(resp).await.1.is_none());
    }

    /// The claim is renewed at every tick for as long as the work runs; a renewal that fails for
    /// want of the database is tried again at the next tick; a claim found lost is not renewed
    /// again; without a claim nothing is renewed.
    #[tokio::test(start_paused = true)]
    async fn a_claim_is_renewed_while_the_work_runs() {
        use std::sync::{
            Arc,
            atomic::{AtomicU32, Ordering},
        };
        let every = Duration::from_secs(20);
        let ticks = |answers: Vec<Option<StatusCode>>| {
            let calls = Arc::new(AtomicU32::new(0));
            let c = calls.clone();
            let renewing = keep_claimed(Some(()), every, move |()| {
                let n = c.fetch_add(1, Ordering::SeqCst) as usize;
                let answer = answers.get(n).copied().flatten();
                async move {
                    match answer {
                        None => Ok(()),
                        Some(StatusCode::CONFLICT) => {
                            Err(ApiError::from(vault_service::VaultError::Conflict(
                                vault_service::VaultConflict::IdempotencyInProgress,
                            )))
                        }
                        Some(_) => Err(ApiError::unavailable("the database is unavailable")),
                    }
                }
            });
            (calls, renewing)
        };
        // Work of 65 s: renewed at 20, 40 and 60 s; the second renewal failed and was retried.
        let (calls, renewing) = ticks(vec![None, Some(StatusCode::SERVICE_UNAVAILABLE)]);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(65)) => {}
            never = renewing => match never {},
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Work of 10 s: ended before the first tick, nothing renewed.
        let (calls, renewing) = ticks(vec![]);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
            never = renewing => match never {},
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // The claim is found lost at the first tick: no renewal after it.
        let (calls, renewing) = ticks(vec![Some(StatusCode::CONFLICT)]);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(100)) => {}
            never = renewing => match never {},
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // No claim (a directory vault): nothing to renew.
        let renewing = keep_claimed(None::<()>, every, |()| async { panic!("nothing to renew") });
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(100)) => {}
            never = renewing => match never {},
        }
    }

    #[test]
    fn replay_rebuilds_the_answer() {
        let resp = replay(IdempotentResponse {
            status: 400,
            content_type: "application/json".into(),
            location: None,
            body: b"{}".to_vec(),
        });
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[REPLAYED_HEADER], "true");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert!(resp.headers().get(LOCATION).is_none());
    }
}
