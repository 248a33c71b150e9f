//! The key hierarchy end to end: create, encode, decode, unlock, rotate, retire, rekey, and the
//! keys derived from the MAC root.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::datetime;
use vault_core::{
    CardRecord, CardholderName, CustomerId, DecodeError, DekId, DekState, Expiry, KdfParams,
    KeyError, KeyHeader, KeySource, Keyring, MerchantId, Metadata, Pan, Passphrase, RecordBinding,
    SecretKey, Token, open_record, seal_record, sealed_dek_id,
};

const NOW: OffsetDateTime = datetime!(2025-06-01 12:00:00 UTC);

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn passphrase(s: &str) -> KeySource {
    KeySource::Passphrase(Passphrase::new(s.to_owned()).expect("valid passphrase"))
}

fn key_file(byte: u8) -> KeySource {
    KeySource::KeyFile(SecretKey::from_bytes([byte; 32]))
}

fn pass_vault() -> (KeyHeader, Keyring) {
    KeyHeader::create(
        &passphrase("correct horse"),
        KdfParams::insecure_for_tests(),
        &mut rng(1),
        NOW,
    )
    .expect("creates")
}

fn record(pan: &str) -> CardRecord {
    let mut meta = BTreeMap::new();
    meta.insert("order".to_owned(), "A-17".to_owned());
    CardRecord {
        pan: Pan::parse(pan).expect("valid PAN"),
        expiry: Expiry::new(2030, 12).expect("valid expiry"),
        name: Some(CardholderName::parse("Jane Doe").expect("valid name")),
        metadata: Metadata::new(meta).expect("valid metadata"),
    }
}

struct Fixture {
    token: Token,
    customer: CustomerId,
}

impl Fixture {
    fn new() -> Self {
        Self {
            token: Token::from_bytes([0x5a; 24]),
            customer: CustomerId::parse("cus-0001").expect("valid customer"),
        }
    }
    fn binding(&self) -> RecordBinding<'_> {
        RecordBinding {
            merchant: MerchantId::new(42).expect("valid merchant"),
            token: &self.token,
            customer: Some(&self.customer),
            keep_until: datetime!(2031-01-01 00:00:00 UTC),
        }
    }
}

fn assert_opens(keyring: &Keyring, binding: &RecordBinding<'_>, sealed: &[u8], pan: &str) {
    let opened = open_record(keyring, binding, sealed).expect("record opens");
    assert_eq!(opened.pan.expose_digits(), pan);
}

#[test]
fn create_encode_decode_unlock_round_trip() {
    let fx = Fixture::new();
    for (source, again) in [
        (passphrase("correct horse"), passphrase("correct horse")),
        (key_file(7), key_file(7)),
    ] {
        let (header, keyring) =
            KeyHeader::create(&source, KdfParams::insecure_for_tests(), &mut rng(2), NOW)
                .expect("creates");
        let sealed = seal_record(
            &keyring,
            &fx.binding(),
            &record("4111111111111111"),
            &mut rng(3),
        );

        let bytes = header.encode();
        assert_eq!(&bytes[..4], b"CVKH");
        assert_eq!(&bytes[4..6], &[0, 1]);
        let decoded = KeyHeader::decode(&bytes).expect("decodes");
        assert_eq!(decoded.encode(), bytes, "decode/encode is the identity");
        assert_eq!(decoded.vault_id(), header.vault_id());
        assert_eq!(decoded.current_dek(), DekId::new(1));
        assert_eq!(
            decoded.deks(),
            vec![(DekId::new(1), DekState::Current, NOW)]
        );

        let unlocked = decoded.unlock(&again).expect("unlocks");
        assert_eq!(unlocked.current_dek(), DekId::new(1));
        assert!(unlocked.has_dek(DekId::new(1)) && !unlocked.has_dek(DekId::new(2)));
        assert_opens(&unlocked, &fx.binding(), &sealed, "4111111111111111");
        assert_eq!(
            unlocked.lookup_key().lookup(&fx.token),
            keyring.lookup_key().lookup(&fx.token)
        );
        assert_eq!(
            unlocked.mac_key("idempotency"),
            keyring.mac_key("idempotency")
        );
    }
}

