//! Per-address rate limits: a token bucket per client IP address (IPv6: per /64) (`THINGLINE_COAP_RATE` requests
//! a second, the same as the burst). A request over the rate is dropped unanswered: answering
//! would give a spoofer what it wants, and a real client retransmits.
//!
//! Bounded: at most [`MAX_ADDRESSES`] buckets; idle (full) ones are swept when the table grows,
//! and when it is full of busy addresses a new address is refused until some go idle.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// Addresses tracked at once.
pub const MAX_ADDRESSES: usize = 1 << 20;
const SHARDS: usize = 16;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets.
pub struct RateLimit {
    rate: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
    /// Requests dropped for going over the rate.
    pub dropped: AtomicU64,
}

impl RateLimit {
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(per_second.max(1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Takes one request from `ip`'s bucket (an IPv6 address's /64 shares one); false when it
    /// is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let ip = crate::net::client_subnet(ip);
        let mut shard = self.shards[self.hasher.hash_one(ip) as usize % SHARDS].lock();
        let now = Instant::now();
        let rate = self.rate;
        if !shard.contains_key(&ip) && shard.len() >= MAX_ADDRESSES / SHARDS {
            // Sweep the addresses whose bucket has refilled: they are idle.
            shard.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < rate);
            if shard.len() >= MAX_ADDRESSES / SHARDS {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                crate::platform::metrics::rate_limited("coap-rate");
                return false;
            }
        }
        let b = shard.entry(ip).or_insert(Bucket { tokens: rate, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            crate::platform::metrics::rate_limited("coap-rate");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_rate_is_cut_and_other_addresses_are_not() {
        let r = RateLimit::new(10);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let allowed = (0..50).filter(|_| r.allow(a)).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
        assert!(r.allow(b));
        assert!(r.dropped.load(Ordering::Relaxed) >= 39);
    }
}
