#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_store::StoredRecord;

// Anything that decodes must re-encode to the same bytes.
fuzz_target!(|data: &[u8]| {
    if let Ok(record) = StoredRecord::decode(data) {
        assert!(
            record.encode() == data,
            "stored record re-encodes differently"
        );
    }
});