#[test]
fn header_accessors() {
    let (header, _) = pass_vault();
    assert!(header.is_passphrase());
    assert_eq!(header.kdf_params(), Some(KdfParams::insecure_for_tests()));
    let (header, _) =
        KeyHeader::create(&key_file(1), KdfParams::DEFAULT, &mut rng(4), NOW).expect("creates");
    assert!(!header.is_passphrase());
    assert_eq!(
        header.kdf_params(),
        None,
        "params are ignored for key files"
    );
    let (other, _) =
        KeyHeader::create(&key_file(1), KdfParams::DEFAULT, &mut rng(5), NOW).expect("creates");
    assert_ne!(header.vault_id(), other.vault_id(), "vault ids are random");
    let dbg = format!("{header:?}");
    assert!(
        dbg.contains("current_dek: 1") && !dbg.contains("wrapped"),
        "{dbg}"
    );
}

#[test]
fn subsecond_creation_time_is_truncated() {
    let now = datetime!(2025-06-01 12:00:00.75 UTC);
    let (header, _) =
        KeyHeader::create(&key_file(1), KdfParams::DEFAULT, &mut rng(6), now).expect("creates");
    let decoded = KeyHeader::decode(&header.encode()).expect("decodes");
    assert_eq!(decoded.deks()[0].2, NOW);
    assert!(decoded.unlock(&key_file(1)).is_ok());
}

#[test]
fn wrong_passphrase_and_key_are_refused() {
    let (header, _) = pass_vault();
    let header = KeyHeader::decode(&header.encode()).expect("decodes");
    assert!(matches!(
        header.unlock(&passphrase("correct hors")),
        Err(KeyError::WrongKey)
    ));
    assert!(matches!(
        header.unlock(&passphrase("Correct horse")),
        Err(KeyError::WrongKey)
    ));
    assert!(matches!(
        header.unlock(&key_file(1)),
        Err(KeyError::WrongKeyKind)
    ));

    let (kf, _) =
        KeyHeader::create(&key_file(9), KdfParams::DEFAULT, &mut rng(7), NOW).expect("creates");
    assert!(matches!(kf.unlock(&key_file(8)), Err(KeyError::WrongKey)));
    assert!(matches!(
        kf.unlock(&passphrase("correct horse")),
        Err(KeyError::WrongKeyKind)
    ));
}

#[test]
fn hand_built_invalid_params_are_refused_on_create() {
    let bad = KdfParams {
        m_cost_kib: 4,
        t_cost: 1,
        p_cost: 1,
    };
    assert!(matches!(
        KeyHeader::create(&passphrase("x"), bad, &mut rng(8), NOW),
        Err(KeyError::KdfParams(_))
    ));
    let huge = KdfParams {
        m_cost_kib: 4 * 1024 * 1024,
        t_cost: 1,
        p_cost: 1,
    };
    assert!(matches!(
        KeyHeader::create(&passphrase("x"), huge, &mut rng(8), NOW),
        Err(KeyError::KdfParams(_))
    ));
}

/// Offsets in a passphrase header: magic 4, version 2, vault id 16, kind 1, salt 16, then m, t, p.
const M_COST_AT: usize = 4 + 2 + 16 + 1 + 16;

