#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::CardRecord;

// The encoding is canonical: anything that decodes must re-encode to the same bytes.
// (The message names no bytes: they may hold a PAN.)
fuzz_target!(|data: &[u8]| {
    if let Ok(record) = CardRecord::decode(data) {
        assert!(
            record.encode().as_slice() == data,
            "card record re-encodes differently"
        );
    }
});
