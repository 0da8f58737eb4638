//! Failed-attempt rate limiting (logins, thing activations): a sliding window of attempts per key.
//!
//! An attempt is *reserved* before the work whose answer an attacker wants (the Argon2
//! verification of a login, the store's answer to an activation code): [`RateLimiter::reserve`]
//! checks every key and records the attempt on all of them under one lock, so it counts at once,
//! and no interleaving of concurrent attempts gets more than the limit through. A successful
//! attempt [`Reservation::release`]s its reservation, so only failures (and attempts still in
//! progress) count; a reservation that is dropped without release (a failure, an error, a request
//! cancelled mid-way) stays counted for the window. A refused reservation records nothing.
//!
//! Keys are independent, so one attacked account does not lock out other users. Client addresses
//! are keyed by IPv4 address, or by IPv6 /64 (one subnet; a host usually holds a whole /64, so
//! per-address keys would be free to multiply), with IPv4-mapped IPv6 addresses counted as IPv4.
//! Uses tokio's clock so tests can run it on paused time.
//!
//! When several nodes share the store, the count must be theirs, not one node's: the store's
//! [`AttemptStore`] then keeps it (reserve-then-check in one transaction per attempt, keys
//! prefixed by the limiter's kind), and this node's memory is not used.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use thingline_core::{Error, Result};
use thingline_store::AttemptStore;
use tokio::time::Instant;

/// Keys tracked at most before the idle ones are dropped (bounds memory under a spray attack).
const MAX_KEYS: usize = 100_000;

/// What an attempt is counted against.
#[derive(Debug, Clone, Copy)]
pub enum LimitKey<'a> {
    /// An account (an email, scoped as the caller needs), limited by the per-account limit.
    Account(&'a str),
    /// A client address (IPv6: its /64), limited by the per-address limit.
    Addr(IpAddr),
}

impl LimitKey<'_> {
    fn name(&self) -> String {
        match self {
            LimitKey::Account(a) => format!("account:{a}"),
            LimitKey::Addr(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => format!("ip:{v4}"),
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }
}

pub struct RateLimiter {
    /// What is limited (`panel-login`, `app-login`, `activation`): the prefix of its keys in a
    /// shared store.
    kind: &'static str,
    window: Duration,
    per_account: usize,
    per_addr: usize,
    /// The 429's message.
    refusal: &'static str,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Per key, its attempts in the window, oldest first: (when reserved, reservation id).
    attempts: HashMap<String, VecDeque<(Instant, u64)>>,
}

/// An attempt counted on its keys until [`Self::release`]d. Dropping it keeps it counted.
#[must_use = "an attempt stays counted unless released: release it when it succeeded"]
pub struct Reservation<'a> {
    limiter: &'a RateLimiter,
    keys: Vec<String>,
    id: u64,
}

impl RateLimiter {
    /// The contract's login limits: 10 failures per email and 30 per client address per 15 minutes.
    pub fn login_default(kind: &'static str) -> Self {
        RateLimiter::new(kind, Duration::from_secs(15 * 60), 10, 30, "Too many failed login attempts; try again later")
    }

    /// Failed thing activations: 30 per client address per 15 minutes (the login address limit,
    /// counted on its own).
    pub fn activation_default() -> Self {
        RateLimiter::new(
            "activation",
            Duration::from_secs(15 * 60),
            30,
            30,
            "Too many failed activation attempts from this address; try again later",
        )
    }

    pub fn new(
        kind: &'static str,
        window: Duration,
        per_account: usize,
        per_addr: usize,
        refusal: &'static str,
    ) -> Self {
        RateLimiter { kind, window, per_account, per_addr, refusal, state: Mutex::new(State::default()) }
    }

