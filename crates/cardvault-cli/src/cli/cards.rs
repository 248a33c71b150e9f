//! Test card numbers for the load tool: distinct, Luhn-valid, never real.
//!
//! Each PAN is `4` + 14 digits + a Luhn check digit (16 digits, Visa range). The 14 digits are a
//! random starting point plus a shared counter times a stride coprime to 10^14, so one run never
//! repeats a card (the map is a bijection) and consecutive cards differ in every digit: they do
//! not pile up under a few masked forms (first six, last four), which the vault limits per API
//! key (`MASKED_FORM_LIMIT` distinct cards per form per hour) as real traffic never would.

use std::sync::atomic::{AtomicU64, Ordering};

const SPACE: u64 = 100_000_000_000_000; // 10^14 body values
/// Neither even nor a multiple of 5, so `n * STRIDE mod 10^14` is a bijection; its digits spread
/// consecutive counters over the whole space.
const STRIDE: u64 = 61_803_398_874_989;

/// Hands out distinct card numbers; share it between workers.
#[derive(Debug)]
pub(crate) struct PanSource {
    start: u64,
    next: AtomicU64,
}

impl PanSource {
    pub(crate) fn new() -> Self {
        Self {
            start: rand::random::<u64>() % SPACE,
            next: AtomicU64::new(0),
        }
    }

    /// The next card number (16 ASCII digits).
    pub(crate) fn next_pan(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let spread =
            u64::try_from(u128::from(n) * u128::from(STRIDE) % u128::from(SPACE)).unwrap_or(0);
        pan_from((self.start + spread) % SPACE)
    }
}

/// `4`, `body` as 14 zero-padded digits, and the Luhn check digit.
fn pan_from(body: u64) -> String {
    let mut s = format!("4{body:014}");
    s.push(luhn_check_digit(&s));
    s
}

/// The digit that makes `digits` + it pass the Luhn check.
fn luhn_check_digit(digits: &str) -> char {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            // The check digit will sit at position 0, so positions 0, 2, ... here are doubled.
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    char::from_digit((10 - sum % 10) % 10, 10).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luhn_ok(s: &str) -> bool {
        let sum: u32 = s
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .sum();
        sum.is_multiple_of(10)
    }

    #[test]
    fn known_numbers() {
        assert_eq!(luhn_check_digit("424242424242424"), '2');
        assert_eq!(luhn_check_digit("411111111111111"), '1');
    }

    #[test]
    fn consecutive_cards_spread_over_masked_forms() {
        let src = PanSource::new();
        let forms: std::collections::HashSet<String> = (0..10_000)
            .map(|_| {
                let p = src.next_pan();
                format!("{}{}", &p[..6], &p[12..])
            })
            .collect();
        // 10,000 cards over at least 9,000 masked forms: none comes near the vault's limit.
        assert!(forms.len() > 9_000, "{}", forms.len());
    }

    #[test]
    fn distinct_and_valid() {
        let src = PanSource::new();
        let pans: std::collections::HashSet<String> = (0..1000).map(|_| src.next_pan()).collect();
        assert_eq!(pans.len(), 1000);
        for p in &pans {
            assert_eq!(p.len(), 16);
            assert!(luhn_ok(p), "{p}");
            assert!(cardvault::Pan::parse(p).is_ok());
        }
    }
}
