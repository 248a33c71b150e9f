#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::Pan;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(pan) = Pan::parse(s)
    {
        let _ = pan.masked();
        let _ = pan.brand();
    }
});
