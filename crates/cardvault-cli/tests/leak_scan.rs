//! Nothing in clear: `cardvault serve` at `--log-level trace` (text, then JSON) is driven through
//! every kind of call with a few hundred known card numbers (tokenize, get, reveal, update, batch,
//! delete, bad requests with PANs and CVV-looking values in wrong fields, admin calls,
//! `/metrics`). Afterwards no PAN, as ASCII digits or as packed BCD, may appear in the data
//! directory, the daemon's stdout/stderr, `/metrics` or any response other than a reveal; error
//! bodies must not echo any submitted digits. While the daemon runs, `/proc/<pid>/limits` must
//! show a core-file limit of 0 and the process must be non-dumpable. See `docs/harnesses.md`.
#![cfg(test)]

#[path = "it/common.rs"]
mod common;

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{Read, Write},
    os::unix::{fs::MetadataExt, net::UnixStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use common::{bin, is_root, luhn_pan, ok, random_key_file};
use vault_testkit::files::walk;

/// Cards tokenized per log format (plus updates, batch and bad requests on top):
/// `CARDVAULT_LEAK_SCAN_CARDS`, default 150.
fn cards() -> usize {
    std::env::var("CARDVAULT_LEAK_SCAN_CARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
        .max(20)
}
const MERCHANT: &str = "890490";
/// An unprivileged uid/gid to run the daemon as when the test runs as root, so that "not
/// dumpable" is observable (a non-dumpable process's `/proc/<pid>` files belong to root).
const NOBODY: u32 = 65534;

/// Distinct known PANs of several brands and lengths.
fn known_pans(rng: &mut impl rand::Rng, n: usize, seen: &mut HashSet<String>) -> Vec<String> {
    let kinds: [(&str, usize); 5] = [("4", 16), ("51", 16), ("37", 15), ("36", 14), ("62", 19)];
    let mut out = Vec::new();
    while out.len() < n {
        let (p, l) = kinds[out.len() % kinds.len()];
        let pan = luhn_pan(rng, p, l);
        if seen.insert(pan.clone()) {
            out.push(pan);
        }
    }
    out
}

/// Packed BCD forms of a digit string: two digits per byte, an odd length padded with a trailing
/// `F` or `0` nibble, or a leading `0` nibble.
fn bcd_forms(pan: &str) -> Vec<Vec<u8>> {
    let d: Vec<u8> = pan.bytes().map(|b| b - b'0').collect();
    let pack = |n: &[u8]| -> Vec<u8> { n.chunks(2).map(|c| (c[0] << 4) | c[1]).collect() };
    if d.len().is_multiple_of(2) {
        return vec![pack(&d)];
    }
    let mut f = d.clone();
    f.push(0xF);
    let mut z = d.clone();
    z.push(0);
    let mut lead = vec![0];
    lead.extend_from_slice(&d);
    vec![pack(&f), pack(&z), pack(&lead)]
}

/// Finds any of a set of PANs in bytes, as ASCII digits or packed BCD.
struct Scanner {
    ascii: HashSet<Vec<u8>>,
    lens: Vec<usize>,
    /// First 6 bytes of each BCD form -> the forms.
    bcd: HashMap<[u8; 6], Vec<(Vec<u8>, usize)>>,
    first: [bool; 256],
    pans: Vec<String>,
}

impl Scanner {
    fn new(pans: &[String]) -> Self {
        let mut s = Self {
            ascii: HashSet::new(),
            lens: Vec::new(),
            bcd: HashMap::new(),
            first: [false; 256],
            pans: pans.to_vec(),
        };
        for (i, p) in pans.iter().enumerate() {
            s.ascii.insert(p.as_bytes().to_vec());
            if !s.lens.contains(&p.len()) {
                s.lens.push(p.len());
            }
            for form in bcd_forms(p) {
                let key: [u8; 6] = form[..6].try_into().unwrap();
                s.first[usize::from(form[0])] = true;
                s.bcd.entry(key).or_default().push((form, i));
            }
        }
        s
    }

    /// Every hit: (what, offset).
    fn scan(&self, bytes: &[u8]) -> Vec<(String, usize)> {
        let mut hits = Vec::new();
        // ASCII: windows of every PAN length inside runs of digits.
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &bytes[start..i];
            for &l in &self.lens {
                if run.len() < l {
                    continue;
                }
                for (k, w) in run.windows(l).enumerate() {
                    if self.ascii.contains(w) {
                        hits.push((
                            format!("ASCII {}", mask(std::str::from_utf8(w).unwrap())),
                            start + k,
                        ));
                    }
                }
            }
        }
        // Packed BCD.
        for k in 0..bytes.len().saturating_sub(6) {
            if !self.first[usize::from(bytes[k])] {
                continue;
            }
            let key: [u8; 6] = bytes[k..k + 6].try_into().unwrap();
            if let Some(forms) = self.bcd.get(&key) {
                for (form, idx) in forms {
                    if bytes[k..].starts_with(form) {
                        hits.push((format!("BCD {}", mask(&self.pans[*idx])), k));
                    }
                }
            }
        }
        hits
    }
}

/// First six and last four digits, for failure messages (never print a whole PAN).
fn mask(pan: &str) -> String {
    format!("{}..{}", &pan[..6], &pan[pan.len() - 4..])
}

/// One HTTP/1.1 exchange over the socket (`Connection: close`): status and body.
/// The operator key of the running scan, used for every authenticated `/admin` request.
static OPERATOR_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn http(
    socket: &Path,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    // Admin routes take the operator key (merchant keys cannot hold `admin`).
    let operator = OPERATOR_KEY.get().map(String::as_str);
    let auth = if path.starts_with("/admin") && auth.is_some() {
        operator.or(auth)
    } else {
        auth
    };
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Bearer {a}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response head");
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let mut payload = raw[head_end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    (status, payload)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
    out
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        panic!(
            "not JSON: {} bytes starting {:?}",
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(60)])
        )
    })
}

