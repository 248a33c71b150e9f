//! Progress bar styles for the long offline commands (rewrap, backup, restore), with a rate
//! rounded to whole items per second (`13,643/s`, not indicatif's `13,642.7571/s`).

use indicatif::{ProgressState, ProgressStyle};

/// A bar style from an indicatif `template` in which `{rate}` is the rounded rate.
pub(crate) fn style(template: &str) -> ProgressStyle {
    match ProgressStyle::with_template(template) {
        Ok(s) => s
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&rate(state.per_sec()));
                },
            )
            .progress_chars("=> "),
        Err(_) => ProgressStyle::default_bar(),
    }
}

/// `per_sec` rounded to a whole number with thousands separators, then `/s`.
pub(crate) fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec < 0.5 {
        return "0/s".to_owned();
    }
    // Rates are far below 2^53: the rounded value is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = per_sec.round() as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str("/s");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(rate(13_642.757_1), "13,643/s");
        assert_eq!(rate(999.4), "999/s");
        assert_eq!(rate(1_000.0), "1,000/s");
        assert_eq!(rate(1_234_567.8), "1,234,568/s");
        assert_eq!(rate(0.2), "0/s");
        assert_eq!(rate(f64::NAN), "0/s");
    }
}
