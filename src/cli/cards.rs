//! Test card numbers for the load tool: distinct, Luhn-valid, never real.
//!
//! Each PAN is `4` + 14 digits + a Luhn check digit (16 digits, Visa range). The 14 digits come
//! from a random starting point plus a shared counter, so one run never repeats a card.

use std::sync::atomic::{AtomicU64, Ordering};

const SPACE: u64 = 100_000_000_000_000; // 10^14 body values

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
        pan_from(self.start.wrapping_add(n) % SPACE)
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
