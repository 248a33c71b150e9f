//! JSON request bodies to wire types, naming every field that has the wrong JSON type.
//!
//! The fast path is serde's typed parse. Only when it fails is the body parsed again as a
//! `serde_json::Value` and checked against a schema of dotted field paths, so that the 400 can
//! name each offending field (`card.pan`, `type`, `body`, ...). serde's own error messages are
//! never returned: they quote the values they refuse.
//!
//! Everything here is pure (bytes in, values or field errors out), so it can be fuzzed.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use vault_wire::{
    BatchRequest, CardInput, FieldErrorBody, TokenType, TokenizeRequest, UpdateRequest,
};

/// The JSON type a field must have.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A string.
    Str,
    /// `true` or `false`.
    Bool,
    /// An object.
    Object,
    /// An object whose values are all strings.
    StrMap,
    /// An array of strings.
    StrArray,
    /// An RFC 3339 timestamp string.
    Timestamp,
    /// This exact string.
    Const(&'static str),
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// One field of a schema: a dotted path from the body's root.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    path: &'static str,
    kind: Kind,
    required: bool,
}

const fn req(path: &'static str, kind: Kind) -> Field {
    Field {
        path,
        kind,
        required: true,
    }
}

const fn opt(path: &'static str, kind: Kind) -> Field {
    Field {
        path,
        kind,
        required: false,
    }
}

const CARD_FIELDS: [Field; 4] = [
    req("card", Kind::Object),
    req("card.pan", Kind::Str),
    req("card.expiration_date", Kind::Str),
    opt("card.cardholder_name", Kind::Str),
];

/// `POST /v2/tokens` and each batch item.
pub(crate) const TOKENIZE: &[Field] = &[
    req("type", Kind::Const("card")),
    CARD_FIELDS[0],
    CARD_FIELDS[1],
    CARD_FIELDS[2],
    CARD_FIELDS[3],
    opt("metadata", Kind::StrMap),
    opt("customer_id", Kind::Str),
    opt("keep_until", Kind::Timestamp),
    opt("dedupe", Kind::Bool),
];

/// `PUT /v2/tokens/{token}`.
pub(crate) const UPDATE: &[Field] = &[
    opt("type", Kind::Const("card")),
    CARD_FIELDS[0],
    CARD_FIELDS[1],
    CARD_FIELDS[2],
    CARD_FIELDS[3],
    opt("metadata", Kind::StrMap),
    opt("keep_until", Kind::Timestamp),
];

/// `POST /v2/tokens/{token}/reveal`.
pub(crate) const REVEAL: &[Field] = &[opt("customer_id", Kind::Str)];
/// `POST /admin/merchants`.
pub(crate) const MERCHANT_ADD: &[Field] = &[req("merchant_id", Kind::Str), req("name", Kind::Str)];
/// `POST /admin/apikeys`.
pub(crate) const APIKEY_CREATE: &[Field] = &[
    opt("merchant_id", Kind::Str),
    opt("operator", Kind::Bool),
    req("scopes", Kind::StrArray),
    opt("label", Kind::Str),
];
/// `POST /admin/terminals`.
pub(crate) const TERMINAL_ADD: &[Field] =
    &[req("merchant_id", Kind::Str), req("terminal_id", Kind::Str)];

/// `POST /payments/{txId}/result`.
pub(crate) const PAYMENT_RESULT: &[Field] = &[req("result", Kind::OneOf(&["success", "failure"]))];
/// `POST /processing-terminals/{id}/hosted-fields-sessions` (the hosted-fields session API).
pub(crate) const HOSTED_SESSION: &[Field] = &[
    req("libVersion", Kind::Str),
    req("scenario", Kind::Str),
    opt("secureTokenId", Kind::Str),
    opt("allowOriginUrl", Kind::Str),
];

/// `POST /admin/backup`.
pub(crate) const BACKUP: &[Field] = &[req("path", Kind::Str)];
/// `POST /admin/audit/archive`.
pub(crate) const AUDIT_ARCHIVE: &[Field] = &[req("before", Kind::Str), req("path", Kind::Str)];

/// A typed body, or every field error found in it.
pub(crate) fn typed<T: DeserializeOwned>(
    body: &[u8],
    schema: &[Field],
) -> Result<T, Vec<FieldErrorBody>> {
    if let Some(text) = trusted(body)
        && let Ok(t) = serde_json::from_str(text)
    {
        return Ok(t);
    }
    let value = value(body).map_err(|e| vec![e])?;
    Err(or_unparsable(check(&value, schema)))
}

