//! Model-based test: random sequences of operations against the Vault and against a plain
//! in-memory model must agree, across reopens, rotations, rewraps and expiry sweeps. The same
//! properties run on both engines: a sled directory per case, and a PostgreSQL database per case
//! on the test server (`CARDVAULT_TEST_PG_URL`), dropped after it; an unreachable server fails
//! the PostgreSQL run.

use crate::common;

use common::*;
use proptest::prelude::*;
use time::Duration;
use vault_service::{
    DatabaseUrl, Location, MerchantId, Token, TokenizeOptions, UpdateOptions, VaultError,
};
use vault_testkit::{
    model::{Entry, Model, PANS, customer_id as customer},
    postgres::TestDatabase,
};

#[derive(Clone, Debug)]
enum Op {
    Tokenize {
        merchant: u64,
        pan: usize,
        customer: usize,
        dedupe: bool,
        keep_days: Option<i64>,
    },
    Get {
        merchant: u64,
        idx: usize,
    },
    Reveal {
        merchant: u64,
        idx: usize,
        customer: usize,
    },
    Update {
        idx: usize,
        pan: usize,
    },
    Delete {
        merchant: u64,
        idx: usize,
    },
    Advance {
        days: i64,
    },
    Sweep,
    Rotate,
    Rewrap,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..3u64, 0..4usize, 0..3usize, any::<bool>(), proptest::option::of(1..20i64))
            .prop_map(|(merchant, pan, customer, dedupe, keep_days)| Op::Tokenize { merchant, pan, customer, dedupe, keep_days }),
        3 => (1..3u64, any::<usize>()).prop_map(|(merchant, idx)| Op::Get { merchant, idx }),
        3 => (1..3u64, any::<usize>(), 0..3usize).prop_map(|(merchant, idx, customer)| Op::Reveal { merchant, idx, customer }),
        2 => (any::<usize>(), 0..4usize).prop_map(|(idx, pan)| Op::Update { idx, pan }),
        2 => (1..3u64, any::<usize>()).prop_map(|(merchant, idx)| Op::Delete { merchant, idx }),
        1 => (1..10i64).prop_map(|days| Op::Advance { days }),
        1 => Just(Op::Sweep),
        1 => Just(Op::Rotate),
        1 => Just(Op::Rewrap),
        1 => Just(Op::Reopen),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn vault_agrees_with_the_model(ops in ops()) {
        let dir = tempfile::tempdir().unwrap();
        agrees_with_the_model(ops, &Location::Dir(dir.path().to_path_buf()))?;
    }
}

proptest! {
    // Each case creates and drops a database of its own (about a second of server work): fewer
    // cases than on sled.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn vault_on_postgres_agrees_with_the_model(ops in ops()) {
        let db = TestDatabase::new();
        agrees_with_the_model(ops, &Location::Database(DatabaseUrl::new(db.url())))?;
        // The vault is closed by now; the database goes next.
        drop(db);
    }
}