/// Everything the harness saw: the PANs it submitted and the responses that must be clean.
#[derive(Default)]
struct Seen {
    pans: Vec<String>,
    /// (what, body) of every response that must not contain a PAN (all but reveals).
    bodies: Vec<(String, Vec<u8>)>,
    /// (what, body, secrets) of every error response: none of the secrets may be echoed.
    errors: Vec<(String, Vec<u8>, Vec<String>)>,
    requests: u64,
    /// CVVs sent with payments: no response but the card hand-over, and no log line, may hold one.
    cvvs: Vec<String>,
    /// A reveal response: it does hold a PAN, so the scanner must find it (positive control).
    control: Option<Vec<u8>>,
    /// (route, body) of idempotent requests whose bodies hold a CVV, a password or a session
    /// token: no keyed digest of these bodies (what an idempotency fingerprint over the raw body
    /// would be) may be on disk.
    idempotent: Vec<(&'static str, String)>,
    /// The secrets inside those bodies, each also checked as a digest on its own.
    idempotent_secrets: Vec<String>,
}

impl Seen {
    fn clean(&mut self, what: &str, status: u16, body: Vec<u8>) -> Vec<u8> {
        self.requests += 1;
        assert!(
            status < 500,
            "{what}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        self.bodies.push((what.to_owned(), body.clone()));
        body
    }
}

fn card_body(pan: &str, exp: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"card","card":{{"pan":"{pan}","expiration_date":"{exp}","cardholder_name":"Jane Doe"}}{extra}}}"#
    )
}

