//! Luhn-valid test PANs (the one generator the tests, benches and examples share).

use rand::RngExt;

/// The Luhn check digit completing `body` (digits 0-9, most significant first).
pub fn luhn_check_digit(body: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &x) in body.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    // `sum % 10` is below 10: the digit fits.
    u8::try_from((10 - sum % 10) % 10).unwrap_or(0)
}

/// `body` (digits 0-9) with its check digit appended, as text.
pub fn luhn_complete(mut body: Vec<u8>) -> String {
    body.push(luhn_check_digit(&body));
    body.iter().map(|x| char::from(b'0' + x)).collect()
}

/// Whether `s` is all ASCII digits and passes the Luhn check.
pub fn luhn_valid(s: &str) -> bool {
    let Some((&check, body)) = s.as_bytes().split_last() else {
        return false;
    };
    s.bytes().all(|b| b.is_ascii_digit())
        && luhn_check_digit(&body.iter().map(|b| b - b'0').collect::<Vec<_>>()) == check - b'0'
}

/// The digits of `prefix` (ASCII digits) as values 0-9.
fn digits(prefix: &str) -> Vec<u8> {
    prefix
        .bytes()
        .map(|b| {
            assert!(b.is_ascii_digit(), "a digit prefix");
            b - b'0'
        })
        .collect()
}

/// A random Luhn-valid PAN of `len` digits starting with `prefix`.
pub fn random_pan(rng: &mut impl rand::Rng, prefix: &str, len: usize) -> String {
    let mut d = digits(prefix);
    while d.len() < len - 1 {
        d.push(rng.random_range(0..10));
    }
    luhn_complete(d)
}

/// A Luhn-valid PAN of `len` digits that starts with `prefix` (zeros in between).
pub fn pan_with_prefix(prefix: &str, len: usize) -> String {
    let mut d = digits(prefix);
    d.resize(len - 1, 0);
    luhn_complete(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_check_digits() {
        assert_eq!(pan_with_prefix("424242424242424", 16), "4242424242424242");
        assert_eq!(
            luhn_complete(vec![4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            "4111111111111111"
        );
        assert_eq!(
            luhn_complete(vec![3, 7, 8, 2, 8, 2, 2, 4, 6, 3, 1, 0, 0, 0]),
            "378282246310005"
        );
        let pan = random_pan(&mut rand::rng(), "51", 16);
        assert_eq!(pan.len(), 16);
        assert!(pan.starts_with("51"));
        assert!(luhn_valid(&pan) && luhn_valid("4242424242424242"));
        assert!(!luhn_valid("4242424242424241") && !luhn_valid("") && !luhn_valid("42a2"));
    }
}
