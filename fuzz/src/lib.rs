//! Fixtures shared by the `open_record` fuzz target and the corpus generator
//! (`examples/gen_corpus.rs`), so that the seed corpus holds records that really open.
//!
//! Everything here is fixed: a key-file keyring built from a seeded RNG (the same keys in every
//! process) and one record binding. Test keys only; never use them for real data.
#![forbid(unsafe_code)]

pub mod daemon_http;
pub mod vault_model;

use std::sync::OnceLock;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vault_core::{
    KdfParams, KeyHeader, KeySource, Keyring, MerchantId, OffsetDateTime, RecordBinding, SecretKey,
    Token,
};

/// Seed of the RNG that builds the fixed keyring.
pub const KEYRING_SEED: u64 = 7;
/// The fixed "now" of the keyring, and the binding's keep-until (2023-11-14T22:13:20Z).
pub const FIXED_UNIX_TIME: i64 = 1_700_000_000;

/// The fixed key header and keyring, built once per process.
pub fn fixture() -> &'static (KeyHeader, Keyring) {
    static FIXTURE: OnceLock<(KeyHeader, Keyring)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let source = KeySource::KeyFile(SecretKey::from_bytes([7; 32]));
        let mut rng = StdRng::seed_from_u64(KEYRING_SEED);
        KeyHeader::create(
            &source,
            KdfParams::insecure_for_tests(),
            &mut rng,
            fixed_time(),
        )
        .expect("a key-file header can always be created")
    })
}

/// The keyring of [`fixture`].
pub fn keyring() -> &'static Keyring {
    &fixture().1
}

/// The token every fuzzed record is filed under.
pub fn token() -> Token {
    Token::from_bytes([0x42; Token::LEN])
}

/// The binding every fuzzed record is opened with: merchant 1, [`token`], no customer.
pub fn binding(token: &Token) -> RecordBinding<'_> {
    RecordBinding {
        merchant: MerchantId::new(1).expect("1 is a valid merchant id"),
        token,
        customer: None,
        keep_until: fixed_time(),
    }
}

fn fixed_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(FIXED_UNIX_TIME).expect("2023 is representable")
}
