//! Datetimes: the platform represents every instant as an `i64` count of milliseconds since the
//! Unix epoch, UTC. This module owns the clock ([`now_ms`]), the one output format
//! ([`format_datetime`], ISO-8601 UTC with milliseconds and `Z`) and the lenient input parsing that
//! real thethings.iO clients rely on ([`parse_datetime`], [`parse_datetime_value`]).
//!
//! Accepted input datetimes are limited to the years 0000–9999 ([`MIN_MS`]..=[`MAX_MS`]) so every
//! stored instant formats as a plain four-digit-year ISO string.

use crate::{Error, Result};

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The earliest accepted instant: `0000-01-01T00:00:00.000Z`.
pub const MIN_MS: i64 = -62_167_219_200_000;
/// The latest accepted instant: `9999-12-31T23:59:59.999Z`.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// JSON numbers whose magnitude is below this are Unix time in seconds; larger ones are
/// milliseconds (see [`parse_datetime_value`]). 10^11 s is the year 5138, 10^11 ms is March 1973.
pub const SECONDS_THRESHOLD: i64 = 100_000_000_000;

/// Longest part of a rejected value echoed back in an error message.
const ECHO_MAX_CHARS: usize = 64;

const ACCEPTED_FORMS: &str = "expected YYYYMMDDHHmmss, YYYYMMDDTHHmmss, ISO-8601 such as \
     2017-01-16T10:25:10.644Z or 2017-01-16T10:25:10+02:00 (no zone means UTC), \
     or a date YYYY-MM-DD / YYYYMMDD";

/// The current time in milliseconds since the Unix epoch (UTC).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Formats an instant as ISO-8601 UTC with exactly three fractional digits and `Z`,
/// e.g. `2015-10-28T12:18:56.799Z`.
///
/// Total over `i64`: years outside 0000–9999 (never produced by the parsers here) use the
/// ISO-8601 expanded form with a sign and six digits (`+275760-09-13T00:00:00.000Z`), as
/// JavaScript's `toISOString` does.
pub fn format_datetime(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    push_datetime(&mut out, ms);
    out
}

/// Appends [`format_datetime`]'s text to `out` without allocating: the hot path of every read
/// and every realtime delivery renders thousands of these.
pub fn push_datetime(out: &mut String, ms: i64) {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        let hour = in_day / MS_PER_HOUR;
        let minute = in_day % MS_PER_HOUR / MS_PER_MINUTE;
        let second = in_day % MS_PER_MINUTE / MS_PER_SECOND;
        let milli = in_day % MS_PER_SECOND;
        let sign = if year < 0 { '-' } else { '+' };
        out.push_str(&format!(
            "{sign}{:06}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z",
            year.unsigned_abs()
        ));
        return;
    }
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, (in_day / MS_PER_HOUR) as u64);
    put(14, 2, (in_day % MS_PER_HOUR / MS_PER_MINUTE) as u64);
    put(17, 2, (in_day % MS_PER_MINUTE / MS_PER_SECOND) as u64);
    put(20, 3, (in_day % MS_PER_SECOND) as u64);
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or("1970-01-01T00:00:00.000Z"));
}

/// Parses an input datetime (`datetime` of a write, `startDate`/`endDate` of a read).
///
/// Surrounding whitespace is ignored. Accepted forms:
/// - compact: `YYYYMMDDHHmmss` (`20150202220035`) and `YYYYMMDDTHHmmss` (`20150202T220035`);
/// - ISO-8601 extended: `2017-01-16T10:25:10`, seconds optional (`2017-01-16T10:25`);
/// - `T`, `t` or a space between date and time;
/// - an optional fraction after the seconds (`.` or `,`, 1 to 9 digits, truncated to ms);
/// - an optional zone: `Z`, `±HH:MM`, `±HHMM` or `±HH`; no zone means UTC. A space in place of
///   the `+` of an offset (what a URL query string makes of an unescaped `+`) is read as `+`;
/// - a bare date `YYYY-MM-DD` or `YYYYMMDD` (midnight UTC).
///
/// A date that does not exist (February 30, month 13, hour 25), a year outside 0000–9999 or
/// anything else is [`Error::BadRequest`] naming the value.
pub fn parse_datetime(s: &str) -> Result<i64> {
    let t = s.trim();
    match parse_inner(t) {
        Ok(ms) if (MIN_MS..=MAX_MS).contains(&ms) => Ok(ms),
        Ok(_) => Err(Error::bad_request(format!("datetime {} is outside the years 0000 to 9999", echo(t)))),
        Err(ParseFail::Syntax) => Err(Error::bad_request(format!("invalid datetime {}: {ACCEPTED_FORMS}", echo(t)))),
        Err(ParseFail::Nonexistent(why)) => Err(Error::bad_request(format!("invalid datetime {}: {why}", echo(t)))),
    }
}