/// Runs `ops` against a new vault at `location` and against the model; closes the vault.
fn agrees_with_the_model(ops: Vec<Op>, location: &Location) -> Result<(), TestCaseError> {
    let (mut vault, clock) = new_vault_at(location);
    let mut model = Model::default();
    let mut seen: Vec<Token> = Vec::new();
    for op in ops {
        let now = vault.now();
        match op {
            Op::Tokenize {
                merchant: m,
                pan,
                customer: c,
                dedupe,
                keep_days,
            } => {
                let keep_until = keep_days.map(|d| now + Duration::days(d));
                let opts = TokenizeOptions {
                    customer: customer(c),
                    dedupe,
                    keep_until,
                    ..Default::default()
                };
                let info = vault
                    .tokenize(MerchantId::new(m).unwrap(), card(PANS[pan], "3001"), opts)
                    .unwrap();
                let entry = Entry {
                    merchant: m,
                    pan,
                    customer: c,
                    keep_until: info.keep_until,
                    indexed: dedupe,
                };
                let key = (m, pan, c);
                let hit = if dedupe {
                    model.dedupe_hit(key, now)
                } else {
                    None
                };
                if let Some(expected) = hit {
                    prop_assert_eq!(info.token.as_bytes(), &expected);
                    prop_assert!(info.deduplicated);
                } else {
                    prop_assert!(!info.deduplicated);
                    prop_assert!(!model.contains(info.token.as_bytes()));
                    seen.push(info.token);
                }
                model.insert(*info.token.as_bytes(), entry);
            }
            Op::Get { merchant: m, idx } if !seen.is_empty() => {
                let t = seen[idx % seen.len()];
                let got = vault.get(MerchantId::new(m).unwrap(), &t);
                match model.visible(&t, m, now) {
                    Some(e) => prop_assert_eq!(
                        got.unwrap().masked_pan,
                        vault_service::Pan::parse(PANS[e.pan]).unwrap().masked()
                    ),
                    None => prop_assert!(matches!(got, Err(VaultError::NotFound))),
                }
            }
            Op::Reveal {
                merchant: m,
                idx,
                customer: c,
            } if !seen.is_empty() => {
                let t = seen[idx % seen.len()];
                let cust = customer(c);
                let got = vault.reveal(MerchantId::new(m).unwrap(), &t, cust.as_ref());
                match model.visible(&t, m, now) {
                    Some(e) if e.customer == c => {
                        let card = got.unwrap();
                        prop_assert_eq!(card.pan.expose_digits(), PANS[e.pan]);
                    }
                    Some(_) => prop_assert!(matches!(got, Err(VaultError::CustomerMismatch))),
                    None => prop_assert!(matches!(got, Err(VaultError::NotFound))),
                }
            }
            Op::Update { idx, pan } if !seen.is_empty() => {
                let t = seen[idx % seen.len()];
                let m = model.entry(t.as_bytes()).map_or(1, |e| e.merchant);
                let got = vault.update(
                    MerchantId::new(m).unwrap(),
                    &t,
                    card(PANS[pan], "3002"),
                    UpdateOptions::default(),
                );
                match model.visible(&t, m, now) {
                    Some(_) => {
                        let info = got.unwrap();
                        prop_assert_eq!(info.token, t);
                        model.update(*t.as_bytes(), pan, info.keep_until);
                    }
                    None => prop_assert!(matches!(got, Err(VaultError::NotFound))),
                }
            }
            Op::Delete { merchant: m, idx } if !seen.is_empty() => {
                let t = seen[idx % seen.len()];
                let got = vault.delete(MerchantId::new(m).unwrap(), &t);
                if model.visible(&t, m, now).is_some() {
                    prop_assert!(got.is_ok());
                    model.remove(t.as_bytes());
                } else {
                    prop_assert!(matches!(got, Err(VaultError::NotFound)));
                }
            }
            Op::Advance { days } => clock.advance(Duration::days(days)),
            Op::Sweep => {
                prop_assert_eq!(vault.sweep_expired(now).unwrap(), model.sweep(now));
            }
            Op::Rotate => {
                vault.rotate_key().unwrap();
            }
            Op::Rewrap => {
                let report = vault.rewrap(|_| {}).unwrap();
                prop_assert_eq!(report.failed, 0);
                if vault.shared() {
                    // On a shared vault, retiring waits until the current key has been current
                    // for twice the key-follow interval by the vault's clock (sleeping up to that
                    // long otherwise): let the manual clock pass it instead.
                    clock.advance(
                        Duration::try_from(vault_service::KEY_FOLLOW_INTERVAL * 2).unwrap(),
                    );
                }
                vault.retire_unused_keys().unwrap();
            }
            Op::Reopen => {
                drop(vault);
                vault = reopen_at(location, clock.clone());
            }
            _ => {}
        }
        prop_assert_eq!(vault.stats().records, model.records());
    }
    Ok(())
}
