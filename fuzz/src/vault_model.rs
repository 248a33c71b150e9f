//! The `vault_model` fuzz target's logic: a sequence of operations run against a real
//! [`Vault`] (in a fresh temporary directory) and against a `BTreeMap` model, which must agree
//! after every step, across reopens, key rotations and expiry sweeps. The pattern is redb's
//! `fuzz_redb.rs`; the operations follow `crates/vault-service/tests/model.rs`, and the model is
//! the same one (`vault_testkit::model`).
//!
//! Only public test card numbers are used, and failures name the operation, never a card.

use std::sync::Arc;

use arbitrary::Arbitrary;
use time::OffsetDateTime;
use vault_service::{
    CustomerId, Durability, Expiry, KeySource, ManualClock, MerchantId, NewCard, Pan, SecretKey,
    Token, TokenizeOptions, TokenizeRequest, UpdateOptions, Vault, VaultError, VaultOptions,
};
use vault_testkit::model::{CUSTOMERS, Entry, Model, PANS};

/// Far enough ahead that no sequence of `Advance`s (capped at ten years in all) expires it.
const EXPIRY: &str = "4912";
/// Most operations per input; longer inputs are cut (each op may cost a commit).
const MAX_OPS: usize = 64;
/// Most days all `Advance`s together may move the clock.
const MAX_ADVANCE_DAYS: i64 = 3650;

/// One step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Tokenize `PANS[pan % 4]` for merchant 1 or 2.
    Tokenize {
        /// Merchant 2 instead of 1.
        second_merchant: bool,
        /// Index into the test PANs.
        pan: u8,
        /// Index into the customers.
        customer: u8,
        /// Ask for de-duplication.
        dedupe: bool,
        /// An explicit keep-until, 1-60 days ahead.
        keep_days: Option<u8>,
    },
    /// A batch of cards (no de-duplication), one commit.
    Batch {
        /// Merchant 2 instead of 1.
        second_merchant: bool,
        /// `(pan, customer)` indices; 1-8 items are used.
        items: Vec<(u8, u8)>,
    },
    /// `get` of a token seen before.
    Get {
        /// Merchant 2 instead of 1.
        second_merchant: bool,
        /// Index into the tokens seen.
        idx: u16,
    },
    /// `reveal` with a customer.
    Reveal {
        /// Merchant 2 instead of 1.
        second_merchant: bool,
        /// Index into the tokens seen.
        idx: u16,
        /// Index into the customers.
        customer: u8,
    },
    /// `update` to another card, by the token's own merchant.
    Update {
        /// Index into the tokens seen.
        idx: u16,
        /// Index into the test PANs.
        pan: u8,
        /// An explicit keep-until, 1-60 days ahead.
        keep_days: Option<u8>,
    },
    /// `delete`.
    Delete {
        /// Merchant 2 instead of 1.
        second_merchant: bool,
        /// Index into the tokens seen.
        idx: u16,
    },
    /// Move the clock 1-30 days on.
    Advance {
        /// Days, mod 30, plus one.
        days: u8,
    },
    /// `sweep_expired(now)`.
    Sweep,
    /// `rotate_key`.
    Rotate,
    /// Drop the vault and open it again.
    Reopen,
}

