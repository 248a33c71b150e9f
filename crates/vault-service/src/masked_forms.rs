//! The masked-form limit: one API key may tokenize at most [`MASKED_FORM_LIMIT`] distinct card
//! numbers sharing one masked form (first six + last four digits and the length) within
//! [`MASKED_FORM_WINDOW`].
//!
//! A masked 16-digit PAN leaves about 10^5 Luhn-valid candidates. A key that sees fingerprints
//! (or a token answer that differs per card) could tokenize them all and learn the full number
//! without `reveal`. Real traffic almost never stores more than a handful of distinct cards with
//! the same masked form under one key in an hour, so the limiter refuses the next one
//! ([`VaultError::TooManyCards`], HTTP 429 with `Retry-After`) and writes an audit entry
//! (`tokenize.masked_form_limited`, at most one per key and form per minute).
//!
//! Memory is bounded: at most [`MAX_TRACKED_FORMS`] (key, form) entries are kept, the least
//! recently used are evicted past that, and each entry holds at most `MASKED_FORM_LIMIT` truncated
//! keyed fingerprints (never a PAN).
//!
//! **Eviction never resets a limit.** An evicted entry's count of cards goes into a count-min
//! sketch of the window ([`Forgotten`]: 4 rows of 2^20 saturating one-byte counters for this
//! window and the one before, 8 MiB, allocated at the first eviction), and a form's count is what
//! its entry holds plus what the sketch remembers of it. So a key that floods the table with
//! other forms to push its target out gains nothing; the sketch only ever over-counts (a card
//! tokenized again after its entry was evicted counts again, a form may share cells with
//! others), and it forgets after one to two windows. With a million single-card forms evicted
//! in each of the two windows, a form's four cells all hold 9 or more with odds of about 10^-15;
//! about half of new forms then find one or two cards counted that were not theirs (9 or 8 left
//! of their 10).

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use parking_lot::Mutex;
use vault_core::Pan;

/// Distinct card numbers one key may tokenize under one masked form within the window.
pub const MASKED_FORM_LIMIT: usize = 10;
/// The sliding window of the masked-form limit.
pub const MASKED_FORM_WINDOW: Duration = Duration::from_secs(60 * 60);
/// (key, masked form) entries kept in memory at most.
pub const MAX_TRACKED_FORMS: usize = 16_384;
/// Seconds between two audited refusals of one key and masked form.
const AUDIT_EVERY: i64 = 60;

/// Per (API key, masked form): the distinct cards seen in the window.
#[derive(Default)]
pub(crate) struct MaskedForms {
    pub(crate) inner: Mutex<Tracked>,
}

#[derive(Default)]
pub(crate) struct Tracked {
    forms: HashMap<String, Form>,
    /// What eviction took out of `forms`; `None` until the first eviction.
    forgotten: Option<Box<Forgotten>>,
}

/// Counters per row of the sketch of evicted forms.
const SKETCH_WIDTH: usize = 1 << 20;
/// Rows of the sketch (independent cells per form).
const SKETCH_DEPTH: usize = 4;

/// A count-min sketch of the cards of evicted (key, form) entries, per window: `current` for the
/// window now, `previous` for the one before. The hash keys are random per process, so nobody can
/// pick forms that land on another key's cells.
struct Forgotten {
    /// The window `current` counts (unix seconds / window length).
    window: i64,
    current: Box<[u8]>,
    previous: Box<[u8]>,
    hasher: RandomState,
}

impl Forgotten {
    fn new(window: i64) -> Self {
        Self {
            window,
            current: vec![0; SKETCH_WIDTH * SKETCH_DEPTH].into_boxed_slice(),
            previous: vec![0; SKETCH_WIDTH * SKETCH_DEPTH].into_boxed_slice(),
            hasher: RandomState::new(),
        }
    }

    /// Moves to window `w`: the current counts become the previous ones (or both are cleared
    /// after a gap).
    fn rotate(&mut self, w: i64) {
        if w <= self.window {
            return;
        }
        if w == self.window + 1 {
            std::mem::swap(&mut self.current, &mut self.previous);
        } else {
            self.previous.fill(0);
        }
        self.current.fill(0);
        self.window = w;
    }

