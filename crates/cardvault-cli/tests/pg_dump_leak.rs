//! What the database operator can read: a vault on PostgreSQL is driven through every kind of
//! call by `cardvault serve --database` (tokenize with and without de-duplication, batch, reveal,
//! update, delete; a merchant password set, logins that succeed and fail; gateway sessions, a
//! card captured with its CVV, payments with a stored token and a CVV, their hand-over and
//! outcome; a hosted-fields session capturing a card with a CVV; idempotent replays; a bad API
//! key), then the database is dumped with `pg_dump` in plain SQL and in the custom format
//! (uncompressed), and both dumps are searched for every secret the run handled: each card
//! number (digits, spaced, dashed, packed BCD), each CVV (length-prefixed, JSON, form-encoded),
//! the merchant password, every session token (text and its 16 bytes), each API key and its
//! secret (text and bytes) and the vault key (the key file's hex and its 32 bytes), each in
//! clear, hex and base64 (`pg/forms.rs`), in the dump's text and inside every `bytea` value. None
//! may be there. Positive control: the same values planted in a table of the database are found
//! in both dumps. See SECURITY.md, "What the database operator can and cannot learn".
//!
//! Needs the PostgreSQL server of `CARDVAULT_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and its `pg_dump` on `PATH`; fails when either
//! is missing.
#![cfg(test)]

#[path = "it/common.rs"]
mod common;
#[path = "pg/forms.rs"]
mod forms;
#[path = "pg/http.rs"]
mod http;
#[path = "pg/setup.rs"]
mod setup;

use std::{path::Path, process::Command, time::Instant};

use common::luhn_pan;
use forms::{Scanner, cvv_forms, encodings, pan_forms};
use http::{Body, Reply};
use setup::{MERCHANT, Setup};

const PASSWORD: &str = "dump-scan-merchant-password-5f2a91c7";
const ORIGIN: &str = "https://shop.example";
const TERMINAL: &str = "dump-terminal-1";

/// Everything secret the run handled.
#[derive(Default)]
struct Secrets {
    pans: Vec<String>,
    cvvs: Vec<String>,
    /// Gateway and hosted-fields session tokens.
    sessions: Vec<String>,
}

fn card_json(pan: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"card","card":{{"pan":"{pan}","expiration_date":"3012","cardholder_name":"Jane Doe"}}{extra}}}"#
    )
}

fn expect(r: &Reply, status: u16, what: &str) -> serde_json::Value {
    assert_eq!(r.status, status, "{what}: {}", r.describe());
    if r.body.is_empty() {
        serde_json::Value::Null
    } else {
        r.json()
    }
}

