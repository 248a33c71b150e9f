//! Single-threaded cost of the pure core operations (`vault_core`, re-exported as
//! `cardvault::core`): minting, parsing, sealing, opening, fingerprints, token lookups and the
//! Argon2id key derivation.
//!
//! Run with `cargo bench --bench core`; see `docs/benchmarks.md`.

use std::{hint::black_box, time::Duration};

use cardvault::core::{
    CardRecord, Expiry, KdfParams, Kek, KeyHeader, KeySource, MerchantId, Metadata, OffsetDateTime,
    Pan, Passphrase, RecordBinding, SecretKey, Token, open_record, seal_record,
};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};

const PAN: &str = "4242424242424242";

fn card() -> CardRecord {
    CardRecord {
        pan: Pan::parse(PAN).expect("valid PAN"),
        expiry: Expiry::new(2030, 12).expect("valid expiry"),
        name: None,
        metadata: Metadata::default(),
    }
}

fn core(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let key = KeySource::KeyFile(SecretKey::from_bytes([7; 32]));
    let (header, keyring) =
        KeyHeader::create(&key, KdfParams::insecure_for_tests(), &mut rand::rng(), now)
            .expect("create keys");
    let merchant = MerchantId::new(890_490).expect("valid merchant");
    let token = Token::mint(&mut rand::rng());
    let card = card();
    let binding = RecordBinding {
        merchant,
        token: &token,
        customer: None,
        keep_until: card.expiry.keep_until(),
    };
    let sealed = seal_record(&keyring, &binding, &card, &mut rand::rng());

    let mut g = c.benchmark_group("core");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    g.bench_function("token_mint", |b| {
        let mut rng = rand::rng();
        b.iter(|| Token::mint(&mut rng));
    });
    g.bench_function("pan_parse", |b| b.iter(|| Pan::parse(black_box(PAN))));
    g.bench_function("seal_record", |b| {
        let mut rng = rand::rng();
        b.iter(|| seal_record(&keyring, black_box(&binding), &card, &mut rng));
    });
    g.bench_function("open_record", |b| {
        b.iter(|| open_record(&keyring, black_box(&binding), black_box(&sealed)).expect("opens"));
    });
    // What the vault does per tokenize (twice: once when preparing, once on the committer):
    // derive the merchant's fingerprint key from the MAC root, then HMAC the PAN.
    g.bench_function("fingerprint/derive_key_and_hmac", |b| {
        b.iter(|| {
            keyring
                .fingerprint_key(black_box(merchant))
                .fingerprint(&card.pan)
        });
    });
    g.bench_function("fingerprint/hmac_only", |b| {
        let fk = keyring.fingerprint_key(merchant);
        b.iter(|| fk.fingerprint(black_box(&card.pan)));
    });
    g.bench_function("lookup_key_lookup", |b| {
        let lk = keyring.lookup_key();
        b.iter(|| lk.lookup(black_box(&token)));
    });
    // Unlocking a key-file vault's header (no KDF): part of `Vault::open`.
    g.bench_function("header_unlock/key_file", |b| {
        b.iter(|| header.unlock(black_box(&key)).expect("unlocks"));
    });
    g.finish();

    let mut g = c.benchmark_group("kdf");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("argon2id_default_64MiB_t3_p1", |b| {
        let pass =
            Passphrase::new("correct horse battery staple".to_owned()).expect("valid passphrase");
        let salt = [9u8; Kek::SALT_LEN];
        b.iter(|| Kek::derive(&pass, black_box(&salt), KdfParams::DEFAULT).expect("derives"));
    });
    g.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