/// A tokenize request and the fields already refused for their JSON type. Refused fields are
/// left empty in the request; validation skips them (see [`is_refused`]).
pub(crate) fn tokenize(body: &[u8]) -> (TokenizeRequest, Vec<FieldErrorBody>) {
    let typed = trusted(body).and_then(|text| serde_json::from_str(text).ok());
    match typed {
        Some(req) => (req, Vec::new()),
        None => match value(body) {
            Ok(v) => {
                let errors = check(&v, TOKENIZE);
                (lenient(&v), or_unparsable(errors))
            }
            Err(e) => (TokenizeRequest::default(), vec![e]),
        },
    }
}

/// [`tokenize`] for an already parsed value (a batch item).
fn tokenize_value(v: Value) -> (TokenizeRequest, Vec<FieldErrorBody>) {
    let errors = check(&v, TOKENIZE);
    if errors.is_empty() {
        return match serde_json::from_value(v) {
            Ok(req) => (req, Vec::new()),
            Err(_) => (TokenizeRequest::default(), or_unparsable(errors)),
        };
    }
    (lenient(&v), errors)
}

/// An update request and the fields refused for their JSON type (see [`tokenize`]), and a
/// `customer_id`, which an update cannot change: refused rather than ignored, so a caller never
/// believes it moved the card to another customer.
pub(crate) fn update(body: &[u8]) -> (UpdateRequest, Vec<FieldErrorBody>) {
    let (req, mut errors) = update_fields(body);
    if names_a_customer(body) {
        errors.push(FieldErrorBody::new(
            "customer_id",
            "immutable",
            "a token's customer binding cannot be changed; tokenize the card for the other customer",
        ));
    }
    (req, errors)
}

/// Whether the body is an object with a top-level `customer_id` member.
fn names_a_customer(body: &[u8]) -> bool {
    const NAME: &[u8] = b"\"customer_id\"";
    body.windows(NAME.len()).any(|w| w == NAME)
        && matches!(
            serde_json::from_slice::<Value>(body),
            Ok(Value::Object(o)) if o.contains_key("customer_id")
        )
}

fn update_fields(body: &[u8]) -> (UpdateRequest, Vec<FieldErrorBody>) {
    if let Some(text) = trusted(body)
        && let Ok(req) = serde_json::from_str(text)
    {
        return (req, Vec::new());
    }
    let v = match value(body) {
        Ok(v) => v,
        Err(e) => return (UpdateRequest::default(), vec![e]),
    };
    let errors = or_unparsable(check(&v, UPDATE));
    let mut t = lenient(&v);
    let req = UpdateRequest {
        kind: None,
        card: std::mem::take(&mut t.card),
        metadata: t.metadata.take(),
        keep_until: t.keep_until,
    };
    (req, errors)
}

/// A batch: its items, each with the fields refused for their JSON type, or the errors of the
/// whole body (not an object, `items` missing or not an array).
#[allow(clippy::type_complexity)]
pub(crate) fn batch(
    body: &[u8],
) -> Result<Vec<(TokenizeRequest, Vec<FieldErrorBody>)>, Vec<FieldErrorBody>> {
    if let Some(text) = trusted(body)
        && let Ok(b) = serde_json::from_str::<BatchRequest>(text)
    {
        return Ok(b.items.into_iter().map(|r| (r, Vec::new())).collect());
    }
    let v = value(body).map_err(|e| vec![e])?;
    let Value::Object(mut obj) = v else {
        return Err(vec![not_object()]);
    };
    match obj.remove("items") {
        Some(Value::Array(items)) => {
            let items: Vec<_> = items.into_iter().map(tokenize_value).collect();
            // The typed parse failed, yet every item is fine: something the value parse let
            // through (a duplicate key) is wrong. Refuse rather than guess.
            if items.iter().all(|(_, errors)| errors.is_empty()) {
                return Err(or_unparsable(Vec::new()));
            }
            Ok(items)
        }
        None | Some(Value::Null) => Err(vec![required("items")]),
        Some(_) => Err(vec![FieldErrorBody::new(
            "items",
            "invalid_type",
            "must be an array of token requests",
        )]),
    }
}

