//! A secret in the forms it could be stored in, and a scanner for many of them at once.
//!
//! Each secret is searched for as its bytes, as lower- and upper-case hex of them, and as
//! standard and URL-safe base64 of them at each of the three alignments a value can have inside
//! a longer base64 text (the characters that depend only on the secret's own bytes). Card
//! numbers also as digits grouped by spaces and dashes and as packed BCD; CVVs (too short to
//! search for alone without hitting random bytes) in the forms a program would write them:
//! length-prefixed (postcard, bincode-style varint), JSON-quoted, form-encoded, as a JSON field.
//!
//! A dump of PostgreSQL shows `bytea` values as hex text (`\x3431...`), so [`Scanner::scan_dump`]
//! searches the text itself and every `\x...` value decoded back into bytes.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

/// Needles shorter than this are not searched (their chance hits in random bytes would drown
/// real ones).
const MIN_NEEDLE: usize = 4;

/// Every form of `secret`: (bytes, form name).
pub fn encodings(secret: &[u8]) -> Vec<(Vec<u8>, &'static str)> {
    let mut out = vec![
        (secret.to_vec(), "clear"),
        (hex::encode(secret).into_bytes(), "hex"),
        (hex::encode_upper(secret).into_bytes(), "HEX"),
    ];
    for skip in 0..3 {
        let Some(part) = secret.get(skip..) else {
            continue;
        };
        let whole = &part[..part.len() / 3 * 3];
        // Shorter cores match random text too easily; the other alignments cover the value.
        if whole.len() < 6 {
            continue;
        }
        out.push((base64(whole, STD).into_bytes(), "base64"));
        out.push((base64(whole, URL).into_bytes(), "base64url"));
    }
    out
}

/// The written forms of a card number: digits, in groups of four separated by spaces or dashes,
/// and packed BCD (two digits a byte; an odd length padded with an `F` or `0` nibble, or led by a
/// `0` nibble). Each is then taken in all its [`encodings`].
pub fn pan_forms(pan: &str) -> Vec<(Vec<u8>, String)> {
    let groups: Vec<&str> = pan
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let mut texts = vec![
        (pan.as_bytes().to_vec(), "digits"),
        (groups.join(" ").into_bytes(), "spaced"),
        (groups.join("-").into_bytes(), "dashed"),
    ];
    for b in bcd(pan) {
        texts.push((b, "BCD"));
    }
    let mut out = Vec::new();
    for (t, how) in texts {
        for (bytes, enc) in encodings(&t) {
            out.push((bytes, format!("{how}, {enc}")));
        }
    }
    out
}

/// The forms of a CVV a program would write: length-prefixed, JSON string, form field, JSON
/// field; each in all its [`encodings`].
pub fn cvv_forms(cvv: &str) -> Vec<(Vec<u8>, String)> {
    let mut prefixed = vec![u8::try_from(cvv.len()).unwrap()];
    prefixed.extend_from_slice(cvv.as_bytes());
    let texts = [
        (prefixed, "length-prefixed"),
        (format!("\"{cvv}\"").into_bytes(), "JSON string"),
        (format!("cvv={cvv}").into_bytes(), "form field"),
        (format!("CVV={cvv}").into_bytes(), "form field"),
        (format!("\"cvv\":\"{cvv}\"").into_bytes(), "JSON field"),
        (format!("\"cvv\":{cvv}").into_bytes(), "JSON number"),
    ];
    let mut out = Vec::new();
    for (t, how) in texts {
        for (bytes, enc) in encodings(&t) {
            out.push((bytes, format!("{how}, {enc}")));
        }
    }
    out
}

