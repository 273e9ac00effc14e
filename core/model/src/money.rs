//! Exact money in integer cents.
//!
//! The platform has one currency. Amounts are `i64` cents, so sums over any
//! realistic data set are exact; the text form has exactly two decimals.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::InvalidValue;

/// An amount of money in cents (negative amounts are allowed in
/// computations such as margins; records check their own signs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Parses a decimal with at most two decimals: `12`, `12.5`, `12.50`, `-3.20`.
    pub fn parse(text: &str) -> Result<Money, InvalidValue> {
        let invalid = |why: &str| InvalidValue::new(format!("invalid amount '{text}': {why}"));
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected a decimal number such as 12.50"));
        }
        if unsigned.contains('.') && frac.is_empty() {
            return Err(invalid("expected digits after the decimal point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected a decimal number such as 12.50"));
        }
        if frac.len() > 2 {
            return Err(invalid("more than two decimals"));
        }
        let overflow = || invalid("too large");
        let whole: i64 = whole.parse().map_err(|_| overflow())?;
        let frac_cents = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().expect("one checked digit") * 10,
            _ => frac.parse::<i64>().expect("two checked digits"),
        };
        let cents = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac_cents))
            .ok_or_else(overflow)?;
        Ok(Money(if negative { -cents } else { cents }))
    }

    /// The amount as a floating-point number of currency units, for ratios.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

// JSON carries money as a number of currency units (12.5 for 12.50): every
// amount below 2^53 cents converts to the nearest double and back exactly.
// The store carries the integer cents.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_f64(self.as_f64())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        if !deserializer.is_human_readable() {
            return i64::deserialize(deserializer).map(Money);
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr<'a> {
            Number(f64),
            Text(std::borrow::Cow<'a, str>),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Money::parse(&text).map_err(serde::de::Error::custom),
            Repr::Number(units) => {
                let cents = (units * 100.0).round();
                if !cents.is_finite() || cents.abs() > 9.0e15 {
                    return Err(serde::de::Error::custom(format!(
                        "invalid amount {units}: too large"
                    )));
                }
                if (units * 100.0 - cents).abs() > 1e-6 {
                    return Err(serde::de::Error::custom(format!(
                        "invalid amount {units}: more than two decimals"
                    )));
                }
                Ok(Money(cents as i64))
            }
        }
    }
}

impl JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "description": "An amount of money in currency units with at most two decimals.",
            "examples": [12.5]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_two_decimals() {
        for (text, cents, shown) in [
            ("0.00", 0, "0.00"),
            ("12.5", 1250, "12.50"),
            ("12", 1200, "12.00"),
            ("123456.07", 12_345_607, "123456.07"),
            ("-3.20", -320, "-3.20"),
            ("-0.05", -5, "-0.05"),
        ] {
            let money = Money::parse(text).unwrap();
            assert_eq!(money.cents(), cents, "{text}");
            assert_eq!(money.to_string(), shown);
        }
    }

    #[test]
    fn refuses_what_is_not_an_exact_amount() {
        for (text, why) in [
            ("1.005", "more than two decimals"),
            ("", "expected a decimal number such as 12.50"),
            ("12.", "expected digits after the decimal point"),
            ("1,50", "expected a decimal number such as 12.50"),
            ("+1.50", "expected a decimal number such as 12.50"),
            ("1e3", "expected a decimal number such as 12.50"),
            (" 1.50", "expected a decimal number such as 12.50"),
            ("99999999999999999999", "too large"),
        ] {
            let err = Money::parse(text).unwrap_err();
            assert_eq!(err.0, format!("invalid amount '{text}': {why}"));
        }
    }

    #[test]
    fn json_numbers_round_trip_exactly() {
        let money = Money::from_cents(5_234_510);
        let json = serde_json::to_string(&money).unwrap();
        assert_eq!(json, "52345.1");
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
        assert_eq!(
            serde_json::from_str::<Money>("\"52345.10\"").unwrap(),
            money
        );
        assert!(serde_json::from_str::<Money>("1.001").is_err());
    }
}
