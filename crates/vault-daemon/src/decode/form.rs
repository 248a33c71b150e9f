//! Gateway request bodies (the gateway API): `application/x-www-form-urlencoded`, as a browser's
//! `$.post` sends them, or a flat JSON object. Either way the result is one map of field name to
//! text; JSON numbers and booleans become their text, nested values are refused by name.
//!
//! Values may hold a card number, CVV or password: they are wiped when the map is dropped, and no
//! error ever quotes one. Everything here is pure (bytes in, fields or errors out), so it can be
//! fuzzed.

use std::{collections::BTreeMap, fmt};

use serde::de::{Deserializer, MapAccess, Visitor};
use zeroize::Zeroizing;

/// Most fields in one gateway request (the seeds' jQuery example sends about twenty).
pub(crate) const MAX_FIELDS: usize = 64;
/// Longest field name.
pub(crate) const MAX_NAME: usize = 64;

/// How the body was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json`.
    Json,
}

/// The encoding a `Content-Type` declares, if it is one the gateway routes accept.
pub(crate) fn encoding(content_type: Option<&str>) -> Option<Encoding> {
    let media = content_type?.split(';').next()?.trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(Encoding::Form)
    } else if media.eq_ignore_ascii_case("application/json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

/// Why a body could not be read as fields: the field it is about (`body` for the whole) and a
/// seed-style message code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BodyError {
    pub(crate) field: String,
    pub(crate) code: &'static str,
}

impl BodyError {
    fn body(code: &'static str) -> Self {
        Self {
            field: "body".to_owned(),
            code,
        }
    }

    /// A refusal naming the field `name` came under, when `name` looks like a field name (ASCII
    /// letters, `_`, `-`, `.`; every gateway field is one); otherwise the whole `body`, so that no
    /// text chosen by the client (a card number sent as a field name, say) is ever echoed.
    fn field(name: &str, code: &'static str) -> Self {
        let plausible = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'-' | b'.'));
        Self {
            field: if plausible { name } else { "body" }.to_owned(),
            code,
        }
    }
}

/// A decoded gateway request: field name to text. Values are wiped on drop.
#[derive(Default)]
pub(crate) struct Fields(BTreeMap<String, Zeroizing<String>>);

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Fields {
    /// The value of `name`, if sent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.as_str())
    }

    /// Every field, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn insert(&mut self, name: String, value: Zeroizing<String>) -> Result<(), BodyError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(BodyError::body("field.name"));
        }
        if self.0.len() >= MAX_FIELDS {
            return Err(BodyError::body("request.too_many_fields"));
        }
        if self.0.contains_key(&name) {
            return Err(BodyError::field(&name, "field.duplicate"));
        }
        self.0.insert(name, value);
        Ok(())
    }
}

/// Decodes `body` as `encoding`.
pub(crate) fn decode(encoding: Encoding, body: &[u8]) -> Result<Fields, BodyError> {
    match encoding {
        Encoding::Form => decode_form(body),
        Encoding::Json => decode_json(body),
    }
}

fn decode_form(body: &[u8]) -> Result<Fields, BodyError> {
    let mut fields = Fields::default();
    for (name, value) in form_urlencoded::parse(body) {
        // `parse` replaces invalid UTF-8 with U+FFFD; a field holding it is refused by its own
        // validation (names: refused here).
        if name.contains('\u{FFFD}') {
            return Err(BodyError::body("field.name"));
        }
        fields.insert(name.into_owned(), Zeroizing::new(value.into_owned()))?;
    }
    Ok(fields)
}

fn decode_json(body: &[u8]) -> Result<Fields, BodyError> {
    // The visitor reports its own refusals here, never through serde's error text (which quotes
    // values from the body and is never looked at).
    let refused = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = (&mut de)
        .deserialize_map(FlatVisitor { refused: &refused })
        .map_err(|_| {
            refused
                .take()
                .unwrap_or_else(|| BodyError::body("request.malformed"))
        })?;
    de.end().map_err(|_| BodyError::body("request.malformed"))?;
    Ok(fields)
}

struct FlatVisitor<'r> {
    refused: &'r std::cell::RefCell<Option<BodyError>>,
}