/// Runs `ops` against a new vault and the model. `Err` names the first disagreement.
pub fn run(ops: &[Op]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let start = OffsetDateTime::from_unix_timestamp(1_795_262_400).map_err(|e| e.to_string())?;
    let clock = Arc::new(ManualClock::new(start));
    let mut vault = Some(open(dir.path(), &clock, true)?);
    let mut model = Model::default();
    let mut seen: Vec<Token> = Vec::new();
    let mut advanced = 0i64;
    for (step, op) in ops.iter().take(MAX_OPS).enumerate() {
        let v = vault.as_ref().ok_or("no vault")?;
        let now = v.now();
        let fail = |what: &str| format!("step {step} ({}): {what}", name(op));
        match *op {
            Op::Tokenize {
                second_merchant,
                pan,
                customer,
                dedupe,
                keep_days,
            } => {
                let (m, pan, c) = (
                    merchant_no(second_merchant),
                    pick(pan, 4),
                    pick(customer, 3),
                );
                let keep_until = keep_days.map(|d| now + days(i64::from(d % 60) + 1));
                let opts = TokenizeOptions {
                    customer: customer_id(c)?,
                    dedupe,
                    keep_until,
                    ..TokenizeOptions::default()
                };
                let info = v
                    .tokenize(merchant(m)?, card(pan)?, opts)
                    .map_err(|e| fail(&format!("tokenize failed: {e}")))?;
                let key = (m, pan, c);
                let hit = if dedupe {
                    model.dedupe_hit(key, now)
                } else {
                    None
                };
                // A hit returns the same token, its card refreshed with this request's details,
                // keep-until included (`TokenizeOptions::dedupe`).
                if hit.is_some() {
                    if Some(*info.token.as_bytes()) != hit || !info.deduplicated {
                        return Err(fail("expected the de-duplicated token"));
                    }
                } else if info.deduplicated || model.contains(info.token.as_bytes()) {
                    return Err(fail("expected a new token"));
                } else {
                    seen.push(info.token);
                }
                if info.keep_until != keep_until.unwrap_or(expiry()?.keep_until()) {
                    return Err(fail(if hit.is_some() {
                        "a de-duplicated token kept its old keep_until"
                    } else {
                        "wrong keep_until"
                    }));
                }
                model.insert(
                    *info.token.as_bytes(),
                    Entry {
                        merchant: m,
                        pan,
                        customer: c,
                        keep_until: info.keep_until,
                        indexed: dedupe,
                    },
                );
            }
            Op::Batch {
                second_merchant,
                ref items,
            } => {
                let m = merchant_no(second_merchant);
                let items: Vec<(usize, usize)> = items
                    .iter()
                    .take(8)
                    .map(|&(p, c)| (pick(p, 4), pick(c, 3)))
                    .collect();
                if items.is_empty() {
                    continue;
                }
                let mut reqs = Vec::with_capacity(items.len());
                for &(p, c) in &items {
                    reqs.push(TokenizeRequest {
                        card: card(p)?,
                        options: TokenizeOptions {
                            customer: customer_id(c)?,
                            ..TokenizeOptions::default()
                        },
                    });
                }
                let results = v
                    .tokenize_batch(merchant(m)?, reqs)
                    .map_err(|e| fail(&format!("batch failed: {e}")))?;
                if results.len() != items.len() {
                    return Err(fail("one result per item expected"));
                }
                for (r, &(p, c)) in results.into_iter().zip(&items) {
                    let info = r.map_err(|e| fail(&format!("batch item failed: {e}")))?;
                    if model.contains(info.token.as_bytes()) {
                        return Err(fail("batch reused a token"));
                    }
                    seen.push(info.token);
                    model.insert(
                        *info.token.as_bytes(),
                        Entry {
                            merchant: m,
                            pan: p,
                            customer: c,
                            keep_until: info.keep_until,
                            indexed: false,
                        },
                    );
                }
            }
            Op::Get {
                second_merchant,
                idx,
            } if !seen.is_empty() => {
                let m = merchant_no(second_merchant);
                let t = seen[usize::from(idx) % seen.len()];
                let got = v.get(merchant(m)?, &t);
                match (model.visible(&t, m, now), got) {
                    (Some(e), Ok(info)) => {
                        let want = Pan::parse(PANS[e.pan]).map_err(|e| e.to_string())?;
                        if info.masked_pan != want.masked() || info.keep_until != e.keep_until {
                            return Err(fail("get returned another card"));
                        }
                    }
                    (None, Err(VaultError::NotFound)) => {}
                    (_, Err(e)) => return Err(fail(&format!("get: unexpected {e}"))),
                    (None, Ok(_)) => return Err(fail("get found a token the model lacks")),
                }
            }
            Op::Reveal {
                second_merchant,
                idx,
                customer,
            } if !seen.is_empty() => {
                let (m, c) = (merchant_no(second_merchant), pick(customer, 3));
                let t = seen[usize::from(idx) % seen.len()];
                let cust = customer_id(c)?;
                let got = v.reveal(merchant(m)?, &t, cust.as_ref());
                match (model.visible(&t, m, now), got) {
                    (Some(e), Ok(card)) if e.customer == c => {
                        if card.pan.expose_digits() != PANS[e.pan] {
                            return Err(fail("reveal returned another card"));
                        }
                    }
                    (Some(e), Err(VaultError::CustomerMismatch)) if e.customer != c => {}
                    (None, Err(VaultError::NotFound)) => {}
                    (_, Err(e)) => return Err(fail(&format!("reveal: unexpected {e}"))),
                    (_, Ok(_)) => return Err(fail("reveal answered where it must refuse")),
                }
            }
            Op::Update {
                idx,
                pan,
                keep_days,
            } if !seen.is_empty() => {
                let pan = pick(pan, 4);
                let t = seen[usize::from(idx) % seen.len()];
                let m = model.entry(t.as_bytes()).map_or(1, |e| e.merchant);
                let keep_until = keep_days.map(|d| now + days(i64::from(d % 60) + 1));
                let opts = UpdateOptions {
                    keep_until,
                    ..UpdateOptions::default()
                };
                let got = v.update(merchant(m)?, &t, card(pan)?, opts);
                match (model.visible(&t, m, now).is_some(), got) {
                    (true, Ok(info)) => {
                        let want = keep_until.unwrap_or(expiry()?.keep_until());
                        if info.token != t || info.keep_until != want {
                            return Err(fail("update answered another token or keep_until"));
                        }
                        model.update(*t.as_bytes(), pan, info.keep_until);
                    }
                    (false, Err(VaultError::NotFound)) => {}
                    (_, Err(e)) => return Err(fail(&format!("update: unexpected {e}"))),
                    (false, Ok(_)) => return Err(fail("update found a token the model lacks")),
                }
            }
            Op::Delete {
                second_merchant,
                idx,
            } if !seen.is_empty() => {
                let m = merchant_no(second_merchant);
                let t = seen[usize::from(idx) % seen.len()];
                let got = v.delete(merchant(m)?, &t);
                match (model.visible(&t, m, now).is_some(), got) {
                    (true, Ok(())) => model.remove(t.as_bytes()),
                    (false, Err(VaultError::NotFound)) => {}
                    (_, Err(e)) => return Err(fail(&format!("delete: unexpected {e}"))),
                    (false, Ok(())) => return Err(fail("delete found a token the model lacks")),
                }
            }
            Op::Advance { days: d } => {
                let d = i64::from(d % 30) + 1;
                if advanced + d <= MAX_ADVANCE_DAYS {
                    advanced += d;
                    clock.advance(days(d));
                }
            }
            Op::Sweep => {
                let n = v
                    .sweep_expired(now)
                    .map_err(|e| fail(&format!("sweep failed: {e}")))?;
                if n != model.sweep(now) {
                    return Err(fail("sweep removed another number of tokens"));
                }
            }
            Op::Rotate => {
                v.rotate_key()
                    .map_err(|e| fail(&format!("rotate failed: {e}")))?;
            }
            Op::Reopen => {
                drop(vault.take());
                vault = Some(open(dir.path(), &clock, false)?);
            }
            _ => {}
        }
        let v = vault.as_ref().ok_or("no vault")?;
        if v.stats().records != model.records() {
            return Err(fail("record count differs from the model"));
        }
    }
    Ok(())
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>, create: bool) -> Result<Vault, String> {
    let key = KeySource::KeyFile(SecretKey::from_bytes([9; 32]));
    let options = VaultOptions {
        durability: Durability::Deferred { interval_ms: 1000 },
        cache_capacity: 4 << 20,
        ..vault_testkit::vault::options(clock.clone())
    };
    let vault = if create {
        Vault::create(dir.join("vault"), &key, options)
    } else {
        Vault::open(dir.join("vault"), &key, options)
    };
    vault.map_err(|e| format!("open the vault: {e}"))
}

