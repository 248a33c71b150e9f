#![no_main]

use cardvault_fuzz::vault_model::{Op, run};
use libfuzzer_sys::fuzz_target;

// The Vault against a BTreeMap model: both must agree after every operation.
fuzz_target!(|ops: Vec<Op>| {
    if let Err(e) = run(&ops) {
        panic!("{e}");
    }
});
