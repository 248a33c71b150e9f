//! The route table and its matching (the handlers are called from `dispatch.rs`). Routes are
//! matched by path template first, then by method, so an unknown path is 404 and a known path
//! with the wrong method is 405 with `Allow`.

use vault_service::Token;

/// A route the daemon serves: a method and a path template (`{name}` is one path segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// `GET`, `POST`, `PUT`, `DELETE` or `OPTIONS`.
    pub method: &'static str,
    /// The path template, as used in metrics labels and `docs/openapi.json`.
    pub path: &'static str,
}

/// Which handler a route runs; its index is the metrics slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteId {
    Health,
    Metrics,
    TokenCreate,
    TokenBatch,
    TokenGet,
    TokenUpdate,
    TokenDelete,
    TokenReveal,
    MerchantList,
    MerchantAdd,
    MerchantPassword,
    MerchantUnlock,
    ApiKeyList,
    ApiKeyCreate,
    ApiKeyRevoke,
    TerminalList,
    TerminalAdd,
    KeyStatus,
    KeyRotate,
    KeyRewrap,
    KeyRetire,
    Sweep,
    Stats,
    Backup,
    SessionToken,
    SessionTokenPreflight,
    Payments,
    PaymentsPreflight,
    PaymentCard,
    PaymentResult,
    HostedFieldsSession,
    HostedFieldsAsset,
    AuditEntries,
    AuditVerify,
    AuditArchive,
}

/// Every route, in `RouteId` order.
pub(crate) const TABLE: [(Route, RouteId); 35] = [
    (r("GET", "/health"), RouteId::Health),
    (r("GET", "/metrics"), RouteId::Metrics),
    (r("POST", "/v2/tokens"), RouteId::TokenCreate),
    (r("POST", "/v2/tokens/batch"), RouteId::TokenBatch),
    (r("GET", "/v2/tokens/{token}"), RouteId::TokenGet),
    (r("PUT", "/v2/tokens/{token}"), RouteId::TokenUpdate),
    (r("DELETE", "/v2/tokens/{token}"), RouteId::TokenDelete),
    (r("POST", "/v2/tokens/{token}/reveal"), RouteId::TokenReveal),
    (r("GET", "/admin/merchants"), RouteId::MerchantList),
    (r("POST", "/admin/merchants"), RouteId::MerchantAdd),
    (
        r("POST", "/admin/merchants/{id}/password"),
        RouteId::MerchantPassword,
    ),
    (
        r("POST", "/admin/merchants/{id}/unlock"),
        RouteId::MerchantUnlock,
    ),
    (r("GET", "/admin/apikeys"), RouteId::ApiKeyList),
    (r("POST", "/admin/apikeys"), RouteId::ApiKeyCreate),
    (
        r("POST", "/admin/apikeys/{id}/revoke"),
        RouteId::ApiKeyRevoke,
    ),
    (r("GET", "/admin/terminals"), RouteId::TerminalList),
    (r("POST", "/admin/terminals"), RouteId::TerminalAdd),
    (r("GET", "/admin/keys"), RouteId::KeyStatus),
    (r("POST", "/admin/keys/rotate"), RouteId::KeyRotate),
    (r("POST", "/admin/keys/rewrap"), RouteId::KeyRewrap),
    (r("POST", "/admin/keys/retire"), RouteId::KeyRetire),
    (r("POST", "/admin/sweep"), RouteId::Sweep),
    (r("GET", "/admin/stats"), RouteId::Stats),
    (r("POST", "/admin/backup"), RouteId::Backup),
    (r("POST", "/token"), RouteId::SessionToken),
    (r("OPTIONS", "/token"), RouteId::SessionTokenPreflight),
    (r("POST", "/payments"), RouteId::Payments),
    (r("OPTIONS", "/payments"), RouteId::PaymentsPreflight),
    (r("POST", "/payments/{txId}/card"), RouteId::PaymentCard),
    (r("POST", "/payments/{txId}/result"), RouteId::PaymentResult),
    (
        r(
            "POST",
            "/processing-terminals/{processingTerminalId}/hosted-fields-sessions",
        ),
        RouteId::HostedFieldsSession,
    ),
    (
        r("GET", "/hosted-fields/v1/{asset}"),
        RouteId::HostedFieldsAsset,
    ),
    (r("GET", "/admin/audit"), RouteId::AuditEntries),
    (r("POST", "/admin/audit/verify"), RouteId::AuditVerify),
    (r("POST", "/admin/audit/archive"), RouteId::AuditArchive),
];

