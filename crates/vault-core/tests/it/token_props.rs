//! Tokens: minting, well-formedness, parse/display round trips.

use std::collections::HashSet;

use proptest::prelude::*;
use vault_core::{Token, TokenError};

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
}