/// Parses a datetime given as JSON (the `datetime` field of a value item).
///
/// - a string is parsed with [`parse_datetime`];
/// - a number is Unix time: a magnitude below 10^11 ([`SECONDS_THRESHOLD`]) is seconds (fractions
///   kept to the millisecond), anything larger is milliseconds (a fraction is truncated). So
///   `1445512345` and `1445512345000` are the same instant;
/// - anything else, or a number outside the years 0000–9999, is [`Error::BadRequest`].
pub fn parse_datetime_value(v: &serde_json::Value) -> Result<i64> {
    match v {
        serde_json::Value::String(s) => parse_datetime(s),
        serde_json::Value::Number(n) => {
            let ms = if let Some(i) = n.as_i64() {
                if i.unsigned_abs() < SECONDS_THRESHOLD.unsigned_abs() { Some(i * MS_PER_SECOND) } else { Some(i) }
            } else {
                n.as_f64().and_then(float_to_ms)
            };
            match ms {
                Some(ms) if (MIN_MS..=MAX_MS).contains(&ms) => Ok(ms),
                _ => Err(Error::bad_request(format!(
                    "datetime {n} is outside the years 0000 to 9999 as Unix time \
                     (seconds below 10^11, milliseconds otherwise)"
                ))),
            }
        }
        other => Err(Error::bad_request(format!(
            "datetime must be a string or a Unix timestamp number, not {}",
            json_kind(other)
        ))),
    }
}

/// A float Unix time in ms, or `None` when it is not finite or far out of range.
fn float_to_ms(f: f64) -> Option<i64> {
    if !f.is_finite() {
        return None;
    }
    let ms = if f.abs() < SECONDS_THRESHOLD as f64 { (f * 1000.0).round() } else { f.trunc() };
    // Anything beyond ±2^62 is far outside MIN_MS..=MAX_MS; avoid the saturating cast's edge.
    if ms.abs() < 4.0e18 { Some(ms as i64) } else { None }
}

/// A short human name of a JSON value's type, for error messages.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The value quoted for an error message, cut to a reasonable length.
pub(crate) fn echo(s: &str) -> String {
    if s.chars().count() > ECHO_MAX_CHARS {
        let cut: String = s.chars().take(ECHO_MAX_CHARS).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

enum ParseFail {
    /// Not one of the accepted shapes.
    Syntax,
    /// The right shape, but a field is out of range; the text says which.
    Nonexistent(String),
}

/// A cursor over the ASCII bytes of a datetime string.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), ParseFail> {
        if self.eat(c) { Ok(()) } else { Err(ParseFail::Syntax) }
    }

    /// Exactly `n` ASCII digits as a number (`n` ≤ 9, so no overflow).
    fn digits(&mut self, n: usize) -> Result<i64, ParseFail> {
        let end = self.pos.checked_add(n).ok_or(ParseFail::Syntax)?;
        let chunk = self.b.get(self.pos..end).ok_or(ParseFail::Syntax)?;
        let mut v: i64 = 0;
        for &c in chunk {
            if !c.is_ascii_digit() {
                return Err(ParseFail::Syntax);
            }
            v = v * 10 + i64::from(c - b'0');
        }
        self.pos = end;
        Ok(v)
    }

    fn next_is_digit(&self) -> bool {
        self.peek().is_some_and(|c| c.is_ascii_digit())
    }
}

