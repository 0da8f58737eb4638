//! Fan-out groups: the one road from a bus topic to many realtime subscribers (HTTP app
//! subscriptions, Socket.IO, later MQTT and CoAP observers).
//!
//! Subscribers that see an event the same way (same topic, same *view*: e.g. "key temperature
//! in the app item shape, channel `/me/resources/temperature`") share a [`Group`]. A group holds
//! ONE bus subscription and ONE task: each event is rendered once, into a shared [`Payload`], and
//! handed to every sink of the group with a non-blocking [`Sink::deliver`]. A sink whose own
//! bounded queue is full is removed and told ([`Sink::dropped`]); the others keep receiving and
//! the writer is never slowed.
//!
//! Joining a group registers the bus subscription synchronously, before [`Fanout::join`]
//! returns: acknowledge a subscription only after joining, and every later write is delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde_json::value::RawValue;

use crate::{Event, Notifier, Received, Topic};

/// An event rendered once for every subscriber of a group: JSON text, validated.
#[derive(Debug)]
pub struct Payload {
    raw: Box<RawValue>,
}

impl Payload {
    /// `None` if `json` is not valid JSON (a bug in the renderer; logged by the caller).
    pub fn new(json: String) -> Option<Payload> {
        RawValue::from_string(json).ok().map(|raw| Payload { raw })
    }

    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    pub fn as_str(&self) -> &str {
        self.raw.get()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.raw.get().as_bytes()
    }
}

/// Why a sink failed to take a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// Its bounded queue is full: the subscriber is too slow and is dropped.
    Full,
    /// The subscriber is gone; remove it quietly.
    Closed,
}

/// Why a sink was removed by the fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its own queue was full.
    SlowConsumer,
    /// The group fell behind the bus (the process is overloaded) and events were skipped.
    Lagged,
    /// What the group's topic names is gone (a thing was deleted).
    Gone,
    /// The notifier shut down.
    Closed,
}

/// One subscriber's outlet. `deliver` must not block: try to enqueue, or fail.
pub trait Sink: Send + Sync + 'static {
    /// `channel`: the group's channel name (the Socket.IO event name); `payload`: the rendered
    /// event, shared by every sink of the group.
    fn deliver(&self, channel: &str, payload: &Arc<Payload>) -> Result<(), SinkError>;
    /// Called once, outside any fan-out lock, when the fan-out removed this sink.
    fn dropped(&self, reason: DropReason);
}

/// Renders an event for a view, or `None` when the view shows nothing of it.
pub type Renderer = Arc<dyn Fn(&Event) -> Option<String> + Send + Sync>;

/// What identifies a group: the bus topic and the view (channel name) of its subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub topic: Topic,
    /// Names both the rendering and the channel, e.g. `/me/resources/temperature`.
    pub channel: Arc<str>,
}

struct Group {
    key: GroupKey,
    sinks: RwLock<Vec<(u64, Arc<dyn Sink>)>>,
    task: tokio::task::AbortHandle,
}

/// Counters of the realtime paths (read with [`Fanout::snapshot`]).
#[derive(Debug, Default)]
pub struct FanoutStats {
    /// Payloads handed to a sink.
    pub delivered: AtomicU64,
    /// Sinks removed because their queue was full.
    pub dropped_slow: AtomicU64,
    /// Sinks removed because their group lagged behind the bus.
    pub dropped_lagged: AtomicU64,
    /// Events rendered (once per event and group).
    pub rendered: AtomicU64,
}

/// The registry of fan-out groups. One per [`Notifier`] ([`Notifier::fanout`]).
pub struct Fanout {
    groups: Mutex<HashMap<GroupKey, Arc<Group>>>,
    next_id: AtomicU64,
    members: AtomicU64,
    pub(crate) stats: FanoutStats,
}

impl Fanout {
    pub(crate) fn new() -> Fanout {
        Fanout {
            groups: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            members: AtomicU64::new(0),
            stats: FanoutStats::default(),
        }
    }

