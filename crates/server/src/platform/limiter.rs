//! Failed-attempt rate limiting (logins): a sliding window of failure instants per key. Keys are
//! independent, so one attacked email does not lock out other users. Uses tokio's clock so tests
//! can run it on paused time.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use thingline_core::{Error, Result};
use tokio::time::Instant;

/// Keys tracked at most before the oldest-idle are dropped (bounds memory under a spray attack).
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    window: Duration,
    /// Limit for keys starting with `email:`; other keys (client addresses) use `per_addr`.
    per_email: usize,
    per_addr: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// The contract's login limits: 10 failures per email and 30 per client address per 15 minutes.
    pub fn login_default() -> Self {
        RateLimiter::new(Duration::from_secs(15 * 60), 10, 30)
    }

    pub fn new(window: Duration, per_email: usize, per_addr: usize) -> Self {
        RateLimiter { window, per_email, per_addr, failures: Mutex::new(HashMap::new()) }
    }

    fn limit(&self, key: &str) -> usize {
        if key.starts_with("email:") { self.per_email } else { self.per_addr }
    }

    /// 429 if any key is at its limit.
    pub fn check(&self, keys: &[&str]) -> Result<()> {
        let now = Instant::now();
        let mut map = self.failures.lock();
        for key in keys {
            if let Some(q) = map.get_mut(*key) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    q.pop_front();
                }
                if q.len() >= self.limit(key) {
                    return Err(Error::TooManyRequests("Too many failed login attempts; try again later".into()));
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut map = self.failures.lock();
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for key in keys {
            let q = map.entry((*key).to_owned()).or_default();
            q.push_back(now);
            let limit = self.limit(key);
            while q.len() > limit {
                q.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn blocks_after_the_limit_and_recovers_after_the_window() {
        let l = RateLimiter::new(Duration::from_secs(900), 3, 5);
        for _ in 0..3 {
            assert!(l.check(&["email:a", "ip:1"]).is_ok());
            l.record_failure(&["email:a", "ip:1"]);
        }
        assert_eq!(l.check(&["email:a", "ip:1"]).expect_err("limited").status(), 429);
        assert!(l.check(&["email:b", "ip:2"]).is_ok(), "other users are not blocked");
        tokio::time::advance(Duration::from_secs(901)).await;
        assert!(l.check(&["email:a", "ip:1"]).is_ok());
    }
}
