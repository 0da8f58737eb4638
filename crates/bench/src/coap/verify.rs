//! The check at the end of `coap-write`: every thing's values read back through the HTTPS API
//! (key `t`, pages of 1,000 newest first, the next page ending at the oldest datetime received),
//! against what its client was told. Each value is the write's sequence number, so the check is
//! exact: every value answered 2.01 must be stored exactly once (none lost, none duplicated by a
//! retransmission), no value stored twice, none stored that was never sent; a write answered with
//! an error or not at all may or may not be stored (counted, not a failure).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::api::Api;

/// The key the writes use.
pub const KEY: &str = "t";
/// Values per read (the API's most).
const PAGE: u32 = 1000;
/// Things read at once.
const CONCURRENCY: usize = 4;
/// Problems kept as samples.
const SAMPLES: usize = 5;

/// What one thing's client was told, over the whole run.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Sequence numbers answered 2.01.
    pub acked: Vec<u64>,
    /// Sequence numbers sent and answered otherwise or not at all.
    pub uncertain: Vec<u64>,
    /// The highest sequence number sent.
    pub last: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub things: usize,
    /// Values read back, in all.
    pub stored: u64,
    /// Writes answered 2.01, in all.
    pub acked: u64,
    /// Answered 2.01 and not stored.
    pub lost: u64,
    /// Extra copies of a value (a value stored n times counts n − 1).
    pub duplicated: u64,
    /// Values stored that no client sent (or not a sequence number).
    pub unknown: u64,
    /// Answered otherwise or not at all, and stored anyway.
    pub uncertain_stored: u64,
    /// Answered otherwise or not at all, and not stored.
    pub uncertain_not_stored: u64,
    pub samples: Vec<String>,
    pub seconds: f64,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unknown == 0
    }
}

/// Read every thing back and compare with `expected` (one per token, same order).
pub async fn verify(api: &Api, tokens: &[String], expected: &[Expected]) -> Result<Verification> {
    let started = Instant::now();
    let stored: Vec<Vec<u64>> = futures_util::stream::iter(tokens.iter().take(expected.len()))
        .map(|token| read_all(api, token))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut v = Verification { things: stored.len(), ..Default::default() };
    for (i, (values, expected)) in stored.iter().zip(expected).enumerate() {
        check(i, values, expected, &mut v);
    }
    v.seconds = started.elapsed().as_secs_f64();
    Ok(v)
}

/// Compare one thing's stored values with what its client was told.
fn check(thing: usize, values: &[u64], expected: &Expected, v: &mut Verification) {
    let mut counts = vec![0u32; expected.last as usize + 1];
    let sample = |v: &mut Verification, text: String| {
        if v.samples.len() < SAMPLES {
            v.samples.push(format!("thing {thing}: {text}"));
        }
    };
    v.stored += values.len() as u64;
    for &value in values {
        match counts.get_mut(value as usize).filter(|_| value > 0) {
            Some(count) => *count += 1,
            None => {
                v.unknown += 1;
                sample(v, format!("value {value} stored, never sent (last sent {})", expected.last));
            }
        }
    }
    for (value, &count) in counts.iter().enumerate() {
        if count > 1 {
            v.duplicated += u64::from(count - 1);
            sample(v, format!("value {value} stored {count} times"));
        }
    }
    v.acked += expected.acked.len() as u64;
    for &seq in &expected.acked {
        if counts[seq as usize] == 0 {
            v.lost += 1;
            sample(v, format!("value {seq} answered 2.01 and not stored"));
        }
    }
    for &seq in &expected.uncertain {
        if counts[seq as usize] > 0 {
            v.uncertain_stored += 1;
        } else {
            v.uncertain_not_stored += 1;
        }
    }
}

/// Every value of the thing's key [`KEY`], as sequence numbers (`u64::MAX` for one that is not).
async fn read_all(api: &Api, token: &str) -> Result<Vec<u64>> {
    let mut values = Vec::new();
    let mut end: Option<String> = None;
    loop {
        let Some(page) = api.read_page(token, KEY, PAGE, end.as_deref()).await? else {
            return Ok(values); // never written
        };
        for item in &page {
            let value = item.get("value").and_then(Value::as_f64);
            values.push(value.filter(|v| v.fract() == 0.0 && *v >= 0.0).map_or(u64::MAX, |v| v as u64));
        }
        if page.len() < PAGE as usize {
            return Ok(values);
        }
        let oldest = page
            .last()
            .and_then(|item| item.get("datetime"))
            .and_then(Value::as_str)
            .context("a read item without datetime")?;
        if end.as_deref() == Some(oldest) {
            bail!("paging by endDate did not move past {oldest}");
        }
        end = Some(oldest.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lost_duplicated_and_unknown_values() {
        let expected = Expected { acked: vec![1, 2, 4], uncertain: vec![3, 5], last: 5 };
        let mut v = Verification::default();
        check(0, &[1, 2, 2, 3, 9, 0], &expected, &mut v);
        assert_eq!((v.stored, v.acked, v.lost, v.duplicated, v.unknown), (6, 3, 1, 1, 2));
        assert_eq!((v.uncertain_stored, v.uncertain_not_stored), (1, 1));
        assert!(!v.ok());
        let mut clean = Verification::default();
        check(1, &[4, 2, 1], &expected, &mut clean);
        assert!(clean.ok());
        assert_eq!(clean.uncertain_not_stored, 2);
    }
}