    fn cells(&self, form: &str) -> [usize; SKETCH_DEPTH] {
        // Double hashing: row i's cell is h1 + i * h2 (h2 odd), within the row.
        let h1 = self.hasher.hash_one((0u8, form));
        let h2 = self.hasher.hash_one((1u8, form)) | 1;
        let width = SKETCH_WIDTH as u64;
        std::array::from_fn(|i| {
            let cell = h1.wrapping_add((i as u64).wrapping_mul(h2)) % width;
            i * SKETCH_WIDTH + usize::try_from(cell).unwrap_or(0)
        })
    }

    fn add(&mut self, form: &str, cards: usize, w: i64) {
        self.rotate(w);
        let n = u8::try_from(cards).unwrap_or(u8::MAX);
        for c in self.cells(form) {
            self.current[c] = self.current[c].saturating_add(n);
        }
    }

    fn count(&mut self, form: &str, w: i64) -> usize {
        self.rotate(w);
        self.cells(form)
            .iter()
            .map(|&c| usize::from(self.current[c]) + usize::from(self.previous[c]))
            .min()
            .unwrap_or(0)
    }
}

struct Form {
    /// Truncated keyed fingerprints with when each was last tokenized (unix seconds).
    cards: Vec<([u8; 16], i64)>,
    last_used: i64,
    last_audited: Option<i64>,
}

/// What the limiter decided for one card.
pub(crate) enum Decision {
    Admit,
    /// Refused; `audit` when this refusal should be written to the audit log.
    Refuse {
        retry_after: u64,
        audit: bool,
    },
}

impl Tracked {
    pub(crate) fn admit(&mut self, form: &str, card: [u8; 16], now: i64) -> Decision {
        let window = i64::try_from(MASKED_FORM_WINDOW.as_secs()).unwrap_or(i64::MAX);
        let w = now.div_euclid(window);
        if !self.forms.contains_key(form) && self.forms.len() >= MAX_TRACKED_FORMS {
            self.forms.retain(|_, f| {
                f.cards.retain(|(_, at)| now - at < window);
                !f.cards.is_empty()
            });
            if self.forms.len() >= MAX_TRACKED_FORMS {
                // Forget the least recently used half at once (and every form used in the same
                // second as the median), so the scan above runs once per ~MAX/2 new forms, not
                // once per card: amortized, a new form costs O(log n), never O(n) under the lock.
                // What each held goes into the sketch: its count stays in force.
                let mut used: Vec<i64> = self.forms.values().map(|f| f.last_used).collect();
                let mid = used.len() / 2;
                let cut = *used.select_nth_unstable(mid).1;
                let forgotten = self
                    .forgotten
                    .get_or_insert_with(|| Box::new(Forgotten::new(w)));
                self.forms.retain(|form, f| {
                    let keep = f.last_used > cut;
                    if !keep {
                        forgotten.add(form, f.cards.len(), w);
                    }
                    keep
                });
            }
        }
        let f = self.forms.entry(form.to_owned()).or_insert(Form {
            cards: Vec::new(),
            last_used: now,
            last_audited: None,
        });
        f.last_used = now;
        f.cards.retain(|(_, at)| now - at < window);
        if let Some(seen) = f.cards.iter_mut().find(|(c, _)| *c == card) {
            // The same card again (a retry, a dedupe): never counts twice.
            seen.1 = now;
            return Decision::Admit;
        }
        // Only for a card not seen yet: what the sketch remembers of this form.
        let forgotten = match self.forgotten.as_mut() {
            Some(sketch) => sketch.count(form, w),
            None => 0,
        };
        if f.cards.len() + forgotten < MASKED_FORM_LIMIT {
            f.cards.push((card, now));
            return Decision::Admit;
        }
        let oldest = f.cards.iter().map(|(_, at)| *at).min().unwrap_or(now);
        let mut until = oldest + window;
        if forgotten > 0 {
            // The sketch forgets at the end of the window after this one.
            until = until.max((w + 2) * window);
        }
        let retry_after = u64::try_from((until - now).max(1)).unwrap_or(1);
        let audit = f.last_audited.is_none_or(|at| now - at >= AUDIT_EVERY);
        if audit {
            f.last_audited = Some(now);
        }
        Decision::Refuse { retry_after, audit }
    }
}

