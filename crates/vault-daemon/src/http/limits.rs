//! Reading request bodies within the size and time limits, and the content-type gate.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::{HeaderMap, body::Body as _, body::Incoming, header::CONTENT_TYPE};

use crate::http::{
    headers::{Given, given},
    response::ApiError,
};

/// Reads the whole body: 413 beyond `limit` bytes (refused from `Content-Length` before reading
/// when it is declared), 408 when it takes longer than `timeout`, 400 when the client breaks the
/// framing.
pub(crate) async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = body.size_hint().lower();
    if usize::try_from(declared).map_or(true, |n| n > limit) {
        return Err(ApiError::too_large());
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ApiError::body_timeout()),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::too_large()),
        Ok(Err(_)) => Err(ApiError::field(
            "body",
            "unreadable",
            "the request body could not be read",
        )),
    }
}

/// 415 unless the request says `Content-Type: application/json` (parameters such as
/// `charset=utf-8` are allowed).
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if is_json(headers) {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type())
    }
}

/// True when the request declares a JSON body, in exactly one `Content-Type` header.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Given::Once(value) = given(headers, &CONTENT_TYPE) else {
        return false;
    };
    value
        .to_str()
        .ok()
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|media| media.eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/jsonx", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_json(&h), ok, "{v}");
        }
        // Two declarations, even if one is JSON, are none.
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }
}
