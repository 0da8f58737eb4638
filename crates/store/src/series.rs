//! Chart series of a timeline ([`crate::TimelineStore::series`]), the parts both backends share:
//! what a numeric value is (the rule in Rust, [`numeric_value`], which each backend's SQL
//! follows and the conformance suite checks them against), and the window the buckets cut.
//!
//! The backends classify values in SQL, not here: a chart of 100,000 values must not carry
//! every value to Rust. The rule is written on the stored JSON text so that SQL can follow it
//! exactly without a JSON parser: after JSON whitespace is trimmed, the text is a number, or a
//! string (`"…"`) whose content, taken as it is written, is a decimal number. A string with
//! escapes is never numeric (the grammar has no backslash), so its content needs no unescaping.

use thingline_core::time::{MAX_MS, MIN_MS};

/// The longest text (the number, or the string's content) taken as numeric. It keeps every
/// numeric value safe to convert in SQL (PostgreSQL's `numeric` has bounds on digits and
/// exponents) while any number a device sends (an f64 printed in full takes 24) fits.
pub const MAX_NUMERIC_CHARS: usize = 100;

/// The value of a stored JSON text if it is numeric (see [`crate::TimelineStore::series`]).
///
/// At the very edges of the f64 range (values that round to the largest finite f64 or to the
/// smallest subnormal) a backend's conversion may decide differently from this function.
pub fn numeric_value(json: &str) -> Option<f64> {
    let text = json.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let number = match text.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => text,
    };
    if number.len() > MAX_NUMERIC_CHARS || !is_decimal(number) {
        return None;
    }
    number.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `[+-]? digits ( "." digits )? ( [eE] [+-]? digits )?`, the whole text.
fn is_decimal(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// The range a series reads and the buckets it may cut it into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// `[start, end)`, narrowed to the datetimes a value can have (so that no arithmetic on
    /// them can overflow).
    pub start: i64,
    pub end: i64,
    /// Most points returned (at least 1).
    pub points: u32,
    /// Bucket width, `ceil((end - start) / points)`, at least 1.
    pub width: i64,
}

impl Window {
    /// `None` when the range holds no datetime a value can have.
    pub(crate) fn new(start_ms: i64, end_ms: i64, points: u32) -> Option<Window> {
        let start = start_ms.max(MIN_MS);
        let end = end_ms.min(MAX_MS.saturating_add(1));
        if start >= end {
            return None;
        }
        let points = points.max(1);
        // At most MAX_MS - MIN_MS + 1 (about 6.3e14): no overflow.
        let span = end - start;
        let width = (span + i64::from(points) - 1) / i64::from(points);
        Some(Window { start, end, points, width: width.max(1) })
    }
}

/// A bucket as the backends' bucket query gives it: its start, its numeric values, all its
/// values, and the min, max and average of the numeric ones (NULL when there is none).
pub(crate) type BucketRow = (i64, i64, i64, Option<f64>, Option<f64>, Option<f64>);

/// The outcome of a range's one pass in buckets: the counts, and the non-empty buckets.
pub(crate) struct Buckets {
    pub count: u64,
    pub non_numeric: u64,
    points: Vec<crate::SeriesPoint>,
}

impl Buckets {
    pub(crate) fn from_rows(rows: Vec<BucketRow>) -> Buckets {
        let mut count = 0u64;
        let mut all = 0u64;
        let mut points = Vec::with_capacity(rows.len());
        for (t_ms, numeric, values, min, max, avg) in rows {
            count += u64::try_from(numeric).unwrap_or(0);
            all += u64::try_from(values).unwrap_or(0);
            if let (Some(min), Some(max), Some(avg)) = (min, max, avg) {
                points.push(crate::SeriesPoint { t_ms, min, max, avg });
            }
        }
        Buckets { count, non_numeric: all.saturating_sub(count), points }
    }

    /// The series in buckets (more numeric values than points).
    pub(crate) fn into_series(self) -> crate::Series {
        crate::Series { count: self.count, non_numeric: self.non_numeric, downsampled: true, points: self.points }
    }

    /// The series of each numeric value `(datetime, value)`, read in the same snapshot.
    pub(crate) fn with_values(self, values: Vec<(i64, f64)>) -> crate::Series {
        let points = values.into_iter().map(|(t_ms, v)| crate::SeriesPoint { t_ms, min: v, max: v, avg: v }).collect();
        crate::Series { count: self.count, non_numeric: self.non_numeric, downsampled: false, points }
    }
}

/// The answer for a range that holds no value.
pub(crate) fn empty() -> crate::Series {
    crate::Series { count: 0, non_numeric: 0, downsampled: false, points: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_values() {
        for (text, v) in [
            ("23.5", 23.5),
            ("\"23.5\"", 23.5),
            ("-4", -4.0),
            ("\"-4\"", -4.0),
            ("\"+4\"", 4.0),
            ("\"007\"", 7.0),
            ("1e3", 1000.0),
            ("\"1E+3\"", 1000.0),
            ("\"2.5e-1\"", 0.25),
            (" 5\n", 5.0),
            ("1e-400", 0.0),
            ("\"0e99999\"", 0.0),
        ] {
            assert_eq!(numeric_value(text), Some(v), "{text}");
        }
        for text in [
            "1e400",
            "\"1e400\"",
            "-1e400",
            "\"\"",
            "\" 5\"",
            "\"5 \"",
            "\"1.\"",
            "\".5\"",
            "\"1e\"",
            "\"1e+\"",
            "\"--1\"",
            "\"1.2.3\"",
            "\"0x10\"",
            "\"NaN\"",
            "\"inf\"",
            "\"\\u0031\"",
            "true",
            "null",
            "{\"a\":1}",
            "[1]",
            "\"abc\"",
        ] {
            assert_eq!(numeric_value(text), None, "{text}");
        }
        let long = "1".repeat(MAX_NUMERIC_CHARS);
        assert!(numeric_value(&long).is_some());
        assert!(numeric_value(&format!("{long}1")).is_none());
    }

    #[test]
    fn windows() {
        assert_eq!(Window::new(0, 10, 3), Some(Window { start: 0, end: 10, points: 3, width: 4 }));
        assert_eq!(Window::new(0, 9, 3).map(|w| w.width), Some(3));
        assert_eq!(Window::new(0, 2, 10).map(|w| w.width), Some(1));
        assert_eq!(Window::new(5, 5, 10), None);
        assert_eq!(Window::new(6, 5, 10), None);
        assert_eq!(Window::new(0, 10, 0).map(|w| w.points), Some(1));
        let all = Window::new(i64::MIN, i64::MAX, 1).expect("window");
        assert_eq!((all.start, all.end), (MIN_MS, MAX_MS + 1));
    }
}