#[test]
fn newer_version_is_refused() {
    let (header, _) = pass_vault();
    let mut bytes = header.encode();
    bytes[4..6].copy_from_slice(&2u16.to_be_bytes());
    assert!(matches!(
        KeyHeader::decode(&bytes),
        Err(KeyError::Decode(DecodeError::UnsupportedVersion(2)))
    ));
    bytes[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
    assert!(matches!(
        KeyHeader::decode(&bytes),
        Err(KeyError::Decode(DecodeError::UnsupportedVersion(0xffff)))
    ));
    bytes[4..6].copy_from_slice(&0u16.to_be_bytes());
    assert!(matches!(
        KeyHeader::decode(&bytes),
        Err(KeyError::Decode(DecodeError::Invalid(_)))
    ));
}

#[test]
fn oversized_kdf_params_are_refused_on_decode() {
    let (header, _) = pass_vault();
    let good = header.encode();
    assert_eq!(
        &good[M_COST_AT..M_COST_AT + 4],
        &64u32.to_be_bytes(),
        "offset check"
    );
    // 4 GiB of memory: refused by decode, before Argon2 (and its allocation) could run.
    for (at, value) in [
        (M_COST_AT, 4 * 1024 * 1024),
        (M_COST_AT, u32::MAX),
        (M_COST_AT + 4, 1_000),
        (M_COST_AT + 8, 64),
        (M_COST_AT + 8, 0),
    ] {
        let mut bytes = good.clone();
        bytes[at..at + 4].copy_from_slice(&u32::to_be_bytes(value));
        assert!(
            matches!(KeyHeader::decode(&bytes), Err(KeyError::KdfParams(_))),
            "{at} {value}"
        );
    }
    // The cap itself is accepted by decode (and only then would unlock pay for it).
    let mut bytes = good.clone();
    bytes[M_COST_AT..M_COST_AT + 4].copy_from_slice(&KdfParams::MAX.m_cost_kib.to_be_bytes());
    assert!(KeyHeader::decode(&bytes).is_ok());
}

#[test]
fn malformed_headers_are_refused() {
    let (header, _) = pass_vault();
    let good = header.encode();
    for len in 0..good.len() {
        assert!(
            KeyHeader::decode(&good[..len]).is_err(),
            "prefix of {len} bytes"
        );
    }
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        KeyHeader::decode(&long),
        Err(KeyError::Decode(DecodeError::TrailingBytes))
    ));
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        KeyHeader::decode(&bad_magic),
        Err(KeyError::Decode(DecodeError::Invalid(_)))
    ));
    let mut bad_kind = good.clone();
    bad_kind[22] = 3;
    assert!(matches!(
        KeyHeader::decode(&bad_kind),
        Err(KeyError::Decode(_))
    ));
}

#[test]
fn rotate_keeps_old_records_readable() {
    let fx = Fixture::new();
    let (mut header, mut keyring) = pass_vault();
    let old = seal_record(
        &keyring,
        &fx.binding(),
        &record("4111111111111111"),
        &mut rng(10),
    );
    assert_eq!(sealed_dek_id(&old), Ok(DekId::new(1)));

    let later = datetime!(2026-01-01 00:00:00 UTC);
    let id = header.rotate(&mut keyring, &mut rng(11), later);
    assert_eq!(id, DekId::new(2));
    assert_eq!(header.current_dek(), id);
    assert_eq!(keyring.current_dek(), id);
    assert_eq!(
        header.deks(),
        vec![
            (DekId::new(1), DekState::DecryptOnly, NOW),
            (DekId::new(2), DekState::Current, later)
        ]
    );
    let new = seal_record(
        &keyring,
        &fx.binding(),
        &record("5555555555554444"),
        &mut rng(12),
    );
    assert_eq!(sealed_dek_id(&new), Ok(id));
    assert_opens(&keyring, &fx.binding(), &old, "4111111111111111");
    assert_opens(&keyring, &fx.binding(), &new, "5555555555554444");

    // The rotated header persists and unlocks to the same keys.
    let reopened = KeyHeader::decode(&header.encode())
        .expect("decodes")
        .unlock(&passphrase("correct horse"))
        .expect("unlocks");
    assert_eq!(reopened.current_dek(), id);
    assert_opens(&reopened, &fx.binding(), &old, "4111111111111111");
    assert_opens(&reopened, &fx.binding(), &new, "5555555555554444");
    assert_eq!(
        header.rotate(&mut keyring, &mut rng(13), later),
        DekId::new(3)
    );
}

#[test]
fn a_stamp_names_the_key_material_not_only_its_id() {
    let (header, keyring) = pass_vault();
    let stamp = keyring.current_stamp();
    assert_eq!(stamp.id(), DekId::new(1));
    // The same key, however it was obtained, has the same stamp.
    assert_eq!(keyring.duplicate().current_stamp(), stamp);
    let reopened = KeyHeader::decode(&header.encode())
        .expect("decodes")
        .unlock(&passphrase("correct horse"))
        .expect("unlocks");
    assert_eq!(reopened.current_stamp(), stamp);
    assert_eq!(
        header
            .unlock_with(&keyring)
            .expect("unlocks")
            .current_stamp(),
        stamp
    );

    // Two daemons rotating the same header at once: the same next id, different keys.
    let (mut header_a, mut keyring_a) = (header.clone(), keyring.duplicate());
    let (mut header_b, mut keyring_b) = (header.clone(), keyring.duplicate());
    let a = header_a.rotate(&mut keyring_a, &mut rng(21), NOW);
    let b = header_b.rotate(&mut keyring_b, &mut rng(22), NOW);
    assert_eq!(a, b);
    assert_eq!(
        keyring_a.current_stamp().id(),
        keyring_b.current_stamp().id()
    );
    assert_ne!(keyring_a.current_stamp(), keyring_b.current_stamp());
    assert_ne!(keyring_a.current_stamp(), stamp);
    assert_eq!(keyring_a.stamp(DekId::new(1)), Some(stamp));
    assert_eq!(keyring_a.stamp(a), Some(keyring_a.current_stamp()));
    assert_eq!(keyring.stamp(a), None);
    // Debug names the id only.
    assert_eq!(format!("{stamp:?}"), "DekStamp { id: 1, .. }");
}

