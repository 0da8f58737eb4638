//! Query-string parameters shared by every protocol adapter: the timeline read window
//! ([`TimelineQuery`]: `limit`, `startDate`, `endDate`), the boolean flags `store`, `broadcast` and
//! `subscribe` ([`parse_bool_flag`]) and the subscription `keepAlive` ([`parse_keep_alive`]).
//!
//! Adapters pass the raw (already percent-decoded) parameter, or `None` when it is absent; every
//! rejection is an [`Error::BadRequest`] naming the parameter.

use crate::{Error, Result, time};

/// `limit` when the request has none.
pub const DEFAULT_LIMIT: u32 = 1;
/// The largest `limit` served; larger requests are clamped to it.
pub const MAX_LIMIT: u32 = 1000;

/// `keepAlive` when the request has none, in ms.
pub const DEFAULT_KEEP_ALIVE_MS: u64 = 60_000;
/// The smallest `keepAlive` honoured, in ms; smaller requests are raised to it.
pub const MIN_KEEP_ALIVE_MS: u64 = 1_000;
/// The largest `keepAlive` honoured (one hour), in ms; larger requests are lowered to it.
pub const MAX_KEEP_ALIVE_MS: u64 = 3_600_000;

/// Which values of one timeline a read returns: the `limit` newest values with
/// `start <= datetime < end` (each bound only when given), newest first.
///
/// A window with `start >= end` is not an error: it simply selects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineQuery {
    /// How many values at most, 1..=[`MAX_LIMIT`].
    pub limit: u32,
    /// Inclusive lower bound (`startDate`), ms since the epoch.
    pub start: Option<i64>,
    /// Exclusive upper bound (`endDate`), ms since the epoch.
    pub end: Option<i64>,
}

impl Default for TimelineQuery {
    /// The newest value only.
    fn default() -> Self {
        TimelineQuery { limit: DEFAULT_LIMIT, start: None, end: None }
    }
}

impl TimelineQuery {
    /// Builds the window from the raw `limit`, `startDate` and `endDate` parameters.
    ///
    /// `limit` follows [`parse_limit`]; the dates follow [`time::parse_datetime`]. A parameter
    /// present but empty (`startDate=`) is a 400 like any unparsable value.
    pub fn from_params(limit: Option<&str>, start: Option<&str>, end: Option<&str>) -> Result<Self> {
        Ok(TimelineQuery {
            limit: parse_limit(limit)?,
            start: start.map(|s| parse_date_param("startDate", s)).transpose()?,
            end: end.map(|s| parse_date_param("endDate", s)).transpose()?,
        })
    }
}

fn parse_date_param(name: &str, raw: &str) -> Result<i64> {
    time::parse_datetime(raw).map_err(|e| Error::bad_request(format!("{name}: {e}")))
}

/// Parses `limit`: absent → [`DEFAULT_LIMIT`]; a decimal whole number ≥ 1 → itself, clamped to
/// [`MAX_LIMIT`] however large it is. Zero, negative numbers, fractions, empty or non-numeric
/// values are a 400.
pub fn parse_limit(raw: Option<&str>) -> Result<u32> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    let err =
        || Error::bad_request(format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {}", time::echo(raw)));
    match parse_whole(raw) {
        Some(0) | None => Err(err()),
        Some(n) => Ok(u32::try_from(n.min(u64::from(MAX_LIMIT))).unwrap_or(MAX_LIMIT)),
    }
}

/// Parses a boolean query flag (`store`, `broadcast`, `subscribe`): `true`/`false`/`1`/`0` in
/// any letter case; absent → `default`; anything else (including an empty value) is a 400 naming
/// the flag.
pub fn parse_bool_flag(name: &str, raw: Option<&str>, default: bool) -> Result<bool> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    if raw.eq_ignore_ascii_case("true") || raw == "1" {
        Ok(true)
    } else if raw.eq_ignore_ascii_case("false") || raw == "0" {
        Ok(false)
    } else {
        Err(Error::bad_request(format!("{name} must be true or false, got {}", time::echo(raw))))
    }
}

/// Parses `keepAlive` (ms between idle `{}` messages of a subscription): absent →
/// [`DEFAULT_KEEP_ALIVE_MS`]; a decimal whole number is clamped into
/// [[`MIN_KEEP_ALIVE_MS`], [`MAX_KEEP_ALIVE_MS`]] (1 s to 1 h, so `0` means one second and a huge
/// value one hour); anything else (empty, negative, fractional, non-numeric) is a 400.
pub fn parse_keep_alive(raw: Option<&str>) -> Result<u64> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_KEEP_ALIVE_MS);
    };
    match parse_whole(raw) {
        Some(n) => Ok(n.clamp(MIN_KEEP_ALIVE_MS, MAX_KEEP_ALIVE_MS)),
        None => Err(Error::bad_request(format!(
            "keepAlive must be a whole number of milliseconds, got {}",
            time::echo(raw)
        ))),
    }
}

