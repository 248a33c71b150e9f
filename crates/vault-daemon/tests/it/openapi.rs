//! `docs/openapi.json` documents exactly the routes the router serves.

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

#[test]
fn openapi_documents_the_statuses_every_route_can_answer() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (p, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let mut want = vec!["405"];
            if op.get("requestBody").is_some() {
                want.extend(["400", "408", "413", "415"]);
            }
            for code in want {
                assert!(
                    responses.contains_key(code),
                    "{method} {p} does not document {code}"
                );
            }
        }
    }
    // Merchant ids have one spelling: no leading zero.
    let schemas = &doc["components"]["schemas"];
    for name in [
        "MerchantAddRequest",
        "ApiKeyCreateRequest",
        "TerminalAddRequest",
    ] {
        assert_eq!(
            schemas[name]["properties"]["merchant_id"]["pattern"], "^[1-9][0-9]{0,17}$",
            "{name}"
        );
    }
    assert_eq!(
        schemas["ApiKeyCreateRequest"]["properties"]["scopes"]["minItems"],
        1
    );
    assert!(
        schemas["BackupRequest"]["properties"]["path"]["pattern"]
            .as_str()
            .unwrap()
            .starts_with("^/")
    );
    assert_eq!(
        schemas["TokenizeRequest"]["properties"]["card"]["additionalProperties"],
        false
    );
    let info = doc["info"]["description"].as_str().unwrap();
    assert!(info.contains("Luhn") && info.contains("expiry"), "{info}");
}