#[test]
fn retire_refuses_current_and_unknown() {
    let fx = Fixture::new();
    let (mut header, mut keyring) = pass_vault();
    let old = seal_record(
        &keyring,
        &fx.binding(),
        &record("4111111111111111"),
        &mut rng(20),
    );
    assert!(matches!(
        header.retire(&mut keyring, DekId::new(1)),
        Err(KeyError::DekInUse(1))
    ));
    let id = header.rotate(&mut keyring, &mut rng(21), NOW);
    assert!(matches!(
        header.retire(&mut keyring, id),
        Err(KeyError::DekInUse(2))
    ));
    assert!(matches!(
        header.retire(&mut keyring, DekId::new(9)),
        Err(KeyError::UnknownDek(9))
    ));

    header
        .retire(&mut keyring, DekId::new(1))
        .expect("retires a decrypt-only key");
    assert!(!keyring.has_dek(DekId::new(1)));
    assert!(
        open_record(&keyring, &fx.binding(), &old).is_err(),
        "its records no longer open"
    );
    assert!(matches!(
        header.retire(&mut keyring, DekId::new(1)),
        Err(KeyError::UnknownDek(1))
    ));
    assert_eq!(header.deks().len(), 1);

    let reopened = KeyHeader::decode(&header.encode())
        .expect("decodes")
        .unlock(&passphrase("correct horse"))
        .expect("unlocks after retire");
    assert!(!reopened.has_dek(DekId::new(1)) && reopened.has_dek(id));
    // Ids are never reused after a retire.
    assert_eq!(
        header.rotate(&mut keyring, &mut rng(22), NOW),
        DekId::new(3)
    );
}

#[test]
fn rekey_rewraps_without_touching_records() {
    let fx = Fixture::new();
    let (mut header, mut keyring) = pass_vault();
    header.rotate(&mut keyring, &mut rng(30), NOW);
    let sealed = seal_record(
        &keyring,
        &fx.binding(),
        &record("4111111111111111"),
        &mut rng(31),
    );
    let before = header.encode();
    let idem = keyring.mac_key("idempotency");

    header
        .rekey(
            &mut keyring,
            &passphrase("battery staple"),
            KdfParams::insecure_for_tests(),
            &mut rng(32),
        )
        .expect("rekeys");
    let after = header.encode();
    assert_ne!(before, after);
    assert_eq!(before.len(), after.len());
    let decoded = KeyHeader::decode(&after).expect("decodes");
    assert_eq!(
        decoded.vault_id(),
        KeyHeader::decode(&before).expect("decodes").vault_id()
    );
    assert!(matches!(
        decoded.unlock(&passphrase("correct horse")),
        Err(KeyError::WrongKey)
    ));
    let unlocked = decoded
        .unlock(&passphrase("battery staple"))
        .expect("new passphrase unlocks");
    assert_opens(&unlocked, &fx.binding(), &sealed, "4111111111111111");
    assert_opens(&keyring, &fx.binding(), &sealed, "4111111111111111");
    assert_eq!(
        unlocked.mac_key("idempotency"),
        idem,
        "the MAC root is kept"
    );
    assert_eq!(unlocked.current_dek(), DekId::new(2));
    // The keyring's KEK was replaced too: a rotation after the rekey persists under the new key.
    header.rotate(&mut keyring, &mut rng(33), NOW);
    let unlocked = KeyHeader::decode(&header.encode())
        .expect("decodes")
        .unlock(&passphrase("battery staple"))
        .expect("unlocks");
    assert_eq!(unlocked.current_dek(), DekId::new(3));

    // Switch to a key file.
    header
        .rekey(&mut keyring, &key_file(3), KdfParams::DEFAULT, &mut rng(34))
        .expect("rekeys");
    let decoded = KeyHeader::decode(&header.encode()).expect("decodes");
    assert_eq!(decoded.kdf_params(), None);
    assert!(matches!(
        decoded.unlock(&passphrase("battery staple")),
        Err(KeyError::WrongKeyKind)
    ));
    assert_opens(
        &decoded.unlock(&key_file(3)).expect("unlocks"),
        &fx.binding(),
        &sealed,
        "4111111111111111",
    );
}

