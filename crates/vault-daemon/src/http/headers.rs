//! Headers a request gives at most once: `Authorization`, `Content-Type`, `Origin`,
//! `Idempotency-Key`. A request that repeats one is never read by its first (or last) copy: which
//! one counts is not for the daemon to guess, so each route refuses it in its own terms.

use hyper::{HeaderMap, header::HeaderName, header::HeaderValue};

/// How often a request gave a header.
pub(crate) enum Given<'a> {
    /// Not at all.
    Absent,
    /// Exactly once.
    Once(&'a HeaderValue),
    /// More than once.
    Repeated,
}

/// How often `headers` hold `name`, and its value when once.
pub(crate) fn given<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Given<'a> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Given::Absent,
        (Some(value), None) => Given::Once(value),
        (Some(_), Some(_)) => Given::Repeated,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use hyper::header::ORIGIN;

    use super::*;

    #[test]
    fn absent_once_and_repeated() {
        let mut h = HeaderMap::new();
        assert!(matches!(given(&h, &ORIGIN), Given::Absent));
        h.insert(ORIGIN, HeaderValue::from_static("https://a.example"));
        assert!(matches!(given(&h, &ORIGIN), Given::Once(v) if v == "https://a.example"));
        h.append(ORIGIN, HeaderValue::from_static("https://a.example"));
        assert!(matches!(given(&h, &ORIGIN), Given::Repeated));
    }
}
