//! Helpers shared by the `cardvault-cli` package's integration tests.
// Each test binary uses a subset (rustc lints, not test allowances).
#![allow(dead_code, unreachable_pub, unused_imports)]

use rand::RngExt;

/// The `cardvault` binary with every `CARDVAULT_*` variable a developer's shell might set removed,
/// the test-only fast KDF on, and stdin closed (so nothing can prompt).
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cardvault"));
    for var in [
        "CARDVAULT_PASSPHRASE",
        "CARDVAULT_PASSPHRASE_FILE",
        "CARDVAULT_KEY_FILE",
        "CARDVAULT_DATA",
        "CARDVAULT_DATABASE_URL",
        "CARDVAULT_SOCKET",
        "CARDVAULT_API_KEY",
        "CARDVAULT_API_KEY_FILE",
        "CARDVAULT_LISTEN",
        "CARDVAULT_LOG",
        "CARDVAULT_LOG_FORMAT",
    ] {
        c.env_remove(var);
    }
    c.env("CARDVAULT_TEST_FAST_KDF", "1")
        .stdin(std::process::Stdio::null());
    c
}

/// A single-threaded tokio runtime for driving the client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A random Luhn-valid PAN of `len` digits starting with `prefix`.
pub use vault_testkit::cards::random_pan as luhn_pan;

/// A fresh random 32-byte vault key file (hex) at `path` with permissions `mode`; returns the
/// path as a string for the CLI's `--key-file`.
pub fn random_key_file(path: &std::path::Path, mode: u32) -> String {
    let key_hex: String = (0..32)
        .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
        .collect();
    std::fs::write(path, key_hex + "\n").unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}