impl<'de> Visitor<'de> for FlatVisitor<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flat JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        use serde::de::Error;
        let mut fields = Fields::default();
        while let Some(name) = map.next_key::<String>()? {
            let value: serde_json::Value = map.next_value()?;
            let text = match value {
                serde_json::Value::String(s) => Zeroizing::new(s),
                serde_json::Value::Number(n) => Zeroizing::new(n.to_string()),
                serde_json::Value::Bool(b) => Zeroizing::new(b.to_string()),
                // `null` is the same as absent.
                serde_json::Value::Null => continue,
                _ => {
                    *self.refused.borrow_mut() = Some(BodyError::field(&name, "field.invalid"));
                    return Err(A::Error::custom("refused"));
                }
            };
            if let Err(e) = fields.insert(name, text) {
                *self.refused.borrow_mut() = Some(e);
                return Err(A::Error::custom("refused"));
            }
        }
        Ok(fields)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies() {
        let f = decode(
            Encoding::Form,
            b"merchantId=890490&password=p%40ss+word&action=TOKENIZE&customerId=",
        )
        .unwrap();
        assert_eq!(f.get("merchantId"), Some("890490"));
        assert_eq!(f.get("password"), Some("p@ss word"));
        assert_eq!(f.get("customerId"), Some(""));
        assert_eq!(f.get("absent"), None);
        let dup = decode(Encoding::Form, b"a=1&a=2").unwrap_err();
        assert_eq!((dup.field.as_str(), dup.code), ("a", "field.duplicate"));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("f{i}=1&")).collect();
        assert_eq!(
            decode(Encoding::Form, many.as_bytes()).unwrap_err().code,
            "request.too_many_fields"
        );
        assert_eq!(
            decode(Encoding::Form, b"%FF=1").unwrap_err().code,
            "field.name"
        );
    }

    #[test]
    fn json_bodies() {
        let f = decode(
            Encoding::Json,
            br#"{"merchantId":890490,"timestamp":"1","setOneClickValueSettingForCard":true,"x":null}"#,
        )
        .unwrap();
        assert_eq!(f.get("merchantId"), Some("890490"));
        assert_eq!(f.get("setOneClickValueSettingForCard"), Some("true"));
        assert_eq!(f.get("x"), None);
        let nested = decode(Encoding::Json, br#"{"card":{"pan":"4111111111111111"}}"#).unwrap_err();
        assert_eq!(
            (nested.field.as_str(), nested.code),
            ("card", "field.invalid")
        );
        let dup = decode(Encoding::Json, br#"{"a":"1","a":"2"}"#).unwrap_err();
        assert_eq!((dup.field.as_str(), dup.code), ("a", "field.duplicate"));
        for bad in [&b"[1]"[..], b"{", b"{} x", b"\"4111111111111111\"", b""] {
            let e = decode(Encoding::Json, bad).unwrap_err();
            assert_eq!(e.field, "body");
            assert!(!format!("{e:?}").contains("4111"));
        }
    }

    #[test]
    fn refusals_never_name_text_from_the_body() {
        // Found by the daemon_gateway fuzz target: serde's own error quotes the body.
        for bad in [
            &br#""cardvault-field:4242424242424242|x""#[..],
            br#"{"|arcd":{"":""}}"#,
            br#"{"4242424242424242":{"a":1}}"#,
            br#"{"4242424242424242":"1","4242424242424242":"2"}"#,
        ] {
            let e = decode(Encoding::Json, bad).unwrap_err();
            assert_eq!(e.field, "body", "{e:?}");
        }
        let e = decode(Encoding::Form, b"4242424242424242=1&4242424242424242=2").unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn debug_shows_names_only() {
        let f = decode(Encoding::Form, b"number=4111111111111111").unwrap();
        assert_eq!(format!("{f:?}"), "{\"number\"}");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            encoding(Some("application/x-www-form-urlencoded; charset=UTF-8")),
            Some(Encoding::Form)
        );
        assert_eq!(encoding(Some("Application/JSON")), Some(Encoding::Json));
        assert_eq!(encoding(Some("text/plain")), None);
        assert_eq!(encoding(None), None);
    }
}
