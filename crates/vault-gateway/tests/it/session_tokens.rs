//! Session tokens: minting, well-formedness, parse/display round trips (moved from vault-core's
//! token properties with the type).

use std::collections::HashSet;

use proptest::prelude::*;
use vault_core::TokenError;
use vault_gateway::SessionToken;

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