/// A non-empty string of ASCII digits as a number, saturating at `u64::MAX`; `None` for anything
/// else (signs, spaces, fractions, exponents).
pub(crate) fn parse_whole(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(raw.bytes().fold(0u64, |acc, b| acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_400<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn limit_defaults_and_clamps() {
        assert_eq!(parse_limit(None).unwrap(), 1);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("15")).unwrap(), 15);
        assert_eq!(parse_limit(Some("007")).unwrap(), 7);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        assert_eq!(parse_limit(Some("1001")).unwrap(), 1000);
        assert_eq!(parse_limit(Some("5000")).unwrap(), 1000);
        assert_eq!(parse_limit(Some("4294967296")).unwrap(), 1000);
        assert_eq!(parse_limit(Some("99999999999999999999")).unwrap(), 1000);
        assert_eq!(parse_limit(Some(&"9".repeat(500))).unwrap(), 1000);
    }

    #[test]
    fn bad_limits_are_400() {
        for raw in ["0", "00", "-3", "-0", "+3", "abc", "", " ", " 5", "5 ", "1.5", "1e3", "0x10", "٣"] {
            let m = is_400(parse_limit(Some(raw)));
            assert!(m.contains("limit must be a whole number from 1 to 1000"), "{m}");
        }
    }

    #[test]
    fn timeline_query_from_params() {
        let q = TimelineQuery::from_params(None, None, None).unwrap();
        assert_eq!(q, TimelineQuery::default());
        assert_eq!(q.limit, DEFAULT_LIMIT);

        let q =
            TimelineQuery::from_params(Some("1000"), Some("20150202220035"), Some("2017-01-15T17:46:06.932Z")).unwrap();
        assert_eq!(q.limit, 1000);
        assert_eq!(q.start, Some(time::parse_datetime("2015-02-02T22:00:35Z").unwrap()));
        assert_eq!(q.end, Some(time::parse_datetime("2017-01-15T17:46:06.932Z").unwrap()));

        // start >= end is an empty window, not an error.
        let q = TimelineQuery::from_params(None, Some("2017-01-02"), Some("2017-01-01")).unwrap();
        assert!(q.start > q.end);
    }

    #[test]
    fn timeline_query_errors_name_the_parameter() {
        assert!(is_400(TimelineQuery::from_params(None, Some(""), None)).starts_with("startDate"));
        assert!(is_400(TimelineQuery::from_params(None, None, Some(""))).starts_with("endDate"));
        assert!(is_400(TimelineQuery::from_params(None, Some("2015-02-30"), None)).contains("day 30"));
        assert!(is_400(TimelineQuery::from_params(None, None, Some("tomorrow"))).contains("tomorrow"));
        assert!(is_400(TimelineQuery::from_params(Some("0"), None, None)).contains("limit"));
    }

    #[test]
    fn bool_flags() {
        for raw in ["true", "TRUE", "True", "1"] {
            assert!(parse_bool_flag("store", Some(raw), false).unwrap());
        }
        for raw in ["false", "FALSE", "fAlSe", "0"] {
            assert!(!parse_bool_flag("store", Some(raw), true).unwrap());
        }
        assert!(parse_bool_flag("store", None, true).unwrap());
        assert!(!parse_bool_flag("subscribe", None, false).unwrap());
        for raw in ["", "yes", "no", "2", "01", " true", "t"] {
            let m = is_400(parse_bool_flag("broadcast", Some(raw), true));
            assert!(m.starts_with("broadcast must be true or false"), "{m}");
        }
    }

    #[test]
    fn keep_alive() {
        assert_eq!(parse_keep_alive(None).unwrap(), 60_000);
        assert_eq!(parse_keep_alive(Some("2000")).unwrap(), 2000);
        assert_eq!(parse_keep_alive(Some("1000")).unwrap(), 1000);
        assert_eq!(parse_keep_alive(Some("0")).unwrap(), 1000);
        assert_eq!(parse_keep_alive(Some("999")).unwrap(), 1000);
        assert_eq!(parse_keep_alive(Some("3600000")).unwrap(), 3_600_000);
        assert_eq!(parse_keep_alive(Some("3600001")).unwrap(), 3_600_000);
        assert_eq!(parse_keep_alive(Some("99999999999999999999999")).unwrap(), 3_600_000);
        for raw in ["", "abc", "-1", "1.5", "60s", " 2000"] {
            let m = is_400(parse_keep_alive(Some(raw)));
            assert!(m.starts_with("keepAlive must be a whole number"), "{m}");
        }
    }

    #[test]
    fn parse_whole_saturates() {
        assert_eq!(parse_whole("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_whole("18446744073709551616"), Some(u64::MAX));
        assert_eq!(parse_whole(""), None);
    }
}
