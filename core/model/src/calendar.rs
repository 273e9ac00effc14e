//! Calendar dates and UTC timestamps as plain integers.
//!
//! A `Date` is a count of days since 1970-01-01 and a `Timestamp` a count of
//! whole seconds since 1970-01-01T00:00:00Z, so that the analyses compare,
//! subtract and bucket them as integers. Conversions use the proleptic
//! Gregorian calendar (Howard Hinnant's `days_from_civil`), valid for the
//! years 1 to 9999 that the text forms can express.
//!
//! The text forms are the ones of the CRM's file format and API: dates as
//! `YYYY-MM-DD`, timestamps as `YYYY-MM-DDTHH:MM:SSZ`. Parsing is strict:
//! a day that does not exist (2025-02-30) is refused with the reason.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::InvalidValue;

const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar day, as days since 1970-01-01 (negative before).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Date(i32);

/// An instant in UTC with whole-second precision, as seconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Date {
    /// 0001-01-01, the first day the text form can express.
    pub const MIN: Date = Date(-719_162);
    /// 9999-12-31, the last day the text form can express.
    pub const MAX: Date = Date(2_932_896);

    pub const fn from_days(days: i32) -> Date {
        Date(days)
    }

    pub const fn days(self) -> i32 {
        self.0
    }

    /// The date of year, month (1..=12) and day (1..=31), if it exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Result<Date, InvalidValue> {
        if !(1..=9999).contains(&year) {
            return Err(InvalidValue::new(format!("year {year} is outside 1..9999")));
        }
        if !(1..=12).contains(&month) {
            return Err(InvalidValue::new(format!("month {month} is outside 1..12")));
        }
        let last = days_in_month(year, month);
        if day == 0 || day > last {
            return Err(InvalidValue::new(format!(
                "{} {year} has {last} days",
                MONTH_NAMES[month as usize - 1]
            )));
        }
        Ok(Date(days_from_civil(year, month, day)))
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, InvalidValue> {
        let invalid = |why: &str| InvalidValue::new(format!("invalid date '{text}': {why}"));
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(invalid("expected YYYY-MM-DD"));
        }
        let (Some(year), Some(month), Some(day)) =
            (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]))
        else {
            return Err(invalid("expected YYYY-MM-DD"));
        };
        Date::from_ymd(year as i32, month, day).map_err(|e| invalid(&e.0))
    }

    /// Year, month (1..=12) and day of month.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// Months since year 0, `year * 12 + month - 1`: consecutive calendar
    /// months are consecutive integers.
    pub fn month_index(self) -> i32 {
        let (y, m, _) = self.ymd();
        y * 12 + m as i32 - 1
    }

    /// ISO weekday, 1 = Monday ... 7 = Sunday.
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (4).
        ((self.0 as i64 + 3).rem_euclid(7) + 1) as u32
    }

    /// ISO 8601 week-numbering year and week (1..=53).
    pub fn iso_week(self) -> (i32, u32) {
        // The ISO week of a day is the week of its Thursday.
        let thursday = self.0 - self.weekday() as i32 + 4;
        let year = Date(thursday).year();
        let jan1 = days_from_civil(year, 1, 1);
        (year, ((thursday - jan1) / 7 + 1) as u32)
    }

    pub fn add_days(self, days: i32) -> Date {
        Date(self.0 + days)
    }

    /// The first second of this day.
    pub fn start(self) -> Timestamp {
        Timestamp(self.0 as i64 * SECONDS_PER_DAY)
    }
}

