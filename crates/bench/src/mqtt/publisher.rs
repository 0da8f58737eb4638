//! One publishing client, the loop of `mqtt-publish` and of `mqtt-relay`'s publishers: from the
//! go signal until the window's end, either QoS 1 with up to `inflight` PUBLISHes awaiting
//! their PUBACK (a PUBACK frees a slot, refilled at once: one read and one write per batch of
//! acks), or QoS 0 paced at a rate. The payload is `{"values":[{"key":"temp","value":N}]}`, N
//! the send time in the measurement's clock. After the window a QoS 1 publisher waits (at most
//! [`DRAIN`]) for the PUBACKs still due; then, when given a release signal (the relay), it stays
//! connected until released, so that the broker's handling of a DISCONNECT right behind the
//! last PUBLISHes is no part of a relay measurement.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;

use super::codec::{self, Packet};
use super::conn::Conn;
use super::{Clock, Window};

/// After the window: how long a QoS 1 publisher waits for its last PUBACKs.
pub const DRAIN: Duration = Duration::from_secs(10);
/// A paced QoS 0 publisher wakes this often and sends what is due.
const PACE_TICK: Duration = Duration::from_millis(5);
/// A slot of the in-flight table that holds no PUBLISH.
const FREE: u64 = u64::MAX;

/// What the publishers of one measurement share.
pub struct PublisherShared {
    pub clock: Clock,
    /// PUBACKs received by all of them (sampled every second for the per-second series).
    pub acks: AtomicU64,
    /// PUBLISHes sent by all of them.
    pub sent: AtomicU64,
    /// Publishers done publishing (and, QoS 1, done waiting for their PUBACKs).
    pub finished: AtomicUsize,
}

impl PublisherShared {
    pub fn new(clock: Clock) -> Self {
        Self { clock, acks: AtomicU64::new(0), sent: AtomicU64::new(0), finished: AtomicUsize::new(0) }
    }
}

/// How one publisher publishes.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// QoS 1, at most this many PUBLISHes awaiting their PUBACK.
    Window(usize),
    /// QoS 0, this many messages per second.
    Paced(f64),
}

/// What one publisher hands back.
#[derive(Debug, Default)]
pub struct PublisherOutput {
    pub sent: u64,
    /// Sent in the window (send time).
    pub sent_in_window: u64,
    pub acked: u64,
    /// PUBACKs that arrived in the window: the throughput.
    pub acked_in_window: u64,
    /// What a subscriber must receive, in sending order: the values sent in the window and
    /// acknowledged (QoS 1), or sent in the window (QoS 0). Kept by the relay's publishers only.
    pub expected_values: Vec<u64>,
    /// Still awaiting their PUBACK when the publisher stopped.
    pub unacked: u64,
    /// PUBACKs for a packet id not in flight.
    pub unexpected_acks: u64,
    /// publish→PUBACK of every PUBACK that arrived in the window.
    pub latencies_ns: Vec<u64>,
    /// Why the publisher stopped early (the connection failed or the server closed it).
    pub error: Option<String>,
}

/// Wait for the go signal: the measured window, `None` when the measurement was called off.
pub async fn wait_go(go: &mut watch::Receiver<Option<Window>>) -> Option<Window> {
    go.wait_for(Option::is_some).await.ok().and_then(|window| *window)
}

/// Publish on `topic` as `mode` says from the go signal to the end of the window; keep the
/// values a subscriber must receive when `keep_values`; stay connected until `release` turns
/// true (or its sender goes) when given one.
pub async fn run(
    mut conn: Conn,
    topic: Vec<u8>,
    mode: Mode,
    keep_values: bool,
    shared: Arc<PublisherShared>,
    mut go: watch::Receiver<Option<Window>>,
    release: Option<watch::Receiver<bool>>,
) -> PublisherOutput {
    let mut out = PublisherOutput::default();
    let Some(window) = wait_go(&mut go).await else {
        conn.close().await;
        return out;
    };
    let ended = match mode {
        Mode::Window(inflight) => {
            let mut slots = Slots::new(inflight);
            let ended = windowed(&mut conn, &topic, &mut slots, keep_values, &shared, window, &mut out).await;
            out.unacked = slots.in_flight() as u64;
            ended
        }
        Mode::Paced(rate) => paced(&mut conn, &topic, rate, keep_values, &shared.clock, window, &mut out).await,
    };
    shared.sent.fetch_add(out.sent, Ordering::Relaxed);
    shared.finished.fetch_add(1, Ordering::Relaxed);
    match ended {
        Err(err) => out.error = Some(format!("{err:#}")),
        Ok(()) => {
            if let Some(mut release) = release {
                let _ = release.wait_for(|released| *released).await;
            }
        }
    }
    conn.close().await;
    out
}

/// The in-flight table: packet ids 1..=n, each free or holding its PUBLISH's send time.
struct Slots {
    sent_at: Vec<u64>,
    free: Vec<u16>,
}

