//! Writes the seed corpora under `fuzz/corpus/<target>/` (run once, then commit the files):
//!
//! ```text
//! cd fuzz && cargo run --example gen_corpus
//! ```
//!
//! Deterministic: the same bytes on every run. Only the public test card numbers
//! (4111111111111111, 4242424242424242, 5555555555554444, 378282246310005) appear.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vault_core::{
    CardRecord, CardholderName, Expiry, KdfParams, KeyHeader, KeySource, Metadata, OffsetDateTime,
    Pan, Passphrase, SecretKey, seal_record,
};
use vault_store::{DedupeKey, StoredRecord};

fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    write_all(
        &out,
        "pan_parse",
        &[
            ("valid-visa", b"4111111111111111".to_vec()),
            ("valid-visa-2", b"4242424242424242".to_vec()),
            ("valid-mastercard", b"5555555555554444".to_vec()),
            ("valid-amex", b"378282246310005".to_vec()),
            ("invalid-luhn", b"4111111111111112".to_vec()),
            ("invalid-spaces", b"4111 1111 1111 1111".to_vec()),
            ("invalid-short", b"41111111111".to_vec()),
            ("invalid-long", b"41111111111111111111".to_vec()),
            ("invalid-empty", Vec::new()),
            (
                "invalid-arabic-digits",
                "٤١١١١١١١١١١١١١١١".as_bytes().to_vec(),
            ),
        ],
    );

    write_all(
        &out,
        "expiry_parse",
        &[
            ("valid-4", b"2802".to_vec()),
            ("valid-3", b"912".to_vec()),
            ("valid-last", b"9912".to_vec()),
            ("invalid-month-0", b"2800".to_vec()),
            ("invalid-month-13", b"2813".to_vec()),
            ("invalid-5-digits", b"20281".to_vec()),
            ("invalid-letter", b"28a2".to_vec()),
            ("invalid-slash", b"02/28".to_vec()),
        ],
    );

    write_all(
        &out,
        "token_parse",
        &[
            ("valid-token", "42".repeat(24).into_bytes()),
            (
                "valid-token-2",
                b"0123456789abcdef0123456789abcdef0123456789abcdef".to_vec(),
            ),
            (
                "valid-session",
                b"3f2504e0-4f89-41d3-9a0c-0305e82c3301".to_vec(),
            ),
            (
                "invalid-token-upper",
                b"0123456789ABCDEF0123456789abcdef0123456789abcdef".to_vec(),
            ),
            ("invalid-token-short", "42".repeat(23).into_bytes()),
            (
                "invalid-session-v1",
                b"3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_vec(),
            ),
            (
                "invalid-session-variant",
                b"3f2504e0-4f89-41d3-ca0c-0305e82c3301".to_vec(),
            ),
            (
                "invalid-session-upper",
                b"3F2504E0-4F89-41D3-9A0C-0305E82C3301".to_vec(),
            ),
            (
                "invalid-session-no-hyphens",
                b"3f2504e04f8941d39a0c0305e82c3301".to_vec(),
            ),
        ],
    );

    let plain = record("4111111111111111", 2028, 2, None, &[]);
    let full = record(
        "378282246310005",
        2099,
        12,
        Some("A N TESTER"),
        &[("customer-ref", "c-1001"), ("order", "ord-42"), ("z", "")],
    );
    let mastercard = record(
        "5555555555554444",
        2030,
        11,
        Some("Zoë Test"),
        &[("k", "v")],
    );
    let plain_bytes = plain.encode().to_vec();
    write_all(
        &out,
        "card_record_decode",
        &[
            ("valid-plain", plain_bytes.clone()),
            ("valid-full", full.encode().to_vec()),
            ("valid-mastercard", mastercard.encode().to_vec()),
            ("invalid-version", with_byte(&plain_bytes, 0, 2)),
            ("invalid-luhn", with_byte(&plain_bytes, 17, b'2')),
            ("invalid-month", with_byte(&plain_bytes, 20, 13)),
            ("invalid-trailing", [plain_bytes.as_slice(), &[0]].concat()),
            (
                "invalid-truncated",
                plain_bytes[..plain_bytes.len() - 1].to_vec(),
            ),
            ("invalid-empty", Vec::new()),
        ],
    );

    // Records sealed under the fixed keyring and binding of the `open_record` target.
    let token = cardvault_fuzz::token();
    let binding = cardvault_fuzz::binding(&token);
    let mut rng = StdRng::seed_from_u64(42);
    let keyring = cardvault_fuzz::keyring();
    let sealed_plain = seal_record(keyring, &binding, &plain, &mut rng);
    let sealed_full = seal_record(keyring, &binding, &full, &mut rng);
    let last = sealed_plain.len() - 1;
    write_all(
        &out,
        "open_record",
        &[
            ("valid-plain", sealed_plain.clone()),
            ("valid-full", sealed_full.clone()),
            (
                "invalid-tag",
                with_byte(&sealed_plain, last, sealed_plain[last] ^ 1),
            ),
            ("invalid-unknown-dek", with_byte(&sealed_plain, 4, 2)),
            ("invalid-version", with_byte(&sealed_plain, 0, 2)),
            ("invalid-short", sealed_plain[..40].to_vec()),
            ("invalid-empty", Vec::new()),
        ],
    );

    let stored = StoredRecord {
        merchant: 1,
        token: *token.as_bytes(),
        created_at: cardvault_fuzz::FIXED_UNIX_TIME,
        updated_at: cardvault_fuzz::FIXED_UNIX_TIME + 60,
        keep_until: cardvault_fuzz::FIXED_UNIX_TIME,
        dedupe: DedupeKey([3; 16]),
        dedupe_indexed: false,
        customer: None,
        sealed: sealed_plain,
    };
    let with_customer = StoredRecord {
        customer: Some("cust-001@example".to_owned()),
        sealed: sealed_full,
        ..stored.clone()
    };
    let stored_bytes = stored.encode();
    write_all(
        &out,
        "stored_record_decode",
        &[
            ("valid-no-customer", stored_bytes.clone()),
            ("valid-customer", with_customer.encode()),
            ("invalid-newer-version", with_byte(&stored_bytes, 0, 2)),
            ("valid-dedupe-indexed", with_byte(&stored_bytes, 1, 1)),
            ("invalid-flags", with_byte(&stored_bytes, 1, 2)),
            ("invalid-customer-len", with_byte(&stored_bytes, 74, 65)),
            ("invalid-no-sealed", stored_bytes[..75].to_vec()),
            ("invalid-empty", Vec::new()),
        ],
    );

    let key_file = cardvault_fuzz::fixture().0.encode();
    let now = OffsetDateTime::from_unix_timestamp(cardvault_fuzz::FIXED_UNIX_TIME)
        .expect("2023 is representable");
    let passphrase =
        Passphrase::new("correct horse battery staple".to_owned()).expect("a non-empty passphrase");
    let (pass_header, _) = KeyHeader::create(
        &KeySource::Passphrase(passphrase),
        KdfParams::insecure_for_tests(),
        &mut StdRng::seed_from_u64(8),
        now,
    )
    .expect("a passphrase header with test parameters");
    let (mut rotated, mut rotated_keys) = KeyHeader::create(
        &KeySource::KeyFile(SecretKey::from_bytes([9; 32])),
        KdfParams::insecure_for_tests(),
        &mut StdRng::seed_from_u64(9),
        now,
    )
    .expect("a key-file header");
    rotated.rotate(&mut rotated_keys, &mut StdRng::seed_from_u64(10), now);
    write_all(
        &out,
        "key_header_decode",
        &[
            ("valid-key-file", key_file.clone()),
            ("valid-passphrase", pass_header.encode()),
            ("valid-rotated", rotated.encode()),
            ("invalid-magic", with_byte(&key_file, 0, 0)),
            ("invalid-version", with_byte(&key_file, 5, 9)),
            ("invalid-trailing", [key_file.as_slice(), &[0]].concat()),
            ("invalid-truncated", key_file[..key_file.len() - 1].to_vec()),
            ("invalid-empty", Vec::new()),
        ],
    );
}

fn record(
    pan: &str,
    year: u16,
    month: u8,
    name: Option<&str>,
    metadata: &[(&str, &str)],
) -> CardRecord {
    let map: BTreeMap<String, String> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    CardRecord {
        pan: Pan::parse(pan).expect("a public test card number"),
        expiry: Expiry::new(year, month).expect("a valid expiry"),
        name: name.map(|n| CardholderName::parse(n).expect("a valid name")),
        metadata: Metadata::new(map).expect("valid metadata"),
    }
}

fn with_byte(bytes: &[u8], at: usize, value: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] = value;
    out
}

fn write_all(root: &Path, target: &str, inputs: &[(&str, Vec<u8>)]) {
    let dir = root.join(target);
    fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, bytes) in inputs {
        fs::write(dir.join(name), bytes).expect("write a corpus file");
    }
}