fn parse_inner(s: &str) -> Result<i64, ParseFail> {
    let mut c = Cursor { b: s.as_bytes(), pos: 0 };

    // Date: YYYY-MM-DD or YYYYMMDD.
    let year = c.digits(4)?;
    let extended = c.eat(b'-');
    let (month, day) = if extended {
        let m = c.digits(2)?;
        c.expect(b'-')?;
        (m, c.digits(2)?)
    } else {
        (c.digits(2)?, c.digits(2)?)
    };
    check_date(year, month, day)?;
    let days = days_from_civil(year, month, day);
    if c.at_end() {
        return Ok(days * MS_PER_DAY);
    }

    // Separator; the compact `YYYYMMDDHHmmss` has none.
    match c.peek() {
        Some(b'T' | b't' | b' ') => c.pos += 1,
        Some(d) if !extended && d.is_ascii_digit() => {}
        _ => return Err(ParseFail::Syntax),
    }

    // Time: HH:MM[:SS] or HHmmss.
    let hour = c.digits(2)?;
    let (minute, second) = if c.eat(b':') {
        let m = c.digits(2)?;
        let s = if c.eat(b':') { c.digits(2)? } else { 0 };
        (m, s)
    } else {
        (c.digits(2)?, c.digits(2)?)
    };

    // Fraction: 1..=9 digits, truncated to milliseconds.
    let mut milli = 0;
    if c.peek() == Some(b'.') || c.peek() == Some(b',') {
        c.pos += 1;
        let mut count = 0;
        while c.next_is_digit() {
            let d = c.digits(1)?;
            if count < 3 {
                milli = milli * 10 + d;
            }
            count += 1;
        }
        if count == 0 || count > 9 {
            return Err(ParseFail::Syntax);
        }
        for _ in count..3 {
            milli *= 10;
        }
    }

    // Zone.
    let offset_minutes = match c.peek() {
        None => 0,
        Some(b'Z' | b'z') => {
            c.pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-' | b' ')) => {
            c.pos += 1;
            let oh = c.digits(2)?;
            let om = if c.eat(b':') || c.next_is_digit() { c.digits(2)? } else { 0 };
            if oh > 23 || om > 59 {
                return Err(ParseFail::Nonexistent(format!("zone offset {oh:02}:{om:02} is out of range")));
            }
            let total = oh * 60 + om;
            if sign == b'-' { -total } else { total }
        }
        Some(_) => return Err(ParseFail::Syntax),
    };
    if !c.at_end() {
        return Err(ParseFail::Syntax);
    }

    if hour > 23 {
        return Err(ParseFail::Nonexistent(format!("hour {hour} does not exist")));
    }
    if minute > 59 {
        return Err(ParseFail::Nonexistent(format!("minute {minute} does not exist")));
    }
    if second > 59 {
        return Err(ParseFail::Nonexistent(format!("second {second} does not exist")));
    }

    Ok(days * MS_PER_DAY + hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * MS_PER_SECOND + milli
        - offset_minutes * MS_PER_MINUTE)
}

