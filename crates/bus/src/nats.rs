//! The bus across nodes: every node keeps its own [`Notifier`] and bridges it through NATS, so
//! that several Thingline nodes sharing one database share their realtime events and their cache
//! invalidations.
//!
//! # What crosses between nodes
//!
//! - Every event published on this node ([`Bus::publish`]): delivered to the local notifier at
//!   once, and queued (bounded, never blocking the caller) for one sender task that publishes it
//!   on `<prefix>.ev.<kind>.<id>` (`thing.<seq>`, `user.<id>`, `collection.<escaped path>`).
//!   Every other node republishes it into its own notifier.
//! - Every invalidation ([`Bus::invalidate`]) on `<prefix>.inv`; every other node hands it to its
//!   platform through [`Bus::take_remote`].
//! - A peer reset on `<prefix>.inv`, sent by a node whose link came back or that could not send an
//!   invalidation: "I may have lost invalidations you needed"; every other node passes
//!   [`Remote::Reset`] to its platform.
//!
//! - Nothing else but round trips to the server: a request on `<prefix>.ping.<node id>`, which
//!   nobody subscribes to, answered by the server's "no responders" once it has handled every
//!   subscription sent before it (at connect and after each reconnect).
//!
//! The prefix (`thingline` by default) lets several installations share one NATS. Each node
//! connects with a random node id and NATS's `no_echo`; a message carrying this node's id is
//! ignored all the same.
//!
//! # Subscriptions
//!
//! Each node subscribes to all events (`<prefix>.ev.>`) and to `<prefix>.inv`: every node sees
//! every event and drops at the notifier those no local subscriber listens to. That is the
//! simplest correct choice; subscribing by local interest (one NATS subscription per local topic)
//! is a later optimisation, and the subjects are already laid out for it.
//!
//! # Wire format
//!
//! JSON (serde): an event is `{"n":<node id>,"t":<Topic>,"e":<Event>}`, an invalidation
//! `{"n":<node id>,"m":{"Invalidate":<Invalidation>}}` or `{"n":…,"m":"Reset"}`. A single-value
//! event is about 220 bytes and takes about 0.35 µs to encode and 0.9 µs to decode (release
//! build, `measure_single_value_codec`), far below the cost of the database write behind it.
//!
//! A `Values` event larger than the server's `max_payload` (1 MiB by default; read from the
//! server's INFO at each send) is split into parts of consecutive items, each carrying
//! `"p":{"id":…,"i":<index>,"c":<count>}`; the receiver reassembles them and publishes one event,
//! identical to the original. An event that still
//! cannot be sent (a non-`Values` event or a single value over the limit) is logged and counted in
//! [`BusStatus::send_failures`], as are events dropped because the send queue was full.
//!
//! # Guarantees
//!
//! - Order: from one publishing node, on one subject, in publish order (one sender task, one
//!   connection, NATS keeps per-publisher order); a reassembled large event keeps its place.
//!   Events of different nodes on one topic interleave in arrival order.
//! - Delivery: at most once (NATS core). An event published while a link is down (or dropped from
//!   a full queue) is lost to the nodes it did not reach: their realtime subscribers may miss it,
//!   while the stored values are always in the database. The sender queue holds events across a
//!   short outage and sends them late rather than never.
//! - Invalidations: a missed invalidation is covered by a reset. A node whose link drops is not
//!   [`Bus::coherent`] until the link is back, its subscriptions are re-established (a round trip
//!   after the reconnect) and [`Remote::Reset`] has been taken by the platform; it also sends a
//!   peer reset so that the other nodes drop what its lost invalidations would have dropped. An
//!   overflowing remote queue, an undecodable invalidation or a client-side slow-consumer drop
//!   also turn into a reset. What no node can see: while node A's link is down, the other nodes
//!   stay coherent and may serve state A changed until A's queued invalidations or its peer
//!   reset reach them (bounded by the outage).
//!
//! # Why not JetStream
//!
//! JetStream would make the stream durable and replayable, but neither kind of message needs
//! that: realtime events are for whoever listens now (history is in the database), and a node
//! that missed invalidations is better served by dropping every cache (one reset, cheap and
//! always correct) than by replaying a backlog of unbounded length. Core NATS keeps the path
//! short (no acks, no stream storage, no consumer state per node) and works with any NATS server,
//! with or without JetStream enabled.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::connection::State;
use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thingline_core::model::WrittenValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::port::{Bus, BusStatus, Invalidation, Remote};
use crate::{Event, Notifier, Topic};

