//! `GET /hosted-fields/v1/{asset}`: the Hosted Fields browser assets. `hosted-fields.js` is the
//! merchant-side library (long-cached, published with an SRI hash); `frame.html` (with
//! `frame.js` and `frame.css`) is one card field, framed by the merchant's checkout page.
//!
//! `frame.html?field=..&session=..&origin=..&channel=..` is served with a strict
//! Content-Security-Policy whose `frame-ancestors` is the `origin` the merchant's library says it
//! runs on, checked against the session's `allowOriginUrl` while the session is live: a page on
//! another origin gets a frame the browser refuses to show. The frame then posts the card to
//! `POST /payments` from the vault's own origin and names that same `origin` in the
//! `hostedFieldsOrigin` field, which the vault checks against the session as it would a
//! browser `Origin` (see [`frame_origin`]).

use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};
use vault_gateway::SessionToken;

use crate::{
    http::response::{self, ApiError, Body},
    http::router::Param,
    routes::gateway,
    state::State,
};

/// The merchant-side library.
pub(crate) const LIBRARY_JS: &str = include_str!("../../../assets/hosted-fields/hosted-fields.js");
const FRAME_HTML: &str = include_str!("../../../assets/hosted-fields/frame.html");
const FRAME_JS: &str = include_str!("../../../assets/hosted-fields/frame.js");
const FRAME_CSS: &str = include_str!("../../../assets/hosted-fields/frame.css");

/// Versioned, immutable assets: a changed file gets a new path.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The form field naming the merchant page's origin on a frame's `POST /payments`.
pub(crate) const ORIGIN_FIELD: &str = "hostedFieldsOrigin";

/// `GET /hosted-fields/v1/{asset}`.
pub(crate) async fn asset(state: &State, req: Request<Incoming>, param: Param) -> Response<Body> {
    let name = match &param {
        Param::Text(t) => t.as_str(),
        _ => "",
    };
    match name {
        "hosted-fields.js" => {
            let mut resp = static_asset(LIBRARY_JS, "text/javascript; charset=utf-8");
            // Merchants load it cross-origin with `integrity` and `crossorigin="anonymous"`,
            // which needs CORS for the SRI check.
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            resp
        }
        "frame.js" => static_asset(FRAME_JS, "text/javascript; charset=utf-8"),
        "frame.css" => static_asset(FRAME_CSS, "text/css; charset=utf-8"),
        "frame.html" => frame(state, req.uri().query().unwrap_or("")).await,
        _ => ApiError::not_found("asset", "no such Hosted Fields asset").into_response(),
    }
}

fn static_asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut resp = response::with_body(
        StatusCode::OK,
        HeaderValue::from_static(content_type),
        bytes::Bytes::from_static(body.as_bytes()),
    );
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    common_headers(h);
    resp
}

fn common_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// Why a `frame.html` request is refused outright.
#[derive(Debug, PartialEq, Eq)]
enum FrameRefusal {
    /// `origin` is missing or not `http(s)://host[:port]`.
    Origin,
    /// `field` is not one of the four kinds.
    Field,
    /// A parameter given more than once: the frame's script reads the first, so the page's
    /// policy must not be made from another.
    Repeated(&'static str),
}

/// The checked query of `frame.html`: the merchant page's origin.
fn frame_query(query: &str) -> Result<(String, Option<SessionToken>), FrameRefusal> {
    let mut origin = None;
    let mut field = None;
    let mut session = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let (slot, name) = match k.as_ref() {
            "origin" => (&mut origin, "origin"),
            "field" => (&mut field, "field"),
            "session" => (&mut session, "session"),
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(FrameRefusal::Repeated(name));
        }
    }
    let session = session.and_then(|s| SessionToken::parse(&s).ok());
    if !matches!(field.as_deref(), Some("number" | "expiry" | "cvv" | "name")) {
        return Err(FrameRefusal::Field);
    }
    let origin = origin.ok_or(FrameRefusal::Origin)?;
    // `*` is a session setting, never a page's origin.
    if origin == "*" || origin.ends_with('/') || gateway::origin(&origin).is_err() {
        return Err(FrameRefusal::Origin);
    }
    Ok((origin, session))
}