fn form(socket: &Path, path: &str, auth: Option<&str>, idem: Option<&str>, body: &str) -> Reply {
    let mut headers = vec![("Origin", ORIGIN)];
    if let Some(k) = idem {
        headers.push(("Idempotency-Key", k));
    }
    http::send(socket, "POST", path, auth, &headers, Body::Form(body))
        .unwrap_or_else(|e| panic!("POST {path}: no answer: {e}"))
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn fresh_cvv(seen: &mut Secrets) -> String {
    loop {
        let c = format!("{}", rand::random_range(1000..10_000u32));
        if !seen.cvvs.contains(&c) {
            seen.cvvs.push(c.clone());
            return c;
        }
    }
}

fn fresh_pan(seen: &mut Secrets, prefix: &str, len: usize) -> String {
    let p = luhn_pan(&mut rand::rng(), prefix, len);
    seen.pans.push(p.clone());
    p
}

/// The token API: tokenize (with and without de-duplication, a customer, metadata), batch,
/// get, reveal, update, delete, and a bad API key.
fn token_flows(socket: &Path, key: &str, seen: &mut Secrets) {
    let reveal_body = |i: usize| {
        if i.is_multiple_of(3) {
            format!(r#"{{"customer_id":"cust-{i}"}}"#)
        } else {
            "{}".to_owned()
        }
    };
    let kinds: [(&str, usize); 5] = [("4", 16), ("51", 16), ("37", 15), ("36", 14), ("62", 19)];
    let mut tokens = Vec::new();
    for i in 0..30 {
        let (p, l) = kinds[i % kinds.len()];
        let pan = fresh_pan(seen, p, l);
        let extra = match i % 3 {
            0 => {
                format!(r#","dedupe":true,"customer_id":"cust-{i}","metadata":{{"order":"o-{i}"}}"#)
            }
            1 => r#","dedupe":true"#.to_owned(),
            _ => String::new(),
        };
        let r = http::call(
            socket,
            "POST",
            "/v2/tokens",
            Some(key),
            Body::Json(&card_json(&pan, &extra)),
        );
        let token = expect(&r, 201, "tokenize")["token"]
            .as_str()
            .unwrap()
            .to_owned();
        if i % 3 == 1 {
            // The same card again with de-duplication: the same token.
            let again = http::call(
                socket,
                "POST",
                "/v2/tokens",
                Some(key),
                Body::Json(&card_json(&pan, &extra)),
            );
            assert!(
                again.status == 200 || again.status == 201,
                "{}",
                again.describe()
            );
            assert_eq!(again.json()["token"].as_str(), Some(token.as_str()));
        }
        let reveal_body = reveal_body(i);
        let r = http::call(
            socket,
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            Some(key),
            Body::Json(&reveal_body),
        );
        assert_eq!(
            expect(&r, 200, "reveal")["pan"].as_str(),
            Some(pan.as_str())
        );
        let r = http::call(
            socket,
            "GET",
            &format!("/v2/tokens/{token}"),
            Some(key),
            Body::None,
        );
        expect(&r, 200, "get");
        tokens.push(token);
    }
    for (i, token) in tokens.iter().enumerate().skip(2).step_by(4) {
        let pan = fresh_pan(seen, "4", 16);
        let r = http::call(
            socket,
            "PUT",
            &format!("/v2/tokens/{token}"),
            Some(key),
            Body::Json(&card_json(&pan, "")),
        );
        expect(&r, 200, "update");
        let r = http::call(
            socket,
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            Some(key),
            Body::Json(&reveal_body(i)),
        );
        assert_eq!(
            expect(&r, 200, "reveal after update")["pan"].as_str(),
            Some(pan.as_str())
        );
    }
    for token in tokens.iter().step_by(5) {
        let r = http::call(
            socket,
            "DELETE",
            &format!("/v2/tokens/{token}"),
            Some(key),
            Body::None,
        );
        expect(&r, 204, "delete");
    }
    let items: Vec<String> = (0..10)
        .map(|_| card_json(&fresh_pan(seen, "4", 16), ""))
        .collect();
    let r = http::call(
        socket,
        "POST",
        "/v2/tokens/batch",
        Some(key),
        Body::Json(&format!(r#"{{"items":[{}]}}"#, items.join(","))),
    );
    expect(&r, 200, "batch");
    // A wrong secret for a real key id: refused, audited as `auth.failed`.
    let wrong = format!("{}{}", &key[..key.len() - 4], "0000");
    let r = http::call(
        socket,
        "GET",
        &format!("/v2/tokens/{}", tokens[1]),
        Some(&wrong),
        Body::None,
    );
    assert_eq!(r.status, 401, "{}", r.describe());
}

/// A gateway session (`POST /token`, a merchant-password login).
fn session(socket: &Path, action: &str, idem: Option<&str>, seen: &mut Secrets) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let r = form(
        socket,
        "/token",
        None,
        idem,
        &format!(
            "merchantId={MERCHANT}&password={PASSWORD}&action={action}&timestamp={now_ms}&allowOriginUrl=https%3A%2F%2Fshop.example&customerId=gw-cust&paymentSolutionId=500&customerIPAddress=203.0.113.5"
        ),
    );
    let token = expect(&r, 200, "POST /token")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    seen.sessions.push(token.clone());
    token
}

/// The gateway: password, logins (one wrong), card capture with a CVV, payments with a stored
/// token and a CVV (one of them idempotent and replayed), hand-over and outcome.
fn gateway_flows(socket: &Path, key: &str, operator: &str, seen: &mut Secrets) {
    let r = http::call(
        socket,
        "POST",
        &format!("/admin/merchants/{MERCHANT}/password"),
        Some(operator),
        Body::Json(&format!(r#"{{"password":"{PASSWORD}"}}"#)),
    );
    expect(&r, 204, "set the merchant password");
    let wrong = form(
        socket,
        "/token",
        None,
        None,
        &format!(
            "merchantId={MERCHANT}&password=not-the-password-0000&action=TOKENIZE&timestamp=1&allowOriginUrl=https%3A%2F%2Fshop.example"
        ),
    );
    assert!((400..500).contains(&wrong.status), "{}", wrong.describe());

    for i in 0..3 {
        let pan = fresh_pan(seen, "4", 16);
        let cvv = fresh_cvv(seen);
        let idem = (i == 0).then(uuid_v4);
        let tokenize = session(socket, "TOKENIZE", idem.as_deref(), seen);
        let capture = format!(
            "token={tokenize}&number={pan}&expiryMonth=12&expiryYear=2030&nameOnCard=Jane+Doe&cvv={cvv}"
        );
        let idem = (i == 0).then(uuid_v4);
        let r = form(socket, "/payments", None, idem.as_deref(), &capture);
        let card_token = expect(&r, 200, "card capture")["cardToken"]
            .as_str()
            .unwrap()
            .to_owned();

        let purchase = session(socket, "PURCHASE", None, seen);
        let cvv = fresh_cvv(seen);
        let pay = format!(
            "merchantId={MERCHANT}&token={purchase}&specinCreditCardToken={card_token}&specinCreditCardCVV={cvv}&setOneClickValueSettingForCard=true"
        );
        let idem = uuid_v4();
        let r = form(socket, "/payments", None, Some(&idem), &pay);
        let tx = expect(&r, 200, "payment with a stored token")["txId"]
            .as_str()
            .unwrap()
            .to_owned();
        let replay = form(socket, "/payments", None, Some(&idem), &pay);
        expect(&replay, 200, "idempotent replay");
        let r = http::call(
            socket,
            "POST",
            &format!("/payments/{tx}/card"),
            Some(key),
            Body::None,
        );
        let handed = expect(&r, 200, "hand-over");
        assert_eq!(handed["card"]["cvv"].as_str(), Some(cvv.as_str()));
        assert_eq!(handed["card"]["number"].as_str(), Some(pan.as_str()));
        let r = http::call(
            socket,
            "POST",
            &format!("/payments/{tx}/result"),
            Some(key),
            Body::Json(r#"{"result":"success"}"#),
        );
        assert!(r.status < 300, "payment result: {}", r.describe());
    }
}

/// A hosted-fields session on a terminal, spent by a card capture with a CVV (payment
/// scenario), handed over.
fn hosted_flows(socket: &Path, key: &str, operator: &str, seen: &mut Secrets) {
    let r = http::call(
        socket,
        "POST",
        "/admin/terminals",
        Some(operator),
        Body::Json(&format!(
            r#"{{"merchant_id":"{MERCHANT}","terminal_id":"{TERMINAL}"}}"#
        )),
    );
    expect(&r, 201, "add a terminal");
    let idem = uuid_v4();
    let r = http::send(
        socket,
        "POST",
        &format!("/processing-terminals/{TERMINAL}/hosted-fields-sessions"),
        Some(key),
        &[("Idempotency-Key", &idem)],
        Body::Json(r#"{"libVersion":"1.6.0.172441","scenario":"payment"}"#),
    )
    .unwrap();
    let token = expect(&r, 201, "hosted-fields session")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    seen.sessions.push(token.clone());
    let pan = fresh_pan(seen, "51", 16);
    let cvv = format!("{}", rand::random_range(100..1000u32));
    seen.cvvs.push(cvv.clone());
    // A session without allowOriginUrl is server-only: no Origin header.
    let capture = format!("token={token}&number={pan}&expiryMonth=02&expiryYear=31&cvv={cvv}");
    let r = http::send(socket, "POST", "/payments", None, &[], Body::Form(&capture)).unwrap();
    let tx = expect(&r, 200, "hosted capture")["txId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http::call(
        socket,
        "POST",
        &format!("/payments/{tx}/card"),
        Some(key),
        Body::None,
    );
    assert_eq!(
        expect(&r, 200, "hosted hand-over")["card"]["cvv"].as_str(),
        Some(cvv.as_str())
    );
}

/// The dump of `url` in `format` (`plain` or `custom`, uncompressed).
fn pg_dump(url: &str, format: &str, out: &Path) -> Vec<u8> {
    let result = Command::new("pg_dump")
        .args([
            "--format",
            format,
            "--compress",
            "0",
            "--no-owner",
            "--file",
        ])
        .arg(out)
        .arg("--dbname")
        .arg(url)
        .output();
    let output = match result {
        Ok(o) => o,
        Err(e) => panic!(
            "pg_dump cannot be run ({e}): install the PostgreSQL client (Debian: postgresql-client) so that pg_dump is on PATH"
        ),
    };
    assert!(
        output.status.success(),
        "pg_dump --format {format} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(out).unwrap()
}

/// Every form of every secret.
fn scanner(s: &Setup, seen: &Secrets) -> Scanner {
    let mut sc = Scanner::new();
    let mask = |p: &str| format!("{}..{}", &p[..6], &p[p.len() - 4..]);
    for pan in &seen.pans {
        for (b, how) in pan_forms(pan) {
            sc.add(b, format!("card number {} ({how})", mask(pan)));
        }
    }
    for (i, cvv) in seen.cvvs.iter().enumerate() {
        for (b, how) in cvv_forms(cvv) {
            sc.add(b, format!("CVV #{i} ({how})"));
        }
    }
    let mut add_all = |what: &str, secret: &[u8]| {
        for (b, how) in encodings(secret) {
            sc.add(b, format!("{what} ({how})"));
        }
    };
    add_all("the merchant password", PASSWORD.as_bytes());
    for (i, t) in seen.sessions.iter().enumerate() {
        add_all(&format!("session token #{i}"), t.as_bytes());
        if let Ok(raw) = hex::decode(t.replace('-', "")) {
            add_all(&format!("session token #{i} as bytes"), &raw);
        }
    }
    for (what, key) in [
        ("the merchant API key", &s.api_key),
        ("the operator API key", &s.operator_key),
    ] {
        add_all(what, key.as_bytes());
        let secret = key.rsplit('_').next().unwrap();
        assert_eq!(secret.len(), 64, "an API key's secret is 64 hex characters");
        add_all(&format!("{what}'s secret"), secret.as_bytes());
        add_all(
            &format!("{what}'s secret as bytes"),
            &hex::decode(secret).unwrap(),
        );
    }
    let key_hex = std::fs::read_to_string(&s.key_file)
        .unwrap()
        .trim()
        .to_owned();
    let key_raw = hex::decode(&key_hex).unwrap();
    assert_eq!(key_raw.len(), 32);
    add_all("the vault key", &key_raw);
    sc
}

#[test]
fn a_pg_dump_holds_no_card_number_cvv_password_session_token_or_key() {
    let started = Instant::now();
    let s = Setup::new("tokenize,reveal,fingerprint,sessions");
    let d = s.daemon("dump", &s.db.url());
    let mut seen = Secrets::default();
    token_flows(&d.socket, &s.api_key, &mut seen);
    gateway_flows(&d.socket, &s.api_key, &s.operator_key, &mut seen);
    hosted_flows(&d.socket, &s.api_key, &s.operator_key, &mut seen);
    let status = d.stop();
    assert!(
        status.success(),
        "the daemon did not stop cleanly: {status}"
    );

    let sc = scanner(&s, &seen);
    let out = s.dir.path();
    let mut findings = Vec::new();
    let mut sizes = Vec::new();
    for format in ["plain", "custom"] {
        let dump = pg_dump(&s.db.url(), format, &out.join(format!("vault.{format}")));
        assert!(
            dump.windows(16).any(|w| w == b"cardvault_record"),
            "the {format} dump does not hold the vault's tables"
        );
        sizes.push(dump.len());
        for (what, at) in sc.scan_dump(&dump) {
            findings.push(format!("{format} dump, byte {at}: {what}"));
        }
    }

    // Positive control: the same scan finds the secrets when a table does hold them, in clear,
    // hex and base64, in text and in bytea.
    let pan = &seen.pans[3];
    let masked = format!("{}..{}", &pan[..6], &pan[pan.len() - 4..]);
    let cvv = &seen.cvvs[0];
    let dashed = pan
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("-");
    let password_b64 = encodings(PASSWORD.as_bytes())
        .into_iter()
        .find(|e| e.1 == "base64")
        .unwrap()
        .0;
    let key_hex = std::fs::read_to_string(&s.key_file)
        .unwrap()
        .trim()
        .to_owned();
    // (column, SQL value, what the scan must report).
    let planted = [
        (
            "v",
            format!("'\\x{}'", hex::encode(pan)),
            format!("card number {masked} (digits, clear) (inside a bytea value)"),
        ),
        (
            "t",
            format!("'{dashed}'"),
            format!("card number {masked} (dashed, clear)"),
        ),
        (
            "v",
            format!("'\\x{:02x}{}'", cvv.len(), hex::encode(cvv)),
            "CVV #0 (length-prefixed, clear) (inside a bytea value)".to_owned(),
        ),
        (
            "t",
            format!("'{}'", String::from_utf8(password_b64).unwrap()),
            "the merchant password (base64)".to_owned(),
        ),
        (
            "v",
            format!("'\\x{}'", seen.sessions[0].replace('-', "")),
            "session token #0 as bytes (clear) (inside a bytea value)".to_owned(),
        ),
        (
            "v",
            format!("'\\x{key_hex}'"),
            "the vault key (clear) (inside a bytea value)".to_owned(),
        ),
    ];
    s.db.execute("CREATE TABLE planted_control (v bytea, t text)");
    for (col, value, _) in &planted {
        s.db.execute(&format!(
            "INSERT INTO planted_control ({col}) VALUES ({value})"
        ));
    }
    for format in ["plain", "custom"] {
        let dump = pg_dump(&s.db.url(), format, &out.join(format!("planted.{format}")));
        let hits: Vec<String> = sc.scan_dump(&dump).into_iter().map(|h| h.0).collect();
        for (_, _, expected) in &planted {
            assert!(
                hits.iter().any(|h| h == expected),
                "control: the planted {expected} is not found in the {format} dump; hits: {hits:?}"
            );
        }
    }

    eprintln!(
        "pg_dump leak scan: {} card numbers, {} CVVs, {} session tokens, 2 API keys, the merchant \
         password and the vault key ({} needles); plain and custom dumps of {:?} bytes; {} \
         findings; {:.1} s",
        seen.pans.len(),
        seen.cvvs.len(),
        seen.sessions.len(),
        sc.len(),
        sizes,
        findings.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        findings.is_empty(),
        "secrets in the database dump:\n{}",
        findings.join("\n")
    );
}

/// The daemon's audit chain (the one holding the reveals), as an SQL expression of its id.
const DAEMON_CHAIN: &str = "(SELECT substring(key from 1 for 8) FROM cardvault_audit_chain_entry \
     GROUP BY 1 HAVING count(*) >= 3)";

/// A vault whose daemon wrote three reveals (three blocks of its own audit chain), stopped.
fn audited_vault() -> Setup {
    let s = Setup::new("tokenize,reveal");
    let d = s.daemon("audit", &s.db.url());
    let pan = luhn_pan(&mut rand::rng(), "4", 16);
    let r = http::call(
        &d.socket,
        "POST",
        "/v2/tokens",
        Some(&s.api_key),
        Body::Json(&card_json(&pan, "")),
    );
    let token = expect(&r, 201, "tokenize")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let r = http::call(
            &d.socket,
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            Some(&s.api_key),
            Body::Json("{}"),
        );
        expect(&r, 200, "reveal");
    }
    assert!(d.stop().success());
    s.db.execute(&format!(
        "DO $$ BEGIN IF (SELECT count(*) FROM {DAEMON_CHAIN} c) <> 1 THEN \
         RAISE EXCEPTION 'no audit chain with three blocks'; END IF; END $$;"
    ));
    s.db.execute(
        "CREATE TABLE saved_entries AS SELECT * FROM cardvault_audit_chain_entry; \
         CREATE TABLE saved_heads AS SELECT * FROM cardvault_audit_chain_head;",
    );
    s
}

/// `cardvault audit verify` on the vault: (success, what it printed).
fn audit_verify(s: &Setup) -> (bool, String) {
    let url = s.db.url();
    let out = common::bin()
        .args([
            "audit",
            "verify",
            "--database",
            &url,
            "--key-file",
            &s.key_file,
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The edits to the audit log that `audit verify` finds on a PostgreSQL vault (each made with
/// SQL by the database's operator, then undone): a changed byte of an entry, an entry removed
/// in the middle of a process's chain, and the last entries removed (the chain's head still names
/// them).
#[test]
fn audit_verify_finds_an_operator_editing_or_removing_entries() {
    let s = audited_vault();
    let (ok, text) = audit_verify(&s);
    assert!(ok && text.contains("OK"), "before any edit: {text}");
    let edits = [
        (
            "a changed byte",
            format!(
                "UPDATE cardvault_audit_chain_entry SET value = set_byte(value, 20, get_byte(value, 20) # 1) \
                 WHERE key = (SELECT key FROM cardvault_audit_chain_entry WHERE substring(key from 1 for 8) = {DAEMON_CHAIN} ORDER BY key LIMIT 1)"
            ),
        ),
        (
            "an entry removed in the middle",
            format!(
                "DELETE FROM cardvault_audit_chain_entry WHERE key = (SELECT key FROM cardvault_audit_chain_entry \
                 WHERE substring(key from 1 for 8) = {DAEMON_CHAIN} ORDER BY key OFFSET 1 LIMIT 1)"
            ),
        ),
        (
            "the last entry removed",
            format!(
                "DELETE FROM cardvault_audit_chain_entry WHERE key = (SELECT key FROM cardvault_audit_chain_entry \
                 WHERE substring(key from 1 for 8) = {DAEMON_CHAIN} ORDER BY key DESC LIMIT 1)"
            ),
        ),
    ];
    for (what, sql) in &edits {
        s.db.execute(sql);
        let (ok, text) = audit_verify(&s);
        assert!(
            !ok && text.contains("BROKEN"),
            "{what} is not found: {text}"
        );
        s.db.execute(
            "DELETE FROM cardvault_audit_chain_entry; \
             INSERT INTO cardvault_audit_chain_entry SELECT * FROM saved_entries;",
        );
        let (ok, text) = audit_verify(&s);
        assert!(ok, "after undoing {what}: {text}");
    }
}

/// On a shared vault `audit verify` finds the per-process chains through their entries as well
/// as their head rows: deleting one row of `cardvault_audit_chain_head` is reported (the chain's
/// head is missing), not hidden.
#[test]
fn audit_verify_finds_a_removed_chain_head() {
    let s = audited_vault();
    s.db.execute(&format!(
        "DELETE FROM cardvault_audit_chain_head WHERE key = {DAEMON_CHAIN}"
    ));
    let (ok, text) = audit_verify(&s);
    assert!(!ok, "a chain whose head was removed passes: {text}");
}