/// Metrics slot for requests that matched no route.
pub(crate) const UNMATCHED: usize = TABLE.len();

const fn r(method: &'static str, path: &'static str) -> Route {
    Route { method, path }
}

/// Every route the daemon serves (for documentation checks and clients).
pub fn routes() -> impl Iterator<Item = Route> {
    TABLE.iter().map(|(route, _)| *route)
}

/// The path parameter of a matched route.
pub(crate) enum Param {
    None,
    /// A `{token}` segment; `None` when it is not a well-formed token (answered 404 like any
    /// unknown token, after authentication).
    Token(Option<Token>),
    /// Any other `{name}` segment.
    Text(String),
}

pub(crate) enum Matched {
    Route(RouteId, Param),
    WrongMethod(String),
    Unknown,
}

pub(crate) fn find(method: &str, path: &str) -> Matched {
    // A path a template spells out literally (`/v2/tokens/batch`) belongs to the literal
    // templates alone: it is not also a value of `{token}`, so a wrong method there is 405.
    let literal = TABLE
        .iter()
        .any(|(route, _)| !route.path.contains('{') && route.path == path);
    let mut allow: Option<String> = None;
    for (route, id) in &TABLE {
        if literal && route.path.contains('{') {
            continue;
        }
        let Some(param) = match_template(route.path, path) else {
            continue;
        };
        if route.method == method {
            let param = match (param, route.path.contains("{token}")) {
                (None, _) => Param::None,
                (Some(p), true) => Param::Token(Token::parse(p).ok()),
                (Some(p), false) => Param::Text(p.to_owned()),
            };
            return Matched::Route(*id, param);
        }
        let a = allow.get_or_insert_with(String::new);
        if !a.is_empty() {
            a.push_str(", ");
        }
        a.push_str(route.method);
    }
    allow.map_or(Matched::Unknown, Matched::WrongMethod)
}

/// The `{param}` segment when `path` matches `template` (`Some(None)` for templates without one).
fn match_template<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut param = None;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(param),
            (Some(ts), Some(ps)) => {
                if ts.starts_with('{') {
                    if ps.is_empty() {
                        return None;
                    }
                    param = Some(ps);
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_route_id_order() {
        for (i, (_, id)) in TABLE.iter().enumerate() {
            assert_eq!(*id as usize, i);
        }
    }

    #[test]
    fn matching() {
        let tok = "eefb5438ff1b7a1b14b20ab5b809c61b129966b60e502390";
        assert!(matches!(
            find("POST", "/v2/tokens/batch"),
            Matched::Route(RouteId::TokenBatch, Param::None)
        ));
        assert!(matches!(
            find("GET", &format!("/v2/tokens/{tok}")),
            Matched::Route(RouteId::TokenGet, Param::Token(Some(_)))
        ));
        // The literal route owns its path: other methods are 405, not a `{token}` lookup.
        for method in ["GET", "PUT", "DELETE"] {
            match find(method, "/v2/tokens/batch") {
                Matched::WrongMethod(allow) => assert_eq!(allow, "POST"),
                _ => panic!("{method} /v2/tokens/batch: expected 405"),
            }
        }
        assert!(matches!(find("GET", "/v2/tokens/"), Matched::Unknown));
        match find("PATCH", &format!("/v2/tokens/{tok}")) {
            Matched::WrongMethod(allow) => assert_eq!(allow, "GET, PUT, DELETE"),
            _ => panic!("expected 405"),
        }
        assert!(matches!(find("GET", "/v2/tokens/a/b"), Matched::Unknown));
        assert!(matches!(find("GET", "/health/"), Matched::Unknown));
    }
}