/// A request that must be refused: what it is, method, path, body, and the submitted digits
/// its error body must not echo.
type BadRequest = (&'static str, String, String, Option<String>, Vec<String>);

/// The whole workload against a running daemon.
fn workload(socket: &Path, key: &str, rng: &mut impl rand::Rng, seen: &mut Seen) {
    let mut all = seen.pans.iter().cloned().collect::<HashSet<_>>();
    let pans = known_pans(rng, cards(), &mut all);
    let new_pans = known_pans(rng, cards() / 3, &mut all);
    let batch_pans = known_pans(rng, 50, &mut all);
    let bad_pans = known_pans(rng, 12, &mut all);
    let k = Some(key);

    let reveal_body = |i: usize| {
        if i.is_multiple_of(10) {
            format!(r#"{{"customer_id":"cust-{i}"}}"#)
        } else {
            "{}".to_owned()
        }
    };

    // Tokenize, get, reveal.
    let mut tokens = Vec::new();
    for (i, pan) in pans.iter().enumerate() {
        let extra = if i.is_multiple_of(10) {
            format!(r#","customer_id":"cust-{i}","dedupe":true,"metadata":{{"order":"o-{i}"}}"#)
        } else {
            String::new()
        };
        let (st, body) = http(
            socket,
            "POST",
            "/v2/tokens",
            k,
            Some(&card_body(pan, "3012", &extra)),
        );
        assert!(st == 201 || st == 200, "tokenize: {st}");
        let body = seen.clean("tokenize", st, body);
        let token = json(&body)["token"].as_str().unwrap().to_owned();
        let (st, body) = http(socket, "GET", &format!("/v2/tokens/{token}"), k, None);
        assert_eq!(st, 200);
        seen.clean("get", st, body);
        let reveal = reveal_body(i);
        let (st, body) = http(
            socket,
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            k,
            Some(&reveal),
        );
        seen.requests += 1;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["pan"].as_str(), Some(pan.as_str()));
        if seen.control.is_none() {
            seen.control = Some(body);
        }
        tokens.push(token);
    }

    // Update a third of them to other known PANs; the reveal shows the new card.
    for ((i, token), pan) in tokens.iter().enumerate().skip(1).step_by(3).zip(&new_pans) {
        let (st, body) = http(
            socket,
            "PUT",
            &format!("/v2/tokens/{token}"),
            k,
            Some(&card_body(pan, "2911", "")),
        );
        assert_eq!(st, 200, "update: {}", String::from_utf8_lossy(&body));
        seen.clean("update", st, body);
        let (st, body) = http(
            socket,
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            k,
            Some(&reveal_body(i)),
        );
        seen.requests += 1;
        assert_eq!(st, 200);
        assert_eq!(json(&body)["pan"].as_str(), Some(pan.as_str()));
    }

    // A batch with two bad items among good ones.
    let mut items: Vec<String> = batch_pans
        .iter()
        .map(|p| card_body(p, "2808", ""))
        .collect();
    let bad_luhn = {
        let p = &bad_pans[0];
        let last = p.as_bytes()[p.len() - 1] - b'0';
        format!("{}{}", &p[..p.len() - 1], (last + 1) % 10)
    };
    items.push(card_body(&bad_luhn, "2808", ""));
    items.push(card_body(&bad_pans[1], &bad_pans[2], ""));
    let (st, body) = http(
        socket,
        "POST",
        "/v2/tokens/batch",
        k,
        Some(&format!(r#"{{"items":[{}]}}"#, items.join(","))),
    );
    assert!(st == 200 || st == 207, "batch: {st}");
    let body = seen.clean("batch", st, body);
    let results = json(&body)["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), items.len());
    let refused = results
        .iter()
        .filter(|r| r["status"].as_u64() != Some(201) && r["status"].as_u64() != Some(200))
        .count();
    assert_eq!(refused, 2, "the two bad batch items are refused");
    seen.errors.push((
        "batch item errors".into(),
        body.clone(),
        vec![bad_luhn.clone(), bad_pans[1].clone(), bad_pans[2].clone()],
    ));

    // Delete some; they are gone.
    for token in tokens.iter().step_by(5) {
        let (st, body) = http(socket, "DELETE", &format!("/v2/tokens/{token}"), k, None);
        assert_eq!(st, 204);
        seen.clean("delete", st, body);
        let (st, body) = http(socket, "GET", &format!("/v2/tokens/{token}"), k, None);
        assert_eq!(st, 404);
        seen.clean("get deleted", st, body);
    }

    // Bad requests carrying card numbers and CVV-looking values in the wrong places.
    let (p3, p4, p5, p6, p7, p8, p9, p10, p11) = (
        &bad_pans[3],
        &bad_pans[4],
        &bad_pans[5],
        &bad_pans[6],
        &bad_pans[7],
        &bad_pans[8],
        &bad_pans[9],
        &bad_pans[10],
        &bad_pans[11],
    );
    let t0 = tokens[1].clone();
    let bad: Vec<BadRequest> = vec![
        (
            "bad Luhn",
            "POST".into(),
            "/v2/tokens".into(),
            Some(card_body(&bad_luhn, "3012", "")),
            vec![bad_luhn.clone()],
        ),
        (
            "PAN in expiration_date",
            "POST".into(),
            "/v2/tokens".into(),
            Some(card_body(p3, p4, "")),
            vec![p3.clone(), p4.clone()],
        ),
        (
            "PAN as a JSON number, CVV in card.cvv",
            "POST".into(),
            "/v2/tokens".into(),
            Some(format!(
                r#"{{"type":"card","card":{{"pan":{p5},"expiration_date":"3012","cvv":"8317"}}}}"#
            )),
            vec![p5.clone(), "8317".into()],
        ),
        (
            "PAN in type",
            "POST".into(),
            "/v2/tokens".into(),
            Some(format!(
                r#"{{"type":"{p6}","card":{{"pan":"{p6}","expiration_date":"3012"}}}}"#
            )),
            vec![p6.clone()],
        ),
        (
            "CVV as expiry, PAN too long",
            "POST".into(),
            "/v2/tokens".into(),
            Some(card_body(&format!("{p7}00"), "592", "")),
            vec![p7.clone(), "592".into()],
        ),
        (
            "PAN in keep_until and customer_id",
            "POST".into(),
            "/v2/tokens".into(),
            Some(card_body(
                p8,
                "3012",
                &format!(r#","keep_until":"{p8}","customer_id":"{p9}!""#),
            )),
            vec![p8.clone(), p9.clone()],
        ),
        (
            "truncated JSON with a PAN",
            "POST".into(),
            "/v2/tokens".into(),
            Some(format!(r#"{{"type":"card","card":{{"pan":"{p10}""#)),
            vec![p10.clone()],
        ),
        (
            "PAN in the token path (get)",
            "GET".into(),
            format!("/v2/tokens/{p11}"),
            None,
            vec![p11.clone()],
        ),
        (
            "PAN in the token path (reveal)",
            "POST".into(),
            format!("/v2/tokens/{p11}/reveal"),
            Some("{}".into()),
            vec![p11.clone()],
        ),
        (
            "PAN in an update with a CVV field",
            "PUT".into(),
            format!("/v2/tokens/{t0}"),
            Some(format!(
                r#"{{"card":{{"pan":"{bad_luhn}","expiration_date":"3012","cvc":"8317"}}}}"#
            )),
            vec![bad_luhn.clone(), "8317".into()],
        ),
        (
            "reveal with a PAN as customer",
            "POST".into(),
            format!("/v2/tokens/{t0}/reveal"),
            Some(format!(r#"{{"customer_id":"{p9}!"}}"#)),
            vec![p9.clone()],
        ),
        (
            "batch that is not a list",
            "POST".into(),
            "/v2/tokens/batch".into(),
            Some(format!(r#"{{"items":"{p3}"}}"#)),
            vec![p3.clone()],
        ),
        (
            "merchant id that is a PAN",
            "POST".into(),
            "/admin/merchants".into(),
            Some(format!(r#"{{"merchant_id":"{p4}x","name":"n"}}"#)),
            vec![p4.clone()],
        ),
    ];
    for (what, method, path, body, secrets) in &bad {
        let (st, resp) = http(socket, method, path, k, body.as_deref());
        seen.requests += 1;
        assert!(
            (400..500).contains(&st),
            "{what}: expected a 4xx, got {st}: {}",
            String::from_utf8_lossy(&resp)
        );
        seen.bodies.push(((*what).to_owned(), resp.clone()));
        seen.errors
            .push(((*what).to_owned(), resp, secrets.to_vec()));
    }
    // Unauthenticated tokenize with a PAN.
    let (st, resp) = http(
        socket,
        "POST",
        "/v2/tokens",
        None,
        Some(&card_body(p5, "3012", "")),
    );
    assert_eq!(st, 401);
    seen.errors
        .push(("no API key".into(), resp.clone(), vec![p5.clone()]));
    seen.bodies.push(("no API key".into(), resp));

    // Admin calls and metrics.
    for (method, path) in [
        ("GET", "/admin/stats"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/merchants"),
        ("GET", "/admin/apikeys"),
        ("POST", "/admin/keys/rotate"),
        ("POST", "/admin/keys/rewrap"),
        ("POST", "/admin/keys/retire"),
        ("POST", "/admin/sweep"),
        ("GET", "/admin/stats"),
        ("GET", "/health"),
        ("GET", "/metrics"),
    ] {
        let body = if method == "POST" { Some("{}") } else { None };
        let (st, resp) = http(socket, method, path, k, body);
        assert_eq!(
            st,
            200,
            "{method} {path}: {}",
            String::from_utf8_lossy(&resp)
        );
        seen.clean(path, st, resp);
    }

    let gateway_pans = known_pans(rng, cards() / 5, &mut all);
    gateway_workload(socket, key, &gateway_pans, seen);

    seen.pans.extend(pans);
    seen.pans.extend(new_pans);
    seen.pans.extend(batch_pans);
    seen.pans.extend(bad_pans);
    seen.pans.push(bad_luhn);
    seen.pans.extend(gateway_pans);
}

/// Numeric fields of the daemon's own log lines: a request's duration may equal a test CVV.
const NUMERIC_LOG_FIELDS: [&str; 1] = ["micros"];

/// Where `needle` (a CVV as a value: quoted, or after `=` or `: `) occurs in `text` not followed
/// by a letter or digit (`: 9123` in `crc32: 912360524`, or `=9123` in `token=9123a30b...`, is not
/// a CVV) and not as the value of one of the [`NUMERIC_LOG_FIELDS`] (`micros=9123`).
fn find_value(text: &str, needle: &str) -> Option<usize> {
    text.match_indices(needle)
        .find(|(at, _)| {
            let continues = text
                .as_bytes()
                .get(at + needle.len())
                .is_some_and(u8::is_ascii_alphanumeric);
            let timing = NUMERIC_LOG_FIELDS
                .iter()
                .any(|field| text[..*at].ends_with(field));
            !continues && !timing
        })
        .map(|(at, _)| at)
}

/// The merchant's gateway password (`POST /token`): it must not appear anywhere either.
const GATEWAY_PASSWORD: &str = "leak-scan-gateway-password-0d9e61c4";

/// A form-encoded POST (as a browser sends the gateway routes): status and body.
fn form(socket: &Path, path: &str, auth: Option<&str>, body: &str) -> (u16, Vec<u8>) {
    form_keyed(socket, path, auth, None, body)
}

/// [`form`] with an `Idempotency-Key`.
fn form_keyed(
    socket: &Path,
    path: &str,
    auth: Option<&str>,
    idempotency_key: Option<&str>,
    body: &str,
) -> (u16, Vec<u8>) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Bearer {a}\r\n"));
    }
    if let Some(k) = idempotency_key {
        req.push_str(&format!("Idempotency-Key: {k}\r\n"));
    }
    req.push_str(&format!(
        "Origin: https://shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, raw[head_end + 4..].to_vec())
}

/// The gateway flows (the gateway and hosted-fields APIs): session tokens for the merchant password, card
/// capture, payment use with a CVV, the card hand-over (which holds a PAN and CVV, like a reveal)
/// and the outcome; plus refused gateway requests carrying PANs and CVVs in the wrong places.
fn gateway_workload(socket: &Path, key: &str, pans: &[String], seen: &mut Seen) {
    let (st, body) = http(
        socket,
        "POST",
        &format!("/admin/merchants/{MERCHANT}/password"),
        Some(key),
        Some(&format!(r#"{{"password":"{GATEWAY_PASSWORD}"}}"#)),
    );
    assert_eq!(st, 204, "{}", String::from_utf8_lossy(&body));
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let session = |action: &str, seen: &mut Seen| {
        let (st, body) = form(
            socket,
            "/token",
            None,
            &format!(
                "merchantId={MERCHANT}&password={GATEWAY_PASSWORD}&action={action}&timestamp={}&allowOriginUrl=https%3A%2F%2Fshop.example&customerId=gw-cust&paymentSolutionId=500&customerIPAddress=203.0.113.5",
                now_ms()
            ),
        );
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let body = seen.clean("POST /token", st, body);
        json(&body)["token"].as_str().unwrap().to_owned()
    };
    for (i, pan) in pans.iter().enumerate() {
        let cvv = format!("{}", 9100 + i);
        let tokenize = session("TOKENIZE", seen);
        let (st, body) = form(
            socket,
            "/payments",
            None,
            &format!(
                "token={tokenize}&number={pan}&expiryMonth=12&expiryYear=2030&nameOnCard=Jane+Doe"
            ),
        );
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let body = seen.clean("card capture", st, body);
        let card_token = json(&body)["cardToken"].as_str().unwrap().to_owned();
        let purchase = session("PURCHASE", seen);
        let (st, body) = form(
            socket,
            "/payments",
            None,
            &format!(
                "merchantId={MERCHANT}&token={purchase}&specinCreditCardToken={card_token}&specinCreditCardCVV={cvv}&setOneClickValueSettingForCard=true"
            ),
        );
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let body = seen.clean("payment use", st, body);
        seen.cvvs.push(cvv.clone());
        let tx = json(&body)["txId"].as_str().unwrap().to_owned();
        // The hand-over holds the PAN and CVV: not scanned, like a reveal.
        let (st, body) = http(
            socket,
            "POST",
            &format!("/payments/{tx}/card"),
            Some(key),
            None,
        );
        assert_eq!(st, 200);
        seen.requests += 1;
        assert_eq!(json(&body)["card"]["cvv"], cvv.as_str());
        let (st, body) = http(
            socket,
            "POST",
            &format!("/payments/{tx}/result"),
            Some(key),
            Some(r#"{"result":"success"}"#),
        );
        seen.clean("payment result", st, body);
        // Refused: a wrong customer with the CVV, a PAN in the CVV field, a bad PAN in capture.
        let purchase = session("PURCHASE", seen);
        let (st, body) = form(
            socket,
            "/payments",
            None,
            &format!(
                "merchantId={MERCHANT}&token={purchase}&specinCreditCardToken={card_token}&customerId=someone-else&specinCreditCardCVV={cvv}"
            ),
        );
        assert_eq!(st, 403);
        seen.bodies.push(("customer mismatch".into(), body.clone()));
        seen.errors
            .push(("customer mismatch".into(), body, vec![format!("\"{cvv}\"")]));
        let tokenize = session("TOKENIZE", seen);
        let (st, body) = form(
            socket,
            "/payments",
            None,
            &format!("token={tokenize}&number={pan}0&expiryMonth=12&expiryYear=2030&cvv={pan}"),
        );
        assert_eq!(st, 400);
        seen.requests += 3;
        seen.bodies.push(("bad capture".into(), body.clone()));
        seen.errors
            .push(("bad capture".into(), body, vec![pan.clone()]));
    }
    idempotent_gateway_workload(socket, key, &pans[0], seen);
    // Hosted fields (the hosted-fields session API).
    let (st, body) = http(
        socket,
        "POST",
        "/admin/terminals",
        Some(key),
        Some(&format!(
            r#"{{"merchant_id":"{MERCHANT}","terminal_id":"leak-terminal-1"}}"#
        )),
    );
    assert!(st == 201 || st == 400, "{}", String::from_utf8_lossy(&body));
    let mut s = UnixStream::connect(socket).unwrap();
    let hf = r#"{"libVersion":"1.6.0.172441","scenario":"payment"}"#;
    write!(
        s,
        "POST /processing-terminals/leak-terminal-1/hosted-fields-sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nIdempotency-Key: 6f1c2a9e-1b2c-4d3e-8f4a-5b6c7d8e9f0a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{hf}",
        hf.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    seen.clean("hosted-fields session", 201, raw);
}

/// A fresh UUID v4 for an `Idempotency-Key`.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The gateway calls that carry a password, a session token or a CVV, each with an
/// `Idempotency-Key` (so the daemon keeps a fingerprint of it for 24 hours), and each sent twice:
/// the replayed answer (the stored one) must not hold the CVV either.
fn idempotent_gateway_workload(socket: &Path, key: &str, pan: &str, seen: &mut Seen) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let session = |action: &str, seen: &mut Seen| {
        let body = format!(
            "merchantId={MERCHANT}&password={GATEWAY_PASSWORD}&action={action}&timestamp={now_ms}&allowOriginUrl=https%3A%2F%2Fshop.example&customerId=gw-cust&paymentSolutionId=500&customerIPAddress=203.0.113.5"
        );
        let (st, answer) = form_keyed(socket, "/token", None, Some(&uuid_v4()), &body);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&answer));
        let answer = seen.clean("idempotent POST /token", st, answer);
        seen.idempotent.push(("POST /token", body));
        let token = json(&answer)["token"].as_str().unwrap().to_owned();
        seen.idempotent_secrets.push(token.clone());
        token
    };
    let cvv = "7391";
    let tokenize = session("TOKENIZE", seen);
    let body = format!(
        "token={tokenize}&number={pan}&expiryMonth=12&expiryYear=2030&nameOnCard=Jane+Doe&cvv={cvv}"
    );
    let k = uuid_v4();
    let (st, answer) = form_keyed(socket, "/payments", None, Some(&k), &body);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&answer));
    let card_token = json(&answer)["cardToken"].as_str().unwrap().to_owned();
    seen.clean("idempotent card capture", st, answer);
    seen.idempotent.push(("POST /payments", body));
    let purchase = session("PURCHASE", seen);
    let body = format!(
        "merchantId={MERCHANT}&token={purchase}&specinCreditCardToken={card_token}&specinCreditCardCVV={cvv}"
    );
    let k = uuid_v4();
    // With a reveal key the first answer holds the card and its CVV (not scanned, like a reveal).
    let (st, answer) = form_keyed(socket, "/payments", Some(key), Some(&k), &body);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(json(&answer)["card"]["cvv"], cvv);
    seen.requests += 1;
    // The replay is the stored answer: no card, no CVV.
    let (st, replayed) = form_keyed(socket, "/payments", Some(key), Some(&k), &body);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&replayed));
    assert!(
        json(&replayed)["card"].is_null(),
        "a stored answer holds the card"
    );
    seen.clean("replayed idempotent payment use", st, replayed);
    seen.idempotent.push(("POST /payments", body));
    seen.idempotent_secrets.push(cvv.to_owned());
    seen.idempotent_secrets.push(GATEWAY_PASSWORD.to_owned());
    seen.cvvs.push(cvv.to_owned());
}

/// Searches the files for each needle; returns (needle index, file) of every hit.
fn find_digests(files: &[PathBuf], needles: &[[u8; 32]]) -> Vec<(usize, PathBuf)> {
    let mut hits = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        for (i, n) in needles.iter().enumerate() {
            if bytes.windows(32).any(|w| w == n) {
                hits.push((i, f.clone()));
            }
        }
    }
    hits
}

/// No keyed digest of a secret at rest: with the vault's own keys, recomputes the idempotency
/// fingerprints that a fingerprint over the raw request (or over the secret alone) would have
/// stored, and searches the data directory for them. Positive control: a fingerprint planted
/// through the library is found.
fn check_no_keyed_digests(data: &Path, key_file: &str, seen: &Seen, findings: &mut Vec<String>) {
    use vault_service::{
        IdempotencyKey, IdempotencyStart, IdempotentResponse, KeySource, MerchantId, Vault,
        VaultOptions,
    };
    assert!(!seen.idempotent.is_empty());
    let key = KeySource::from_key_file_bytes(&std::fs::read(key_file).unwrap()).unwrap();
    let vault = Vault::open(data, &key, VaultOptions::default()).unwrap();
    let merchant = MerchantId::parse(MERCHANT).unwrap();
    let mut needles = Vec::new();
    let mut names = Vec::new();
    for (route, body) in &seen.idempotent {
        needles.push(vault.idempotency_digest(merchant, route, &[body.as_bytes()]));
        names.push(format!("the keyed digest of a {route} body"));
        for secret in &seen.idempotent_secrets {
            needles.push(vault.idempotency_digest(merchant, route, &[secret.as_bytes()]));
            names.push(format!("the keyed digest of a secret sent to {route}"));
        }
    }
    // Positive control: a request part planted through the library is stored as its digest.
    let planted = b"cvv=1234&password=planted-control";
    let k = IdempotencyKey::parse("0b5c8a4e-2f1d-4c3b-9a8e-7d6c5b4a3f21").unwrap();
    let IdempotencyStart::Proceed(guard) = vault
        .idempotency_begin(merchant, "planted control", &k, &[planted])
        .unwrap()
    else {
        panic!("the planted key is new");
    };
    guard
        .finish(&IdempotentResponse {
            status: 200,
            content_type: String::new(),
            location: None,
            body: Vec::new(),
        })
        .unwrap();
    let control = vault.idempotency_digest(merchant, "planted control", &[planted]);
    vault.flush().unwrap();
    drop(vault);
    let files = walk(data);
    assert!(
        !find_digests(&files, &[control]).is_empty(),
        "control: the planted idempotency digest is not found in the data directory"
    );
    for (i, f) in find_digests(&files, &needles) {
        findings.push(format!("{}: {}", f.display(), names[i]));
    }
}

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Recursively chowns `p` (used to hand the vault to the unprivileged daemon user).
fn chown_all(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_all(&e.unwrap().path(), uid);
        }
    }
}

/// Owner uid of `/proc/<pid>/environ`: the process's own uid while it is dumpable, root once it
/// is not.
fn proc_owner(pid: u32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid()
}

/// While the daemon runs: no core files, not dumpable. The daemon never runs as root here (as
/// root, the test starts it as `NOBODY`), so a root-owned `/proc/<pid>` means "not dumpable".
fn check_hardening(pid: u32, daemon_uid: u32) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        &fields[4..6],
        &["0", "0"],
        "soft and hard core limits: {core}"
    );
    assert_ne!(daemon_uid, 0);
    // Negative control: an ordinary process of the same user shows that user as owner.
    let mut control = Command::new("sleep");
    control.arg("5");
    if is_root() {
        use std::os::unix::process::CommandExt;
        control.uid(NOBODY).gid(NOBODY);
    }
    let mut control = control.spawn().unwrap();
    let control_owner = proc_owner(control.id());
    let _ = control.kill();
    let _ = control.wait();
    assert_eq!(control_owner, daemon_uid, "control process owner");
    assert_eq!(
        proc_owner(pid),
        0,
        "/proc/{pid}/environ belongs to the daemon's user: the daemon is dumpable"
    );
}

#[test]
fn nothing_in_clear_anywhere() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = is_root();
    if root {
        // Let the unprivileged daemon user reach the data and socket directories.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let key_path = dir.path().join("vault.key");
    let kf = random_key_file(&key_path, 0o400);
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap().to_owned();
    let api_path = dir.path().join("api-key");
    ok(&["init", "--data", &data, "--key-file", &kf]);
    ok(&[
        "merchant",
        "add",
        MERCHANT,
        "--name",
        "Leak",
        "--data",
        &data,
        "--key-file",
        &kf,
    ]);
    ok(&[
        "apikey",
        "create",
        "--merchant",
        MERCHANT,
        "--scopes",
        "tokenize,reveal,fingerprint,sessions",
        "--out",
        api_path.to_str().unwrap(),
        "--data",
        &data,
        "--key-file",
        &kf,
    ]);
    let key = std::fs::read_to_string(&api_path)
        .unwrap()
        .trim()
        .to_owned();
    let operator_path = dir.path().join("operator-key");
    ok(&[
        "apikey",
        "create",
        "--operator",
        "--scopes",
        "admin",
        "--out",
        operator_path.to_str().unwrap(),
        "--data",
        &data,
        "--key-file",
        &kf,
    ]);
    let operator = std::fs::read_to_string(&operator_path).unwrap();
    let _ = OPERATOR_KEY.set(operator.trim().to_owned());
    let run_dir = dir.path().join("run");
    if root {
        chown_all(&data_path, NOBODY);
        std::os::unix::fs::chown(&key_path, Some(NOBODY), Some(NOBODY)).unwrap();
    }

    let mut rng = rand::rng();
    let mut seen = Seen::default();
    let mut logs = Vec::new();
    let mut metrics = Vec::new();
    for format in ["text", "json"] {
        let socket = run_dir.join(format!("{format}.sock"));
        let out_log = dir.path().join(format!("daemon-{format}.stdout"));
        let err_log = dir.path().join(format!("daemon-{format}.stderr"));
        let mut cmd = bin();
        cmd.args([
            "serve",
            "--data",
            &data,
            "--socket",
            socket.to_str().unwrap(),
            "--key-file",
            &kf,
            "--log-level",
            "trace",
            "--log-format",
            format,
        ])
        .stdout(File::create(&out_log).unwrap())
        .stderr(File::create(&err_log).unwrap());
        if root {
            use std::os::unix::process::CommandExt;
            cmd.uid(NOBODY).gid(NOBODY).args(["--allow-uid", "0"]);
            std::fs::create_dir_all(&run_dir).unwrap();
            std::os::unix::fs::chown(&run_dir, Some(NOBODY), Some(NOBODY)).unwrap();
            std::fs::set_permissions(
                &run_dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
        }
        let mut daemon = Daemon {
            child: cmd.spawn().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&socket).is_err() {
            if let Some(st) = daemon.child.try_wait().unwrap() {
                panic!(
                    "daemon exited: {st}: {}",
                    std::fs::read_to_string(&err_log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        check_hardening(
            daemon.child.id(),
            if root {
                NOBODY
            } else {
                std::fs::metadata("/proc/self").unwrap().uid()
            },
        );

        workload(&socket, &key, &mut rng, &mut seen);
        let (st, m) = http(&socket, "GET", "/metrics", None, None);
        assert_eq!(st, 200);
        metrics.push((format!("/metrics ({format})"), m));

        // Graceful stop: the drain and the final flush log too.
        let pid = daemon.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let st = daemon.child.wait().unwrap();
        assert_eq!(st.code(), Some(0));
        logs.push(out_log);
        logs.push(err_log);
    }

    // Scan. First the positive controls: the scanner finds a PAN in a reveal response and in
    // packed BCD.
    let scanner = Scanner::new(&seen.pans);
    assert!(!scanner.scan(seen.control.as_ref().unwrap()).is_empty());
    for p in &seen.pans[..5] {
        for form in bcd_forms(p) {
            let mut buf = vec![0u8, 0xff, 7];
            buf.extend_from_slice(&form);
            buf.push(0);
            assert!(!scanner.scan(&buf).is_empty(), "BCD control");
        }
    }
    let mut findings = Vec::new();
    check_no_keyed_digests(&data_path, &kf, &seen, &mut findings);
    let mut files = walk(&data_path);
    files.extend(logs.iter().cloned());
    let mut scanned_bytes = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        scanned_bytes += bytes.len();
        for (what, at) in scanner.scan(&bytes) {
            findings.push(format!("{}: {what} at byte {at}", f.display()));
        }
    }
    for (what, body) in metrics.iter().chain(&seen.bodies) {
        scanned_bytes += body.len();
        for (hit, at) in scanner.scan(body) {
            findings.push(format!("response of {what}: {hit} at byte {at}"));
        }
    }
    for (what, body, secrets) in &seen.errors {
        let text = String::from_utf8_lossy(body);
        for s in secrets {
            if text.contains(s.as_str()) {
                let shown = secrets.iter().fold(text.to_string(), |t, s| {
                    t.replace(s.as_str(), &format!("<{} submitted digits>", s.len()))
                });
                findings.push(format!(
                    "error body of {what} echoes submitted digits: {shown}"
                ));
            }
        }
    }
    // The gateway password never appears anywhere (it is 35 characters: no false positives).
    let pw = GATEWAY_PASSWORD.as_bytes();
    for f in &files {
        if std::fs::read(f).unwrap().windows(pw.len()).any(|w| w == pw) {
            findings.push(format!("{}: the merchant password", f.display()));
        }
    }
    // CVVs: 4 digits are too short to scan binary files for without false hits, so the logs and
    // responses are checked for them as values (quoted, or after `=`/`:`), and for CVV field names.
    let log_text_all: String = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    // Controls: a CVV as a value is found; the same digits inside a longer number are not.
    assert!(find_value(r#"{"cvv":"9100"}"#, "\"9100\"").is_some());
    assert!(find_value("cvv=9100&x", "=9100").is_some());
    assert!(find_value("crc32: 910060524", ": 9100").is_none());
    assert!(find_value("token=9100a30b89", "=9100").is_none());
    assert!(find_value("micros=9100 status=200", "=9100").is_none());
    assert!(find_value("micros=9100 cvv=9100", "=9100").is_some());
    for cvv in &seen.cvvs {
        for form in [format!("\"{cvv}\""), format!("={cvv}"), format!(": {cvv}")] {
            if let Some(at) = find_value(&log_text_all, &form) {
                let from = log_text_all.floor_char_boundary(at.saturating_sub(80));
                let to = log_text_all.ceil_char_boundary((at + 40).min(log_text_all.len()));
                let context = log_text_all[from..to].replace(cvv.as_str(), "<cvv>");
                findings.push(format!("a CVV in the logs: ...{context}..."));
            }
            for (what, body) in metrics.iter().chain(&seen.bodies) {
                if find_value(&String::from_utf8_lossy(body), &form).is_some() {
                    findings.push(format!("a CVV in the response of {what}"));
                }
            }
        }
    }
    let lower = log_text_all.to_ascii_lowercase();
    assert!(!lower.contains("cvv"), "a CVV field name in the logs");
    assert!(!seen.cvvs.is_empty());

    // The trace logs really are at trace level and carry the audit lines.
    let log_text: String = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(log_text.contains("TRACE") || log_text.contains("\"TRACE\""));
    assert!(log_text.contains("reveal"));
    eprintln!(
        "leak scan: {} PANs, {} requests, {} files + {} responses ({} bytes) scanned, {} findings, \
         {:.1} s",
        seen.pans.len(),
        seen.requests,
        files.len(),
        seen.bodies.len() + metrics.len(),
        scanned_bytes,
        findings.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        findings.is_empty(),
        "card numbers in clear:\n{}",
        findings.join("\n")
    );
}