fn check_date(year: i64, month: i64, day: i64) -> Result<(), ParseFail> {
    if !(1..=12).contains(&month) {
        return Err(ParseFail::Nonexistent(format!("month {month} does not exist")));
    }
    let max = days_in_month(year, month);
    if !(1..=max).contains(&day) {
        return Err(ParseFail::Nonexistent(format!("day {day} does not exist in {year:04}-{month:02}")));
    }
    Ok(())
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
/// Exact for every day count an `i64` of milliseconds can produce.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(s: &str) -> i64 {
        parse_datetime(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn chrono_ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn bad(s: &str) -> String {
        match parse_datetime(s) {
            Err(Error::BadRequest(m)) => m,
            other => panic!("{s:?} should be a 400, got {other:?}"),
        }
    }

    #[test]
    fn formats_with_millis_and_z() {
        assert_eq!(format_datetime(chrono_ms("2015-10-28T12:18:56.799Z")), "2015-10-28T12:18:56.799Z");
        assert_eq!(format_datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_datetime(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_datetime(MIN_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_datetime(MAX_MS), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn format_is_total() {
        assert_eq!(format_datetime(8_640_000_000_000_000), "+275760-09-13T00:00:00.000Z");
        assert!(format_datetime(MAX_MS + 1).starts_with("+010000-01-01"));
        assert!(format_datetime(MIN_MS - 1).starts_with("-000001-12-31"));
        // Must not panic at the extremes.
        assert!(format_datetime(i64::MAX).ends_with('Z'));
        assert!(format_datetime(i64::MIN).ends_with('Z'));
    }

    #[test]
    fn format_matches_chrono_over_a_wide_range() {
        let mut t = MIN_MS;
        let step = 7_777_777_777_i64; // ~90 days, odd so every field varies
        while t <= MAX_MS {
            let expected =
                chrono::DateTime::from_timestamp_millis(t).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            assert_eq!(format_datetime(t), expected, "at {t}");
            assert_eq!(parse_datetime(&expected).unwrap(), t, "round trip {expected}");
            t += step;
        }
    }

    #[test]
    fn constants_are_the_year_bounds() {
        assert_eq!(MIN_MS, chrono_ms("0000-01-01T00:00:00Z"));
        assert_eq!(MAX_MS, chrono_ms("9999-12-31T23:59:59.999Z"));
    }

    #[test]
    fn now_is_recent() {
        let now = now_ms();
        assert!(now > chrono_ms("2024-01-01T00:00:00Z"));
        assert!(now < MAX_MS);
    }

    #[test]
    fn compact_forms() {
        let expected = chrono_ms("2015-02-02T22:00:35Z");
        assert_eq!(ms("20150202220035"), expected);
        assert_eq!(ms("20150202T220035"), expected);
        assert_eq!(ms("20150202t220035"), expected);
        assert_eq!(ms("20150202T220035Z"), expected);
        assert_eq!(ms("20150202T220035.00Z"), expected);
        assert_eq!(ms("20150202220035.5"), expected + 500);
        assert_eq!(ms("20150202T220035.123Z"), expected + 123);
    }

    #[test]
    fn iso_with_zone() {
        assert_eq!(ms("2017-01-16T10:25:10.644Z"), chrono_ms("2017-01-16T10:25:10.644Z"));
        assert_eq!(ms("2017-01-16T10:25:10+02:00"), chrono_ms("2017-01-16T08:25:10Z"));
        assert_eq!(ms("2017-01-16T10:25:10-05:30"), chrono_ms("2017-01-16T15:55:10Z"));
        assert_eq!(ms("2017-01-16T10:25:10+0200"), ms("2017-01-16T10:25:10+02:00"));
        assert_eq!(ms("2017-01-16T10:25:10+02"), ms("2017-01-16T10:25:10+02:00"));
        assert_eq!(ms("2017-01-16T10:25:10.5+02:00"), chrono_ms("2017-01-16T08:25:10.5Z"));
        assert_eq!(ms("2017-01-16t10:25:10z"), chrono_ms("2017-01-16T10:25:10Z"));
    }

    #[test]
    fn fraction_digits_truncate_to_ms() {
        let base = chrono_ms("2017-01-16T10:25:10Z");
        assert_eq!(ms("2017-01-16T10:25:10.6Z"), base + 600);
        assert_eq!(ms("2017-01-16T10:25:10.64Z"), base + 640);
        assert_eq!(ms("2017-01-16T10:25:10.644Z"), base + 644);
        assert_eq!(ms("2017-01-16T10:25:10.6449Z"), base + 644);
        assert_eq!(ms("2017-01-16T10:25:10.644999999Z"), base + 644);
        assert_eq!(ms("2017-01-16T10:25:10,644Z"), base + 644);
        bad("2017-01-16T10:25:10.6449999999Z"); // 10 digits
        bad("2017-01-16T10:25:10.Z");
        bad("2017-01-16T10:25:10.");
    }

    #[test]
    fn iso_without_zone_is_utc() {
        let expected = chrono_ms("2017-01-16T10:25:10.644Z");
        assert_eq!(ms("2017-01-16T10:25:10.644"), expected);
        assert_eq!(ms("2017-01-16 10:25:10.644"), expected);
        assert_eq!(ms("2017-01-16T10:25"), chrono_ms("2017-01-16T10:25:00Z"));
    }

    #[test]
    fn space_stands_for_plus_of_an_offset() {
        let expected = chrono_ms("2017-01-16T08:25:10Z");
        assert_eq!(ms("2017-01-16T10:25:10 02:00"), expected);
        assert_eq!(ms("2017-01-16 10:25:10 02:00"), expected);
        assert_eq!(ms("2017-01-16T10:25:10.000 02:00"), expected);
    }

    #[test]
    fn bare_dates_are_midnight_utc() {
        let expected = chrono_ms("2017-01-16T00:00:00Z");
        assert_eq!(ms("2017-01-16"), expected);
        assert_eq!(ms("20170116"), expected);
    }

    #[test]
    fn whitespace_is_trimmed() {
        assert_eq!(ms("  20150202220035\n"), ms("20150202220035"));
        assert_eq!(ms("\t2017-01-16T10:25:10Z "), ms("2017-01-16T10:25:10Z"));
    }

    #[test]
    fn leap_days() {
        assert_eq!(ms("2016-02-29"), chrono_ms("2016-02-29T00:00:00Z"));
        assert_eq!(ms("2000-02-29"), chrono_ms("2000-02-29T00:00:00Z"));
        bad("2015-02-29");
        bad("1900-02-29");
        bad("2100-02-29T00:00:00Z");
    }

    #[test]
    fn nonexistent_dates_are_400_with_a_reason() {
        assert!(bad("2015-02-30").contains("day 30"));
        assert!(bad("2015-13-01").contains("month 13"));
        assert!(bad("2015-00-01").contains("month 0"));
        assert!(bad("2015-01-00").contains("day 0"));
        assert!(bad("2015-04-31T00:00:00Z").contains("day 31"));
        assert!(bad("2015-01-01T25:00:00Z").contains("hour 25"));
        assert!(bad("2015-01-01T24:00:00Z").contains("hour 24"));
        assert!(bad("2015-01-01T10:60:00Z").contains("minute 60"));
        assert!(bad("2015-01-01T10:00:60Z").contains("second 60"));
        assert!(bad("20150101250000").contains("hour 25"));
        assert!(bad("2015-01-01T10:00:00+24:00").contains("offset"));
        assert!(bad("2015-01-01T10:00:00+02:60").contains("offset"));
    }

    #[test]
    fn garbage_is_400_naming_the_value_and_forms() {
        let m = bad("yesterday");
        assert!(m.contains("\"yesterday\""), "{m}");
        assert!(m.contains("YYYYMMDDHHmmss"), "{m}");
        for s in [
            "",
            "   ",
            "2015",
            "2015-1-1",
            "2015-01",
            "201501021",
            "2015010212",
            "2015-01-02T",
            "2015-01-02T1",
            "2015-01-02T10:2",
            "2015-01-02X10:20:30",
            "2015-01-02T10:20:30ZZ",
            "2015-01-02T10:20:30Z junk",
            "2015-01-02T10:20:30+",
            "2015-01-02T10:20:30+2",
            "2015-01-02T10:20:30+02:0",
            "2015-01-02T10:20:30  02:00",
            "2015-01-02T10:20:30 +02:00",
            "1445512345",
            "１２３４-01-01",
            "2015-01-02T10:20:30\u{0}",
            "2015−01−02",
        ] {
            bad(s);
        }
    }

    #[test]
    fn out_of_range_years_are_400() {
        bad("-2017-01-16T10:25:10Z");
        bad("+2017-01-16T10:25:10Z");
        bad("99999-01-16T10:25:10Z");
        bad("+275760-09-13T00:00:00.000Z");
        assert!(bad("0000-01-01T00:00:00+01:00").contains("outside"));
        assert!(bad("9999-12-31T23:59:59-01:00").contains("outside"));
        assert_eq!(ms("0000-01-01"), MIN_MS);
        assert_eq!(ms("9999-12-31T23:59:59.999Z"), MAX_MS);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(10_000);
        let m = bad(&long);
        assert!(m.len() < 400, "{}", m.len());
        assert!(m.contains('…'));
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        bad("2015-01-02T10:20:30é");
        bad("é");
        bad("2015-01-02T10:20:3€");
    }

    #[test]
    fn value_strings_and_numbers() {
        let t = chrono_ms("2015-10-22T11:12:25Z");
        assert_eq!(parse_datetime_value(&json!("2015-10-22T11:12:25Z")).unwrap(), t);
        assert_eq!(parse_datetime_value(&json!("20151022111225")).unwrap(), t);
        assert_eq!(parse_datetime_value(&json!(1_445_512_345)).unwrap(), t);
        assert_eq!(parse_datetime_value(&json!(1_445_512_345_000_i64)).unwrap(), t);
        assert_eq!(parse_datetime_value(&json!(1_445_512_345.25)).unwrap(), t + 250);
        assert_eq!(parse_datetime_value(&json!(1_445_512_345_000.9)).unwrap(), t);
        assert_eq!(parse_datetime_value(&json!(0)).unwrap(), 0);
        assert_eq!(parse_datetime_value(&json!(-86_400)).unwrap(), -MS_PER_DAY);
        // Exactly the threshold is milliseconds.
        assert_eq!(parse_datetime_value(&json!(SECONDS_THRESHOLD)).unwrap(), SECONDS_THRESHOLD);
        assert_eq!(parse_datetime_value(&json!(SECONDS_THRESHOLD - 1)).unwrap(), (SECONDS_THRESHOLD - 1) * 1000);
    }

    #[test]
    fn value_out_of_range_or_wrong_type_is_400() {
        for v in [
            json!(null),
            json!(true),
            json!([1]),
            json!({"a": 1}),
            json!("nope"),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e300),
            json!(-1e300),
            json!(MAX_MS + 1),
        ] {
            assert!(matches!(parse_datetime_value(&v), Err(Error::BadRequest(_))), "{v}");
        }
        let m = parse_datetime_value(&json!(true)).unwrap_err().to_string();
        assert!(m.contains("boolean"), "{m}");
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
