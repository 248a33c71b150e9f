//! Golden vectors for the on-disk formats: a key header and sealed records, pinned as hex.
//!
//! These bytes are what a vault written by format version 1 looks like. The `*_open` tests must
//! keep passing for as long as version 1 exists: if one fails, old vaults have become unreadable.
//! The `*_reproduce` tests check that this build still *writes* exactly those bytes from the same
//! randomness; a deliberate format change may update them, but only together with a new format
//! version and with the old pinned bytes kept in an `*_open` test.
//!
//! The key-file vault vectors (header, both records, the fingerprint) were also opened by an
//! independent Python implementation of `docs/record-format.md` using pyca/cryptography, so they
//! check the specification and not only this code's agreement with itself.

use std::collections::BTreeMap;
use std::convert::Infallible;

use rand::{TryCryptoRng, TryRng};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::datetime;
use vault_core::{
    CardRecord, CardholderName, CustomerId, DekId, DekState, Expiry, KdfParams, KeyHeader,
    KeySource, Keyring, MerchantId, Metadata, Pan, Passphrase, RecordBinding, Token, open_record,
    seal_record, sealed_dek_id,
};

/// A deterministic byte stream for tests: SHA-256(label || counter u64 BE), block after block.
/// Defined here rather than borrowed from `rand`, whose generators may change between releases.
struct TestRng {
    label: &'static [u8],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl TestRng {
    fn new(label: &'static [u8]) -> Self {
        Self {
            label,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            if self.used == 32 {
                self.block = Sha256::new()
                    .chain_update(self.label)
                    .chain_update(self.counter.to_be_bytes())
                    .finalize()
                    .into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

/// Not secure; a marker so the core's `CryptoRng` bound accepts it in tests.
impl TryCryptoRng for TestRng {}

const CREATED: OffsetDateTime = datetime!(2025-01-01 00:00:00 UTC);
const ROTATED: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
const KEY_FILE_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const PASSPHRASE: &str = "golden passphrase";

fn key_file() -> KeySource {
    KeySource::from_key_file_bytes(KEY_FILE_HEX.as_bytes()).expect("valid key file")
}

fn passphrase() -> KeySource {
    KeySource::Passphrase(Passphrase::new(PASSPHRASE.to_owned()).expect("valid"))
}

/// The two records of the golden vault, with their bindings.
struct Golden {
    token_a: Token,
    token_b: Token,
    customer: CustomerId,
}

impl Golden {
    fn new() -> Self {
        Self {
            token_a: Token::parse("00112233445566778899aabbccddeeff0011223344556677")
                .expect("token"),
            token_b: Token::parse("ffeeddccbbaa99887766554433221100ffeeddccbbaa9988")
                .expect("token"),
            customer: CustomerId::parse("cus-0001").expect("customer"),
        }
    }

    /// Record A: full card, with customer, name and metadata.
    fn binding_a(&self) -> RecordBinding<'_> {
        RecordBinding {
            merchant: MerchantId::new(4242).expect("merchant"),
            token: &self.token_a,
            customer: Some(&self.customer),
            keep_until: datetime!(2031-01-01 00:00:00 UTC),
        }
    }

    fn record_a() -> CardRecord {
        CardRecord {
            pan: Pan::parse("4111111111111111").expect("pan"),
            expiry: Expiry::new(2030, 12).expect("expiry"),
            name: Some(CardholderName::parse("Jane Doe").expect("name")),
            metadata: Metadata::new(BTreeMap::from([
                ("order".to_owned(), "A-17".to_owned()),
                ("source".to_owned(), "web".to_owned()),
            ]))
            .expect("metadata"),
        }
    }

    /// Record B: sealed after a rotation; no customer, no name, no metadata.
    fn binding_b(&self) -> RecordBinding<'_> {
        RecordBinding {
            merchant: MerchantId::new(999_999_999_999_999_999).expect("merchant"),
            token: &self.token_b,
            customer: None,
            keep_until: datetime!(2029-03-01 00:00:00 UTC),
        }
    }

    fn record_b() -> CardRecord {
        CardRecord {
            pan: Pan::parse("378282246310005").expect("pan"),
            expiry: Expiry::new(2029, 2).expect("expiry"),
            name: None,
            metadata: Metadata::default(),
        }
    }

    /// Builds the key-file vault and both records from the fixed randomness.
    fn write_key_file_vault(&self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut rng = TestRng::new(b"cardvault golden v1 key file");
        let (mut header, mut keyring) =
            KeyHeader::create(&key_file(), KdfParams::DEFAULT, &mut rng, CREATED).expect("creates");
        let a = seal_record(&keyring, &self.binding_a(), &Self::record_a(), &mut rng);
        header.rotate(&mut keyring, &mut rng, ROTATED);
        let b = seal_record(&keyring, &self.binding_b(), &Self::record_b(), &mut rng);
        (header.encode(), a, b)
    }
}

const KEY_FILE_HEADER: &str = concat!(
    "43564b480001f22f42bb10aaf50999bd724bea3709d202029db8ab0a04282cd57e72b3dca32a2d043b46528c70d6584c",
    "8553153bfe4edd3421d30bbc28e9e5375ec28a57d5025a9083ac24d855a58431b7822f1eb858763a47f4666b97fd7856",
    "5e9640853d2981d286c7d2c3c6a2ae654e9e2b0000000200020000000100000000677485801e4dfbfee0bc992740c0bd",
    "2c2b134320387081d4debd8f20a4be25dbd3a6960e53917e301ed3eec3521def9bcbfc189bb5c59f668f1b7c02fe61f3",
    "3c00000002000000006955b900e7625edf01f0b23d10dd343c30538733cefd636f79c19138f7daea90fd64e12a9293f8",
    "8af3f16bf5b07f8b04073f89c5d4bf478b7f27d4dc8814b9db7926a24ad8c40745d58ed03ea8447d942728f810740dbe",
    "311eade7555e97f7fc",
);
const RECORD_A: &str = concat!(
    "0100000001abd4008ad415e1794d9e97c63699c3dd2aa671899f7336df08ec2de16900ebbe4c3cbac63d667c795ddd0a",
    "69ed83b3bfbe1e4d70dc211fa27dc3dd1eb2c5d5c2d6a55585e71780c7224bafd8bbad6a5ad2fafc8d88a6ec9e101869",
    "9ba11480",
);
const RECORD_B: &str = concat!(
    "0100000002f23fc3628a61018cfd8808a9a006340da38c02f2fa7435f15bb72f76575fdc716827cf1c78deed22165353",
    "adad321d0c10d05c5fa85a77eb7da6f40e66f8",
);
const PASSPHRASE_HEADER: &str = concat!(
    "43564b480001c89cdab569d0f4b419ab13326dedf67401a013fd13658854230be43fb5bedf6a2c000000400000000100",
    "0000019ca02ab5f9d20f9ebfb11b8de05541607d6921501d27e843c75b15e74148834bb46d650ca76f5e45b56f001d5d",
    "9c78584124273cda23888ca7f707ad35eea54cec03e56e8feb15fba128391ee245d4b465c0a05383d6a6c52864993b00",
    "0000010001000000010000000067748580a8ec1383758b7d363a17a47db2314d0a73e08e2009f19e4bdb664ee73c48bf",
    "8842d508f09b44bc99b18e2e069cf017da0d3ef2d69c66fda57c6fb0854cd6dcc7875c4359818d9855d8a2f68a028758",
    "811b085edf0654f1eee14028de",
);

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("pinned hex")
}

fn assert_a(keyring: &Keyring, g: &Golden, sealed: &[u8]) {
    let r = open_record(keyring, &g.binding_a(), sealed).expect("record A opens");
    assert_eq!(r.pan.expose_digits(), "4111111111111111");
    assert_eq!((r.expiry.year(), r.expiry.month()), (2030, 12));
    assert_eq!(
        r.name.as_ref().map(CardholderName::expose),
        Some("Jane Doe")
    );
    assert_eq!(
        r.metadata.entries().get("order").map(String::as_str),
        Some("A-17")
    );
    assert_eq!(
        r.metadata.entries().get("source").map(String::as_str),
        Some("web")
    );
    assert_eq!(r.metadata.entries().len(), 2);
}

fn assert_b(keyring: &Keyring, g: &Golden, sealed: &[u8]) {
    let r = open_record(keyring, &g.binding_b(), sealed).expect("record B opens");
    assert_eq!(r.pan.expose_digits(), "378282246310005");
    assert_eq!((r.expiry.year(), r.expiry.month()), (2029, 2));
    assert!(r.name.is_none() && r.metadata.is_empty());
}

#[test]
fn v1_key_file_vault_open() {
    let g = Golden::new();
    let header = KeyHeader::decode(&unhex(KEY_FILE_HEADER)).expect("pinned header decodes");
    assert!(!header.is_passphrase());
    assert_eq!(
        header.vault_id(),
        <[u8; 16]>::try_from(&unhex(KEY_FILE_HEADER)[6..22]).expect("16")
    );
    assert_eq!(
        header.deks(),
        vec![
            (DekId::new(1), DekState::DecryptOnly, CREATED),
            (DekId::new(2), DekState::Current, ROTATED)
        ]
    );
    let keyring = header.unlock(&key_file()).expect("pinned header unlocks");
    let (a, b) = (unhex(RECORD_A), unhex(RECORD_B));
    assert_eq!(sealed_dek_id(&a), Ok(DekId::new(1)));
    assert_eq!(sealed_dek_id(&b), Ok(DekId::new(2)));
    assert_a(&keyring, &g, &a);
    assert_b(&keyring, &g, &b);
    let pan = Pan::parse("4111111111111111").expect("pan");
    let fp = keyring
        .fingerprint_key(MerchantId::new(4242).expect("merchant"))
        .fingerprint(&pan);
    assert_eq!(fp.to_string(), KEY_FILE_FINGERPRINT);
}

/// Fingerprint of 4111111111111111 at merchant 4242 in the key-file vault.
const KEY_FILE_FINGERPRINT: &str =
    "fde7e0f32100a407bb596782cc241e70f2b65fa7ec8d127f59ca2afa28dca66f";

#[test]
fn v1_key_file_vault_reproduce() {
    let (header, a, b) = Golden::new().write_key_file_vault();
    assert_eq!(hex::encode(header), KEY_FILE_HEADER);
    assert_eq!(hex::encode(a), RECORD_A);
    assert_eq!(hex::encode(b), RECORD_B);
}

#[test]
fn v1_passphrase_header_open() {
    let header = KeyHeader::decode(&unhex(PASSPHRASE_HEADER)).expect("pinned header decodes");
    assert_eq!(header.kdf_params(), Some(KdfParams::insecure_for_tests()));
    let keyring = header.unlock(&passphrase()).expect("pinned header unlocks");
    assert_eq!(keyring.current_dek(), DekId::new(1));
    // The derived keys are part of the format too: stored fingerprints and lookup keys must
    // keep matching.
    let g = Golden::new();
    let pan = Pan::parse("4111111111111111").expect("pan");
    let fp = keyring
        .fingerprint_key(MerchantId::new(4242).expect("merchant"))
        .fingerprint(&pan);
    assert_eq!(fp.to_string(), PASSPHRASE_FINGERPRINT);
    assert_eq!(
        hex::encode(keyring.lookup_key().lookup(&g.token_a)),
        PASSPHRASE_LOOKUP
    );
}

const PASSPHRASE_FINGERPRINT: &str =
    "5c286e1275c206faf757df4af88503eaf76dcce367b864aea64e75754047cadc";
const PASSPHRASE_LOOKUP: &str = "3449502a6ea18a96af1175d1cea5c387";

#[test]
fn v1_passphrase_header_reproduce() {
    let mut rng = TestRng::new(b"cardvault golden v1 passphrase");
    let (header, _) = KeyHeader::create(
        &passphrase(),
        KdfParams::insecure_for_tests(),
        &mut rng,
        CREATED,
    )
    .expect("creates");
    assert_eq!(hex::encode(header.encode()), PASSPHRASE_HEADER);
}
