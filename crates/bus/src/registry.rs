//! What every realtime adapter shares besides the events: the count of open connections (in
//! total and per user, to enforce the per-user cap), the count of device subscriptions per thing
//! (to enforce the per-thing cap), the realtime limits, and the counters snapshot read by the
//! periodic log line and the metrics endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Limits of the realtime paths. Atomics, so tests and operators can change them at run time.
#[derive(Debug)]
pub struct RealtimeLimits {
    max_subscriptions_per_connection: AtomicUsize,
    max_connections_per_user: AtomicUsize,
    max_streams_per_thing: AtomicUsize,
    queue_capacity: AtomicUsize,
}

/// Defaults, documented in docs/realtime.md.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 100;
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 50;
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
pub const DEFAULT_MAX_STREAMS_PER_THING: usize = 10;

impl Default for RealtimeLimits {
    fn default() -> Self {
        RealtimeLimits {
            max_subscriptions_per_connection: AtomicUsize::new(DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION),
            max_connections_per_user: AtomicUsize::new(DEFAULT_MAX_CONNECTIONS_PER_USER),
            max_streams_per_thing: AtomicUsize::new(DEFAULT_MAX_STREAMS_PER_THING),
            queue_capacity: AtomicUsize::new(DEFAULT_QUEUE_CAPACITY),
        }
    }
}

impl RealtimeLimits {
    /// Most topics one Socket.IO connection may subscribe to at once.
    pub fn max_subscriptions_per_connection(&self) -> usize {
        self.max_subscriptions_per_connection.load(Ordering::Relaxed)
    }
    /// Most realtime connections (Socket.IO connections and HTTP subscriptions) of one user.
    pub fn max_connections_per_user(&self) -> usize {
        self.max_connections_per_user.load(Ordering::Relaxed)
    }
    /// Most device subscriptions of one thing at once (thing streams; later MQTT subscriptions
    /// and CoAP observers), so a leaked token cannot open unbounded streams.
    pub fn max_streams_per_thing(&self) -> usize {
        self.max_streams_per_thing.load(Ordering::Relaxed)
    }
    /// Messages queued for one HTTP subscriber before it is dropped as too slow.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity.load(Ordering::Relaxed)
    }
    pub fn set_max_subscriptions_per_connection(&self, n: usize) {
        self.max_subscriptions_per_connection.store(n.max(1), Ordering::Relaxed);
    }
    pub fn set_max_connections_per_user(&self, n: usize) {
        self.max_connections_per_user.store(n.max(1), Ordering::Relaxed);
    }
    pub fn set_max_streams_per_thing(&self, n: usize) {
        self.max_streams_per_thing.store(n.max(1), Ordering::Relaxed);
    }
    pub fn set_queue_capacity(&self, n: usize) {
        self.queue_capacity.store(n.max(1), Ordering::Relaxed);
    }
}

/// Counts per key (a user, a thing) with a cap: the per-user and per-thing limits.
#[derive(Debug, Default)]
struct Counts(Mutex<HashMap<i64, usize>>);

impl Counts {
    /// Counts one more for `key`; `false` (and nothing counted) when it already has `max`.
    fn take(&self, key: i64, max: usize) -> bool {
        let mut map = self.0.lock();
        let n = map.get(&key).copied().unwrap_or(0);
        if n >= max {
            return false;
        }
        map.insert(key, n + 1);
        true
    }

    /// Uncounts one of `key` (the key goes at zero).
    fn give_back(&self, key: i64) {
        let mut map = self.0.lock();
        if let Some(n) = map.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&key);
            }
        }
    }

    fn of(&self, key: i64) -> usize {
        self.0.lock().get(&key).copied().unwrap_or(0)
    }
}

/// Open realtime connections.
#[derive(Debug, Default)]
pub struct Connections {
    total: Arc<AtomicU64>,
    per_user: Arc<Counts>,
    per_thing: Arc<Counts>,
}

