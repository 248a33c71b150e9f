#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::Token;
use vault_gateway::SessionToken;

// Both kinds have exactly one spelling, so whatever parses must print back unchanged.
fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(token) = Token::parse(s) {
            assert!(
                token.to_string() == s,
                "token does not print back as parsed"
            );
        }
        if let Ok(session) = SessionToken::parse(s) {
            assert!(
                session.to_string() == s,
                "session token does not print back as parsed"
            );
        }
    }
});
