//! Properties of record sealing and of the key header under tampering: round trips, every single
//! bit flip rejected, every associated-data field bound, and header corruption never yielding
//! keys.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use time::OffsetDateTime;
use time::macros::datetime;
use vault_core::{
    CardRecord, CardholderName, CustomerId, DekId, Expiry, KdfParams, KeyError, KeyHeader,
    KeySource, Keyring, MerchantId, Metadata, Pan, Passphrase, RecordBinding, SecretKey, Token,
    open_record, seal_record, sealed_dek_id,
};
use vault_testkit::cards::luhn_complete;

const NOW: OffsetDateTime = datetime!(2025-06-01 12:00:00 UTC);

/// One key-file vault, rotated once so that it holds DEKs 1 and 2, shared by the property tests.
static VAULT: LazyLock<(KeyHeader, Keyring)> = LazyLock::new(|| {
    let mut rng = StdRng::seed_from_u64(1);
    let (mut header, mut keyring) =
        KeyHeader::create(&key_file(), KdfParams::DEFAULT, &mut rng, NOW).expect("creates");
    header.rotate(&mut keyring, &mut rng, NOW);
    (header, keyring)
});

fn key_file() -> KeySource {
    KeySource::KeyFile(SecretKey::from_bytes([0x42; 32]))
}

fn keyring() -> &'static Keyring {
    &VAULT.1
}

/// The parts of a card record, as plain values (a `CardRecord` itself holds secrets and has no
/// `Clone`).
#[derive(Clone, Debug)]
struct Card {
    pan: String,
    year: u16,
    month: u8,
    name: Option<String>,
    metadata: BTreeMap<String, String>,
}

impl Card {
    fn record(&self) -> CardRecord {
        CardRecord {
            pan: Pan::parse(&self.pan).expect("valid PAN"),
            expiry: Expiry::new(self.year, self.month).expect("valid expiry"),
            name: self
                .name
                .as_deref()
                .map(|n| CardholderName::parse(n).expect("valid name")),
            metadata: Metadata::new(self.metadata.clone()).expect("valid metadata"),
        }
    }

    fn assert_is(&self, r: &CardRecord) {
        assert_eq!(r.pan.expose_digits(), self.pan);
        assert_eq!((r.expiry.year(), r.expiry.month()), (self.year, self.month));
        assert_eq!(
            r.name.as_ref().map(CardholderName::expose),
            self.name.as_deref()
        );
        assert_eq!(r.metadata.entries(), &self.metadata);
    }
}

fn card() -> impl Strategy<Value = Card> {
    (
        proptest::collection::vec(0u8..=9, 11..=18),
        2000u16..=2099,
        1u8..=12,
        proptest::option::of("[A-Za-z]{1,20}( [A-Za-z]{1,20})?"),
        proptest::collection::btree_map("[a-z_]{1,12}", "[ -~]{0,40}", 0..4),
    )
        .prop_map(|(body, year, month, name, metadata)| Card {
            pan: luhn_complete(body),
            year,
            month,
            name,
            metadata,
        })
}

/// A binding as plain values.
#[derive(Clone, Debug)]
struct Bind {
    merchant: u64,
    token: [u8; 24],
    customer: Option<String>,
    keep_until: i64,
}

struct Owned {
    merchant: MerchantId,
    token: Token,
    customer: Option<CustomerId>,
    keep_until: OffsetDateTime,
}

impl Bind {
    fn owned(&self) -> Owned {
        Owned {
            merchant: MerchantId::new(self.merchant).expect("valid merchant"),
            token: Token::from_bytes(self.token),
            customer: self
                .customer
                .as_deref()
                .map(|c| CustomerId::parse(c).expect("valid customer")),
            keep_until: OffsetDateTime::from_unix_timestamp(self.keep_until).expect("in range"),
        }
    }
}

impl Owned {
    fn binding(&self) -> RecordBinding<'_> {
        RecordBinding {
            merchant: self.merchant,
            token: &self.token,
            customer: self.customer.as_ref(),
            keep_until: self.keep_until,
        }
    }
}

fn bind() -> impl Strategy<Value = Bind> {
    (
        1u64..=MerchantId::MAX,
        any::<[u8; 24]>(),
        proptest::option::of("[A-Za-z0-9._:@-]{1,64}"),
        0i64..4_102_444_800,
    )
        .prop_map(|(merchant, token, customer, keep_until)| Bind {
            merchant,
            token,
            customer,
            keep_until,
        })
}

/// One way of changing a binding.
#[derive(Clone, Debug)]
enum Change {
    Merchant(u64),
    TokenBit(usize),
    CustomerRemoved,
    CustomerAdded(String),
    CustomerChanged(String),
    /// Same length, one character different.
    CustomerCharChanged(prop::sample::Index),
    KeepUntil(i64),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (1u64..=MerchantId::MAX).prop_map(Change::Merchant),
        (0usize..192).prop_map(Change::TokenBit),
        Just(Change::CustomerRemoved),
        "[A-Za-z0-9._:@-]{1,64}".prop_map(Change::CustomerAdded),
        "[A-Za-z0-9._:@-]{1,64}".prop_map(Change::CustomerChanged),
        any::<prop::sample::Index>().prop_map(Change::CustomerCharChanged),
        (-1_000_000i64..1_000_000).prop_map(Change::KeepUntil),
    ]
}