/// NATS's default `max_payload`, used while the server's is not known.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// How long [`Bus::close`] waits for the send queue, and then for the client to drain.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a round trip to the server after a reconnect may take before it is tried again.
const ROUND_TRIP_WAIT: Duration = Duration::from_secs(5);
/// How often the connection watcher checks the client's state besides its events.
const WATCH_TICK: Duration = Duration::from_secs(1);
/// At most one warning of a kind per this interval; the others are counted in the next one.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// A partly received large event older than this is dropped (its sender went away mid-event).
const PARTIAL_TTL: Duration = Duration::from_secs(60);

/// How a node connects.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The first subject token(s) of every subject: installations sharing one NATS use
    /// different prefixes. Dot-separated tokens, no wildcards, no whitespace.
    pub prefix: String,
    /// Time for the first connection (and each reconnection attempt) to be established.
    pub connect_timeout: Duration,
    /// Events and invalidations waiting for the sender task; when full, [`Bus::publish`] counts a
    /// send failure instead of blocking.
    pub send_queue: usize,
    /// Invalidations from other nodes waiting for the platform; when full, a reset is due.
    pub remote_queue: usize,
    /// The connection name shown by the NATS server (monitoring); the node id is appended.
    pub client_name: String,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            prefix: "thingline".to_owned(),
            connect_timeout: Duration::from_secs(5),
            send_queue: 8192,
            remote_queue: 65_536,
            client_name: "thingline".to_owned(),
        }
    }
}

/// The bus of a node among several, bridged through NATS.
pub struct NatsBus {
    notifier: Arc<Notifier>,
    shared: Arc<Shared>,
    client: async_nats::Client,
    queue: mpsc::Sender<Outgoing>,
    remote_rx: Mutex<Option<mpsc::Receiver<Remote>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the tasks and the bus share.
struct Shared {
    node: u64,
    prefix: String,
    /// Connected, subscriptions re-established after the last reconnect, and the reset for it sent.
    link_up: AtomicBool,
    closed: AtomicBool,
    remote: Arc<RemoteQueue>,
    received: AtomicU64,
    send_failures: AtomicU64,
    /// The other nodes must be told to drop every cache (set by a reconnect or a lost
    /// invalidation; the sender task sends it before its next message).
    peer_reset_due: AtomicBool,
    send_log: RateLimited,
    receive_log: RateLimited,
}

/// What the sender task sends.
enum Outgoing {
    Event(Topic, Event),
    Invalidate(Invalidation),
    /// Nothing to send but a due peer reset.
    Wake,
    /// Everything queued before is sent: flush the connection and answer.
    Close(oneshot::Sender<()>),
}

// ---- wire format ------------------------------------------------------------------------------

/// A part of a `Values` event split to fit the server's `max_payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    /// Unique per sending node.
    id: u64,
    /// This part's index, from 0.
    i: u32,
    /// How many parts the event has.
    c: u32,
}

#[derive(Serialize)]
struct EventOut<'a, E: Serialize> {
    n: u64,
    t: &'a Topic,
    e: E,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<Part>,
}

#[derive(Deserialize)]
struct EventIn {
    n: u64,
    t: Topic,
    e: Event,
    #[serde(default)]
    p: Option<Part>,
}

/// A `Values` event over some of its items, encoded as [`Event::Values`] is.
#[derive(Serialize)]
enum ValuesRef<'a> {
    Values { thing_seq: i64, thing_id: &'a str, items: &'a [WrittenValue] },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum InvMessage {
    Invalidate(Invalidation),
    /// The sender may have lost invalidations: drop every cache.
    Reset,
}

#[derive(Serialize)]
struct InvOut<'a> {
    n: u64,
    m: &'a InvMessage,
}

#[derive(Deserialize)]
struct InvIn {
    n: u64,
    m: InvMessage,
}

/// The subject an event on `topic` is published on.
fn event_subject(prefix: &str, topic: &Topic) -> String {
    match topic {
        Topic::Thing(seq) => format!("{prefix}.ev.thing.{seq}"),
        Topic::User(id) => format!("{prefix}.ev.user.{id}"),
        Topic::Collection(path) => {
            let mut s = format!("{prefix}.ev.collection.");
            escape_token(&mut s, path);
            s
        }
    }
}

/// Appends `raw` as one subject token: `[A-Za-z0-9_/-]` as they are, any other byte as `%XX`
/// (so no `.`, wildcard or whitespace reaches the subject), an empty string as `%`.
fn escape_token(out: &mut String, raw: &str) {
    if raw.is_empty() {
        out.push('%');
        return;
    }
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Checks that `prefix` is one or more plain subject tokens.
fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    let ok = !prefix.is_empty()
        && prefix
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.chars().any(|c| c.is_whitespace() || c.is_control()));
    if !ok {
        bail!("invalid NATS subject prefix {prefix:?}: dot-separated tokens without wildcards or whitespace");
    }
    Ok(())
}