    /// Adds `sink` to the group of `key` (created with `render` if it does not exist yet). The
    /// bus subscription is live when this returns. Dropping the [`Membership`] leaves.
    /// Must be called inside a tokio runtime.
    pub fn join(notifier: &Arc<Notifier>, key: GroupKey, render: Renderer, sink: Arc<dyn Sink>) -> Membership {
        let fanout = &notifier.fanout;
        let id = fanout.next_id.fetch_add(1, Ordering::Relaxed);
        let mut groups = fanout.groups.lock();
        let group = match groups.get(&key) {
            Some(g) => Arc::clone(g),
            None => {
                let sub = notifier.subscribe(key.topic.clone());
                let (tx, rx) = tokio::sync::oneshot::channel::<Arc<Group>>();
                let task = tokio::spawn(run_group(Arc::clone(notifier), rx, sub, render));
                let group =
                    Arc::new(Group { key: key.clone(), sinks: RwLock::new(Vec::new()), task: task.abort_handle() });
                let _ = tx.send(Arc::clone(&group));
                groups.insert(key, Arc::clone(&group));
                group
            }
        };
        group.sinks.write().push((id, sink));
        fanout.members.fetch_add(1, Ordering::Relaxed);
        Membership { id, group, notifier: Arc::clone(notifier) }
    }

    /// Number of live groups (bus subscriptions held by the fan-out).
    pub fn group_count(&self) -> usize {
        self.groups.lock().len()
    }

