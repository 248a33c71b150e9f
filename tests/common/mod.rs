//! Helpers shared by the `cardvault` facade's integration tests (the CLI's are in
//! crates/cardvault-cli/tests/common).
#![allow(dead_code, unreachable_pub)]

use rand::RngExt;

/// A random Luhn-valid PAN of `len` digits starting with `prefix`.
pub fn luhn_pan(rng: &mut impl rand::Rng, prefix: &str, len: usize) -> String {
    let mut d: Vec<u32> = prefix
        .chars()
        .map(|c| c.to_digit(10).expect("digit prefix"))
        .collect();
    while d.len() < len - 1 {
        d.push(rng.random_range(0..10));
    }
    let mut sum = 0;
    for (i, &x) in d.iter().rev().enumerate() {
        let v = if i % 2 == 0 { x * 2 } else { x };
        sum += if v > 9 { v - 9 } else { v };
    }
    d.push((10 - sum % 10) % 10);
    d.iter().filter_map(|x| char::from_digit(*x, 10)).collect()
}