impl Bind {
    /// Applies `change`; `None` when it would leave the binding as it was.
    fn changed(&self, change: &Change) -> Option<Bind> {
        let mut b = self.clone();
        match change {
            Change::Merchant(m) => b.merchant = *m,
            Change::TokenBit(i) => b.token[i / 8] ^= 1 << (i % 8),
            Change::CustomerRemoved => b.customer = None,
            Change::CustomerAdded(c) if self.customer.is_none() => b.customer = Some(c.clone()),
            Change::CustomerAdded(_) => return None,
            Change::CustomerChanged(c) if self.customer.is_some() => b.customer = Some(c.clone()),
            Change::CustomerChanged(_) => return None,
            Change::CustomerCharChanged(i) => {
                let mut c = self.customer.clone()?.into_bytes();
                let i = i.index(c.len());
                c[i] = if c[i] == b'a' { b'b' } else { b'a' };
                b.customer = Some(String::from_utf8(c).expect("ASCII"));
            }
            Change::KeepUntil(delta) => b.keep_until = self.keep_until.checked_add(*delta)?,
        }
        let same = b.merchant == self.merchant
            && b.token == self.token
            && b.customer == self.customer
            && b.keep_until == self.keep_until;
        (!same).then_some(b)
    }
}

fn seal(card: &Card, bind: &Bind, seed: u64) -> Vec<u8> {
    let owned = bind.owned();
    seal_record(
        keyring(),
        &owned.binding(),
        &card.record(),
        &mut StdRng::seed_from_u64(seed),
    )
}

fn fixed_card() -> Card {
    Card {
        pan: "4111111111111111".to_owned(),
        year: 2030,
        month: 12,
        name: Some("Jane Doe".to_owned()),
        metadata: BTreeMap::from([("order".to_owned(), "A-17".to_owned())]),
    }
}

fn fixed_bind() -> Bind {
    Bind {
        merchant: 42,
        token: [7; 24],
        customer: Some("cus-0001".to_owned()),
        keep_until: 1_924_992_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn seal_open_round_trip(card in card(), bind in bind(), seed in any::<u64>()) {
        let sealed = seal(&card, &bind, seed);
        prop_assert_eq!(sealed_dek_id(&sealed), Ok(keyring().current_dek()));
        let owned = bind.owned();
        let opened = open_record(keyring(), &owned.binding(), &sealed);
        prop_assert!(opened.is_ok());
        card.assert_is(&opened.expect("checked"));
    }

    #[test]
    fn any_bit_flip_fails(card in card(), bind in bind(), seed in any::<u64>(), bit in any::<prop::sample::Index>()) {
        let mut sealed = seal(&card, &bind, seed);
        let bit = bit.index(sealed.len() * 8);
        sealed[bit / 8] ^= 1 << (bit % 8);
        let owned = bind.owned();
        prop_assert!(open_record(keyring(), &owned.binding(), &sealed).is_err());
    }

    #[test]
    fn any_binding_change_fails(card in card(), bind in bind(), change in change(), seed in any::<u64>()) {
        let sealed = seal(&card, &bind, seed);
        if let Some(other) = bind.changed(&change) {
            let owned = other.owned();
            prop_assert!(open_record(keyring(), &owned.binding(), &sealed).is_err(), "{:?}", change);
        }
    }

    #[test]
    fn truncated_or_extended_fails(card in card(), bind in bind(), cut in any::<prop::sample::Index>(), extra in 1usize..32) {
        let sealed = seal(&card, &bind, 0);
        let owned = bind.owned();
        let cut = cut.index(sealed.len());
        prop_assert!(open_record(keyring(), &owned.binding(), &sealed[..cut]).is_err());
        let mut long = sealed.clone();
        long.resize(sealed.len() + extra, 0);
        prop_assert!(open_record(keyring(), &owned.binding(), &long).is_err());
    }
}

#[test]
fn every_single_bit_flip_fails() {
    let (card, bind) = (fixed_card(), fixed_bind());
    let sealed = seal(&card, &bind, 3);
    let owned = bind.owned();
    card.assert_is(&open_record(keyring(), &owned.binding(), &sealed).expect("opens"));
    // version | dek id | nonce | ciphertext | tag: every bit of every field.
    for bit in 0..sealed.len() * 8 {
        let mut flipped = sealed.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            open_record(keyring(), &owned.binding(), &flipped).is_err(),
            "bit {bit}"
        );
    }
}

#[test]
fn record_for_token_a_does_not_open_as_token_b() {
    let card = fixed_card();
    let a = Bind {
        token: [0xaa; 24],
        ..fixed_bind()
    };
    let b = Bind {
        token: [0xbb; 24],
        ..fixed_bind()
    };
    let sealed_a = seal(&card, &a, 4);
    let sealed_b = seal(&card, &b, 5);
    let (oa, ob) = (a.owned(), b.owned());
    assert!(open_record(keyring(), &oa.binding(), &sealed_a).is_ok());
    assert!(open_record(keyring(), &ob.binding(), &sealed_b).is_ok());
    assert!(open_record(keyring(), &ob.binding(), &sealed_a).is_err());
    assert!(open_record(keyring(), &oa.binding(), &sealed_b).is_err());
}