impl Slots {
    fn new(inflight: usize) -> Self {
        let n = inflight.clamp(1, usize::from(u16::MAX));
        Self { sent_at: vec![FREE; n + 1], free: (1..=n as u16).rev().collect() }
    }

    fn in_flight(&self) -> usize {
        self.sent_at.len() - 1 - self.free.len()
    }

    /// The send time of `pid`'s PUBLISH, freeing its slot; `None` when it was not in flight.
    fn ack(&mut self, pid: u16) -> Option<u64> {
        let slot = self.sent_at.get_mut(usize::from(pid)).filter(|s| **s != FREE)?;
        let sent = std::mem::replace(slot, FREE);
        self.free.push(pid);
        Some(sent)
    }
}

/// Values strictly increasing per publisher: the send time, or one more than the last value.
fn next_value(last: &mut u64, now: u64) -> u64 {
    *last = now.max(*last + 1);
    *last
}

async fn windowed(
    conn: &mut Conn,
    topic: &[u8],
    slots: &mut Slots,
    keep_values: bool,
    shared: &PublisherShared,
    window: Window,
    out: &mut PublisherOutput,
) -> Result<()> {
    let clock = &shared.clock;
    let give_up_at = clock.instant(window.to + DRAIN.as_nanos() as u64);
    let mut last_value = 0;
    loop {
        let now = clock.now_ns();
        if now < window.to {
            while let Some(pid) = slots.free.pop() {
                let value = next_value(&mut last_value, now);
                codec::publish_value(&mut conn.tx, topic, 1, pid, value);
                slots.sent_at[usize::from(pid)] = value;
                out.sent += 1;
                out.sent_in_window += u64::from(window.contains(value));
            }
        }
        conn.flush().await?;
        if now >= window.to && slots.in_flight() == 0 {
            return Ok(());
        }
        if tokio::time::timeout_at(give_up_at, conn.rx.fill(&mut conn.stream)).await.is_err() {
            return Ok(()); // the PUBACKs still due count as unacked
        }
        let at = clock.now_ns();
        let mut acks = 0;
        while let Some(packet) = conn.rx.next()? {
            match packet {
                Packet::PubAck { pid } => match slots.ack(pid) {
                    Some(sent) => {
                        acks += 1;
                        if window.contains(at) {
                            out.acked_in_window += 1;
                            out.latencies_ns.push(at.saturating_sub(sent));
                        }
                        if keep_values && window.contains(sent) {
                            out.expected_values.push(sent);
                        }
                    }
                    None => out.unexpected_acks += 1,
                },
                Packet::Publish { qos: 1, pid: Some(pid), .. } => codec::puback(&mut conn.tx, pid),
                _ => {}
            }
        }
        out.acked += acks;
        shared.acks.fetch_add(acks, Ordering::Relaxed);
    }
}

async fn paced(
    conn: &mut Conn,
    topic: &[u8],
    rate: f64,
    keep_values: bool,
    clock: &Clock,
    window: Window,
    out: &mut PublisherOutput,
) -> Result<()> {
    let start = clock.now_ns();
    let mut tick = tokio::time::interval(PACE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_value = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            read = conn.rx.fill(&mut conn.stream) => {
                read?;
                while let Some(packet) = conn.rx.next()? {
                    if let Packet::Publish { qos: 1, pid: Some(pid), .. } = packet {
                        codec::puback(&mut conn.tx, pid);
                    }
                }
            }
        }
        let now = clock.now_ns();
        if now >= window.to {
            return Ok(());
        }
        let due = ((now - start) as f64 / 1e9 * rate) as u64;
        while out.sent < due {
            let value = next_value(&mut last_value, now);
            codec::publish_value(&mut conn.tx, topic, 0, 0, value);
            out.sent += 1;
            if window.contains(value) {
                out.sent_in_window += 1;
                if keep_values {
                    out.expected_values.push(value);
                }
            }
        }
        conn.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_hand_out_and_take_back_packet_ids() {
        let mut slots = Slots::new(2);
        assert_eq!(slots.in_flight(), 0);
        let a = slots.free.pop().expect("a free id");
        slots.sent_at[usize::from(a)] = 5;
        assert_eq!((a, slots.in_flight()), (1, 1));
        assert_eq!(slots.ack(a), Some(5));
        assert_eq!(slots.ack(a), None, "a second PUBACK for the same id");
        assert_eq!(slots.ack(0), None);
        assert_eq!(slots.ack(9), None);
        assert_eq!(slots.in_flight(), 0);
    }

    #[test]
    fn values_strictly_increase() {
        let mut last = 0;
        assert_eq!(next_value(&mut last, 10), 10);
        assert_eq!(next_value(&mut last, 10), 11);
        assert_eq!(next_value(&mut last, 5), 12);
        assert_eq!(next_value(&mut last, 100), 100);
    }
}
