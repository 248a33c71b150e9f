//! Entry points for the fuzz targets in `fuzz/`. Not part of the daemon's API: hidden from the
//! docs and free to change.
//!
//! Each function runs the daemon's real code on attacker bytes and reports a broken property as
//! an `Err` whose text never quotes the input (a request may hold a card number; the input is in
//! the fuzzer's artifact file instead). A panic anywhere underneath is, of course, also a finding.

use std::{
    convert::Infallible,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use time::{OffsetDateTime, macros::datetime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vault_service::{
    Durability, Expiry, KdfParams, KeySource, ManualClock, MerchantId, NewCard, Pan, Scope, Scopes,
    SecretKey, TokenizeOptions, Vault, VaultOptions,
};
use vault_wire::FieldErrorBody;

use crate::{DaemonConfig, decode::form, decode::json, decode::validate, dispatch, state::State};

/// The fixed "now" of both harnesses (expiry checks depend on it).
const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

/// Shortest digit run that could be a card number (PANs have 12-19 digits).
const PAN_MIN_DIGITS: usize = 12;

/// Every JSON body decoder and validator of the daemon on `body`: tokenize, update, batch
/// (each item), reveal and the admin bodies.
///
/// Checks that every field error names a field in dotted lower-case form with a code, and that
/// no error text holds a run of 12 or more digits (no card number is ever echoed).
pub fn json_bodies(body: &[u8]) -> Result<(), String> {
    let (req, errors) = json::tokenize(body);
    check_errors("tokenize (json)", &errors)?;
    if let Err(e) = validate::tokenize(req, errors, NOW) {
        check_errors("tokenize", &e)?;
    }

    let (req, errors) = json::update(body);
    check_errors("update (json)", &errors)?;
    if let Err(e) = validate::update(req, errors, NOW) {
        check_errors("update", &e)?;
    }

    match json::batch(body) {
        Ok(items) => {
            for (req, errors) in items {
                check_errors("batch item (json)", &errors)?;
                if let Err(e) = validate::tokenize(req, errors, NOW) {
                    check_errors("batch item", &e)?;
                }
            }
        }
        Err(e) => check_errors("batch", &e)?,
    }

    match json::typed::<vault_wire::RevealRequest>(body, json::REVEAL) {
        Ok(r) => {
            if let Some(c) = r.customer_id.as_deref()
                && let Err(e) = validate::customer(c)
            {
                check_errors("reveal customer", &[e])?;
            }
        }
        Err(e) => check_errors("reveal", &e)?,
    }
    typed_errors::<vault_wire::MerchantAddRequest>("merchant", body, json::MERCHANT_ADD)?;
    typed_errors::<vault_wire::ApiKeyCreateRequest>("apikey", body, json::APIKEY_CREATE)?;
    typed_errors::<vault_wire::TerminalAddRequest>("terminal", body, json::TERMINAL_ADD)?;
    typed_errors::<vault_wire::BackupRequest>("backup", body, json::BACKUP)?;
    typed_errors::<vault_wire::AuditArchiveRequest>("audit archive", body, json::AUDIT_ARCHIVE)
}

fn typed_errors<T: serde::de::DeserializeOwned>(
    what: &str,
    body: &[u8],
    schema: &[json::Field],
) -> Result<(), String> {
    match json::typed::<T>(body, schema) {
        Ok(_) => Ok(()),
        Err(e) => check_errors(what, &e),
    }
}

fn check_errors(what: &str, errors: &[FieldErrorBody]) -> Result<(), String> {
    for e in errors {
        let field_ok = !e.field.is_empty()
            && e.field
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !field_ok {
            return Err(format!("{what}: a field error names a malformed field"));
        }
        if e.code.is_empty()
            || !e
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("{what}: field {} has a malformed code", e.field));
        }
        if longest_digit_run(e.message.as_bytes()) >= PAN_MIN_DIGITS {
            return Err(format!(
                "{what}: the message for {} holds a digit run as long as a PAN",
                e.field
            ));
        }
    }
    Ok(())
}

