//! Card expiry (YYMM) and the keep-until instant derived from it.

use time::{Date, Month, OffsetDateTime};

use crate::CardError;

/// A card's expiry month. Years are 2000-2099. Not secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry {
    year: u16,
    month: u8,
}

impl Expiry {
    /// Parses `YYMM` (`"2802"`); a 3-digit value had its leading zero dropped (`"912"` = `"0912"`).
    ///
    /// Anything other than 3 or 4 ASCII digits is [`CardError::ExpiryFormat`]; a month outside
    /// 01-12 is [`CardError::ExpiryMonth`].
    pub fn parse_yymm(s: &str) -> Result<Self, CardError> {
        let b = s.as_bytes();
        if !(3..=4).contains(&b.len()) || !b.iter().all(u8::is_ascii_digit) {
            return Err(CardError::ExpiryFormat);
        }
        let d = |i: usize| u16::from(b[i] - b'0');
        let (yy, mm) = if b.len() == 3 {
            (d(0), d(1) * 10 + d(2))
        } else {
            (d(0) * 10 + d(1), d(2) * 10 + d(3))
        };
        let month = u8::try_from(mm).map_err(|_| CardError::ExpiryMonth)?;
        Self::new(2000 + yy, month)
    }

    /// From a month (1-12) and a year given as 2 digits (0-99) or 4 digits (2000-2099).
    ///
    /// The year is checked first ([`CardError::ExpiryYear`]), then the month
    /// ([`CardError::ExpiryMonth`]).
    pub fn new(year: u16, month: u8) -> Result<Self, CardError> {
        let year = match year {
            0..=99 => 2000 + year,
            2000..=2099 => year,
            _ => return Err(CardError::ExpiryYear),
        };
        if !(1..=12).contains(&month) {
            return Err(CardError::ExpiryMonth);
        }
        Ok(Self { year, month })
    }

    /// Four-digit year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// Month 1-12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// Always four digits: `"2802"`.
    pub fn to_yymm(self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }

    /// The first instant (UTC) after the expiry month: `2802 -> 2028-03-01T00:00:00Z`,
    /// `9912 -> 2100-01-01T00:00:00Z`.
    pub fn keep_until(self) -> OffsetDateTime {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        // Invariant: year is 2000-2100 and month 1-12 (checked by `new`), so the first of that
        // month is always a valid date.
        let month = Month::try_from(month).expect("month is 1-12 by construction");
        let date = Date::from_calendar_date(i32::from(year), month, 1)
            .expect("years 2000-2100 are in range");
        date.midnight().assume_utc()
    }

    /// True once `now` has reached [`keep_until`](Self::keep_until).
    pub fn is_expired(self, now: OffsetDateTime) -> bool {
        now >= self.keep_until()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn keep_until_examples() {
        let k = |s: &str| Expiry::parse_yymm(s).expect("valid").keep_until();
        assert_eq!(k("2802"), datetime!(2028-03-01 00:00:00 UTC));
        assert_eq!(k("2812"), datetime!(2029-01-01 00:00:00 UTC));
        assert_eq!(k("9602"), datetime!(2096-03-01 00:00:00 UTC));
        assert_eq!(k("9912"), datetime!(2100-01-01 00:00:00 UTC));
        assert_eq!(k("912"), datetime!(2010-01-01 00:00:00 UTC));
    }

    #[test]
    fn parse_rules() {
        assert_eq!(Expiry::parse_yymm("912"), Expiry::new(2009, 12));
        assert_eq!(Expiry::parse_yymm("0912"), Expiry::new(9, 12));
        assert_eq!(Expiry::parse_yymm("2800"), Err(CardError::ExpiryMonth));
        assert_eq!(Expiry::parse_yymm("2813"), Err(CardError::ExpiryMonth));
        assert_eq!(Expiry::parse_yymm("900"), Err(CardError::ExpiryMonth));
        for bad in ["", "12", "12345", "28-2", "+802", " 2802", "２８０２"] {
            assert_eq!(
                Expiry::parse_yymm(bad),
                Err(CardError::ExpiryFormat),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_rules() {
        assert_eq!(
            Expiry::new(28, 2).map(|e| (e.year(), e.month())),
            Ok((2028, 2))
        );
        assert_eq!(
            Expiry::new(2099, 12).map(|e| (e.year(), e.month())),
            Ok((2099, 12))
        );
        assert_eq!(Expiry::new(100, 1), Err(CardError::ExpiryYear));
        assert_eq!(Expiry::new(1999, 1), Err(CardError::ExpiryYear));
        assert_eq!(Expiry::new(2100, 1), Err(CardError::ExpiryYear));
        assert_eq!(Expiry::new(2028, 0), Err(CardError::ExpiryMonth));
        assert_eq!(Expiry::new(2028, 13), Err(CardError::ExpiryMonth));
    }

    #[test]
    fn expiry_instant() {
        let e = Expiry::new(2028, 2).expect("valid");
        assert!(!e.is_expired(datetime!(2028-02-29 23:59:59.999 UTC)));
        assert!(e.is_expired(datetime!(2028-03-01 00:00:00 UTC)));
    }
}
