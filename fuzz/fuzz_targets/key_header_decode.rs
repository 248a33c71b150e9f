#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::KeyHeader;

// Anything that decodes must re-encode to the same bytes, which must decode again.
fuzz_target!(|data: &[u8]| {
    if let Ok(header) = KeyHeader::decode(data) {
        let encoded = header.encode();
        assert!(encoded == data, "key header re-encodes differently");
        assert!(
            KeyHeader::decode(&encoded).is_ok(),
            "re-encoded key header does not decode"
        );
    }
});
