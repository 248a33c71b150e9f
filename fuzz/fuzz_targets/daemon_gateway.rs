#![no_main]

use libfuzzer_sys::fuzz_target;

// `POST /token` and `POST /payments` bodies (form-urlencoded or flat JSON) are attacker input:
// decoding never panics, and a refusal never names something taken from a value.
fuzz_target!(|body: &[u8]| {
    if let Err(e) = vault_daemon::fuzzing::gateway_bodies(body) {
        panic!("{e}");
    }
});
