//! Known cases: the masks of the seed examples, the brands of well-known test card numbers and
//! the edges of the brand ranges.

use vault_core::{Brand, CardError, Pan};
use vault_testkit::cards::pan_with_prefix as with_prefix;

fn pan(s: &str) -> Pan {
    Pan::parse(s).expect("a valid test PAN")
}

#[test]
fn seed_masks() {
    assert_eq!(pan("4242424242424242").masked().as_str(), "424242****4242");
    assert_eq!(pan("4111111111111111").masked().as_str(), "411111****1111");
    assert_eq!(
        pan("4111111111111111").masked().to_string(),
        "411111****1111"
    );
    assert_eq!(
        format!("{:?}", pan("4111111111111111")),
        "Pan(411111****1111)"
    );
    // 15 digits: still first six and last four.
    assert_eq!(pan("378282246310005").masked().as_str(), "378282****0005");
    // Under 15 digits: first four and last four.
    let twelve = with_prefix("5018", 12);
    assert_eq!(twelve.len(), 12);
    assert_eq!(
        pan(&twelve).masked().as_str(),
        format!("5018****{}", &twelve[8..])
    );
    assert_eq!(pan("30569309025904").masked().as_str(), "3056****5904");
    assert_eq!(pan("36227206271667").masked().as_str(), "3622****1667");
}

#[test]
fn test_card_brands() {
    for (s, brand) in [
        ("4111111111111111", Brand::Visa),
        ("4242424242424242", Brand::Visa),
        ("5555555555554444", Brand::Mastercard),
        ("2223003122003222", Brand::Mastercard),
        ("378282246310005", Brand::Amex),
        ("371449635398431", Brand::Amex),
        ("6011111111111117", Brand::Discover),
        ("3530111333300000", Brand::Jcb),
        ("30569309025904", Brand::DinersClub),
        ("36227206271667", Brand::DinersClub),
        ("6200000000000005", Brand::UnionPay),
        ("6759649826438453", Brand::Maestro),
    ] {
        assert_eq!(pan(s).brand(), brand, "{s}");
    }
}

#[test]
fn brand_range_edges() {
    for (prefix, brand) in [
        ("2220", Brand::Unknown),
        ("2221", Brand::Mastercard),
        ("2720", Brand::Mastercard),
        ("2721", Brand::Unknown),
        ("50", Brand::Maestro),
        ("51", Brand::Mastercard),
        ("55", Brand::Mastercard),
        ("56", Brand::Maestro),
        ("58", Brand::Maestro),
        ("59", Brand::Unknown),
        ("33", Brand::Unknown),
        ("34", Brand::Amex),
        ("37", Brand::Amex),
        ("3527", Brand::Unknown),
        ("3528", Brand::Jcb),
        ("3589", Brand::Jcb),
        ("3590", Brand::Unknown),
        ("300", Brand::DinersClub),
        ("305", Brand::DinersClub),
        ("306", Brand::Unknown),
        ("3095", Brand::DinersClub),
        ("3096", Brand::Unknown),
        ("36", Brand::DinersClub),
        ("38", Brand::DinersClub),
        ("39", Brand::DinersClub),
        ("6011", Brand::Discover),
        ("6012", Brand::Unknown),
        ("643", Brand::Unknown),
        ("644", Brand::Discover),
        ("649", Brand::Discover),
        ("65", Brand::Discover),
        // The Discover co-brand range inside UnionPay's 62 goes to Discover.
        ("622125", Brand::UnionPay),
        ("622126", Brand::Discover),
        ("622925", Brand::Discover),
        ("622926", Brand::UnionPay),
        ("62", Brand::UnionPay),
        ("81", Brand::UnionPay),
        ("82", Brand::Unknown),
        ("6304", Brand::Maestro),
        ("6759", Brand::Maestro),
        ("676770", Brand::Maestro),
        ("676771", Brand::Unknown),
        ("676774", Brand::Maestro),
        ("639", Brand::Maestro),
        ("1", Brand::Unknown),
        ("9", Brand::Unknown),
    ] {
        for len in [12, 16, 19] {
            let s = with_prefix(prefix, len);
            assert_eq!(pan(&s).brand(), brand, "{s}");
        }
    }
}

#[test]
fn brand_names() {
    assert_eq!(Brand::Visa.as_str(), "visa");
    assert_eq!(Brand::DinersClub.as_str(), "diners");
    assert_eq!(Brand::UnionPay.to_string(), "unionpay");
}

#[test]
fn pan_error_order() {
    assert_eq!(Pan::parse("").err(), Some(CardError::PanEmpty));
    assert_eq!(
        Pan::parse("4111 1111 1111 1111").err(),
        Some(CardError::PanNotDigits)
    );
    assert_eq!(Pan::parse("41x").err(), Some(CardError::PanNotDigits));
    assert_eq!(
        Pan::parse("４１１１１１１１１１１１１１１１").err(),
        Some(CardError::PanNotDigits)
    );
    assert_eq!(
        Pan::parse("41111111111").err(),
        Some(CardError::PanTooShort)
    );
    assert_eq!(
        Pan::parse("41111111111111111111").err(),
        Some(CardError::PanTooLong)
    );
    assert_eq!(
        Pan::parse("4111111111111112").err(),
        Some(CardError::PanLuhn)
    );
    // Luhn is checked last: a too-short string is TooShort even if it passes Luhn.
    assert_eq!(Pan::parse("0").err(), Some(CardError::PanTooShort));
    assert_eq!(CardError::PanLuhn.field(), "card.pan");
}
