//! The notifier: every committed (or broadcast-only) write is published here once, on the topic
//! of what changed, and every realtime path (thing streams, app subscriptions, collection
//! subscriptions, Socket.IO, later MQTT and CoAP) subscribes here. In-process it is a map of
//! bounded tokio broadcast channels; a slow subscriber lags (and is told) instead of growing
//! memory or slowing writers. Across nodes [`nats::NatsBus`] republishes into the same notifier.
//!
//! [`fanout`] groups the subscribers that see events the same way behind one bus subscription,
//! renders each event once for all of them and drops the slow ones; [`Connections`] and
//! [`RealtimeLimits`] are shared by every realtime adapter, and [`Notifier::snapshot`] is what
//! the logs and the metrics endpoint read.

pub mod fanout;
pub mod nats;
pub mod port;
mod registry;

pub use fanout::{DropReason, Fanout, GroupKey, Membership, Payload, Renderer, Sink, SinkError};
pub use port::{Bus, BusStatus, InProcessBus, Invalidation, Remote};
pub use registry::{
    ConnectionGuard, Connections, DEFAULT_MAX_CONNECTIONS_PER_USER, DEFAULT_MAX_STREAMS_PER_THING,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION, DEFAULT_QUEUE_CAPACITY, RealtimeLimits, StatsSnapshot, ThingStreamGuard,
};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thingline_core::model::WrittenValue;
use tokio::sync::broadcast;

/// What a subscriber listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// Every value written to one thing (by its internal seq).
    Thing(i64),
    /// Every change in one object collection: `app/<appId>/<owner>/<path>`.
    Collection(Arc<str>),
    /// Changes to what one app user may access (a link or grant removed): live subscriptions of
    /// that user re-check their permissions.
    User(i64),
}

/// What travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Values written to a thing, in write order.
    Values { thing_seq: i64, thing_id: Arc<str>, items: Arc<[WrittenValue]> },
    /// The thing was deleted (published on its [`Topic::Thing`]): every subscription of it ends.
    ThingDeleted { thing_seq: i64 },
    /// An object stored, updated or deleted in a collection: its `_id`, and for a creation or
    /// an update the object as it is now stored (JSON text, `_id` first); `None` for a deletion.
    Object { op: ObjectOp, id: Arc<str>, body: Option<Arc<str>> },
    /// What the user may access changed, or one of the user's sessions ended (published on
    /// [`Topic::User`]): live subscriptions of the user re-check their session and permissions.
    AccessChanged { user_id: i64 },
}

impl Event {
    /// Whether the event ends every subscription of its topic (the fan-out drops their sinks with
    /// [`DropReason::Gone`]).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::ThingDeleted { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOp {
    Created,
    Updated,
    Deleted,
}

/// Counters for observability.
#[derive(Debug, Default)]
pub struct Stats {
    pub published: AtomicU64,
    pub subscriptions: AtomicU64,
    pub lagged: AtomicU64,
}

/// The in-process notifier. Cheap to share behind an `Arc`.
pub struct Notifier {
    topics: Mutex<HashMap<Topic, broadcast::Sender<Arc<Event>>>>,
    capacity: usize,
    stats: Stats,
    pub(crate) fanout: Fanout,
    connections: Connections,
    limits: RealtimeLimits,
}