#[test]
fn customer_absent_and_present_differ() {
    let card = fixed_card();
    let none = Bind {
        customer: None,
        ..fixed_bind()
    };
    let sealed = seal(&card, &none, 6);
    let owned = none.owned();
    assert!(open_record(keyring(), &owned.binding(), &sealed).is_ok());
    for c in ["cus-0001", "a"] {
        let some = Bind {
            customer: Some(c.to_owned()),
            ..fixed_bind()
        };
        let o = some.owned();
        assert!(
            open_record(keyring(), &o.binding(), &sealed).is_err(),
            "{c}"
        );
    }
}

#[test]
fn customer_of_the_same_length_differs() {
    let card = fixed_card();
    let sealed = seal(&card, &fixed_bind(), 10);
    let other = Bind {
        customer: Some("cus-0002".to_owned()),
        ..fixed_bind()
    };
    let o = other.owned();
    assert!(open_record(keyring(), &o.binding(), &sealed).is_err());
}

#[test]
fn dek_id_is_bound() {
    // Sealed under DEK 2; relabelled as DEK 1 (which exists) it must not open.
    let (card, bind) = (fixed_card(), fixed_bind());
    let mut sealed = seal(&card, &bind, 7);
    assert_eq!(sealed_dek_id(&sealed), Ok(DekId::new(2)));
    sealed[1..5].copy_from_slice(&1u32.to_be_bytes());
    let owned = bind.owned();
    assert!(keyring().has_dek(DekId::new(1)));
    assert!(open_record(keyring(), &owned.binding(), &sealed).is_err());
}

#[test]
fn other_vault_cannot_open() {
    let (card, bind) = (fixed_card(), fixed_bind());
    let sealed = seal(&card, &bind, 8);
    let (_, other) = KeyHeader::create(
        &key_file(),
        KdfParams::DEFAULT,
        &mut StdRng::seed_from_u64(99),
        NOW,
    )
    .expect("creates");
    let owned = bind.owned();
    assert!(open_record(&other, &owned.binding(), &sealed).is_err());
}

#[test]
fn nonces_are_fresh() {
    let (card, bind) = (fixed_card(), fixed_bind());
    let mut rng = StdRng::seed_from_u64(9);
    let owned = bind.owned();
    let a = seal_record(keyring(), &owned.binding(), &card.record(), &mut rng);
    let b = seal_record(keyring(), &owned.binding(), &card.record(), &mut rng);
    assert_ne!(a[5..29], b[5..29]);
    assert_ne!(a, b);
}

/// Flips every bit of an encoded header in turn: decoding or unlocking must fail with a key error,
/// never panic, and never hand out keys.
fn assert_every_header_bit_flip_fails(
    encoded: &[u8],
    source: &KeySource,
    m_cost_at: Option<usize>,
) {
    assert!(
        KeyHeader::decode(encoded)
            .expect("decodes")
            .unlock(source)
            .is_ok()
    );
    for bit in 0..encoded.len() * 8 {
        let mut bytes = encoded.to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let header = match KeyHeader::decode(&bytes) {
            Err(KeyError::Decode(_) | KeyError::KdfParams(_)) => continue,
            Err(e) => unreachable!("bit {bit}: unexpected decode error {e:?}"),
            Ok(h) => h,
        };
        // A flip in the memory cost that still decodes only changes the Argon2 input, so the KEK
        // differs and the key check fails; skip actually running Argon2 with up to 512 MiB.
        if let (Some(at), Some(params)) = (m_cost_at, header.kdf_params())
            && (at * 8..at * 8 + 32).contains(&bit)
            && params.m_cost_kib > 4096
        {
            continue;
        }
        match header.unlock(source) {
            Err(KeyError::WrongKey | KeyError::CorruptHeader | KeyError::WrongKeyKind) => {}
            Err(e) => unreachable!("bit {bit}: unexpected unlock error {e:?}"),
            Ok(_) => unreachable!("bit {bit}: a corrupted header unlocked"),
        }
    }
}

#[test]
fn key_file_header_bit_flips_fail() {
    let encoded = VAULT.0.encode();
    assert_every_header_bit_flip_fails(&encoded, &key_file(), None);
}

#[test]
fn passphrase_header_bit_flips_fail() {
    let source = KeySource::Passphrase(Passphrase::new("correct horse".to_owned()).expect("valid"));
    let mut rng = StdRng::seed_from_u64(2);
    let (mut header, mut keyring) =
        KeyHeader::create(&source, KdfParams::insecure_for_tests(), &mut rng, NOW)
            .expect("creates");
    header.rotate(&mut keyring, &mut rng, NOW);
    let m_cost_at = 4 + 2 + 16 + 1 + 16;
    assert_every_header_bit_flip_fails(&header.encode(), &source, Some(m_cost_at));
}
