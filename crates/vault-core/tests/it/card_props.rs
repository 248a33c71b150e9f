//! Property tests for card parsing, masking, expiry and the record codec.
//!
//! The test oracles (Luhn check digit, calendar arithmetic) are written here independently of the
//! crate so a bug there cannot hide in both places.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use time::format_description::well_known::Rfc3339;
use vault_core::{CardError, CardRecord, CardholderName, DecodeError, Expiry, Metadata, Pan};
// The Luhn oracle, written independently of the crate (vault-testkit).
use vault_testkit::cards::luhn_check_digit as check_digit;

fn to_text(digits: &[u8]) -> String {
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// Body digits of a PAN of `len` digits (12-19) and its valid check digit.
fn pan_parts() -> impl Strategy<Value = (Vec<u8>, u8)> {
    (12usize..=19)
        .prop_flat_map(|len| vec(0u8..10, len - 1))
        .prop_map(|body| {
            let c = check_digit(&body);
            (body, c)
        })
}

/// Luhn-valid PANs of 12-19 digits.
fn luhn_pan() -> impl Strategy<Value = String> {
    pan_parts().prop_map(|(mut body, c)| {
        body.push(c);
        to_text(&body)
    })
}

fn expiry() -> impl Strategy<Value = Expiry> {
    (2000u16..=2099, 1u8..=12).prop_map(|(y, m)| Expiry::new(y, m).expect("in range"))
}

fn name() -> impl Strategy<Value = Option<CardholderName>> {
    proptest::option::of("[A-Za-zÀ-ÿ'][A-Za-zÀ-ÿ .'-]{0,28}[A-Za-zÀ-ÿ.]").prop_map(|n| {
        n.map(|n| CardholderName::parse(&n).expect("printable, trimmed, <= 60 bytes"))
    })
}

fn metadata() -> impl Strategy<Value = Metadata> {
    btree_map(
        "\\PC{1,10}",
        prop_oneof!["\\PC{0,60}", "[a-z]{0,500}"],
        0..=Metadata::MAX_ENTRIES,
    )
    .prop_map(|m| Metadata::new(m).expect("within bounds"))
}

fn record() -> impl Strategy<Value = CardRecord> {
    (luhn_pan(), expiry(), name(), metadata()).prop_map(|(pan, expiry, name, metadata)| {
        CardRecord {
            pan: Pan::parse(&pan).expect("Luhn-valid"),
            expiry,
            name,
            metadata,
        }
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

proptest! {
    #[test]
    fn luhn_valid_pans_parse_and_mask(s in luhn_pan()) {
        let pan = Pan::parse(&s).expect("Luhn-valid PAN parses");
        prop_assert_eq!(pan.len(), s.len());
        prop_assert_eq!(pan.expose_digits(), s.as_str());
        let mask = pan.masked();
        let m = mask.as_str();
        let head = if s.len() >= 15 { 6 } else { 4 };
        prop_assert_eq!(m, format!("{}****{}", &s[..head], &s[s.len() - 4..]));
        prop_assert!(m.bytes().filter(u8::is_ascii_digit).count() <= 10);
        prop_assert!(!m.contains(&s));
        prop_assert_eq!(format!("{pan:?}"), format!("Pan({m})"));
    }

    #[test]
    fn wrong_check_digit_is_luhn_error((body, c) in pan_parts(), delta in 1u8..10) {
        let mut digits = body;
        digits.push((c + delta) % 10);
        prop_assert_eq!(Pan::parse(&to_text(&digits)).err(), Some(CardError::PanLuhn));
    }

    #[test]
    fn short_digit_strings_rejected(s in "[0-9]{1,11}") {
        prop_assert_eq!(Pan::parse(&s).err(), Some(CardError::PanTooShort));
    }

    #[test]
    fn long_digit_strings_rejected(s in "[0-9]{20,64}") {
        prop_assert_eq!(Pan::parse(&s).err(), Some(CardError::PanTooLong));
    }

    #[test]
    fn non_digit_strings_rejected(pre in "[0-9]{0,20}", bad in "[^0-9]", post in "\\PC{0,20}") {
        // Non-digits are reported before the length, whatever the length.
        let s = format!("{pre}{bad}{post}");
        prop_assert_eq!(Pan::parse(&s).err(), Some(CardError::PanNotDigits));
    }

    #[test]
    fn arbitrary_strings_parse_only_when_valid(s in "\\PC{0,24}") {
        match Pan::parse(&s) {
            Ok(p) => prop_assert_eq!(p.expose_digits(), s.as_str()),
            Err(CardError::PanEmpty) => prop_assert!(s.is_empty()),
            Err(CardError::PanNotDigits) => prop_assert!(s.bytes().any(|b| !b.is_ascii_digit())),
            Err(e) => prop_assert!(
                matches!(e, CardError::PanTooShort | CardError::PanTooLong | CardError::PanLuhn),
                "unexpected {e:?}"
            ),
        }
    }

    #[test]
    fn record_round_trips(r in record()) {
        let bytes = r.encode();
        let back = CardRecord::decode(&bytes).expect("own encoding decodes");
        prop_assert!(back == r);
        prop_assert_eq!(&back.encode()[..], &bytes[..]);
        prop_assert!(r.duplicate() == r);
    }

    #[test]
    fn record_prefixes_truncated_and_suffixes_trailing(r in record(), extra in vec(any::<u8>(), 1..8)) {
        let bytes = r.encode();
        for n in 0..bytes.len() {
            prop_assert_eq!(CardRecord::decode(&bytes[..n]).err(), Some(DecodeError::Truncated));
        }
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(CardRecord::decode(&longer).err(), Some(DecodeError::TrailingBytes));
    }

    #[test]
    fn mutated_records_never_panic(r in record(), edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = r.encode().to_vec();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        // Whatever decodes must be canonical: it re-encodes to the very same bytes.
        if let Ok(back) = CardRecord::decode(&bytes) {
            prop_assert_eq!(&back.encode()[..], &bytes[..]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decode_arbitrary_bytes_never_panics(mut bytes in vec(any::<u8>(), 0..700), v1 in any::<bool>()) {
        if v1 && !bytes.is_empty() {
            bytes[0] = 1; // reach past the version byte more often
        }
        if let Ok(back) = CardRecord::decode(&bytes) {
            prop_assert_eq!(&back.encode()[..], &bytes[..]);
        }
    }
}

#[test]
fn every_yymm_keep_until_and_round_trip() {
    for yy in 0u16..=99 {
        for mm in 0u8..=99 {
            let s = format!("{yy:02}{mm:02}");
            let parsed = Expiry::parse_yymm(&s);
            if !(1..=12).contains(&mm) {
                assert_eq!(parsed, Err(CardError::ExpiryMonth), "{s}");
                continue;
            }
            let e = parsed.expect("valid YYMM");
            assert_eq!((e.year(), e.month()), (2000 + yy, mm), "{s}");
            assert_eq!(e.to_yymm(), s);
            assert_eq!(Expiry::parse_yymm(&e.to_yymm()), Ok(e));
            if yy < 10 {
                // The 3-digit spelling with the leading zero dropped means the same month.
                assert_eq!(Expiry::parse_yymm(&s[1..]), Ok(e), "{s}");
            }

            let (ny, nm) = if mm == 12 {
                (2000 + i64::from(yy) + 1, 1)
            } else {
                (2000 + i64::from(yy), i64::from(mm) + 1)
            };
            let k = e.keep_until();
            assert_eq!(
                k.unix_timestamp(),
                days_from_civil(ny, nm, 1) * 86_400,
                "{s}"
            );
            assert!(k.offset().is_utc());
            let text = k.format(&Rfc3339).expect("formats");
            assert_eq!(text, format!("{ny:04}-{nm:02}-01T00:00:00Z"), "{s}");
            assert!(!e.is_expired(k - time::Duration::NANOSECOND));
            assert!(e.is_expired(k));
        }
    }
}

#[test]
fn expiry_format_errors() {
    for s in ["", "1", "12", "12345", "1a02", "28 2", "-802", "2802\n"] {
        assert_eq!(Expiry::parse_yymm(s), Err(CardError::ExpiryFormat), "{s:?}");
    }
}

#[test]
fn metadata_round_trips_at_its_limits() {
    let map: BTreeMap<String, String> = (0..Metadata::MAX_ENTRIES)
        .map(|i| (format!("{i:0>40}"), "é".repeat(250)))
        .collect();
    let r = CardRecord {
        pan: Pan::parse("4242424242424242").expect("valid"),
        expiry: Expiry::new(99, 12).expect("valid"),
        name: Some(CardholderName::parse(&"N".repeat(64)).expect("valid")),
        metadata: Metadata::new(map).expect("at the limits"),
    };
    let back = CardRecord::decode(&r.encode()).expect("decodes");
    assert!(back == r);
}