impl Timestamp {
    pub const fn from_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds)
    }

    pub const fn seconds(self) -> i64 {
        self.0
    }

    /// Parses `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn parse(text: &str) -> Result<Timestamp, InvalidValue> {
        let invalid = |why: &str| InvalidValue::new(format!("invalid timestamp '{text}': {why}"));
        let b = text.as_bytes();
        if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
            return Err(invalid("expected YYYY-MM-DDTHH:MM:SSZ (UTC)"));
        }
        let date = Date::parse(&text[..10])
            .map_err(|e| invalid(e.0.split_once(": ").map_or(e.0.as_str(), |(_, why)| why)))?;
        let (Some(h), Some(m), Some(s)) =
            (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19]))
        else {
            return Err(invalid("expected YYYY-MM-DDTHH:MM:SSZ (UTC)"));
        };
        if h > 23 || m > 59 || s > 59 {
            return Err(invalid("time of day out of range"));
        }
        Ok(Timestamp(
            date.0 as i64 * SECONDS_PER_DAY + (h * 3600 + m * 60 + s) as i64,
        ))
    }

    /// The UTC calendar day of this instant.
    pub fn date(self) -> Date {
        Date(self.0.div_euclid(SECONDS_PER_DAY) as i32)
    }

    /// Seconds since midnight UTC.
    pub fn second_of_day(self) -> u32 {
        self.0.rem_euclid(SECONDS_PER_DAY) as u32
    }
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn is_leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// ASCII digits to a number; `None` when any byte is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month and day of `days` since 1970-01-01: Neri and Schneider's
/// "Euclidean affine functions" (2022), unsigned arithmetic and
/// multiplications only, for the days of years -32,800 to 2,900,000; the
/// classic `civil_from_days_classic` beyond.
fn civil_from_days(days: i32) -> (i32, u32, u32) {
    // 82 cycles of 400 years before the epoch, so that every day of the
    // range counts from zero.
    const CYCLES: u32 = 82;
    const SHIFT: i64 = 719_468 + 146_097 * CYCLES as i64;
    let n = days as i64 + SHIFT;
    if !(0..1 << 30).contains(&n) {
        return civil_from_days_classic(days);
    }
    let n = n as u32;
    let n1 = 4 * n + 3;
    let century = n1 / 146_097;
    let n_c = n1 % 146_097 / 4;
    let p2 = 2_939_745u64 * (4 * n_c + 3) as u64;
    let z = (p2 >> 32) as u32;
    let n_y = (p2 as u32) / 2_939_745 / 4;
    let year = 100 * century + z;
    let n3 = 2_141 * n_y + 197_913;
    let (month, day) = (n3 >> 16, (n3 & 0xffff) / 2_141);
    let january_or_february = n_y >= 306;
    (
        (year as i64 - 400 * CYCLES as i64 + january_or_february as i64) as i32,
        if january_or_february {
            month - 12
        } else {
            month
        },
        day + 1,
    )
}

fn civil_from_days_classic(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

/// Writes `value` as `out.len()` decimal digits (zero-padded).
fn put_digits(out: &mut [u8], mut value: u32) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `YYYY-MM-DD` for the years 0 to 9999 (the text JSON and CSV carry, made
/// without the formatting machinery: the customer 360 writes hundreds).
fn ymd_text(date: Date, out: &mut [u8; 10]) -> bool {
    let (y, m, d) = date.ymd();
    if !(0..=9999).contains(&y) {
        return false;
    }
    put_digits(&mut out[0..4], y as u32);
    out[4] = b'-';
    put_digits(&mut out[5..7], m);
    out[7] = b'-';
    put_digits(&mut out[8..10], d);
    true
}

impl Date {
    /// The text form `YYYY-MM-DD` as bytes, for years 0 to 9999 (`None`
    /// beyond, where `Display` writes it with more digits).
    pub fn text(self) -> Option<[u8; 10]> {
        let mut out = [0u8; 10];
        ymd_text(self, &mut out).then_some(out)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 10];
        if ymd_text(*self, &mut text) {
            return f.write_str(std::str::from_utf8(&text).expect("ASCII digits"));
        }
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for the years 0 to 9999.
fn timestamp_text(ts: Timestamp, text: &mut [u8; 20]) -> bool {
    let mut day = [0u8; 10];
    if !ymd_text(ts.date(), &mut day) {
        return false;
    }
    let s = ts.second_of_day();
    text[..10].copy_from_slice(&day);
    text[10] = b'T';
    put_digits(&mut text[11..13], s / 3600);
    text[13] = b':';
    put_digits(&mut text[14..16], s / 60 % 60);
    text[16] = b':';
    put_digits(&mut text[17..19], s % 60);
    text[19] = b'Z';
    true
}

impl Timestamp {
    /// The text form `YYYY-MM-DDTHH:MM:SSZ` as bytes, for years 0 to 9999
    /// (`None` beyond, where `Display` writes it with more digits).
    pub fn text(self) -> Option<[u8; 20]> {
        let mut out = [0u8; 20];
        timestamp_text(self, &mut out).then_some(out)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 20];
        if timestamp_text(*self, &mut text) {
            return f.write_str(std::str::from_utf8(&text).expect("ASCII digits"));
        }
        let s = self.second_of_day();
        write!(
            f,
            "{}T{:02}:{:02}:{:02}Z",
            self.date(),
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

// Human-readable formats (JSON) carry the text form; compact binary formats
// (the store) carry the integer.
impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 10];
        if serializer.is_human_readable() && ymd_text(*self, &mut text) {
            serializer.serialize_str(std::str::from_utf8(&text).expect("ASCII digits"))
        } else if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            Date::parse(&text).map_err(serde::de::Error::custom)
        } else {
            i32::deserialize(deserializer).map(Date)
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 20];
        if serializer.is_human_readable() && timestamp_text(*self, &mut text) {
            serializer.serialize_str(std::str::from_utf8(&text).expect("ASCII digits"))
        } else if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            Timestamp::parse(&text).map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

impl JsonSchema for Date {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Date".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            "description": "A calendar day, YYYY-MM-DD.",
            "examples": ["2025-03-04"]
        })
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
            "description": "An instant in UTC with whole seconds, YYYY-MM-DDTHH:MM:SSZ.",
            "examples": ["2025-03-04T10:22:31Z"]
        })
    }
}

#[cfg(test)]
mod tests;
