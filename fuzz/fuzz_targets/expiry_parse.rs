#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::Expiry;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(expiry) = Expiry::parse_yymm(s)
    {
        assert_eq!(Expiry::parse_yymm(&expiry.to_yymm()), Ok(expiry));
        let _ = expiry.keep_until();
    }
});