impl Notifier {
    /// `capacity`: events buffered per topic before the slowest subscriber lags.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Notifier {
            topics: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            stats: Stats::default(),
            fanout: Fanout::new(),
            connections: Connections::default(),
            limits: RealtimeLimits::default(),
        })
    }

    /// Registers interest in a topic; every event published after this call is delivered (or
    /// reported as lagged). Subscribe before reading state, so nothing falls in a gap.
    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> Subscription {
        let rx = {
            let mut topics = self.topics.lock();
            topics.entry(topic.clone()).or_insert_with(|| broadcast::channel(self.capacity).0).subscribe()
        };
        self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
        Subscription { rx, topic, notifier: Arc::clone(self) }
    }

    /// Publishes an event; returns how many subscribers it reached.
    pub fn publish(&self, topic: &Topic, event: Event) -> usize {
        let sender = self.topics.lock().get(topic).cloned();
        let Some(sender) = sender else { return 0 };
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        sender.send(Arc::new(event)).unwrap_or(0)
    }

    /// Number of topics with at least one subscriber.
    pub fn topic_count(&self) -> usize {
        self.topics.lock().len()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The fan-out groups (join them with [`Fanout::join`]).
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// Open realtime connections, in total and per user.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The limits every realtime adapter applies (adjustable at run time).
    pub fn limits(&self) -> &RealtimeLimits {
        &self.limits
    }

    /// Every counter at once: for the periodic log line and the metrics endpoint.
    pub fn snapshot(&self) -> StatsSnapshot {
        let f = self.fanout.stats();
        StatsSnapshot {
            connections: self.connections.total(),
            subscriptions: self.fanout.member_count(),
            groups: self.fanout.group_count() as u64,
            bus_subscriptions: self.stats.subscriptions.load(Ordering::Relaxed),
            published: self.stats.published.load(Ordering::Relaxed),
            rendered: f.rendered.load(Ordering::Relaxed),
            delivered: f.delivered.load(Ordering::Relaxed),
            dropped_slow: f.dropped_slow.load(Ordering::Relaxed),
            dropped_lagged: f.dropped_lagged.load(Ordering::Relaxed),
            lagged: self.stats.lagged.load(Ordering::Relaxed),
        }
    }
}

/// A live subscription. Dropping it unregisters; the topic is removed with its last subscriber.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    topic: Topic,
    notifier: Arc<Notifier>,
}

/// What [`Subscription::recv`] yields.
#[derive(Debug)]
pub enum Received {
    Event(Arc<Event>),
    /// The subscriber fell behind and `n` events were skipped.
    Lagged(u64),
    /// The notifier is gone (shutdown).
    Closed,
}

impl Subscription {
    pub async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(ev) => Received::Event(ev),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.notifier.stats.lagged.fetch_add(1, Ordering::Relaxed);
                Received::Lagged(n)
            }
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }

    pub fn topic(&self) -> &Topic {
        &self.topic
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self.notifier.topics.lock();
        if let Some(sender) = topics.get(&self.topic) {
            // This receiver still counts until it is dropped after this function.
            if sender.receiver_count() <= 1 {
                topics.remove(&self.topic);
            }
        }
        self.notifier.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: i64) -> Event {
        let item = thingline_core::model::ValueItem { key: "k".into(), value: n.to_string(), ts: n };
        Event::Values {
            thing_seq: 1,
            thing_id: Arc::from("t"),
            items: Arc::from(vec![WrittenValue { item, geo: None }]),
        }
    }

    #[tokio::test]
    async fn delivers_to_every_subscriber_of_a_topic_only() {
        let n = Notifier::new(16);
        let mut a = n.subscribe(Topic::Thing(1));
        let mut b = n.subscribe(Topic::Thing(1));
        let mut other = n.subscribe(Topic::Thing(2));
        assert_eq!(n.publish(&Topic::Thing(1), values(1)), 2);
        assert!(matches!(a.recv().await, Received::Event(e) if *e == values(1)));
        assert!(matches!(b.recv().await, Received::Event(e) if *e == values(1)));
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), other.recv()).await.is_err());
    }

    #[tokio::test]
    async fn slow_subscriber_lags_instead_of_growing() {
        let n = Notifier::new(4);
        let mut slow = n.subscribe(Topic::Thing(1));
        for i in 0..10 {
            n.publish(&Topic::Thing(1), values(i));
        }
        assert!(matches!(slow.recv().await, Received::Lagged(6)));
        assert!(matches!(slow.recv().await, Received::Event(e) if *e == values(6)));
    }

    #[tokio::test]
    async fn last_unsubscribe_removes_the_topic() {
        let n = Notifier::new(4);
        let a = n.subscribe(Topic::Thing(1));
        let b = n.subscribe(Topic::Thing(1));
        assert_eq!(n.topic_count(), 1);
        drop(a);
        assert_eq!(n.topic_count(), 1);
        drop(b);
        assert_eq!(n.topic_count(), 0);
        assert_eq!(n.publish(&Topic::Thing(1), values(1)), 0);
    }
}