    /// Number of sinks in all groups (subscriptions served by the fan-out).
    pub fn member_count(&self) -> u64 {
        self.members.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &FanoutStats {
        &self.stats
    }
}

/// A sink's place in a group. Dropping it removes the sink; the last one removes the group.
pub struct Membership {
    id: u64,
    group: Arc<Group>,
    notifier: Arc<Notifier>,
}

impl Membership {
    pub fn key(&self) -> &GroupKey {
        &self.group.key
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let fanout = &self.notifier.fanout;
        let mut groups = fanout.groups.lock();
        let now_empty = {
            let mut sinks = self.group.sinks.write();
            let before = sinks.len();
            sinks.retain(|(id, _)| *id != self.id);
            if sinks.len() < before {
                fanout.members.fetch_sub(1, Ordering::Relaxed);
            }
            sinks.is_empty()
        };
        if now_empty && groups.get(&self.group.key).is_some_and(|g| Arc::ptr_eq(g, &self.group)) {
            groups.remove(&self.group.key);
            self.group.task.abort();
        }
    }
}

async fn run_group(
    notifier: Arc<Notifier>,
    group: tokio::sync::oneshot::Receiver<Arc<Group>>,
    mut sub: crate::Subscription,
    render: Renderer,
) {
    let Ok(group) = group.await else { return };
    // The task must not keep the group alive on its own: memberships own it.
    let weak = Arc::downgrade(&group);
    drop(group);
    let stats = &notifier.fanout.stats;
    loop {
        let received = sub.recv().await;
        let Some(group) = weak.upgrade() else { return };
        match received {
            Received::Event(ev) if ev.is_terminal() => {
                drop_all(&notifier, &group, DropReason::Gone);
            }
            Received::Event(ev) => {
                let Some(text) = render(&ev) else { continue };
                stats.rendered.fetch_add(1, Ordering::Relaxed);
                let Some(payload) = Payload::new(text) else {
                    tracing::error!(channel = %group.key.channel, "renderer produced invalid JSON; event skipped");
                    continue;
                };
                let payload = Arc::new(payload);
                let mut failed: Vec<(u64, SinkError)> = Vec::new();
                let mut delivered = 0u64;
                {
                    let sinks = group.sinks.read();
                    for (id, sink) in sinks.iter() {
                        match sink.deliver(&group.key.channel, &payload) {
                            Ok(()) => delivered += 1,
                            Err(e) => failed.push((*id, e)),
                        }
                    }
                }
                stats.delivered.fetch_add(delivered, Ordering::Relaxed);
                if !failed.is_empty() {
                    remove_failed(&notifier, &group, &failed);
                }
            }
            Received::Lagged(n) => {
                tracing::warn!(channel = %group.key.channel, skipped = n, "fan-out group lagged; dropping its subscribers");
                let dropped = drop_all(&notifier, &group, DropReason::Lagged);
                stats.dropped_lagged.fetch_add(dropped, Ordering::Relaxed);
            }
            Received::Closed => {
                drop_all(&notifier, &group, DropReason::Closed);
                return;
            }
        }
    }
}

/// Removes every sink of the group and tells each why; returns how many.
fn drop_all(notifier: &Notifier, group: &Group, reason: DropReason) -> u64 {
    let all: Vec<(u64, Arc<dyn Sink>)> = std::mem::take(&mut *group.sinks.write());
    notifier.fanout.members.fetch_sub(all.len() as u64, Ordering::Relaxed);
    for (_, sink) in &all {
        sink.dropped(reason);
    }
    all.len() as u64
}

fn remove_failed(notifier: &Notifier, group: &Group, failed: &[(u64, SinkError)]) {
    let mut removed: Vec<(Arc<dyn Sink>, SinkError)> = Vec::with_capacity(failed.len());
    {
        let mut sinks = group.sinks.write();
        sinks.retain(|(id, sink)| match failed.iter().find(|(f, _)| f == id) {
            Some((_, e)) => {
                removed.push((Arc::clone(sink), *e));
                false
            }
            None => true,
        });
    }
    notifier.fanout.members.fetch_sub(removed.len() as u64, Ordering::Relaxed);
    for (sink, e) in removed {
        if e == SinkError::Full {
            notifier.fanout.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
            sink.dropped(DropReason::SlowConsumer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingline_core::model::{ValueItem, WrittenValue};
    use tokio::sync::mpsc;

    struct Chan(mpsc::Sender<Arc<Payload>>, mpsc::UnboundedSender<DropReason>);
    impl Sink for Chan {
        fn deliver(&self, _channel: &str, payload: &Arc<Payload>) -> Result<(), SinkError> {
            self.0.try_send(Arc::clone(payload)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SinkError::Full,
                mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
            })
        }
        fn dropped(&self, reason: DropReason) {
            let _ = self.1.send(reason);
        }
    }

    fn values(n: i64) -> Event {
        let item = ValueItem { key: "k".into(), value: n.to_string(), ts: n };
        Event::Values {
            thing_seq: 1,
            thing_id: Arc::from("t"),
            items: Arc::from(vec![WrittenValue { item, geo: None }]),
        }
    }

    fn key() -> GroupKey {
        GroupKey { topic: Topic::Thing(1), channel: Arc::from("/things/x") }
    }

    fn render() -> Renderer {
        let calls = Arc::new(AtomicU64::new(0));
        Arc::new(move |ev: &Event| {
            calls.fetch_add(1, Ordering::Relaxed);
            match ev {
                Event::Values { items, .. } => Some(format!("[{}]", items[0].item.value)),
                _ => None,
            }
        })
    }

    #[tokio::test]
    async fn renders_once_delivers_to_all_and_drops_only_the_slow_one() {
        let n = Notifier::new(64);
        let (fast_tx, mut fast_rx) = mpsc::channel(100);
        let (slow_tx, _slow_rx) = mpsc::channel(2);
        let (drop_tx, mut drop_rx) = mpsc::unbounded_channel();
        let _fast = Fanout::join(&n, key(), render(), Arc::new(Chan(fast_tx, drop_tx.clone())));
        let _slow = Fanout::join(&n, key(), render(), Arc::new(Chan(slow_tx, drop_tx)));
        assert_eq!(n.fanout().group_count(), 1);
        assert_eq!(n.fanout().member_count(), 2);
        for i in 0..5 {
            n.publish(&Topic::Thing(1), values(i));
        }
        for i in 0..5 {
            let p = fast_rx.recv().await.expect("fast receives");
            assert_eq!(p.as_str(), format!("[{i}]"));
        }
        assert_eq!(drop_rx.recv().await, Some(DropReason::SlowConsumer));
        let s = n.snapshot();
        assert_eq!(s.rendered, 5);
        assert_eq!(s.dropped_slow, 1);
        assert_eq!(s.delivered, 5 + 2);
        assert_eq!(n.fanout().member_count(), 1);
    }

    #[tokio::test]
    async fn last_member_removes_the_group_and_its_bus_subscription() {
        let n = Notifier::new(8);
        let (tx, _rx) = mpsc::channel(1);
        let (dtx, _drx) = mpsc::unbounded_channel();
        let a = Fanout::join(&n, key(), render(), Arc::new(Chan(tx.clone(), dtx.clone())));
        let b = Fanout::join(&n, key(), render(), Arc::new(Chan(tx, dtx)));
        drop(a);
        assert_eq!(n.fanout().group_count(), 1);
        drop(b);
        assert_eq!(n.fanout().group_count(), 0);
        tokio::task::yield_now().await;
        assert_eq!(n.topic_count(), 0);
    }
}
