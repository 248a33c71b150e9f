//! Model-based test: random sequences of operations against the Vault and against a plain
//! in-memory model must agree, across reopens, rotations, rewraps and expiry sweeps.
#![cfg(test)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use proptest::prelude::*;
use time::{Duration, OffsetDateTime};
use vault_service::{CustomerId, MerchantId, Token, TokenizeOptions, UpdateOptions, VaultError};

const PANS: [&str; 4] = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
];
const CUSTOMERS: [Option<&str>; 3] = [None, Some("alice"), Some("bob")];

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

#[derive(Clone, Debug)]
struct Entry {
    merchant: u64,
    pan: usize,
    customer: usize,
    keep_until: OffsetDateTime,
    /// Created with `dedupe`: listed in the de-duplication index.
    indexed: bool,
}

#[derive(Default)]
struct Model {
    live: BTreeMap<[u8; 24], Entry>,
    dedupe: HashMap<(u64, usize, usize), [u8; 24]>,
}

impl Model {
    fn visible(&self, t: &Token, merchant: u64, now: OffsetDateTime) -> Option<&Entry> {
        self.live
            .get(t.as_bytes())
            .filter(|e| e.merchant == merchant && e.keep_until > now)
    }
    fn remove(&mut self, t: &[u8; 24]) {
        if let Some(e) = self.live.remove(t) {
            let k = (e.merchant, e.pan, e.customer);
            if self.dedupe.get(&k) == Some(t) {
                self.dedupe.remove(&k);
            }
        }
    }
}

fn customer(i: usize) -> Option<CustomerId> {
    CUSTOMERS[i].map(|c| CustomerId::parse(c).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn vault_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut vault, clock) = new_vault(dir.path());
        let mut model = Model::default();
        let mut seen: Vec<Token> = Vec::new();
        for op in ops {
            let now = vault.now();
            match op {
                Op::Tokenize { merchant: m, pan, customer: c, dedupe, keep_days } => {
                    let keep_until = keep_days.map(|d| now + Duration::days(d));
                    let opts = TokenizeOptions { customer: customer(c), dedupe, keep_until, ..Default::default() };
                    let info = vault.tokenize(MerchantId::new(m).unwrap(), card(PANS[pan], "3001"), opts).unwrap();
                    let entry = Entry { merchant: m, pan, customer: c, keep_until: info.keep_until, indexed: dedupe };
                    let key = (m, pan, c);
                    let hit = dedupe
                        && model.dedupe.get(&key).and_then(|t| model.live.get(t).map(|e| (t, e)))
                            .is_some_and(|(_, e)| e.keep_until > now);
                    if hit {
                        let expected = model.dedupe[&key];
                        prop_assert_eq!(info.token.as_bytes(), &expected);
                        prop_assert!(info.deduplicated);
                    } else {
                        prop_assert!(!info.deduplicated);
                        prop_assert!(!model.live.contains_key(info.token.as_bytes()));
                        seen.push(info.token);
                    }
                    model.live.insert(*info.token.as_bytes(), entry);
                    if dedupe {
                        model.dedupe.insert(key, *info.token.as_bytes());
                    }
                }
                Op::Get { merchant: m, idx } if !seen.is_empty() => {
                    let t = seen[idx % seen.len()];
                    let got = vault.get(MerchantId::new(m).unwrap(), &t);
                    match model.visible(&t, m, now) {
                        Some(e) => prop_assert_eq!(got.unwrap().masked_pan, vault_service::Pan::parse(PANS[e.pan]).unwrap().masked()),
                        None => prop_assert!(matches!(got, Err(VaultError::NotFound))),
                    }
                }
                Op::Reveal { merchant: m, idx, customer: c } if !seen.is_empty() => {
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
                    let m = model.live.get(t.as_bytes()).map_or(1, |e| e.merchant);
                    let got = vault.update(MerchantId::new(m).unwrap(), &t, card(PANS[pan], "3002"), UpdateOptions::default());
                    match model.visible(&t, m, now).cloned() {
                        Some(e) => {
                            let info = got.unwrap();
                            prop_assert_eq!(info.token, t);
                            if e.indexed {
                                let old_key = (e.merchant, e.pan, e.customer);
                                if model.dedupe.get(&old_key) == Some(t.as_bytes()) {
                                    model.dedupe.remove(&old_key);
                                }
                                model.dedupe.insert((e.merchant, pan, e.customer), *t.as_bytes());
                            }
                            model.live.insert(*t.as_bytes(), Entry { pan, keep_until: info.keep_until, ..e });
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
                    let expired: Vec<[u8; 24]> =
                        model.live.iter().filter(|(_, e)| e.keep_until <= now).map(|(t, _)| *t).collect();
                    prop_assert_eq!(vault.sweep_expired(now).unwrap(), expired.len() as u64);
                    for t in expired {
                        model.remove(&t);
                    }
                }
                Op::Rotate => {
                    vault.rotate_key().unwrap();
                }
                Op::Rewrap => {
                    let report = vault.rewrap(|_| {}).unwrap();
                    prop_assert_eq!(report.failed, 0);
                    vault.retire_unused_keys().unwrap();
                }
                Op::Reopen => {
                    drop(vault);
                    vault = reopen(dir.path(), clock.clone());
                }
                _ => {}
            }
            prop_assert_eq!(vault.stats().records, model.live.len() as u64);
        }
    }
}