fn bcd(pan: &str) -> Vec<Vec<u8>> {
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

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `b` (whose length is a multiple of 3: no padding).
fn base64(b: &[u8], alphabet: &[u8; 64]) -> String {
    b.chunks(3)
        .flat_map(|c| {
            let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            [18, 12, 6, 0].map(|s| char::from(alphabet[((n >> s) & 63) as usize]))
        })
        .collect()
}

/// Many needles searched in one pass: indexed by their first four bytes.
#[derive(Default)]
pub struct Scanner {
    needles: Vec<(Vec<u8>, String)>,
    by_prefix: HashMap<[u8; 4], Vec<usize>>,
    /// Whether any needle starts with the two bytes at this index (a cheap first filter).
    first_two: Vec<bool>,
}

impl Scanner {
    pub fn new() -> Self {
        Self {
            first_two: vec![false; 1 << 16],
            ..Self::default()
        }
    }

    /// Adds `bytes`, reported as `what` when found.
    pub fn add(&mut self, bytes: Vec<u8>, what: String) {
        assert!(bytes.len() >= MIN_NEEDLE, "a needle too short: {what}");
        let prefix: [u8; 4] = bytes[..4].try_into().unwrap();
        self.first_two[usize::from(u16::from_be_bytes([prefix[0], prefix[1]]))] = true;
        self.by_prefix
            .entry(prefix)
            .or_default()
            .push(self.needles.len());
        self.needles.push((bytes, what));
    }

    pub fn len(&self) -> usize {
        self.needles.len()
    }

    /// Every hit in `hay`: (what, offset).
    pub fn scan(&self, hay: &[u8]) -> Vec<(String, usize)> {
        let mut hits = Vec::new();
        for i in 0..hay.len().saturating_sub(MIN_NEEDLE - 1) {
            if !self.first_two[usize::from(u16::from_be_bytes([hay[i], hay[i + 1]]))] {
                continue;
            }
            let prefix: [u8; 4] = hay[i..i + 4].try_into().unwrap();
            if let Some(ids) = self.by_prefix.get(&prefix) {
                for &n in ids {
                    let (bytes, what) = &self.needles[n];
                    if hay[i..].starts_with(bytes) {
                        hits.push((what.clone(), i));
                    }
                }
            }
        }
        hits
    }

    /// Every hit in a PostgreSQL dump: in its text, and in each `bytea` value (`\x` and hex
    /// digits) decoded. Offsets are the text's; a hit inside a value names the value's offset.
    pub fn scan_dump(&self, dump: &[u8]) -> Vec<(String, usize)> {
        let mut hits = self.scan(dump);
        let mut i = 0;
        while i + 2 < dump.len() {
            if dump[i] == b'\\' && dump[i + 1] == b'x' && dump[i + 2].is_ascii_hexdigit() {
                let start = i + 2;
                let mut end = start;
                while end < dump.len() && dump[end].is_ascii_hexdigit() {
                    end += 1;
                }
                let digits = &dump[start..start + (end - start) / 2 * 2];
                if let Ok(value) = hex::decode(digits) {
                    for (what, _) in self.scan(&value) {
                        hits.push((format!("{what} (inside a bytea value)"), i));
                    }
                }
                i = end;
            } else {
                i += 1;
            }
        }
        hits
    }
}

#[test]
fn the_forms_are_found_and_base64_matches_a_reference() {
    // RFC 4648 test vector.
    assert_eq!(base64(b"foobar", STD), "Zm9vYmFy");
    let mut s = Scanner::new();
    for (b, w) in pan_forms("4111111111111111") {
        s.add(b, w);
    }
    for (b, w) in cvv_forms("737") {
        s.add(b, w);
    }
    let found = |hay: &[u8]| -> Vec<String> { s.scan(hay).into_iter().map(|h| h.0).collect() };
    assert!(found(b"xx4111 1111 1111 1111yy").contains(&"spaced, clear".to_owned()));
    assert!(found(b"..4111-1111-1111-1111").contains(&"dashed, clear".to_owned()));
    assert!(found(b"34313131313131313131313131313131").contains(&"digits, hex".to_owned()));
    // "4111111111111111" in base64 at an offset of one byte.
    let shifted = base64(b"x4111111111111111x", STD);
    assert!(
        found(shifted.as_bytes())
            .iter()
            .any(|w| w == "digits, base64")
    );
    assert!(
        found(&[0, 0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0])
            .contains(&"BCD, clear".to_owned())
    );
    assert!(found(b"\x03737").contains(&"length-prefixed, clear".to_owned()));
    assert!(found(b"a=1&cvv=737&b").contains(&"form field, clear".to_owned()));
    assert!(found(b"1737 and 737 alone").is_empty());
    // Inside a dump's bytea value.
    let dump = b"COPY t (v) FROM stdin;\n\\\\x00033733370a\n";
    assert!(
        s.scan_dump(dump)
            .iter()
            .any(|(w, _)| w == "length-prefixed, clear (inside a bytea value)")
    );
}