/// The URL without user information, for messages.
fn redact(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((before, host)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@{host}"),
            None => format!("***@{host}"),
        },
        None => url.to_owned(),
    }
}

/// Encodes one event (or, when it is too large and can be split, its parts). `Err` says why it
/// cannot be sent.
fn encode_event(
    node: u64,
    topic: &Topic,
    event: &Event,
    max_payload: usize,
    next_part_id: &mut u64,
) -> Result<Vec<Vec<u8>>, String> {
    let whole =
        serde_json::to_vec(&EventOut { n: node, t: topic, e: event, p: None }).map_err(|e| format!("encode: {e}"))?;
    if whole.len() <= max_payload {
        return Ok(vec![whole]);
    }
    let Event::Values { thing_seq, thing_id, items } = event else {
        return Err(format!("{} bytes over the server's max_payload of {max_payload}", whole.len()));
    };
    // The envelope of a part with no items and the largest part numbers, then each item's size
    // plus its separating comma.
    let widest = Part { id: u64::MAX, i: u32::MAX, c: u32::MAX };
    let empty = ValuesRef::Values { thing_seq: *thing_seq, thing_id, items: &[] };
    let overhead = serialized_len(&EventOut { n: node, t: topic, e: empty, p: Some(widest) })?;
    let budget = max_payload.saturating_sub(overhead);
    let mut ranges = Vec::new();
    let (mut start, mut used) = (0usize, 0usize);
    for (i, item) in items.iter().enumerate() {
        let size = serialized_len(item)? + 1;
        if size > budget {
            return Err(format!("one value of {size} bytes does not fit the server's max_payload of {max_payload}"));
        }
        if used + size > budget {
            ranges.push(start..i);
            start = i;
            used = 0;
        }
        used += size;
    }
    ranges.push(start..items.len());
    let count = u32::try_from(ranges.len()).map_err(|_| "too many parts".to_owned())?;
    *next_part_id = next_part_id.wrapping_add(1);
    let id = *next_part_id;
    let mut parts = Vec::with_capacity(ranges.len());
    for (i, range) in (0u32..).zip(ranges) {
        let e = ValuesRef::Values { thing_seq: *thing_seq, thing_id, items: &items[range] };
        let part = EventOut { n: node, t: topic, e, p: Some(Part { id, i, c: count }) };
        parts.push(serde_json::to_vec(&part).map_err(|e| format!("encode: {e}"))?);
    }
    Ok(parts)
}

/// The length of `value` as JSON, without building it.
fn serialized_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, String> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(|e| format!("encode: {e}"))?;
    Ok(count.0)
}

// ---- the remote queue -------------------------------------------------------------------------

/// Invalidations from other nodes on their way to the platform. Never blocks: when the queue is
/// full, the invalidation is dropped and a reset is due, delivered as soon as there is room (the
/// invalidations dropped meanwhile are covered by it).
struct RemoteQueue {
    tx: mpsc::Sender<Remote>,
    state: Mutex<RemoteState>,
    /// Fast path of [`RemoteQueue::settled`]: false while nothing is pending.
    unsettled: AtomicBool,
}

#[derive(Default)]
struct RemoteState {
    /// A reset must be delivered before anything else.
    reset_due: bool,
    /// A reset was queued and the platform may not have taken it yet.
    reset_unread: bool,
    /// A task waits for room to deliver the due reset.
    retrying: bool,
}

impl RemoteQueue {
    fn new(capacity: usize) -> (Arc<Self>, mpsc::Receiver<Remote>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queue = RemoteQueue { tx, state: Mutex::new(RemoteState::default()), unsettled: AtomicBool::new(false) };
        (Arc::new(queue), rx)
    }

