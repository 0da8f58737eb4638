//! `mqtt-publish`, `mqtt-relay` and `mqtt-memory`: Thingline's MQTT broker (issue #11) against
//! the machine's Mosquitto, both driven by the same clients in the same run.
//!
//! The clients are a lean MQTT 3.1.1 client of our own on tokio (`codec`: the packets by hand;
//! `conn`: one connection and opening many), so that a message costs the generator little and
//! the same for both brokers (it shares the 2 cores with them). `targets` starts what is
//! measured: Thingline spawned with its MQTT listener on and things activated through its API (a
//! thingToken in the topic is the credential), Mosquitto as it runs (random tokens, the same
//! topics and payloads). `publisher` and `subscriber` are the two client loops; `publish`,
//! `relay` and `memory` are the three commands (`sysheap`: Mosquitto's own heap count, for
//! `memory`; `seconds`: the window second by second, and the rate over the seconds the shared
//! machine was otherwise quiet); `report` prints and checks their results.
//!
//! Clock: every time is nanoseconds since one `Instant` taken when a measurement starts, shared
//! by every client task. The value a publisher sends is its send time in that clock (made
//! strictly increasing per publisher), so a subscriber needs no table to compute send→receipt,
//! and its distinct values are the distinct messages it received.

mod codec;
pub(crate) mod conn;
pub mod memory;
pub mod publish;
mod publisher;
pub mod relay;
pub(crate) mod report;
pub(crate) mod seconds;
mod subscriber;
mod sysheap;
pub(crate) mod targets;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Name of the client runtime's threads (their CPU time is read from /proc/self/task).
pub const CLIENT_THREAD: &str = "mqtt-client";
/// Pause between two measurements, so the previous one's connections wind down.
const SETTLE: Duration = Duration::from_secs(1);

/// The runtime of the client tasks: `threads` workers named [`CLIENT_THREAD`].
fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .context("building the MQTT clients' runtime")
}

/// Nanoseconds since a measurement's start, shared by every task of it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Self { base: Instant::now() }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The `Instant` at `ns` in this clock.
    pub(crate) fn instant(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.base + Duration::from_nanos(ns))
    }
}

/// The measured window of a measurement, in its clock: `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}

impl Window {
    pub(crate) fn contains(&self, ns: u64) -> bool {
        ns >= self.from && ns < self.to
    }

    pub(crate) fn seconds(&self) -> f64 {
        self.to.saturating_sub(self.from) as f64 / 1e9
    }
}

/// The outputs of client tasks that finish within `timeout` (the others are aborted); a task
/// whose connection never opened hands back `None`.
pub(crate) async fn join<T>(handles: Vec<tokio::task::JoinHandle<Option<T>>>, timeout: Duration) -> Vec<T> {
    let by = tokio::time::Instant::now() + timeout;
    let mut outputs = Vec::with_capacity(handles.len());
    let mut aborted = 0;
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(by, handle).await {
            Ok(Ok(Some(output))) => outputs.push(output),
            Ok(Ok(None)) => {}
            Ok(Err(err)) => eprintln!("note: a client task failed: {err}"),
            Err(_) => {
                abort.abort();
                aborted += 1;
            }
        }
    }
    if aborted > 0 {
        eprintln!("note: {aborted} client tasks did not stop within {timeout:?} (aborted)");
    }
    outputs
}
