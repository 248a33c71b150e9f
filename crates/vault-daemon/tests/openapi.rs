//! `docs/openapi.json` documents exactly the routes the router serves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeSet;

#[test]
fn openapi_matches_the_route_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (p, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {p} has no responses");
            documented.insert((method.to_uppercase(), p.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = vault_daemon::routes()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
    // Every schema reference resolves.
    let text = std::fs::read_to_string(path).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for r in text.split("\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
}