fn name(op: &Op) -> &'static str {
    match op {
        Op::Tokenize { .. } => "tokenize",
        Op::Batch { .. } => "batch",
        Op::Get { .. } => "get",
        Op::Reveal { .. } => "reveal",
        Op::Update { .. } => "update",
        Op::Delete { .. } => "delete",
        Op::Advance { .. } => "advance",
        Op::Sweep => "sweep",
        Op::Rotate => "rotate",
        Op::Reopen => "reopen",
    }
}

fn pick(i: u8, n: usize) -> usize {
    usize::from(i) % n
}

fn merchant_no(second: bool) -> u64 {
    if second { 2 } else { 1 }
}

fn merchant(n: u64) -> Result<MerchantId, String> {
    MerchantId::new(n).map_err(|e| e.to_string())
}

fn customer_id(i: usize) -> Result<Option<CustomerId>, String> {
    CUSTOMERS[i]
        .map(CustomerId::parse)
        .transpose()
        .map_err(|e| e.to_string())
}

fn expiry() -> Result<Expiry, String> {
    Expiry::parse_yymm(EXPIRY).map_err(|e| e.to_string())
}

fn card(pan: usize) -> Result<NewCard, String> {
    let pan = Pan::parse(PANS[pan]).map_err(|e| e.to_string())?;
    Ok(NewCard::new(pan, expiry()?))
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}
