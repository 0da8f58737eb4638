//! What the platform and the adapters count for the metrics endpoint (`THINGLINE_METRICS_ADDR`,
//! see `crate::metrics` and docs/observability.md), in one place so that names and labels stay
//! consistent and bounded.
//!
//! Two kinds of figures:
//! - **events** (a refused attempt, a failed login, an HTTP request) go through the `metrics`
//!   facade. Without the metrics listener no recorder is installed and the facade's macros do
//!   nothing; [`enabled`] lets a caller skip even the work of preparing labels.
//! - **live counts** (connections and subscriptions by [`Protocol`]) are plain atomics held by
//!   [`Live`] guards, always kept (one atomic add when a connection or subscription opens, one
//!   when it ends, never per request or per message), and read when `/metrics` is scraped: a
//!   gauge kept through the facade would go wrong for whatever opened before a recorder existed.
//!
//! Adapters reach this module through `crate::platform` like everything else they call.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Whether a metrics recorder is installed (set once at start by `crate::metrics`).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether metrics are being recorded: false unless `THINGLINE_METRICS_ADDR` is set.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Marks metrics as recorded (called by `crate::metrics` once its recorder is installed).
pub(crate) fn set_enabled() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The protocols whose connections and subscriptions are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP(S): thing streams, app and collection subscriptions (one subscription per stream).
    Http,
    /// Socket.IO connections and their subscriptions.
    Socketio,
    /// MQTT connections (TCP, TLS, WebSocket) and their thing subscriptions.
    Mqtt,
    /// CoAP observations (CoAP has no connections).
    Coap,
    /// The web panel's live streams and the things they watch.
    Panel,
}

impl Protocol {
    pub const ALL: [Protocol; 5] =
        [Protocol::Http, Protocol::Socketio, Protocol::Mqtt, Protocol::Coap, Protocol::Panel];

    /// The `protocol` label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Socketio => "socketio",
            Protocol::Mqtt => "mqtt",
            Protocol::Coap => "coap",
            Protocol::Panel => "panel",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicI64 = AtomicI64::new(0);
static CONNECTIONS: [AtomicI64; 5] = [ZERO; 5];
static SUBSCRIPTIONS: [AtomicI64; 5] = [ZERO; 5];

/// One live connection or subscription, counted until dropped.
#[derive(Debug)]
pub struct Live(&'static AtomicI64);

impl Live {
    fn open(slot: &'static AtomicI64) -> Live {
        slot.fetch_add(1, Ordering::Relaxed);
        Live(slot)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a connection of `protocol` until the guard is dropped.
pub fn connection(protocol: Protocol) -> Live {
    Live::open(&CONNECTIONS[protocol.index()])
}

/// Counts a subscription of `protocol` until the guard is dropped.
pub fn subscription(protocol: Protocol) -> Live {
    Live::open(&SUBSCRIPTIONS[protocol.index()])
}

/// Live connections of `protocol` counted by [`connection`] guards (in this process).
pub fn connections(protocol: Protocol) -> i64 {
    CONNECTIONS[protocol.index()].load(Ordering::Relaxed)
}

/// Live subscriptions of `protocol` (in this process).
pub fn subscriptions(protocol: Protocol) -> i64 {
    SUBSCRIPTIONS[protocol.index()].load(Ordering::Relaxed)
}

/// A request or attempt refused by a limit: `limiter` is one of a fixed set of names
/// (`app-login`, `panel-login`, `activation`, `realtime-connections-per-user`, …).
pub fn rate_limited(limiter: &'static str) {
    metrics::counter!("thingline_rate_limited_total", "limiter" => limiter).increment(1);
}

/// A failed login (wrong email or password) of `kind` (`app`, `panel`).
pub fn login_failed(kind: &'static str) {
    metrics::counter!("thingline_login_failures_total", "kind" => kind).increment(1);
}
