//! Nothing printable carries card digits: `Debug` of the secret types and of records, and the
//! `Display`/`Debug` of every error produced while parsing bad card numbers or bad records.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use vault_core::{CardError, CardRecord, CardholderName, Expiry, Metadata, Pan};
use vault_testkit::cards::luhn_complete;

fn luhn_pan() -> impl Strategy<Value = String> {
    (12usize..=19)
        .prop_flat_map(|len| vec(0u8..10, len - 1))
        .prop_map(luhn_complete)
}

/// The longest run of consecutive ASCII digits in `s`.
fn longest_digit_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Asserts that `text` reveals neither the PAN nor more than a mask's worth of digits in a row.
fn assert_clean(text: &str, pan: &str) -> Result<(), TestCaseError> {
    prop_assert!(!text.contains(pan), "{text:?} contains the PAN");
    prop_assert!(
        longest_digit_run(text) <= 6,
        "{text:?} has a long digit run"
    );
    Ok(())
}

fn assert_error_clean(e: &CardError, pan: &str) -> Result<(), TestCaseError> {
    assert_clean(&e.to_string(), pan)?;
    assert_clean(&format!("{e:?}"), pan)?;
    assert_clean(e.code(), pan)?;
    assert_clean(e.field(), pan)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn secrets_debug_without_digits(s in luhn_pan(), name in "[A-Za-z]{3,20} [A-Za-z]{3,20}") {
        let pan = Pan::parse(&s).expect("valid");
        assert_clean(&format!("{pan:?}"), &s)?;
        assert_clean(&format!("{:?}", pan.masked()), &s)?;
        assert_clean(&pan.masked().to_string(), &s)?;

        let n = CardholderName::parse(&name).expect("valid");
        let dbg = format!("{n:?}");
        prop_assert_eq!(&dbg, "CardholderName(..)");

        let mut meta = BTreeMap::new();
        meta.insert("k".to_owned(), "v".to_owned());
        let record = CardRecord {
            pan,
            expiry: Expiry::new(2030, 7).expect("valid"),
            name: Some(n),
            metadata: Metadata::new(meta).expect("valid"),
        };
        let dbg = format!("{record:?}");
        assert_clean(&dbg, &s)?;
        prop_assert!(!dbg.contains(&name));
        let dbg = format!("{record:#?}");
        assert_clean(&dbg, &s)?;
        prop_assert!(!dbg.contains(&name));
    }

    #[test]
    fn pan_errors_without_digits(s in luhn_pan(), delta in 1u8..10, junk in "[^0-9]{1,3}", extra in "[0-9]{8,10}") {
        let last = s.as_bytes()[s.len() - 1] - b'0';
        let wrong = format!("{}{}", &s[..s.len() - 1], (last + delta) % 10);
        let bad_inputs = [
            wrong.clone(),
            format!("{s}{junk}"),
            format!("{junk}{s}"),
            format!("{}{junk}{}", &s[..6], &s[6..]),
            format!("{s}{extra}"), // at least 20 digits: too long
            s[..11].to_owned(),
        ];
        for bad in &bad_inputs {
            let e = Pan::parse(bad).expect_err("invalid");
            assert_error_clean(&e, &s)?;
            assert_error_clean(&e, bad)?;
        }
    }

    #[test]
    fn decode_errors_without_digits(s in luhn_pan(), i in any::<prop::sample::Index>(), b in any::<u8>()) {
        let record = CardRecord {
            pan: Pan::parse(&s).expect("valid"),
            expiry: Expiry::new(2030, 7).expect("valid"),
            name: None,
            metadata: Metadata::default(),
        };
        let mut bytes = record.encode().to_vec();
        let i = i.index(bytes.len());
        bytes[i] = b;
        if let Err(e) = CardRecord::decode(&bytes) {
            assert_clean(&e.to_string(), &s)?;
            assert_clean(&format!("{e:?}"), &s)?;
        }
    }
}
