//! The Hosted Fields assets over HTTP (no browser): the library's SRI hash published in
//! docs/hosted-fields.md, cache and security headers, the frame's Content-Security-Policy, and
//! the `hostedFieldsOrigin` a frame names on `POST /payments`.

use sha2::{Digest, Sha384};
use vault_gateway::{SessionKind, SessionOptions};
use vault_service::MerchantId;
use vault_testkit::daemon::{Resp, TestDaemon, raw};

const SHOP: &str = "https://shop.example";
const EVIL: &str = "https://evil.example";
const PAN: &str = "4242424242424242";

async fn get(d: &TestDaemon, path: &str) -> Resp {
    d.send("GET", path, None, None).await
}

fn session(d: &TestDaemon) -> String {
    let options = SessionOptions {
        allow_origin: Some(SHOP.to_owned()),
        ..SessionOptions::default()
    };
    d.vault
        .create_session(
            MerchantId::new(890_490).unwrap(),
            SessionKind::Tokenize,
            options,
        )
        .unwrap()
        .token
        .to_string()
}

/// The standard base64 alphabet, padded (for the SRI hash).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn library_is_long_cached_and_its_sri_hash_is_in_the_docs() {
    let d = TestDaemon::start().await;
    let r = get(&d, "/hosted-fields/v1/hosted-fields.js").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let hash = format!("sha384-{}", base64(&Sha384::digest(&r.body)));
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/hosted-fields.md"
    ))
    .unwrap();
    assert!(
        docs.contains(&format!("integrity=\"{hash}\"")),
        "docs/hosted-fields.md must publish the served library's hash {hash}"
    );
    // Small, and no request to anyone but the vault.
    assert!(r.body.len() < 16 * 1024);
    let text = r.text();
    assert!(!text.contains("https://") && !text.contains("http://"));
    for asset in ["frame.js", "frame.css"] {
        let r = get(&d, &format!("/hosted-fields/v1/{asset}")).await;
        assert_eq!(r.status, 200, "{asset}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(get(&d, "/hosted-fields/v1/other.js").await.status, 404);
}

#[tokio::test]
async fn frame_csp_allows_only_the_sessions_origin_as_ancestor() {
    let d = TestDaemon::start().await;
    let token = session(&d);
    let frame = |origin: &str, token: &str| {
        format!("/hosted-fields/v1/frame.html?field=number&session={token}&origin={origin}")
    };
    let r = get(&d, &frame(SHOP, &token)).await;
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.ends_with(&format!("frame-ancestors {SHOP}")), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(!r.text().contains("<script>"), "no inline script");
    // A page on another origin gets a frame only the session's origin may show.
    let r = get(&d, &frame(EVIL, &token)).await;
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.ends_with(&format!("frame-ancestors {SHOP}")), "{csp}");
    // An unknown session: the page's own origin (submitting will be refused by the vault).
    let r = get(&d, &frame(EVIL, "00000000-0000-4000-8000-000000000000")).await;
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.ends_with(&format!("frame-ancestors {EVIL}")), "{csp}");
    // A live server-only session (no allowOriginUrl): no page may embed its frames.
    let server_only = d
        .vault
        .create_session(
            MerchantId::new(890_490).unwrap(),
            SessionKind::Tokenize,
            SessionOptions::default(),
        )
        .unwrap()
        .token
        .to_string();
    let r = get(&d, &frame(SHOP, &server_only)).await;
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
    for bad in ["*", "javascript:alert(1)", "https://shop.example/x"] {
        assert_eq!(get(&d, &frame(bad, &token)).await.status, 400, "{bad}");
    }
    let r = get(
        &d,
        &format!("/hosted-fields/v1/frame.html?field=pin&origin={SHOP}"),
    )
    .await;
    assert_eq!(
        r.error_fields(),
        [("field".to_owned(), "invalid".to_owned())]
    );
}

/// A frame's `POST /payments`: the browser's `Origin` is the vault's, the page's origin is named
/// in `hostedFieldsOrigin`.
async fn frame_post(d: &TestDaemon, token: &str, page: &str, same_origin: bool) -> Resp {
    let body = format!(
        "token={token}&number={PAN}&expiryMonth=12&expiryYear=2030&cvv=123&hostedFieldsOrigin={page}"
    );
    let fetch_site = if same_origin {
        "Sec-Fetch-Site: same-origin\r\n"
    } else {
        ""
    };
    let req = format!(
        "POST /payments HTTP/1.1\r\nHost: vault.example\r\nConnection: close\r\nOrigin: https://vault.example\r\n{fetch_site}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(&d.sock, req.as_bytes()).await.unwrap()
}

fn gateway_errors(r: &Resp) -> Vec<(String, String)> {
    r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["fieldName"].as_str().unwrap().to_owned(),
                e["messageCode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn payments_check_a_frames_page_origin_against_the_session() {
    let d = TestDaemon::start().await;
    let token = session(&d);
    // Only a same-origin browser request (a frame of the vault) may name the page's origin.
    let r = frame_post(&d, &token, SHOP, false).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        gateway_errors(&r),
        [("hostedFieldsOrigin".to_owned(), "field.invalid".to_owned())]
    );
    let r = frame_post(&d, &token, EVIL, true).await;
    assert_eq!(
        gateway_errors(&r),
        [("Origin".to_owned(), "origin.mismatch".to_owned())]
    );
    // The session's page: captured (the browser Origin, the vault's own, is not what counts).
    let r = frame_post(&d, &token, SHOP, true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["maskedPan"], "424242****4242");
    assert!(!r.text().contains(PAN));
}
