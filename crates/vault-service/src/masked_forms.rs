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
//! recently used is evicted past that, and each entry holds at most `MASKED_FORM_LIMIT` truncated
//! keyed fingerprints (never a PAN).

use std::{collections::HashMap, time::Duration};

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
        if !self.forms.contains_key(form) && self.forms.len() >= MAX_TRACKED_FORMS {
            self.forms.retain(|_, f| {
                f.cards.retain(|(_, at)| now - at < window);
                !f.cards.is_empty()
            });
            if self.forms.len() >= MAX_TRACKED_FORMS {
                // Forget the least recently used half at once (and every form used in the same
                // second as the median), so the scan above runs once per ~MAX/2 new forms, not
                // once per card: amortized, a new form costs O(log n), never O(n) under the lock.
                let mut used: Vec<i64> = self.forms.values().map(|f| f.last_used).collect();
                let mid = used.len() / 2;
                let cut = *used.select_nth_unstable(mid).1;
                self.forms.retain(|_, f| f.last_used > cut);
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
        if f.cards.len() < MASKED_FORM_LIMIT {
            f.cards.push((card, now));
            return Decision::Admit;
        }
        let oldest = f.cards.iter().map(|(_, at)| *at).min().unwrap_or(now);
        let retry_after = u64::try_from((oldest + window - now).max(1)).unwrap_or(1);
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