/// The masked form a card counts under: first six (four under 15 digits), last four, length.
pub(crate) fn masked_form(key_id: &str, pan: &Pan) -> String {
    format!("{key_id}/{}/{}", pan.masked().as_str(), pan.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn eleventh_distinct_card_is_refused_and_repeats_are_free() {
        let mut t = Tracked::default();
        for i in 0..10u8 {
            assert!(matches!(t.admit("k/f", [i; 16], 100), Decision::Admit));
        }
        // The same ten again: admitted.
        for i in 0..10u8 {
            assert!(matches!(t.admit("k/f", [i; 16], 200), Decision::Admit));
        }
        assert!(matches!(
            t.admit("k/f", [99; 16], 300),
            Decision::Refuse { audit: true, .. }
        ));
        // The next refusal within a minute is not audited again.
        assert!(matches!(
            t.admit("k/f", [98; 16], 310),
            Decision::Refuse { audit: false, .. }
        ));
        // Another form or key is independent.
        assert!(matches!(t.admit("k/g", [99; 16], 300), Decision::Admit));
        // After the window the old cards no longer count.
        assert!(matches!(
            t.admit("k/f", [99; 16], 200 + 3600),
            Decision::Admit
        ));
    }

    #[test]
    fn evicting_a_form_never_resets_its_count() {
        let mut t = Tracked::default();
        for i in 0..10u8 {
            assert!(matches!(t.admit("k/target", [i; 16], 100), Decision::Admit));
        }
        assert!(matches!(
            t.admit("k/target", [10; 16], 100),
            Decision::Refuse { .. }
        ));
        // A flood of other forms, each once, pushes the target out of the table ...
        for i in 0..(2 * MAX_TRACKED_FORMS) {
            let _ = t.admit(&format!("k/filler{i}"), [1; 16], 101);
        }
        assert!(!t.forms.contains_key("k/target"));
        // ... and its count still holds, in this window and the next.
        assert!(matches!(
            t.admit("k/target", [11; 16], 102),
            Decision::Refuse { .. }
        ));
        assert!(matches!(
            t.admit("k/target", [12; 16], 100 + 3600),
            Decision::Refuse { retry_after, .. } if retry_after > 0
        ));
        // Forgotten two windows later.
        assert!(matches!(
            t.admit("k/target", [13; 16], 100 + 3 * 3600),
            Decision::Admit
        ));
    }

    #[test]
    fn forms_of_one_card_each_leave_new_forms_nearly_all_ten() {
        // Far more single-card forms evicted than the table holds (the traffic of a busy
        // vault): a new form still gets its ten cards.
        let mut t = Tracked::default();
        for i in 0..(8 * MAX_TRACKED_FORMS) {
            let _ = t.admit(&format!("k/busy{i}"), [1; 16], 100);
        }
        // The sketch may count a card or two of other forms against a new one (its hash keys
        // are random, so which forms varies: about one form in 5,000 here); 8 always pass.
        let mut short = 0;
        for f in 0..200 {
            let admitted = (0..10u8)
                .filter(|c| {
                    matches!(
                        t.admit(&format!("k/new{f}"), [*c; 16], 100),
                        Decision::Admit
                    )
                })
                .count();
            assert!(admitted >= 8, "form {f}: {admitted} of 10");
            short += 10 - admitted;
        }
        assert!(short <= 20, "{short} cards refused over 200 forms");
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Tracked::default();
        for i in 0..(MAX_TRACKED_FORMS + 100) {
            let _ = t.admit(&format!("k/{i}"), [1; 16], 100);
        }
        assert!(t.forms.len() <= MAX_TRACKED_FORMS);
        // Forms used later survive an eviction of older ones.
        let mut t = Tracked::default();
        for i in 0..MAX_TRACKED_FORMS {
            // Within one window (16,384 / 8 s < an hour), so nothing expires.
            let _ = t.admit(
                &format!("k/{i}"),
                [1; 16],
                100 + i64::try_from(i / 8).unwrap(),
            );
        }
        let _ = t.admit("k/new", [1; 16], 3_000);
        assert!(t.forms.len() <= MAX_TRACKED_FORMS / 2 + 1);
        assert!(t.forms.contains_key("k/new"));
        assert!(
            t.forms
                .contains_key(&format!("k/{}", MAX_TRACKED_FORMS - 1))
        );
        assert!(!t.forms.contains_key("k/0"));
    }
}