/// `frame.html`: `frame-ancestors` is the page's origin when the session allows it; when a live
/// session names another origin, that one (so the browser refuses the frame on this page); when
/// a live session names none (a server-only session), `'none'`.
/// Unknown, expired and spent sessions still get a frame, which shows the vault's refusal when
/// the shopper submits.
async fn frame(state: &State, query: &str) -> Response<Body> {
    let (origin, session) = match frame_query(query) {
        Ok(q) => q,
        Err(FrameRefusal::Origin) => {
            return ApiError::field(
                "origin",
                "invalid",
                "origin must be the page's origin, such as https://shop.example",
            )
            .into_response();
        }
        Err(FrameRefusal::Field) => {
            return ApiError::field(
                "field",
                "invalid",
                "field must be number, expiry, cvv or name",
            )
            .into_response();
        }
        Err(FrameRefusal::Repeated(name)) => {
            return ApiError::field(name, "duplicate", "given more than once").into_response();
        }
    };
    // `None`: no live session known; `Some(None)`: a live session without `allowOriginUrl`,
    // which is server-only (it refuses every browser request), so no page may embed its frames.
    let allowed = match session {
        Some(token) => state
            .gateway(move |g| g.session(&token))
            .await
            .ok()
            .map(|view| view.allow_origin),
        None => None,
    };
    let ancestor = match allowed.as_ref().map(Option::as_deref) {
        Some(None) => "'none'".to_owned(),
        Some(Some(a)) if a != "*" && !gateway::origin_matches(Some(a), &origin) => {
            a.trim_end_matches('/').to_owned()
        }
        _ => origin,
    };
    let mut resp = response::with_body(
        StatusCode::OK,
        HeaderValue::from_static("text/html; charset=utf-8"),
        bytes::Bytes::from_static(FRAME_HTML.as_bytes()),
    );
    let h = resp.headers_mut();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors {ancestor}"
    );
    match HeaderValue::from_str(&csp) {
        Ok(v) => h.insert(header::CONTENT_SECURITY_POLICY, v),
        Err(_) => return ApiError::internal().into_response(),
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    common_headers(h);
    resp
}

/// The merchant page's origin a Hosted Fields frame speaks for, on a `POST /payments`.
///
/// A frame posts from the vault's own origin, so the browser's `Origin` is the vault's. It
/// names the page's origin in `hostedFieldsOrigin` instead; that is trusted only on a request
/// the browser marks `Sec-Fetch-Site: same-origin` (a header no page script can set): such a
/// request comes from a document of the vault's origin, which serves no page but the frames,
/// and a frame only runs inside the origin its `frame-ancestors` names. Outside a browser any
/// header can be forged, as `Origin` can: the origin binding protects shoppers' browsers, while
/// the session token is what authorises the request.
///
/// `Ok(None)`: not a frame's request (no `hostedFieldsOrigin`); `Err(())`: the field was sent
/// by something that is not a frame of the vault (`from_vault_page` is [`from_vault_page`] of
/// the request), or is not an origin.
pub(crate) fn frame_origin(
    from_vault_page: bool,
    field: Option<&str>,
) -> Result<Option<String>, ()> {
    let Some(origin) = field else {
        return Ok(None);
    };
    if !from_vault_page || origin == "*" || gateway::origin(origin).is_err() {
        return Err(());
    }
    Ok(Some(origin.to_owned()))
}

/// Whether the browser marks the request as sent by a document of the vault's own origin.
pub(crate) fn from_vault_page(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"same-origin"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frame_queries() {
        let (o, s) = frame_query("field=number&origin=http%3A%2F%2F127.0.0.1%3A8000").unwrap();
        assert_eq!(o, "http://127.0.0.1:8000");
        assert!(s.is_none());
        assert_eq!(
            frame_query("field=pin&origin=https://a.example"),
            Err(FrameRefusal::Field)
        );
        for bad in [
            "",
            "origin=*",
            "origin=https://a.example/",
            "origin=https://a.example/x",
        ] {
            assert_eq!(
                frame_query(&format!("field=cvv&{bad}")).err(),
                Some(FrameRefusal::Origin),
                "{bad}"
            );
        }
        // A header injection attempt is not an origin.
        assert!(frame_query("field=cvv&origin=https://a.example%0d%0ax:y").is_err());
        // A repeated parameter: the script would read the first, a policy made from the last
        // would name another page.
        for q in [
            "field=number&origin=https://evil.example&origin=https://shop.example",
            "field=number&field=cvv&origin=https://shop.example",
            "field=number&origin=https://shop.example&session=a&session=b",
        ] {
            assert!(
                matches!(frame_query(q), Err(FrameRefusal::Repeated(_))),
                "{q}"
            );
        }
    }

    #[test]
    fn frame_origin_needs_a_same_origin_browser_request() {
        let mut h = HeaderMap::new();
        assert!(!from_vault_page(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!from_vault_page(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(from_vault_page(&h));
        assert_eq!(frame_origin(false, None), Ok(None));
        assert_eq!(frame_origin(false, Some("https://shop.example")), Err(()));
        assert_eq!(
            frame_origin(true, Some("https://shop.example")),
            Ok(Some("https://shop.example".to_owned()))
        );
        assert_eq!(frame_origin(true, Some("*")), Err(()));
        assert_eq!(frame_origin(true, Some("shop.example")), Err(()));
    }
}