impl Connections {
    /// Counts a new connection (not yet tied to a user).
    pub fn open(&self) -> ConnectionGuard {
        self.total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard { total: Arc::clone(&self.total), per_user: Arc::clone(&self.per_user), user: None }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Open connections of one user.
    pub fn of_user(&self, user_id: i64) -> usize {
        self.per_user.of(user_id)
    }

    /// Counts a device subscription of thing `seq`; `None` (and nothing counted) when the thing
    /// already has `max`. Dropping the guard uncounts it.
    pub fn open_thing_stream(&self, seq: i64, max: usize) -> Option<ThingStreamGuard> {
        self.per_thing.take(seq, max).then(|| ThingStreamGuard { per_thing: Arc::clone(&self.per_thing), seq })
    }
}

/// One device subscription of a thing; dropping it uncounts it.
#[derive(Debug)]
pub struct ThingStreamGuard {
    per_thing: Arc<Counts>,
    seq: i64,
}

impl Drop for ThingStreamGuard {
    fn drop(&mut self) {
        self.per_thing.give_back(self.seq);
    }
}

/// One open connection; dropping it uncounts it.
#[derive(Debug)]
pub struct ConnectionGuard {
    total: Arc<AtomicU64>,
    per_user: Arc<Counts>,
    user: Option<i64>,
}

impl ConnectionGuard {
    /// Ties the connection to a user; `false` (and nothing counted) when the user already has
    /// `max` connections. Re-binding to the same user is a no-op.
    pub fn bind_user(&mut self, user_id: i64, max: usize) -> bool {
        if self.user == Some(user_id) {
            return true;
        }
        if !self.per_user.take(user_id, max) {
            return false;
        }
        self.unbind();
        self.user = Some(user_id);
        true
    }

    fn unbind(&mut self) {
        if let Some(u) = self.user.take() {
            self.per_user.give_back(u);
        }
    }

    pub fn user(&self) -> Option<i64> {
        self.user
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.unbind();
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every realtime counter at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Open realtime connections (Socket.IO connections and HTTP subscription streams).
    pub connections: u64,
    /// Subscriptions served by the fan-out (one per subscriber and thing).
    pub subscriptions: u64,
    /// Fan-out groups (one bus subscription each).
    pub groups: u64,
    /// Bus subscriptions (fan-out groups, thing streams, access watchers).
    pub bus_subscriptions: u64,
    /// Events published on the bus (since start).
    pub published: u64,
    /// Events rendered by the fan-out (once per event and group).
    pub rendered: u64,
    /// Payloads handed to subscribers.
    pub delivered: u64,
    /// Subscribers dropped because their queue was full.
    pub dropped_slow: u64,
    /// Subscribers dropped because their fan-out group lagged.
    pub dropped_lagged: u64,
    /// Bus receivers that lagged (thing streams and fan-out groups).
    pub lagged: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_cap_and_release() {
        let c = Connections::default();
        let mut a = c.open();
        let mut b = c.open();
        assert!(a.bind_user(7, 1));
        assert!(!b.bind_user(7, 1));
        assert_eq!(c.of_user(7), 1);
        assert_eq!(c.total(), 2);
        drop(a);
        assert!(b.bind_user(7, 1));
        drop(b);
        assert_eq!(c.of_user(7), 0);
        assert_eq!(c.total(), 0);
    }

    #[test]
    fn per_thing_cap_and_release() {
        let c = Connections::default();
        let a = c.open_thing_stream(3, 2).expect("first");
        let _b = c.open_thing_stream(3, 2).expect("second");
        assert!(c.open_thing_stream(3, 2).is_none(), "a third is refused");
        assert!(c.open_thing_stream(4, 2).is_some(), "other things are not affected");
        drop(a);
        assert!(c.open_thing_stream(3, 2).is_some(), "a closed one frees its place");
    }
}
