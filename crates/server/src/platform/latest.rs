//! The newest value of each timeline, in memory, so that `limit=1` reads without a date range —
//! what dashboards and apps poll — are answered without the store.
//!
//! It stays exact under concurrency by one rule: the newest value of a timeline is the one with
//! the greatest datetime (datetimes of a timeline are distinct), and an entry only ever moves to a
//! greater datetime. Committed writes offer their values; a read that missed offers what the store
//! returned; whichever arrives late with an older datetime is ignored. A value too large to keep
//! leaves a marker with its datetime, so an older value can never take its place.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

/// Timelines remembered before the cache is emptied (it refills on demand).
const MAX_ENTRIES: usize = 1_000_000;
/// Largest value kept in memory, bytes.
const MAX_VALUE: usize = 4096;

/// (datetime, value JSON text or `None` when too large to keep).
type Entry = (i64, Option<Arc<str>>);

#[derive(Default)]
pub struct LatestCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_thing: HashMap<i64, HashMap<String, Entry>>,
    entries: usize,
}

impl LatestCache {
    /// The newest (datetime, value) of a timeline, if known.
    pub fn get(&self, thing_seq: i64, key: &str) -> Option<(i64, Arc<str>)> {
        let inner = self.inner.read();
        let (ts, value) = inner.by_thing.get(&thing_seq)?.get(key)?;
        value.as_ref().map(|v| (*ts, Arc::clone(v)))
    }

    /// Offers a stored value; kept if it is newer than what the cache holds.
    pub fn offer(&self, thing_seq: i64, key: &str, ts: i64, value: &str) {
        let mut inner = self.inner.write();
        if inner.entries >= MAX_ENTRIES {
            inner.by_thing.clear();
            inner.entries = 0;
        }
        let keep = (value.len() <= MAX_VALUE).then(|| Arc::from(value));
        let keys = inner.by_thing.entry(thing_seq).or_default();
        match keys.get_mut(key) {
            Some(entry) => {
                if ts > entry.0 {
                    *entry = (ts, keep);
                }
            }
            None => {
                keys.insert(key.to_owned(), (ts, keep));
                inner.entries += 1;
            }
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut inner = self.inner.write();
        inner.by_thing.clear();
        inner.entries = 0;
    }

    /// Forgets a deleted thing.
    pub fn forget_thing(&self, thing_seq: i64) {
        let mut inner = self.inner.write();
        if let Some(keys) = inner.by_thing.remove(&thing_seq) {
            inner.entries = inner.entries.saturating_sub(keys.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_values_replace_and_large_values_leave_a_marker() {
        let c = LatestCache::default();
        c.offer(1, "t", 10, "1");
        c.offer(1, "t", 5, "old");
        assert_eq!(c.get(1, "t").map(|(ts, v)| (ts, v.to_string())), Some((10, "1".into())));
        let big = "x".repeat(MAX_VALUE + 1);
        c.offer(1, "t", 20, &big);
        assert_eq!(c.get(1, "t"), None, "too large: read from the store");
        c.offer(1, "t", 15, "stale");
        assert_eq!(c.get(1, "t"), None, "an older value never replaces the marker");
        c.offer(1, "t", 30, "3");
        assert_eq!(c.get(1, "t").map(|(ts, _)| ts), Some(30));
        c.forget_thing(1);
        assert_eq!(c.get(1, "t"), None);
    }
}