/// `body` as text, when the typed parse may be trusted with it: the body is UTF-8 (checked once
/// here: serde skips the members it ignores without checking their bytes, and reading from a
/// `str` it does not check the others again) and an object, and so are `card` and every batch
/// item. serde reads a struct from a JSON array by position (`["card",{...}]`), which the API
/// refuses; bodies that fail this check take the slow path, whose checks name the offending
/// field (or `invalid_utf8`). Only a body holding a `[` is parsed twice.
fn trusted(body: &[u8]) -> Option<&str> {
    if !starts_as_object(body) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    if !body.contains(&b'[') {
        return Some(text);
    }
    let Ok(Value::Object(root)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let card_ok = |o: &Map<String, Value>| {
        matches!(o.get("card"), None | Some(Value::Null | Value::Object(_)))
    };
    let items_ok = match root.get("items") {
        Some(Value::Array(items)) => items.iter().all(|i| i.as_object().is_some_and(card_ok)),
        _ => true,
    };
    (card_ok(&root) && items_ok).then_some(text)
}

/// Whether the first non-blank byte of `body` opens a JSON object.
pub(crate) fn starts_as_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The field a client's unknown key is reported under: `parent.key` when the key is a plain
/// lower-case name (so the error never echoes a card number typed as a key), else `parent`.
fn unknown_field(parent: &str, key: &str) -> FieldErrorBody {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if plain {
        FieldErrorBody::new(
            format!("{parent}.{key}"),
            "unknown_field",
            format!("{parent} has no field {key}"),
        )
    } else {
        FieldErrorBody::new(
            parent,
            "unknown_field",
            format!("{parent} holds a field this API does not know"),
        )
    }
}

/// True when `field` (or a parent of it, or the whole body) was already refused.
pub(crate) fn is_refused(errors: &[FieldErrorBody], field: &str) -> bool {
    errors.iter().any(|e| {
        e.field == "body"
            || e.field == field
            || field
                .strip_prefix(e.field.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The body as a JSON value, or the `body` error saying why not.
fn value(body: &[u8]) -> Result<Value, FieldErrorBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FieldErrorBody::new(
            "body",
            "required",
            "a JSON body is required",
        ));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(FieldErrorBody::new(
            "body",
            "invalid_utf8",
            "the body is not valid UTF-8",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        FieldErrorBody::new(
            "body",
            "invalid_json",
            format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Every field of `schema` that is missing or of the wrong type in `v`.
fn check(v: &Value, schema: &[Field]) -> Vec<FieldErrorBody> {
    let Value::Object(root) = v else {
        return vec![not_object()];
    };
    let mut errors = Vec::new();
    for f in schema {
        // A field under a refused parent is not reported again.
        if is_refused(&errors, f.path) {
            continue;
        }
        let found = lookup(root, f.path);
        match found {
            None | Some(Value::Null) => {
                if f.required {
                    errors.push(required(f.path));
                }
            }
            Some(value) => {
                if let Some(e) = kind_error(f.path, f.kind, value) {
                    errors.push(e);
                } else if let (Kind::Object, Value::Object(o)) = (f.kind, value) {
                    // An object's fields are the schema's: anything else is refused.
                    for key in o.keys() {
                        let known = schema.iter().any(|c| {
                            c.path
                                .strip_prefix(f.path)
                                .and_then(|r| r.strip_prefix('.'))
                                == Some(key.as_str())
                        });
                        if !known {
                            errors.push(unknown_field(f.path, key));
                        }
                    }
                }
            }
        }
    }
    errors
}

/// The value at a dotted path, `None` when a parent is missing or not an object.
fn lookup<'a>(root: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = root.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn kind_error(path: &str, kind: Kind, v: &Value) -> Option<FieldErrorBody> {
    let ok = match kind {
        Kind::Str => v.is_string(),
        Kind::Bool => v.is_boolean(),
        Kind::Object => v.is_object(),
        Kind::StrMap => v
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        Kind::StrArray => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Kind::Timestamp => match v.as_str() {
            Some(s) if OffsetDateTime::parse(s, &Rfc3339).is_ok() => true,
            Some(_) => {
                return Some(FieldErrorBody::new(
                    path,
                    "invalid_format",
                    "must be an RFC 3339 timestamp such as 2028-03-01T00:00:00Z",
                ));
            }
            None => false,
        },
        Kind::Const(want) => match v.as_str() {
            Some(s) if s == want => true,
            Some(_) => {
                return Some(FieldErrorBody::new(
                    path,
                    "unsupported",
                    format!("must be \"{want}\""),
                ));
            }
            None => false,
        },
        Kind::OneOf(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => true,
            Some(_) => {
                return Some(FieldErrorBody::new(
                    path,
                    "unsupported",
                    format!("must be one of: {}", allowed.join(", ")),
                ));
            }
            None => false,
        },
    };
    (!ok).then(|| wrong_type(path, kind))
}

fn wrong_type(path: &str, kind: Kind) -> FieldErrorBody {
    let what = match kind {
        Kind::Str | Kind::Const(_) | Kind::OneOf(_) => "must be a string",
        Kind::Bool => "must be true or false",
        Kind::Object => "must be an object",
        Kind::StrMap => "must be an object of string values",
        Kind::StrArray => "must be an array of strings",
        Kind::Timestamp => "must be an RFC 3339 timestamp string",
    };
    FieldErrorBody::new(path, "invalid_type", what)
}

fn required(path: &str) -> FieldErrorBody {
    FieldErrorBody::new(path, "required", "is required")
}

fn not_object() -> FieldErrorBody {
    FieldErrorBody::new("body", "invalid_type", "the body must be a JSON object")
}

/// The typed parse failed although every field has the right type (duplicate keys, say): refuse
/// the body as a whole rather than guess.
fn or_unparsable(errors: Vec<FieldErrorBody>) -> Vec<FieldErrorBody> {
    if errors.is_empty() {
        vec![FieldErrorBody::new(
            "body",
            "invalid",
            "the body could not be read as this request (duplicate, unknown or conflicting fields)",
        )]
    } else {
        errors
    }
}

/// Whatever well-typed fields `v` has, as a request; the rest left empty.
fn lenient(v: &Value) -> TokenizeRequest {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let card = v.get("card");
    let metadata = v.get("metadata").and_then(Value::as_object).map(|m| {
        m.iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect::<BTreeMap<_, _>>()
    });
    TokenizeRequest {
        kind: TokenType::Card,
        card: CardInput {
            pan: s(card.and_then(|c| c.get("pan"))).unwrap_or_default(),
            expiration_date: s(card.and_then(|c| c.get("expiration_date"))).unwrap_or_default(),
            cardholder_name: s(card.and_then(|c| c.get("cardholder_name"))),
        },
        metadata,
        customer_id: s(v.get("customer_id")),
        keep_until: v
            .get("keep_until")
            .and_then(Value::as_str)
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
        dedupe: v.get("dedupe").and_then(Value::as_bool),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn fields(errors: &[FieldErrorBody]) -> Vec<(&str, &str)> {
        errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect()
    }

    #[test]
    fn example_request_takes_the_fast_path() {
        let body = br#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"description":"Card description - optional value"}}"#;
        let (req, errors) = tokenize(body);
        assert!(errors.is_empty());
        assert_eq!(req.card.expiration_date, "2802");
    }

    #[test]
    fn wrong_types_are_named() {
        let (req, errors) = tokenize(
            br#"{"type":"bank","card":{"pan":4242424242424242,"expiration_date":"2802"},"metadata":{"a":1},"dedupe":"yes","keep_until":"tomorrow"}"#,
        );
        assert_eq!(
            fields(&errors),
            [
                ("type", "unsupported"),
                ("card.pan", "invalid_type"),
                ("metadata", "invalid_type"),
                ("keep_until", "invalid_format"),
                ("dedupe", "invalid_type"),
            ]
        );
        assert_eq!(req.card.expiration_date, "2802");
        for e in &errors {
            assert!(!e.message.contains("4242"), "{e:?}");
        }
    }

    #[test]
    fn missing_card_is_reported_once() {
        let (_, errors) = tokenize(br#"{"type":"card"}"#);
        assert_eq!(fields(&errors), [("card", "required")]);
        assert!(is_refused(&errors, "card.pan"));
        assert!(!is_refused(&errors, "cardholder"));
    }

    #[test]
    fn body_errors() {
        for (body, code) in [
            (&b""[..], "required"),
            (b"   ", "required"),
            (b"{\"type\":\"card\"", "invalid_json"),
            (b"\xff\xfe", "invalid_utf8"),
            (b"{\"type\":\"\xc3\x28\"}", "invalid_utf8"),
            (b"[1,2]", "invalid_type"),
            (b"1e999", "invalid_json"),
        ] {
            let (_, errors) = tokenize(body);
            assert_eq!(fields(&errors), [("body", code)], "{body:?}");
        }
    }

    #[test]
    fn an_update_naming_a_customer_is_refused_not_ignored() {
        let card = r#""card":{"pan":"4242424242424242","expiration_date":"2802"}"#;
        let (_, errors) = update(format!(r#"{{{card},"customer_id":"c-2"}}"#).as_bytes());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code.as_str()),
            ("customer_id", "immutable")
        );
        // The name inside a value, or nested, is not the member.
        let (_, errors) = update(
            format!(r#"{{{card},"metadata":{{"customer_id":"x","a":"\"customer_id\""}}}}"#)
                .as_bytes(),
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn invalid_utf8_is_refused_even_in_a_member_nobody_reads() {
        let mut body = br#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"note":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}"#);
        assert_eq!(fields(&tokenize(&body).1), [("body", "invalid_utf8")]);
        assert_eq!(fields(&update(&body).1), [("body", "invalid_utf8")]);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let (_, errors) = tokenize(
            br#"{"type":"card","type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}}"#,
        );
        assert_eq!(fields(&errors), [("body", "invalid")]);
        // Inside `metadata` too (serde would keep the last value), on every route that takes it.
        let card = r#""card":{"pan":"4242424242424242","expiration_date":"2802"}"#;
        let meta = r#""metadata":{"order":"A-1","order":"A-2"}"#;
        let body = format!(r#"{{"type":"card",{card},{meta}}}"#);
        assert_eq!(fields(&tokenize(body.as_bytes()).1), [("body", "invalid")]);
        assert_eq!(
            fields(&update(format!("{{{card},{meta}}}").as_bytes()).1),
            [("body", "invalid")]
        );
        let items = format!(r#"{{"items":[{{"type":"card",{card}}},{body}]}}"#);
        assert_eq!(
            fields(&batch(items.as_bytes()).unwrap_err()),
            [("body", "invalid")]
        );
        let distinct = body.replace(r#""order":"A-2""#, r#""ref":"A-2""#);
        assert!(tokenize(distinct.as_bytes()).1.is_empty());
    }

    #[test]
    fn arrays_are_never_read_as_objects() {
        let card = r#"{"pan":"4242424242424242","expiration_date":"2802"}"#;
        let root = format!(r#"["card",{card}]"#);
        let (_, errors) = tokenize(root.as_bytes());
        assert_eq!(fields(&errors), [("body", "invalid_type")]);
        let (_, errors) = update(root.as_bytes());
        assert_eq!(fields(&errors), [("body", "invalid_type")]);
        let nested = r#"{"type":"card","card":["4242424242424242","2802"]}"#;
        let (_, errors) = tokenize(nested.as_bytes());
        assert_eq!(fields(&errors), [("card", "invalid_type")]);
        let r = typed::<vault_wire::MerchantAddRequest>(br#"[890490,"Shop"]"#, MERCHANT_ADD);
        assert_eq!(fields(&r.unwrap_err()), [("body", "invalid_type")]);
        let r = typed::<vault_wire::BackupRequest>(br#"  ["/tmp/x"]"#, BACKUP);
        assert_eq!(fields(&r.unwrap_err()), [("body", "invalid_type")]);
        let items =
            batch(format!(r#"{{"items":[{root},{{"type":"card","card":{card}}}]}}"#).as_bytes())
                .unwrap();
        assert_eq!(fields(&items[0].1), [("body", "invalid_type")]);
        assert!(items[1].1.is_empty());
        // A `[` inside a string is not an array.
        let (req, errors) = tokenize(
            br#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"a":"[x]"}}"#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(req.card.expiration_date, "2802");
    }

    #[test]
    fn unknown_card_fields_are_refused() {
        let (_, errors) = tokenize(
            br#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802","cvv":"123","4111111111111111":"x"}}"#,
        );
        assert_eq!(
            fields(&errors),
            [("card", "unknown_field"), ("card.cvv", "unknown_field")]
        );
        for e in &errors {
            assert!(!e.message.contains("4111"), "{e:?}");
        }
        let (_, errors) = update(
            br#"{"card":{"pan":"4242424242424242","expiration_date":"2802","nickname":"x"}}"#,
        );
        assert_eq!(fields(&errors), [("card.nickname", "unknown_field")]);
        // Unknown top-level fields are still ignored.
        let (_, errors) = tokenize(
            br#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"extra":1}"#,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn an_unknown_payment_result_is_named() {
        let r = typed::<vault_wire::PaymentResultRequest>(br#"{"result":"maybe"}"#, PAYMENT_RESULT);
        let errors = r.unwrap_err();
        assert_eq!(fields(&errors), [("result", "unsupported")]);
        assert!(errors[0].message.contains("success, failure"));
    }

    #[test]
    fn batch_items_keep_their_own_errors() {
        let items = batch(
            br#"{"items":[{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}},{"type":"card","card":{"pan":true,"expiration_date":"2802"}}]}"#,
        )
        .unwrap();
        assert!(items[0].1.is_empty());
        assert_eq!(fields(&items[1].1), [("card.pan", "invalid_type")]);
        assert_eq!(
            fields(&batch(br#"{"items":{}}"#).unwrap_err()),
            [("items", "invalid_type")]
        );
    }
}