/// The gateway body decoder (`POST /token`, `POST /payments`: form-urlencoded or flat JSON) on
/// `body`, both ways.
///
/// Checks that a refusal names either the whole `body` or a field name the input really has,
/// never something taken from a value.
pub fn gateway_bodies(body: &[u8]) -> Result<(), String> {
    for encoding in [form::Encoding::Form, form::Encoding::Json] {
        match form::decode(encoding, body) {
            Ok(_) => {}
            Err(e) if e.field == "body" => {}
            Err(e) => {
                if !input_names(encoding, body)
                    .iter()
                    .any(|n| *n == e.field || n.chars().take(form::MAX_NAME).eq(e.field.chars()))
                {
                    return Err(format!(
                        "{encoding:?}: a refusal ({}) names a field the input does not have",
                        e.code
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every field name in `body`, read independently of `form` (for [`gateway_bodies`]).
fn input_names(encoding: form::Encoding, body: &[u8]) -> Vec<String> {
    match encoding {
        form::Encoding::Form => form_urlencoded::parse(body)
            .map(|(name, _)| name.into_owned())
            .collect(),
        form::Encoding::Json => {
            // Keys of the top-level object, duplicates included (a `Value` would merge them),
            // up to the first syntax error (the decoder may refuse a field before reaching it).
            struct Keys<'a>(&'a mut Vec<String>);
            impl<'de> serde::de::Visitor<'de> for Keys<'_> {
                type Value = ();
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<(), A::Error> {
                    while let Some(k) = map.next_key::<String>()? {
                        self.0.push(k);
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                    Ok(())
                }
            }
            let mut names = Vec::new();
            let mut de = serde_json::Deserializer::from_slice(body);
            let _ = serde::Deserializer::deserialize_map(&mut de, Keys(&mut names));
            names
        }
    }
}

fn longest_digit_run(bytes: &[u8]) -> usize {
    bytes
        .split(|b| !b.is_ascii_digit())
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0)
}

/// One vault and one daemon state, shared by every input of a fuzzing process. Each input is a
/// whole byte stream sent to a fresh in-process HTTP/1.1 connection served by the daemon's
/// real router (no socket: a `tokio::io::duplex` pipe).
pub struct HttpHarness {
    runtime: tokio::runtime::Runtime,
    state: Arc<State>,
    /// A `tokenize,reveal` key of merchant 890490, substituted for `@KEY@` in inputs.
    api_key: String,
    /// A live token of merchant 890490, substituted for `@TOKEN@` in inputs.
    token: String,
}

impl HttpHarness {
    /// A new vault in `dir` (which must not hold one yet): deferred durability, the test-only
    /// fast KDF, a key-file key, a clock stopped at 2026-11-21, merchant 890490 with one API key
    /// (no admin scope: the fuzzer must not make backups or rotate keys) and one token.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let clock = Arc::new(ManualClock::new(NOW));
        let vault = Vault::create(
            dir,
            &KeySource::KeyFile(SecretKey::from_bytes([7; 32])),
            VaultOptions {
                durability: Durability::Deferred { interval_ms: 1000 },
                kdf: KdfParams::insecure_for_tests(),
                clock,
                cache_capacity: 8 << 20,
            },
        )
        .map_err(|e| format!("create the vault: {e}"))?;
        let merchant = MerchantId::new(890_490).map_err(|e| e.to_string())?;
        vault
            .add_merchant(merchant, "fuzz")
            .map_err(|e| e.to_string())?;
        let api_key = vault
            .create_api_key(
                merchant,
                Scopes::of(&[Scope::Tokenize, Scope::Reveal]),
                "fuzz",
            )
            .map_err(|e| e.to_string())?
            .expose()
            .to_owned();
        let card = NewCard::new(
            Pan::parse("4242424242424242").map_err(|e| e.to_string())?,
            Expiry::parse_yymm("2802").map_err(|e| e.to_string())?,
        );
        let token = vault
            .tokenize(merchant, card, TokenizeOptions::default())
            .map_err(|e| e.to_string())?
            .token
            .to_string();
        let config = DaemonConfig {
            header_read_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            ..DaemonConfig::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        Ok(Self {
            runtime,
            state: Arc::new(State::new(vault, config)),
            api_key,
            token,
        })
    }

    /// Serves `input` (after substituting `@KEY@` and `@TOKEN@`) as everything a client sends on
    /// one connection, then end of input. Returns the status of every response the router gave.
    ///
    /// Checks: no 5xx but 503 (408 is the body timeout), and no error body holds a digit run as
    /// long as a PAN. hyper's own answers to broken framing (400/431, no body) are not seen here.
    pub fn request(&self, input: &[u8]) -> Result<Vec<u16>, String> {
        let input = substitute(
            &substitute(input, b"@KEY@", self.api_key.as_bytes()),
            b"@TOKEN@",
            self.token.as_bytes(),
        );
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let violation = Arc::new(Mutex::new(None::<String>));
        let state = self.state.clone();
        let (seen, bad) = (statuses.clone(), violation.clone());
        let svc = service_fn(move |req| {
            let (st, seen, bad) = (state.clone(), seen.clone(), bad.clone());
            async move {
                let resp = dispatch::handle(st, req).await;
                let (resp, problem) = inspect(resp).await;
                if let Ok(mut s) = seen.lock() {
                    s.push(resp.status().as_u16());
                }
                if let (Some(p), Ok(mut b)) = (problem, bad.lock()) {
                    b.get_or_insert(p);
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let config = &self.state.config;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_headers(100)
            .half_close(true);
        // A connection error (broken framing, early close) is an answer like any other.
        let (_connection, ()) = self.runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let conn = builder.serve_connection(TokioIo::new(server), svc);
            let talk = async move {
                // Either side may stop early (a refused request closes the connection).
                let _ = client.write_all(&input).await;
                let _ = client.shutdown().await;
                let mut sink = Vec::new();
                let _ = client.read_to_end(&mut sink).await;
            };
            let both = async { tokio::join!(conn, talk) };
            tokio::time::timeout(Duration::from_secs(8), both)
                .await
                .map_err(|_| "a connection took longer than 8 s".to_owned())
        })?;
        if let Some(p) = violation.lock().ok().and_then(|mut v| v.take()) {
            return Err(p);
        }
        Ok(statuses.lock().map(|s| s.clone()).unwrap_or_default())
    }
}

/// The response (rebuilt after reading its body) and the property it breaks, if any.
async fn inspect(resp: Response<Full<Bytes>>) -> (Response<Full<Bytes>>, Option<String>) {
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let problem = if status >= 500 && status != 503 {
        Some(format!("the daemon answered {status}"))
    } else if status >= 400 && longest_digit_run(&without_ids(&bytes)) >= PAN_MIN_DIGITS {
        Some(format!(
            "a {status} body holds a digit run as long as a PAN"
        ))
    } else {
        None
    };
    (Response::from_parts(parts, Full::new(bytes)), problem)
}

/// `bytes` without the identifiers the daemon mints (UUIDs such as a gateway `resultId`, 48-hex
/// tokens): any run of hex digits and dashes of 32 or more bytes holding a letter. Their digit
/// groups are random, so one may be a run of 12 digits by chance; a card number never has a
/// letter in it.
fn without_ids(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for run in bytes.chunk_by(|a, b| is_id_byte(*a) == is_id_byte(*b)) {
        let is_id = run.len() >= 32
            && run.iter().copied().all(is_id_byte)
            && run.iter().any(u8::is_ascii_alphabetic);
        if is_id {
            out.push(b' ');
        } else {
            out.extend_from_slice(run);
        }
    }
    out
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b'-'
}

/// `input` with every `from` replaced by `to`.
fn substitute(input: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seed_bodies_pass() {
        json_bodies(
            br#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}}"#,
        )
        .unwrap();
        json_bodies(b"\xff").unwrap();
        json_bodies(br#"{"items":[{"type":"card","card":{"pan":1,"expiration_date":"2802"}}]}"#)
            .unwrap();
    }

    #[test]
    fn gateway_seed_bodies_pass() {
        gateway_bodies(b"merchantId=890490&password=x&action=TOKENIZE").unwrap();
        gateway_bodies(br#"{"merchantId":890490,"card":{"pan":"4111111111111111"}}"#).unwrap();
        gateway_bodies(br#"{"a":"1","a":"2"}"#).unwrap();
        gateway_bodies(br#"{"a":{}, bad"#).unwrap();
    }

    #[test]
    fn digit_runs() {
        assert_eq!(longest_digit_run(b"line 1, column 12"), 2);
        assert_eq!(longest_digit_run(b"x4242424242424242y"), 16);
        assert_eq!(longest_digit_run(b""), 0);
    }

    #[test]
    fn minted_ids_are_not_card_numbers() {
        let body = br#"{"resultId":"0f8fad5b-d9cb-469f-a165-708677289501","t":"ab123456789012345678901234567890abcdef0123456789"}"#;
        assert!(longest_digit_run(&without_ids(body)) < PAN_MIN_DIGITS);
        let echo = br#"{"fieldName":"4242424242424242","x":"-4111111111111111"}"#;
        assert_eq!(longest_digit_run(&without_ids(echo)), 16);
    }

    #[test]
    fn substitution() {
        assert_eq!(substitute(b"a@K@b@K@", b"@K@", b"xy"), b"axybxy");
        assert_eq!(substitute(b"abc", b"@K@", b"xy"), b"abc");
    }

    #[test]
    fn http_harness_answers() {
        let dir = tempfile::tempdir().unwrap();
        let h = HttpHarness::new(&dir.path().join("vault")).unwrap();
        let body = r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}}"#;
        let req = format!(
            "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer @KEY@\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}GET /v2/tokens/@TOKEN@ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer @KEY@\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            body.len()
        );
        assert_eq!(h.request(req.as_bytes()).unwrap(), [201, 200, 404]);
        assert_eq!(h.request(b"\x00garbage").unwrap(), Vec::<u16>::new());
    }
}