#[test]
fn failed_rekey_changes_nothing() {
    let (mut header, mut keyring) = pass_vault();
    let before = header.encode();
    let bad = KdfParams {
        m_cost_kib: 1,
        t_cost: 1,
        p_cost: 1,
    };
    assert!(matches!(
        header.rekey(&mut keyring, &passphrase("new"), bad, &mut rng(40)),
        Err(KeyError::KdfParams(_))
    ));
    assert_eq!(header.encode(), before);
    // The keyring still holds the old KEK: a rotation persists under the old passphrase.
    header.rotate(&mut keyring, &mut rng(41), NOW);
    assert!(
        KeyHeader::decode(&header.encode())
            .expect("decodes")
            .unlock(&passphrase("correct horse"))
            .is_ok()
    );
}

#[test]
fn fingerprints_are_keyed_per_merchant() {
    let (header, keyring) = pass_vault();
    let m1 = MerchantId::new(1).expect("valid");
    let m2 = MerchantId::new(2).expect("valid");
    let pan = Pan::parse("4111111111111111").expect("valid");
    let other = Pan::parse("5555555555554444").expect("valid");

    let fp = keyring.fingerprint_key(m1).fingerprint(&pan);
    assert_eq!(fp, keyring.fingerprint_key(m1).fingerprint(&pan));
    assert_ne!(fp, keyring.fingerprint_key(m2).fingerprint(&pan));
    assert_ne!(fp, keyring.fingerprint_key(m1).fingerprint(&other));
    let plain: [u8; 32] = Sha256::digest(b"4111111111111111").into();
    assert_ne!(fp.as_bytes(), &plain, "not a plain hash of the PAN");
    assert_eq!(fp.to_string().len(), 64);

    // Stable across unlocks (derived from the wrapped MAC root), different in another vault.
    let again = header
        .unlock(&passphrase("correct horse"))
        .expect("unlocks");
    assert_eq!(again.fingerprint_key(m1).fingerprint(&pan), fp);
    let (_, other_vault) = KeyHeader::create(
        &passphrase("correct horse"),
        KdfParams::insecure_for_tests(),
        &mut rng(50),
        NOW,
    )
    .expect("creates");
    assert_ne!(other_vault.fingerprint_key(m1).fingerprint(&pan), fp);
}

#[test]
fn debug_output_is_redacted() {
    let (_, keyring) = pass_vault();
    let dbg = format!("{keyring:?}");
    assert!(
        dbg.starts_with("Keyring {") && dbg.contains("current_dek: 1"),
        "{dbg}"
    );
    let m = MerchantId::new(1).expect("valid");
    assert_eq!(
        format!("{:?}", keyring.fingerprint_key(m)),
        "FingerprintKey(..)"
    );
    assert_eq!(format!("{:?}", keyring.lookup_key()), "LookupKey(..)");
    assert_eq!(format!("{:?}", keyring.mac_key("x")), "SecretKey(..)");
}

proptest! {
    /// Decoding arbitrary bytes never panics, including bytes that start like a real header.
    #[test]
    fn decode_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..300) {
        let _ = KeyHeader::decode(&tail);
        let (header, _) =
            KeyHeader::create(&key_file(1), KdfParams::DEFAULT, &mut rng(60), NOW).expect("creates");
        let mut bytes = header.encode();
        bytes.truncate(cut.min(bytes.len()));
        bytes.extend_from_slice(&tail);
        let _ = KeyHeader::decode(&bytes);
    }
}
