#![no_main]

use libfuzzer_sys::fuzz_target;

// Request bodies are attacker input: every decoder and validator must give field errors (never
// echoing card digits), never panic.
fuzz_target!(|body: &[u8]| {
    if let Err(e) = vault_daemon::fuzzing::json_bodies(body) {
        panic!("{e}");
    }
});
