//! Tokens and session tokens: minting, well-formedness, parse/display round trips.

use std::collections::HashSet;

use proptest::prelude::*;
use vault_core::{SessionToken, Token, TokenError};

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn hundred_thousand_tokens_are_distinct_and_well_formed() {
    let mut rng = rand::rng();
    let mut seen = HashSet::new();
    for _ in 0..100_000 {
        let t = Token::mint(&mut rng);
        let s = t.to_string();
        assert_eq!(s.len(), 48);
        assert!(is_lower_hex(&s), "{s}");
        assert_eq!(Token::parse(&s), Ok(t));
        assert!(seen.insert(t), "duplicate token {s}");
    }
    assert_eq!(seen.len(), 100_000);
}

#[test]
fn session_tokens_are_v4_uuids() {
    let mut rng = rand::rng();
    let mut seen = HashSet::new();
    for _ in 0..100_000 {
        let t = SessionToken::mint(&mut rng);
        let s = t.to_string();
        let u = uuid::Uuid::parse_str(&s).expect("a UUID");
        assert_eq!(u.get_version_num(), 4, "{s}");
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{s}");
        assert_eq!(s, u.hyphenated().to_string(), "lowercase hyphenated");
        assert_eq!(u.as_bytes(), t.as_bytes());
        assert_eq!(SessionToken::parse(&s), Ok(t));
        assert_eq!(format!("{t:?}"), format!("SessionToken({}…)", &s[..8]));
        assert!(seen.insert(t), "duplicate session token {s}");
    }
}

proptest! {
    #[test]
    fn token_round_trips(bytes in any::<[u8; 24]>()) {
        let t = Token::from_bytes(bytes);
        let s = t.to_string();
        prop_assert_eq!(s.clone(), hex::encode(bytes));
        prop_assert_eq!(Token::parse(&s), Ok(t));
        prop_assert_eq!(Token::parse(&s.to_uppercase()).is_ok(), !s.bytes().any(|b| b.is_ascii_alphabetic()));
    }

    #[test]
    fn token_parse_accepts_only_canonical(s in "[0-9a-fA-Fg-z]{46,50}") {
        match Token::parse(&s) {
            Ok(t) => prop_assert_eq!(t.to_string(), s),
            Err(e) => {
                prop_assert_eq!(e, TokenError::Malformed);
                prop_assert!(s.len() != 48 || !is_lower_hex(&s));
            }
        }
    }

    #[test]
    fn session_parse_matches_uuid_rules(bytes in any::<[u8; 16]>()) {
        let u = uuid::Uuid::from_bytes(bytes);
        let s = u.hyphenated().to_string();
        let v4 = u.get_version_num() == 4 && u.get_variant() == uuid::Variant::RFC4122;
        match SessionToken::parse(&s) {
            Ok(t) => {
                prop_assert!(v4);
                prop_assert_eq!(t.as_bytes(), &bytes);
                prop_assert_eq!(t.to_string(), s.clone());
            }
            Err(e) => {
                prop_assert!(!v4);
                prop_assert_eq!(e, TokenError::SessionMalformed);
            }
        }
        if v4 && s.bytes().any(|b| b.is_ascii_alphabetic()) {
            prop_assert!(SessionToken::parse(&s.to_uppercase()).is_err());
        }
        prop_assert!(SessionToken::parse(&u.simple().to_string()).is_err());
        prop_assert!(SessionToken::parse(&u.braced().to_string()).is_err());
        prop_assert!(SessionToken::parse(&u.urn().to_string()).is_err());
    }

    #[test]
    fn random_v4_bytes_always_parse(bytes in any::<[u8; 16]>()) {
        let u = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let t = SessionToken::parse(&u.hyphenated().to_string()).expect("a v4 UUID parses");
        prop_assert_eq!(t.as_bytes(), u.as_bytes());
    }
}