    /// Reserves one attempt on every key: in the store several nodes share when there is one
    /// (`shared`), else in this node's memory ([`Self::reserve`]). 429 (recording nothing) if any
    /// key is at its limit.
    pub async fn reserve_in<'a>(
        &'a self,
        shared: Option<&'a dyn AttemptStore>,
        keys: &[LimitKey<'_>],
    ) -> Result<Attempt<'a>> {
        let Some(store) = shared else { return self.reserve(keys).map(Attempt::Local) };
        let named: Vec<(String, u32)> = keys
            .iter()
            .map(|k| (format!("{}:{}", self.kind, k.name()), u32::try_from(self.limit(k)).unwrap_or(u32::MAX)))
            .collect();
        let now = thingline_core::time::now_ms();
        let window = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        match store.reserve_attempt(&named, now.saturating_sub(window), now).await? {
            Some(id) => Ok(Attempt::Shared(store, id)),
            None => {
                super::metrics::rate_limited(self.kind);
                Err(Error::TooManyRequests(self.refusal.into()))
            }
        }
    }

    /// What is limited (`panel-login`, `app-login`, `activation`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn limit(&self, key: &LimitKey<'_>) -> usize {
        match key {
            LimitKey::Account(_) => self.per_account,
            LimitKey::Addr(_) => self.per_addr,
        }
    }

    /// Reserves one attempt on every key: 429 (recording nothing) if any key is at its limit.
    pub fn reserve(&self, keys: &[LimitKey<'_>]) -> Result<Reservation<'_>> {
        let now = Instant::now();
        let window = self.window;
        let expired = |t: &Instant| now.duration_since(*t) >= window;
        let named: Vec<(String, usize)> = keys.iter().map(|k| (k.name(), self.limit(k))).collect();
        let mut state = self.state.lock();
        for (name, limit) in &named {
            let count = match state.attempts.get_mut(name) {
                Some(q) => {
                    while q.front().is_some_and(|(t, _)| expired(t)) {
                        q.pop_front();
                    }
                    q.len()
                }
                None => 0,
            };
            if count >= *limit {
                drop(state);
                super::metrics::rate_limited(self.kind);
                return Err(Error::TooManyRequests(self.refusal.into()));
            }
        }
        if state.attempts.len() >= MAX_KEYS {
            state.attempts.retain(|_, q| q.back().is_some_and(|(t, _)| !expired(t)));
        }
        let id = state.next_id;
        state.next_id += 1;
        for (name, _) in &named {
            state.attempts.entry(name.clone()).or_default().push_back((now, id));
        }
        drop(state);
        Ok(Reservation { limiter: self, keys: named.into_iter().map(|(n, _)| n).collect(), id })
    }
}

/// An attempt counted until [`Self::release`]d, in this node's memory or in the shared store.
#[must_use = "an attempt stays counted unless released: release it when it succeeded"]
pub enum Attempt<'a> {
    Local(Reservation<'a>),
    Shared(&'a dyn AttemptStore, i64),
}

impl Attempt<'_> {
    /// The attempt succeeded: it no longer counts. (A shared store that cannot be reached keeps
    /// it counted: the safe side.)
    pub async fn release(self) {
        match self {
            Attempt::Local(r) => r.release(),
            Attempt::Shared(store, id) => {
                if let Err(e) = store.release_attempt(id).await {
                    tracing::warn!(error = %e.public_message(), "a successful attempt stays counted: the store did not answer");
                }
            }
        }
    }
}

impl Reservation<'_> {
    /// The attempt succeeded: it no longer counts.
    pub fn release(self) {
        let mut state = self.limiter.state.lock();
        for name in &self.keys {
            if let Some(q) = state.attempts.get_mut(name) {
                if let Some(pos) = q.iter().position(|(_, id)| *id == self.id) {
                    q.remove(pos);
                }
                if q.is_empty() {
                    state.attempts.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::{Arc, Barrier};

    use super::*;

    const IP1: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const IP2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn limiter(per_account: usize, per_addr: usize) -> RateLimiter {
        RateLimiter::new("test", Duration::from_secs(900), per_account, per_addr, "limited")
    }

    fn keys(account: &str, ip: IpAddr) -> [LimitKey<'_>; 2] {
        [LimitKey::Account(account), LimitKey::Addr(ip)]
    }

    fn refused(l: &RateLimiter, k: &[LimitKey<'_>]) -> bool {
        match l.reserve(k) {
            Ok(r) => {
                r.release();
                false
            }
            Err(e) => {
                assert_eq!(e.status(), 429);
                true
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_block_after_the_limit_and_recover_after_the_window() {
        let l = limiter(3, 5);
        for _ in 0..3 {
            drop(l.reserve(&keys("a", IP1)).expect("below the limit"));
        }
        assert!(refused(&l, &keys("a", IP1)));
        assert!(refused(&l, &keys("a", IP2)), "an account is limited from any address");
        assert!(!refused(&l, &keys("b", IP2)), "other users are not blocked");
        tokio::time::advance(Duration::from_secs(899)).await;
        assert!(refused(&l, &keys("a", IP1)), "still inside the window");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!refused(&l, &keys("a", IP1)), "the window slid past the failures");
    }

    #[tokio::test(start_paused = true)]
    async fn released_attempts_never_count() {
        let l = limiter(3, 5);
        for _ in 0..100 {
            l.reserve(&keys("a", IP1)).expect("successes do not count").release();
        }
        for _ in 0..3 {
            drop(l.reserve(&keys("a", IP1)).expect("below the limit"));
        }
        assert!(refused(&l, &keys("a", IP1)));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_in_progress_count_until_released() {
        let l = limiter(3, 5);
        let held: Vec<_> = (0..3).map(|_| l.reserve(&keys("a", IP1)).expect("reserve")).collect();
        assert!(refused(&l, &keys("a", IP1)), "three in progress: the fourth is refused");
        let mut held = held.into_iter();
        held.next().expect("one").release();
        let fourth = l.reserve(&keys("a", IP1)).expect("one released: room for one more");
        assert!(refused(&l, &keys("a", IP1)));
        drop((fourth, held));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_reservation_records_nothing() {
        let l = limiter(1, 3);
        drop(l.reserve(&keys("a", IP1)).expect("first"));
        for _ in 0..10 {
            assert!(refused(&l, &keys("a", IP1)), "the account is at its limit");
        }
        // The address has one failure, not eleven: two more accounts may still try.
        drop(l.reserve(&keys("b", IP1)).expect("second failure of the address"));
        drop(l.reserve(&keys("c", IP1)).expect("third failure of the address"));
        assert!(refused(&l, &keys("d", IP1)), "the address is at its limit");
    }

    #[tokio::test(start_paused = true)]
    async fn the_address_limit_spans_accounts() {
        let l = limiter(10, 3);
        for account in ["a", "b", "c"] {
            drop(l.reserve(&keys(account, IP1)).expect("below the address limit"));
        }
        assert!(refused(&l, &keys("d", IP1)));
        assert!(!refused(&l, &keys("d", IP2)), "another address is not blocked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_release_removes_only_its_own_attempt() {
        let l = limiter(2, 10);
        let old = l.reserve(&keys("a", IP1)).expect("old");
        tokio::time::advance(Duration::from_secs(900)).await;
        drop(l.reserve(&keys("a", IP1)).expect("new failure (the old attempt expired)"));
        drop(l.reserve(&keys("a", IP1)).expect("second new failure"));
        old.release();
        assert!(refused(&l, &keys("a", IP1)), "releasing the expired attempt did not remove a new failure");
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let l = limiter(100, 2);
        let in_64 = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        drop(l.reserve(&[LimitKey::Addr(in_64(1))]).expect("first"));
        drop(l.reserve(&[LimitKey::Addr(in_64(2))]).expect("second"));
        assert!(refused(&l, &[LimitKey::Addr(in_64(3))]), "another host of the same /64 shares the limit");
        let other_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert!(!refused(&l, &[LimitKey::Addr(other_64)]));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        drop(l.reserve(&[LimitKey::Addr(mapped)]).expect("mapped"));
        drop(l.reserve(&[LimitKey::Addr(IP1)]).expect("plain"));
        assert!(refused(&l, &[LimitKey::Addr(IP1)]), "a mapped address counts as its IPv4 address");
        let other_mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        assert!(!refused(&l, &[LimitKey::Addr(other_mapped)]), "mapped IPv4 addresses are not one /64");
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let l = Arc::new(limiter(10, 30));
        let start = Arc::new(Barrier::new(40));
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let (l, start) = (Arc::clone(&l), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    // Never released: each counts as a failure.
                    l.reserve(&keys("a", IP1)).is_ok()
                })
            })
            .collect();
        let passed = threads.into_iter().filter_map(|t| t.join().ok()).filter(|ok| *ok).count();
        assert_eq!(passed, 10);
    }
}
