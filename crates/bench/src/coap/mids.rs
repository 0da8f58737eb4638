//! Message ids that never repeat on a local port within a bench run. The server deduplicates
//! requests by (client endpoint, message id) for 247 s (RFC 7252's EXCHANGE_LIFETIME), and the
//! kernel hands out ephemeral ports again: a client socket that gets the port of an earlier,
//! closed one must not start its message ids where that one's ran, or its first requests are
//! taken for retransmissions and answered from the dedup cache (a write answered 2.01 and never
//! stored; a deregistration answered with an old registration's answer). So the ids of every
//! port are one sequence for the whole run, from a random start: a socket claims its port's
//! sequence while it is open and hands it back when dropped.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Ids one port may use in a run.
const PER_PORT: u32 = 1 << 16;

struct Port {
    next: u16,
    used: u32,
}

static PORTS: LazyLock<Mutex<HashMap<u16, Port>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The message ids of one open socket, on local port `port`.
pub struct Mids {
    port: u16,
    next: u16,
    left: u32,
}

impl Mids {
    /// The sequence of `port` (a random start the first time it is seen).
    pub fn claim(port: u16) -> Mids {
        let mut ports = PORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = ports.entry(port).or_insert_with(|| Port {
            next: crate::driver::WorkerRng::from_clock(u64::from(port)).next_u64() as u16,
            used: 0,
        });
        Mids { port, next: entry.next, left: PER_PORT - entry.used }
    }

    /// The next id; `None` once the port has used every id of the run (take another socket).
    pub fn next(&mut self) -> Option<u16> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mid = self.next;
        self.next = self.next.wrapping_add(1);
        Some(mid)
    }
}

impl Drop for Mids {
    fn drop(&mut self) {
        let mut ports = PORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        ports.insert(self.port, Port { next: self.next, used: PER_PORT - self.left });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_continues_its_sequence() {
        let port = 1;
        let mut first = Mids::claim(port);
        let a = first.next().expect("an id");
        let b = first.next().expect("an id");
        assert_eq!(b, a.wrapping_add(1));
        drop(first);
        let mut again = Mids::claim(port);
        assert_eq!(again.next(), Some(b.wrapping_add(1)));
        let mut used = 3;
        while again.next().is_some() {
            used += 1;
        }
        assert_eq!(used, PER_PORT);
        drop(again);
        assert_eq!(Mids::claim(port).next(), None);
    }
}
