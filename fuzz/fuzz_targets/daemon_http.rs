#![no_main]

use libfuzzer_sys::fuzz_target;

// Whole HTTP/1.1 byte streams into the daemon's real router over one shared vault: no panic,
// no 5xx but 503, no card digits in an error body. `@KEY@` and `@TOKEN@` in the input become a
// valid API key and token (see the seed corpus).
fuzz_target!(|input: &[u8]| {
    if let Err(e) = cardvault_fuzz::daemon_http::harness().request(input) {
        panic!("{e}");
    }
});