    /// Queues an invalidation (or, if a reset is due and still cannot be delivered, drops it: the
    /// reset covers it).
    fn push(self: &Arc<Self>, invalidation: Invalidation) {
        let mut state = self.state.lock();
        if state.reset_due && !self.try_deliver_reset(&mut state) {
            return;
        }
        match self.tx.try_send(Remote::Invalidate(invalidation)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.reset_locked(&mut state),
            // The platform has gone: nobody to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Makes a reset due and delivers it when there is room.
    fn reset(self: &Arc<Self>) {
        let mut state = self.state.lock();
        self.reset_locked(&mut state);
    }

    fn reset_locked(self: &Arc<Self>, state: &mut RemoteState) {
        state.reset_due = true;
        self.unsettled.store(true, Ordering::Release);
        if !self.try_deliver_reset(state) && !state.retrying {
            state.retrying = true;
            let queue = Arc::clone(self);
            tokio::spawn(async move {
                // Waits for room; fails only when the platform's receiver is gone.
                let permit = queue.tx.reserve().await;
                let mut state = queue.state.lock();
                state.retrying = false;
                if let Ok(permit) = permit
                    && state.reset_due
                {
                    permit.send(Remote::Reset);
                    state.reset_due = false;
                    state.reset_unread = true;
                }
            });
        }
    }

    /// Queues the due reset if there is room.
    fn try_deliver_reset(&self, state: &mut RemoteState) -> bool {
        match self.tx.try_send(Remote::Reset) {
            Ok(()) => {
                state.reset_due = false;
                state.reset_unread = true;
                true
            }
            Err(_) => false,
        }
    }

    /// No reset is due and the last one was taken by the platform (the queue has been emptied
    /// since: the platform applies what it takes at once).
    fn settled(&self) -> bool {
        if !self.unsettled.load(Ordering::Acquire) {
            return true;
        }
        let mut state = self.state.lock();
        if state.reset_due {
            return false;
        }
        if state.reset_unread {
            if self.tx.capacity() < self.tx.max_capacity() {
                return false;
            }
            state.reset_unread = false;
        }
        self.unsettled.store(false, Ordering::Release);
        true
    }
}

// ---- rate-limited logs ------------------------------------------------------------------------

/// Lets one warning of a kind through per [`LOG_INTERVAL`] and counts the others.
struct RateLimited {
    start: Instant,
    /// Milliseconds since `start` of the last warning let through, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimited {
    fn new() -> Self {
        RateLimited { start: Instant::now(), last: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(how many were suppressed since the last one)` when a warning may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= interval)
            && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Shared {
    /// Counts (and logs, rate-limited) something this node could not send.
    fn send_failed(&self, what: &str, why: &str) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.send_log.allow() {
            let node = format!("{:016x}", self.node);
            tracing::warn!(node, suppressed, "NATS bus: {what} not sent to the other nodes: {why}");
        }
    }

    fn receive_failed(&self, why: &str) {
        if let Some(suppressed) = self.receive_log.allow() {
            let node = format!("{:016x}", self.node);
            tracing::warn!(node, suppressed, "NATS bus: message from another node dropped: {why}");
        }
    }
}

// ---- the bus ----------------------------------------------------------------------------------

impl NatsBus {
    /// Connects to the NATS server(s) at `url` (comma-separated URLs allowed), subscribes, and
    /// starts bridging `notifier`. Fails if the first connection cannot be made within
    /// `options.connect_timeout`; after that the client reconnects by itself, forever.
    pub async fn connect(url: &str, notifier: Arc<Notifier>, options: NatsOptions) -> anyhow::Result<Arc<NatsBus>> {
        check_prefix(&options.prefix)?;
        let node: u64 = rand::random();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(format!("{} {node:016x}", options.client_name))
            .connection_timeout(options.connect_timeout)
            .max_reconnects(None)
            .no_echo()
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {}", redact(url)))?;

        let prefix = options.prefix.clone();
        let subscribed = async {
            let events = client.subscribe(format!("{prefix}.ev.>")).await?;
            let invalidations = client.subscribe(format!("{prefix}.inv")).await?;
            // The server has the subscriptions once it answered a round trip.
            if !round_trip(&client, &prefix, node, options.connect_timeout).await {
                bail!("no answer from the server within {:?}", options.connect_timeout);
            }
            anyhow::Ok((events, invalidations))
        };
        let (events_sub, inv_sub) =
            subscribed.await.with_context(|| format!("subscribing at NATS at {}", redact(url)))?;
        let connects = client.statistics().connects.load(Ordering::Relaxed);

        let (remote, remote_rx) = RemoteQueue::new(options.remote_queue);
        let shared = Arc::new(Shared {
            node,
            prefix,
            link_up: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            remote,
            received: AtomicU64::new(0),
            send_failures: AtomicU64::new(0),
            peer_reset_due: AtomicBool::new(false),
            send_log: RateLimited::new(),
            receive_log: RateLimited::new(),
        });
        let (queue, queue_rx) = mpsc::channel(options.send_queue.max(1));
        let tasks = vec![
            tokio::spawn(send_loop(Arc::clone(&shared), client.clone(), queue_rx)),
            tokio::spawn(receive_events(Arc::clone(&shared), Arc::clone(&notifier), events_sub)),
            tokio::spawn(receive_invalidations(Arc::clone(&shared), inv_sub)),
            tokio::spawn(watch_connection(Arc::clone(&shared), client.clone(), events_rx, queue.clone(), connects)),
        ];
        tracing::info!(
            node = %format_args!("{node:016x}"),
            url = %redact(url),
            prefix = %shared.prefix,
            max_payload = client.server_info().max_payload,
            "NATS bus connected"
        );
        Ok(Arc::new(NatsBus { notifier, shared, client, queue, remote_rx: Mutex::new(Some(remote_rx)), tasks }))
    }

    /// This node's random id, as carried in every message it sends.
    pub fn node_id(&self) -> u64 {
        self.shared.node
    }

    /// Drops the connection and reconnects, as after a network failure: this node is incoherent
    /// until it is back, then resets, and so do the other nodes. (For operators and tests.)
    pub async fn force_reconnect(&self) -> anyhow::Result<()> {
        self.client.force_reconnect().await.context("forcing a NATS reconnect")
    }

    /// Asks the sender task to send a peer reset (before the next message it sends).
    fn request_peer_reset(shared: &Shared, queue: &mpsc::Sender<Outgoing>) {
        shared.peer_reset_due.store(true, Ordering::Release);
        // A full queue is fine: the sender checks the flag before each message.
        let _ = queue.try_send(Outgoing::Wake);
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    fn publish(&self, topic: &Topic, event: Event) -> usize {
        if !self.shared.closed.load(Ordering::Acquire)
            && self.queue.try_send(Outgoing::Event(topic.clone(), event.clone())).is_err()
        {
            self.shared.send_failed("event", "the send queue is full");
        }
        self.notifier.publish(topic, event)
    }

    fn invalidate(&self, invalidation: Invalidation) {
        if self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        if self.queue.try_send(Outgoing::Invalidate(invalidation)).is_err() {
            self.shared.send_failed("invalidation", "the send queue is full (the other nodes will reset)");
            self.shared.peer_reset_due.store(true, Ordering::Release);
        }
    }

    fn coherent(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
            && self.shared.link_up.load(Ordering::Acquire)
            && self.shared.remote.settled()
    }

    fn take_remote(&self) -> Option<mpsc::Receiver<Remote>> {
        self.remote_rx.lock().take()
    }

    fn status(&self) -> BusStatus {
        BusStatus {
            backend: "nats",
            connected: !self.shared.closed.load(Ordering::Acquire)
                && self.client.connection_state() == State::Connected,
            received: self.shared.received.load(Ordering::Relaxed),
            send_failures: self.shared.send_failures.load(Ordering::Relaxed),
        }
    }

    async fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        let (ack_tx, ack_rx) = oneshot::channel();
        let flushed =
            matches!(tokio::time::timeout_at(deadline, self.queue.send(Outgoing::Close(ack_tx))).await, Ok(Ok(())))
                && matches!(tokio::time::timeout_at(deadline, ack_rx).await, Ok(Ok(())));
        if !flushed {
            tracing::warn!(
                queued = self.queue.max_capacity() - self.queue.capacity(),
                "NATS bus: the send queue was not flushed within {CLOSE_WAIT:?}; what is left is not sent"
            );
        }
        self.shared.link_up.store(false, Ordering::Release);
        match tokio::time::timeout(CLOSE_WAIT, self.client.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("NATS bus: drain: {e}"),
            Err(_) => tracing::warn!("NATS bus: drain timed out after {CLOSE_WAIT:?}"),
        }
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        // The tasks hold clones of the client: once they are gone the connection closes.
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ---- tasks ------------------------------------------------------------------------------------

/// The one sender: keeps the publish order of this node.
async fn send_loop(shared: Arc<Shared>, client: async_nats::Client, mut queue: mpsc::Receiver<Outgoing>) {
    let mut next_part_id: u64 = rand::random();
    while let Some(outgoing) = queue.recv().await {
        if shared.peer_reset_due.swap(false, Ordering::AcqRel) {
            send_invalidation(&shared, &client, &InvMessage::Reset).await;
        }
        match outgoing {
            Outgoing::Event(topic, event) => {
                let max_payload = match client.server_info().max_payload {
                    0 => DEFAULT_MAX_PAYLOAD,
                    n => n,
                };
                match encode_event(shared.node, &topic, &event, max_payload, &mut next_part_id) {
                    Ok(messages) => {
                        let subject = event_subject(&shared.prefix, &topic);
                        for payload in messages {
                            if let Err(e) = client.publish(subject.clone(), payload.into()).await {
                                shared.send_failed("event", &e.to_string());
                                break;
                            }
                        }
                    }
                    Err(why) => shared.send_failed("event", &why),
                }
            }
            Outgoing::Invalidate(invalidation) => {
                send_invalidation(&shared, &client, &InvMessage::Invalidate(invalidation)).await;
            }
            Outgoing::Wake => {}
            Outgoing::Close(ack) => {
                match tokio::time::timeout(CLOSE_WAIT, client.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("NATS bus: flush: {e}"),
                    Err(_) => tracing::warn!("NATS bus: flush timed out after {CLOSE_WAIT:?}"),
                }
                let _ = ack.send(());
            }
        }
    }
}

async fn send_invalidation(shared: &Shared, client: &async_nats::Client, message: &InvMessage) {
    let sent = match serde_json::to_vec(&InvOut { n: shared.node, m: message }) {
        Ok(payload) => {
            client.publish(format!("{}.inv", shared.prefix), payload.into()).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = sent {
        shared.send_failed("invalidation", &why);
        shared.peer_reset_due.store(true, Ordering::Release);
    }
}

/// Whether the server answered a request within `wait`: it handles one connection's messages in
/// order, so it then has every subscription sent before. (`Client::flush` only writes to the
/// socket.) Nobody subscribes to `<prefix>.ping.<node>`: the server answers "no responders".
async fn round_trip(client: &async_nats::Client, prefix: &str, node: u64, wait: Duration) -> bool {
    let subject = format!("{prefix}.ping.{node:016x}");
    match tokio::time::timeout(wait, client.request(subject, Default::default())).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() == async_nats::RequestErrorKind::NoResponders,
        Err(_) => false,
    }
}

/// A large event being reassembled.
struct Partial {
    id: u64,
    next: u32,
    count: u32,
    topic: Topic,
    thing_seq: i64,
    thing_id: Arc<str>,
    items: Vec<WrittenValue>,
    started: Instant,
}

/// Republishes the other nodes' events into the local notifier.
async fn receive_events(shared: Arc<Shared>, notifier: Arc<Notifier>, mut sub: async_nats::Subscriber) {
    // By sending node: its parts arrive consecutively (one sender task each).
    let mut partials: HashMap<u64, Partial> = HashMap::new();
    while let Some(message) = sub.next().await {
        let envelope: EventIn = match serde_json::from_slice(&message.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                shared.receive_failed(&format!("undecodable event on {}: {e}", message.subject));
                continue;
            }
        };
        if envelope.n == shared.node {
            continue;
        }
        let Some(part) = envelope.p else {
            shared.received.fetch_add(1, Ordering::Relaxed);
            notifier.publish(&envelope.t, envelope.e);
            continue;
        };
        let Event::Values { thing_seq, thing_id, items } = envelope.e else {
            shared.receive_failed("a part of an event that is not Values");
            continue;
        };
        if part.i == 0 {
            if partials.len() >= 64 {
                partials.retain(|_, p| p.started.elapsed() < PARTIAL_TTL);
            }
            let old = partials.insert(
                envelope.n,
                Partial {
                    id: part.id,
                    next: 0,
                    count: part.c,
                    topic: envelope.t,
                    thing_seq,
                    thing_id,
                    items: Vec::new(),
                    started: Instant::now(),
                },
            );
            if old.is_some() {
                shared.receive_failed("a large event left incomplete by its sender");
            }
        }
        let Some(partial) = partials.get_mut(&envelope.n) else {
            shared.receive_failed("a part of a large event whose start was missed");
            continue;
        };
        if partial.id != part.id || partial.next != part.i || partial.count != part.c {
            partials.remove(&envelope.n);
            shared.receive_failed("a large event with a part missing");
            continue;
        }
        partial.items.extend(items.iter().cloned());
        partial.next += 1;
        if partial.next == partial.count
            && let Some(done) = partials.remove(&envelope.n)
        {
            shared.received.fetch_add(1, Ordering::Relaxed);
            let event = Event::Values { thing_seq: done.thing_seq, thing_id: done.thing_id, items: done.items.into() };
            notifier.publish(&done.topic, event);
        }
    }
}

/// Hands the other nodes' invalidations to the platform.
async fn receive_invalidations(shared: Arc<Shared>, mut sub: async_nats::Subscriber) {
    while let Some(message) = sub.next().await {
        match serde_json::from_slice::<InvIn>(&message.payload) {
            Ok(envelope) if envelope.n == shared.node => {}
            Ok(envelope) => {
                shared.received.fetch_add(1, Ordering::Relaxed);
                match envelope.m {
                    InvMessage::Invalidate(invalidation) => shared.remote.push(invalidation),
                    InvMessage::Reset => shared.remote.reset(),
                }
            }
            Err(e) => {
                // Something we needed may have been in it.
                shared.receive_failed(&format!("undecodable invalidation (caches reset): {e}"));
                shared.remote.reset();
            }
        }
    }
}

/// Follows the connection: incoherent while the link is down; once it is back (and the
/// subscriptions are re-established), a reset for the platform and one for the other nodes.
async fn watch_connection(
    shared: Arc<Shared>,
    client: async_nats::Client,
    mut events: mpsc::UnboundedReceiver<async_nats::Event>,
    queue: mpsc::Sender<Outgoing>,
    mut connects_seen: u64,
) {
    let mut tick = tokio::time::interval(WATCH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let check_reconnect = tokio::select! {
            event = events.recv() => match event {
                None => return,
                Some(async_nats::Event::Disconnected) => {
                    if shared.link_up.swap(false, Ordering::AcqRel) {
                        tracing::warn!("NATS bus: link lost; caches are bypassed until it is back");
                    }
                    false
                }
                Some(async_nats::Event::Connected) => true,
                Some(async_nats::Event::SlowConsumer(sid)) => {
                    // The client dropped messages of a subscription: maybe invalidations.
                    shared.receive_failed(&format!("slow consumer on subscription {sid} (caches reset)"));
                    shared.remote.reset();
                    false
                }
                Some(async_nats::Event::Closed) => {
                    shared.link_up.store(false, Ordering::Release);
                    false
                }
                Some(other) => {
                    tracing::debug!("NATS bus: {other}");
                    false
                }
            },
            _ = tick.tick() => {
                // In case an event was missed.
                let connected = client.connection_state() == State::Connected;
                if !connected {
                    shared.link_up.store(false, Ordering::Release);
                }
                connected && !shared.link_up.load(Ordering::Acquire)
            }
        };
        if !check_reconnect || shared.closed.load(Ordering::Acquire) {
            continue;
        }
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        if connects <= connects_seen && shared.link_up.load(Ordering::Acquire) {
            // The first connection, already handled by `connect`.
            continue;
        }
        // The client re-subscribes right after reconnecting; a round trip makes sure the server
        // has the subscriptions before we call ourselves coherent.
        let mut answered = false;
        while client.connection_state() == State::Connected && !shared.closed.load(Ordering::Acquire) {
            if round_trip(&client, &shared.prefix, shared.node, ROUND_TRIP_WAIT).await {
                answered = true;
                break;
            }
        }
        if !answered || client.connection_state() != State::Connected {
            continue;
        }
        connects_seen = connects;
        shared.remote.reset();
        NatsBus::request_peer_reset(&shared, &queue);
        shared.link_up.store(true, Ordering::Release);
        tracing::info!("NATS bus: link back; caches reset here and on the other nodes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingline_core::model::{GeoAttr, ValueItem};

    fn value(key: &str, value: &str, ts: i64) -> WrittenValue {
        WrittenValue { item: ValueItem { key: key.into(), value: value.into(), ts }, geo: None }
    }

    fn values(n: usize) -> Event {
        let items: Vec<_> = (0..n).map(|i| value("temperature", &format!("{}", 20 + i % 7), i as i64)).collect();
        Event::Values { thing_seq: 7, thing_id: Arc::from("thing-7"), items: items.into() }
    }

    #[test]
    fn subjects_are_valid_tokens() {
        assert_eq!(event_subject("tl", &Topic::Thing(-3)), "tl.ev.thing.-3");
        assert_eq!(event_subject("a.b", &Topic::User(9)), "a.b.ev.user.9");
        assert_eq!(
            event_subject("tl", &Topic::Collection(Arc::from("app/x.y/1/rooms a>*%é"))),
            "tl.ev.collection.app/x%2Ey/1/rooms%20a%3E%2A%25%C3%A9"
        );
        assert_eq!(event_subject("tl", &Topic::Collection(Arc::from(""))), "tl.ev.collection.%");
        assert!(check_prefix("thingline").is_ok());
        assert!(check_prefix("org.site-1").is_ok());
        for bad in ["", "a..b", "a.*", ">", "a b", "a."] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(redact("nats://u:p@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
    }

    #[test]
    fn a_values_part_encodes_as_the_event_does() {
        let event = values(3);
        let Event::Values { thing_seq, thing_id, items } = &event else { unreachable!() };
        let borrowed = serde_json::to_string(&ValuesRef::Values { thing_seq: *thing_seq, thing_id, items }).unwrap();
        assert_eq!(borrowed, serde_json::to_string(&event).unwrap());
    }

    #[test]
    fn events_round_trip_byte_exact() {
        let geo = GeoAttr { sent: r#"{"lat":41.39,"long":2.15}"#.into(), point: "{}".into(), ts: 5 };
        let odd = WrittenValue {
            item: ValueItem { key: "k\u{0}é\"".into(), value: "\"\\u0000 \u{1F600}\"".into(), ts: i64::MIN },
            geo: Some(geo),
        };
        let event = Event::Values { thing_seq: 1, thing_id: Arc::from("t"), items: Arc::from(vec![odd]) };
        let topic = Topic::Collection(Arc::from("app/a/1/c"));
        let mut id = 0;
        let encoded = encode_event(42, &topic, &event, DEFAULT_MAX_PAYLOAD, &mut id).unwrap();
        assert_eq!(encoded.len(), 1);
        let decoded: EventIn = serde_json::from_slice(&encoded[0]).unwrap();
        assert_eq!((decoded.n, decoded.t, decoded.e, decoded.p), (42, topic, event, None));
    }

    #[test]
    fn large_values_split_under_the_limit_and_in_order() {
        let event = values(5000);
        let topic = Topic::Thing(7);
        let mut id = 0;
        let parts = encode_event(1, &topic, &event, 16 * 1024, &mut id).unwrap();
        assert!(parts.len() > 1);
        let mut items = Vec::new();
        for (i, bytes) in parts.iter().enumerate() {
            assert!(bytes.len() <= 16 * 1024, "{}", bytes.len());
            let part: EventIn = serde_json::from_slice(bytes).unwrap();
            assert_eq!(part.p, Some(Part { id: 1, i: i as u32, c: parts.len() as u32 }));
            let Event::Values { items: chunk, .. } = part.e else { panic!() };
            items.extend(chunk.iter().cloned());
        }
        let Event::Values { items: all, .. } = &event else { unreachable!() };
        assert_eq!(&items[..], &all[..]);
        // Neither a non-Values event nor a single value over the limit can be split.
        let object = Event::Object { op: crate::ObjectOp::Created, id: "x".into(), body: Some("y".repeat(200).into()) };
        assert!(encode_event(1, &topic, &object, 100, &mut id).is_err());
        let big =
            Event::Values { thing_seq: 1, thing_id: "t".into(), items: vec![value("k", &"9".repeat(300), 1)].into() };
        assert!(encode_event(1, &topic, &big, 200, &mut id).is_err());
    }

    #[tokio::test]
    async fn a_full_remote_queue_turns_into_one_reset() {
        let (queue, mut rx) = RemoteQueue::new(2);
        let inv = |id| Invalidation::UserAccess { user_id: id };
        queue.push(inv(1));
        queue.push(inv(2));
        assert!(queue.settled());
        queue.push(inv(3)); // dropped: a reset is due
        queue.push(inv(4)); // covered by the reset
        assert!(!queue.settled());
        assert_eq!(rx.recv().await, Some(Remote::Invalidate(inv(1))));
        // The retry task queues the reset as soon as there is room.
        assert_eq!(rx.recv().await, Some(Remote::Invalidate(inv(2))));
        assert_eq!(rx.recv().await, Some(Remote::Reset));
        assert!(queue.settled());
        queue.push(inv(5));
        assert_eq!(rx.recv().await, Some(Remote::Invalidate(inv(5))));
    }

    /// `cargo test -p thingline-bus --release --lib -- --ignored --nocapture measure`
    #[test]
    #[ignore = "a measurement, not a test"]
    fn measure_single_value_codec() {
        let event = Event::Values {
            thing_seq: 123_456,
            thing_id: Arc::from("8f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b"),
            items: Arc::from(vec![value("temperature", "21.5", 1_760_000_000_000)]),
        };
        let topic = Topic::Thing(123_456);
        let rounds = 200_000;
        let mut id = 0;
        let start = Instant::now();
        let mut bytes = Vec::new();
        for _ in 0..rounds {
            bytes = encode_event(u64::MAX, &topic, &event, DEFAULT_MAX_PAYLOAD, &mut id).unwrap().remove(0);
        }
        let encode = start.elapsed() / rounds;
        let start = Instant::now();
        for _ in 0..rounds {
            let decoded: EventIn = serde_json::from_slice(&bytes).unwrap();
            std::hint::black_box(decoded);
        }
        let decode = start.elapsed() / rounds;
        println!("{} bytes: {}", bytes.len(), String::from_utf8_lossy(&bytes));
        println!("encode {encode:?}, decode {decode:?} per event");
    }
}
