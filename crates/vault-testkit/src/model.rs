//! The reference model of the vault's token lifecycle: what `tokenize`, `get`, `reveal`,
//! `update`, `delete` and `sweep_expired` must answer, as plain maps. One model, used by the
//! proptest model test (`crates/vault-service/tests/model.rs`) and the `vault_model` fuzz target
//! (`fuzz/src/vault_model.rs`); each drives the real vault and this model with its own operations
//! and checks that they agree after every step.
//!
//! Only public test card numbers are used.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;
use vault_service::{CustomerId, Token};

/// The cards of the model: public test numbers, indexed by `pan` in [`Entry`].
pub const PANS: [&str; 4] = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
];

/// The customers of the model, indexed by `customer` in [`Entry`] (`None`: no customer binding).
pub const CUSTOMERS: [Option<&str>; 3] = [None, Some("alice"), Some("bob")];

/// The customer id of `CUSTOMERS[i]`.
pub fn customer_id(i: usize) -> Option<CustomerId> {
    CUSTOMERS[i].map(|c| CustomerId::parse(c).expect("a valid test customer id"))
}

/// The de-duplication key: merchant, card, customer.
pub type DedupeKey = (u64, usize, usize);

/// A live token in the model.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The merchant number.
    pub merchant: u64,
    /// Index into [`PANS`].
    pub pan: usize,
    /// Index into [`CUSTOMERS`].
    pub customer: usize,
    /// When the token expires (it is not visible from this instant on).
    pub keep_until: OffsetDateTime,
    /// Created with `dedupe`: listed in the de-duplication index.
    pub indexed: bool,
}

/// The live tokens and the de-duplication index.
#[derive(Debug, Default)]
pub struct Model {
    live: BTreeMap<[u8; 24], Entry>,
    dedupe: HashMap<DedupeKey, [u8; 24]>,
}

impl Model {
    /// The entry of `t`, if `merchant` may see it at `now` (its own, not expired).
    pub fn visible(&self, t: &Token, merchant: u64, now: OffsetDateTime) -> Option<&Entry> {
        self.live
            .get(t.as_bytes())
            .filter(|e| e.merchant == merchant && e.keep_until > now)
    }

    /// The entry of `t`, expired or not.
    pub fn entry(&self, t: &[u8; 24]) -> Option<&Entry> {
        self.live.get(t)
    }

    /// Whether `t` is live (expired but not swept counts).
    pub fn contains(&self, t: &[u8; 24]) -> bool {
        self.live.contains_key(t)
    }

    /// The token a de-duplicating tokenize of `key` must answer at `now`: the indexed token, if
    /// it has not expired.
    pub fn dedupe_hit(&self, key: DedupeKey, now: OffsetDateTime) -> Option<[u8; 24]> {
        self.dedupe
            .get(&key)
            .filter(|t| self.live.get(*t).is_some_and(|e| e.keep_until > now))
            .copied()
    }

    /// A new token (or the answer of a de-duplicating tokenize): live, and indexed under its
    /// key if `entry.indexed`.
    pub fn insert(&mut self, t: [u8; 24], entry: Entry) {
        if entry.indexed {
            self.dedupe
                .insert((entry.merchant, entry.pan, entry.customer), t);
        }
        self.live.insert(t, entry);
    }

    /// `t` now holds card `pan` until `keep_until`; an indexed token moves to its new key.
    pub fn update(&mut self, t: [u8; 24], pan: usize, keep_until: OffsetDateTime) {
        let Some(e) = self.live.get(&t).cloned() else {
            return;
        };
        if e.indexed {
            let old = (e.merchant, e.pan, e.customer);
            if self.dedupe.get(&old) == Some(&t) {
                self.dedupe.remove(&old);
            }
            self.dedupe.insert((e.merchant, pan, e.customer), t);
        }
        self.live.insert(
            t,
            Entry {
                pan,
                keep_until,
                ..e
            },
        );
    }

    /// `t` deleted (and out of the index if it was the indexed one).
    pub fn remove(&mut self, t: &[u8; 24]) {
        if let Some(e) = self.live.remove(t) {
            let k = (e.merchant, e.pan, e.customer);
            if self.dedupe.get(&k) == Some(t) {
                self.dedupe.remove(&k);
            }
        }
    }

    /// `sweep_expired(now)`: removes the tokens expired at `now`; how many.
    pub fn sweep(&mut self, now: OffsetDateTime) -> u64 {
        let expired: Vec<[u8; 24]> = self
            .live
            .iter()
            .filter(|(_, e)| e.keep_until <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in &expired {
            self.remove(t);
        }
        expired.len() as u64
    }

    /// How many records the vault must hold.
    pub fn records(&self) -> u64 {
        self.live.len() as u64
    }
}
