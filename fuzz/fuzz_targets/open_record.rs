#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_core::open_record;

// Sealed bytes from disk are attacker input: opening them may fail but must never panic.
fuzz_target!(|sealed: &[u8]| {
    let token = cardvault_fuzz::token();
    let _ = open_record(
        cardvault_fuzz::keyring(),
        &cardvault_fuzz::binding(&token),
        sealed,
    );
});
