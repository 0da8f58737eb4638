//! Deduplication of requests (RFC 7252 §4.5): a request that changes something (POST, PUT, an
//! Observe registration) is remembered by its endpoint and message id, with its answer once it
//! has one, so that a retransmission is answered again and never executed twice.
//!
//! Bounded: at most `capacity` exchanges are remembered, each for [`EXCHANGE_LIFETIME`]. When the
//! table is full the oldest answered exchange is forgotten early (the dedup window shrinks below
//! the lifetime, which is logged); an exchange still running is never forgotten, and when every
//! remembered exchange is still running a new request is refused with 5.03.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME: how long a message id may be reused by a client.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);

const SHARDS: usize = 16;

type Key = (SocketAddr, u16);

/// What a request is, as far as deduplication knows.
pub enum Begin {
    /// First seen: run it, then [`Exchanges::finish`].
    New,
    /// Still running; `separate` when its empty ACK went out already (send it again).
    Running { separate: bool },
    /// Answered: send this again.
    Replay(Arc<[u8]>),
    /// The table is full of running exchanges: refuse (5.03).
    Full,
}

enum State {
    Running { separate: bool },
    Done(Arc<[u8]>),
}

struct Slot {
    state: State,
    at: Instant,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Key, Slot>,
    order: VecDeque<(Instant, Key)>,
}

/// The remembered exchanges.
pub struct Exchanges {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    /// Exchanges forgotten before their lifetime because the table was full.
    pub evicted_early: AtomicU64,
}

impl Exchanges {
    pub fn new(capacity: usize) -> Exchanges {
        Exchanges {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
            evicted_early: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Looks `mid` from `peer` up, and remembers it as running if it is new.
    pub fn begin(&self, peer: SocketAddr, mid: u16) -> Begin {
        let key = (peer, mid);
        let now = Instant::now();
        let mut shard = self.shard(&key).lock();
        shard.expire(now);
        if let Some(slot) = shard.map.get(&key) {
            return match &slot.state {
                State::Running { separate } => Begin::Running { separate: *separate },
                State::Done(bytes) => Begin::Replay(Arc::clone(bytes)),
            };
        }
        if shard.map.len() >= self.per_shard {
            if !shard.evict_oldest_done() {
                return Begin::Full;
            }
            self.evicted_early.fetch_add(1, Ordering::Relaxed);
        }
        shard.map.insert(key, Slot { state: State::Running { separate: false }, at: now });
        shard.order.push_back((now, key));
        Begin::New
    }

    /// The empty ACK of a running exchange went out: a retransmission gets it again.
    pub fn separate(&self, peer: SocketAddr, mid: u16) {
        let key = (peer, mid);
        if let Some(slot) = self.shard(&key).lock().map.get_mut(&key) {
            slot.state = State::Running { separate: true };
        }
    }

    /// The exchange is answered with `bytes` (sent again on a retransmission).
    pub fn finish(&self, peer: SocketAddr, mid: u16, bytes: Arc<[u8]>) {
        let key = (peer, mid);
        if let Some(slot) = self.shard(&key).lock().map.get_mut(&key) {
            slot.state = State::Done(bytes);
        }
    }

    /// Forgets a running exchange that ended without an answer to repeat (the request is
    /// executed again if it comes again).
    pub fn abandon(&self, peer: SocketAddr, mid: u16) {
        let key = (peer, mid);
        let mut shard = self.shard(&key).lock();
        if let Entry::Occupied(e) = shard.map.entry(key)
            && matches!(e.get().state, State::Running { .. })
        {
            e.remove();
        }
    }

    /// How many exchanges are remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

impl Shard {
    /// Drops what outlived the exchange lifetime.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if now.duration_since(at) < EXCHANGE_LIFETIME {
                break;
            }
            self.order.pop_front();
            if let Entry::Occupied(e) = self.map.entry(key)
                && e.get().at == at
                && matches!(e.get().state, State::Done(_))
            {
                e.remove();
            } else if self.map.get(&key).is_some_and(|s| s.at == at) {
                // Still running after a whole lifetime: keep it, in order again.
                self.order.push_back((now, key));
                if let Some(s) = self.map.get_mut(&key) {
                    s.at = now;
                }
                break;
            }
        }
    }

    /// Forgets the oldest answered exchange; false when every one is still running.
    fn evict_oldest_done(&mut self) -> bool {
        let mut kept = Vec::new();
        let mut evicted = false;
        while let Some((at, key)) = self.order.pop_front() {
            match self.map.get(&key) {
                Some(slot) if slot.at == at => {
                    if matches!(slot.state, State::Done(_)) {
                        self.map.remove(&key);
                        evicted = true;
                        break;
                    }
                    kept.push((at, key));
                }
                _ => {}
            }
            if kept.len() > 64 {
                break;
            }
        }
        for item in kept.into_iter().rev() {
            self.order.push_front(item);
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_retransmission_is_running_then_replayed() {
        let x = Exchanges::new(100);
        assert!(matches!(x.begin(peer(1), 7), Begin::New));
        assert!(matches!(x.begin(peer(1), 7), Begin::Running { separate: false }));
        x.separate(peer(1), 7);
        assert!(matches!(x.begin(peer(1), 7), Begin::Running { separate: true }));
        x.finish(peer(1), 7, Arc::from(&b"answer"[..]));
        assert!(matches!(x.begin(peer(1), 7), Begin::Replay(b) if &*b == b"answer"));
        // Another endpoint with the same id is another exchange.
        assert!(matches!(x.begin(peer(2), 7), Begin::New));
    }

    #[test]
    fn a_full_table_forgets_the_oldest_answered_and_never_a_running_one() {
        let x = Exchanges::new(SHARDS); // one per shard
        let mut running = None;
        for mid in 0..1000u16 {
            if let Begin::New = x.begin(peer(1), mid) {
                running = Some(mid);
                break;
            }
        }
        let first = running.expect("a first exchange");
        // Find a second id in the same shard: it is refused while the first runs.
        let same_shard = (0..u16::MAX)
            .filter(|m| *m != first)
            .find(|m| std::ptr::eq(x.shard(&(peer(1), *m)), x.shard(&(peer(1), first))))
            .expect("same shard");
        assert!(matches!(x.begin(peer(1), same_shard), Begin::Full));
        x.finish(peer(1), first, Arc::from(&b"a"[..]));
        assert!(matches!(x.begin(peer(1), same_shard), Begin::New));
        assert_eq!(x.evicted_early.load(Ordering::Relaxed), 1);
        assert!(
            matches!(x.begin(peer(1), first), Begin::Full),
            "the forgotten one is new again, and the shard is full"
        );
        x.abandon(peer(1), same_shard);
        assert!(matches!(x.begin(peer(1), first), Begin::New));
    }
}
