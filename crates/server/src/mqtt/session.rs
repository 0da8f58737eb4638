//! MQTT sessions: what outlives one network connection of a client.
//!
//! - [`Mailbox`]: the outlet the platform's subscription service delivers into. It maps each
//!   subscribed channel to its MQTT topic and granted QoS, and holds deliveries until the
//!   connection writes them. Bounded: a clean session's full mailbox drops its subscriptions as
//!   too slow (as Socket.IO); a persistent session drops the message instead (counted) and, when
//!   its client is connected, disconnects it as too slow, keeping the subscriptions.
//! - [`SessionData`]: subscriptions, QoS 1 messages sent and not yet acknowledged, QoS 2 packet
//!   ids waiting for their PUBREL.
//! - [`SessionTable`]: persistent sessions by client id (3.1.1 clean session 0, MQTT 5 with a
//!   Session Expiry Interval), bounded in number, expired after their interval offline. A live
//!   connection holds its session's lock; a new connection with the same client id asks it to
//!   leave (takeover) and waits for the lock. Clean sessions are never in the table: client ids
//!   are not unique across a fleet (the official sketches hard-code `arduinoclient`), so two
//!   clean connections with the same id never evict each other.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use super::codec::QoS;
use crate::platform::{Ended, Outlet, Payload, SinkError, Subscriber};

/// One message for the client.
#[derive(Clone)]
pub struct Delivery {
    pub topic: Arc<str>,
    pub payload: Arc<Payload>,
    pub qos: QoS,
}

/// Where a subscribed channel goes.
struct Route {
    channel: Arc<str>,
    topic: Arc<str>,
    qos: QoS,
}

#[derive(Default)]
struct MailboxState {
    queue: VecDeque<Delivery>,
    routes: Vec<Route>,
    ended: Vec<(Arc<str>, Ended)>,
    online: bool,
    /// A persistent session overflowed while connected: disconnect the client.
    kick: bool,
    dropped: u64,
}

/// The outlet of one session's subscriber.
pub struct Mailbox {
    state: Mutex<MailboxState>,
    notify: Notify,
    persistent: bool,
    capacity: usize,
}

/// What the connection takes out of its mailbox at once.
#[derive(Default)]
pub struct Mail {
    pub deliveries: Vec<Delivery>,
    pub ended: Vec<(Arc<str>, Ended)>,
    pub kick: bool,
}

impl Mailbox {
    pub fn new(persistent: bool, capacity: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox { state: Mutex::default(), notify: Notify::new(), persistent, capacity: capacity.max(1) })
    }

    /// Routes `channel` to `topic` at `qos` (replacing an earlier route of the channel).
    pub fn route(&self, channel: Arc<str>, topic: Arc<str>, qos: QoS) {
        let mut st = self.state.lock();
        st.routes.retain(|r| r.channel != channel);
        st.routes.push(Route { channel, topic, qos });
    }

    pub fn unroute(&self, channel: &str) {
        self.state.lock().routes.retain(|r| r.channel.as_ref() != channel);
    }

    pub fn set_online(&self, online: bool) {
        let mut st = self.state.lock();
        st.online = online;
        st.kick = false;
    }

    /// Wakes when mail arrives (a permit is kept if nobody waits).
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    /// Takes what is waiting: deliveries in order, up to `qos1_room` of them QoS 1 or 2 (the
    /// client's window; a QoS 0 message behind a QoS 1 one waits with it, keeping the order).
    pub fn take(&self, qos1_room: usize) -> Mail {
        let mut st = self.state.lock();
        let mut room = qos1_room;
        let mut n = 0;
        for d in &st.queue {
            if d.qos != QoS::AtMostOnce {
                if room == 0 {
                    break;
                }
                room -= 1;
            }
            n += 1;
        }
        Mail {
            deliveries: st.queue.drain(..n).collect(),
            ended: std::mem::take(&mut st.ended),
            kick: std::mem::take(&mut st.kick),
        }
    }

    /// Takes the subscriptions ended, leaving deliveries where they are.
    pub fn take_ended(&self) -> Vec<(Arc<str>, Ended)> {
        std::mem::take(&mut self.state.lock().ended)
    }

    /// Messages dropped because the mailbox was full.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }
}

impl Outlet for Mailbox {
    fn deliver(&self, channel: &str, payload: &Arc<Payload>) -> Result<(), SinkError> {
        let mut st = self.state.lock();
        let Some(route) = st.routes.iter().find(|r| r.channel.as_ref() == channel) else { return Ok(()) };
        let delivery = Delivery { topic: Arc::clone(&route.topic), payload: Arc::clone(payload), qos: route.qos };
        if !st.online && delivery.qos == QoS::AtMostOnce {
            // An offline session keeps QoS 1 messages only (as Mosquitto does by default).
            return Ok(());
        }
        if st.queue.len() >= self.capacity {
            if !self.persistent {
                return Err(SinkError::Full);
            }
            st.dropped += 1;
            if st.online && !st.kick {
                st.kick = true;
                drop(st);
                self.notify.notify_one();
            }
            return Ok(());
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(delivery);
        drop(st);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    fn ended(&self, channel: &str, why: Ended) {
        let mut st = self.state.lock();
        st.routes.retain(|r| r.channel.as_ref() != channel);
        st.ended.push((Arc::from(channel), why));
        drop(st);
        self.notify.notify_one();
    }
}

/// One subscription of a session.
pub struct SubEntry {
    /// The topic filter as subscribed (`v2/things/{token}`).
    pub filter: String,
    /// The platform's channel of it.
    pub channel: Arc<str>,
}

/// A QoS 1 message sent and not yet acknowledged.
pub struct Unacked {
    pub pid: u16,
    pub delivery: Delivery,
}

/// What a session keeps.
pub struct SessionData {
    pub mailbox: Arc<Mailbox>,
    /// Opened at the first subscription.
    pub subscriber: Option<Subscriber>,
    pub subs: Vec<SubEntry>,
    pub unacked: VecDeque<Unacked>,
    next_pid: u16,
    /// QoS 2 publishes committed and acknowledged with PUBREC, waiting for their PUBREL.
    pub awaiting_rel: HashSet<u16>,
}

impl SessionData {
    pub fn new(persistent: bool, capacity: usize) -> SessionData {
        SessionData {
            mailbox: Mailbox::new(persistent, capacity),
            subscriber: None,
            subs: Vec::new(),
            unacked: VecDeque::new(),
            next_pid: 0,
            awaiting_rel: HashSet::new(),
        }
    }

    /// A packet id not used by an unacknowledged message.
    pub fn next_pid(&mut self) -> u16 {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            if self.next_pid != 0 && !self.unacked.iter().any(|u| u.pid == self.next_pid) {
                return self.next_pid;
            }
        }
    }

    /// Forgets a subscription (its channel ended or was unsubscribed).
    pub fn forget(&mut self, channel: &str) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s.channel.as_ref() != channel);
        self.mailbox.unroute(channel);
        self.subs.len() != before
    }

    /// Ends every subscription (a clean session's end, or an expired persistent one).
    pub async fn close(&mut self) {
        if let Some(s) = self.subscriber.take() {
            s.close().await;
        }
        self.subs.clear();
    }
}

/// A persistent session's slot in the table.
pub struct Slot {
    data: Arc<tokio::sync::Mutex<SessionData>>,
    /// Fired to ask the live connection to leave (takeover).
    live: Mutex<Option<CancellationToken>>,
    /// When the session expires once offline (ms since the epoch); `i64::MAX` while connected.
    expires_ms: AtomicI64,
}

/// A persistent session held by its connection. Dropping it releases the session: it expires
/// after `expiry` offline (zero: at once), unless a newer connection has taken it over.
pub struct Held {
    pub slot: Arc<Slot>,
    pub data: OwnedMutexGuard<SessionData>,
    /// Whether the session existed before this connection (CONNACK session present).
    pub present: bool,
    pub expiry: Duration,
    leave: CancellationToken,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.data.mailbox.set_online(false);
        if self.leave.is_cancelled() {
            return;
        }
        let ms = i64::try_from(self.expiry.as_millis()).unwrap_or(i64::MAX);
        self.slot.expires_ms.store(thingline_core::time::now_ms().saturating_add(ms), Ordering::Relaxed);
        *self.slot.live.lock() = None;
    }
}

/// Why a persistent session could not be had.
#[derive(Debug)]
pub enum TableError {
    /// The table holds the configured number of sessions.
    Full,
    /// The previous connection of the client id did not leave in time.
    Busy,
}

/// Persistent sessions by client id.
pub struct SessionTable {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    max: usize,
    queue: usize,
}

/// How long a takeover waits for the previous connection to leave.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

impl SessionTable {
    pub fn new(max: usize, queue: usize) -> SessionTable {
        SessionTable { slots: Mutex::new(HashMap::new()), max, queue }
    }

    /// Takes the persistent session of `client_id` for a new connection (`leave` fires when a
    /// later connection takes it over). `fresh`: discard what it held (MQTT 5 clean start);
    /// `expiry`: how long it outlives the connection.
    pub async fn take(
        &self,
        client_id: &str,
        fresh: bool,
        expiry: Duration,
        leave: CancellationToken,
    ) -> Result<Held, TableError> {
        loop {
            let (slot, existed) = self.slot(client_id)?;
            if let Some(old) = slot.live.lock().replace(leave.clone()) {
                old.cancel();
            }
            let Ok(mut data) = tokio::time::timeout(TAKEOVER_WAIT, Arc::clone(&slot.data).lock_owned()).await else {
                return Err(TableError::Busy);
            };
            // Expired and swept while this connection waited: take a new one.
            if !self.slots.lock().get(client_id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                continue;
            }
            slot.expires_ms.store(i64::MAX, Ordering::Relaxed);
            let mut present = existed;
            if fresh {
                data.close().await;
                *data = SessionData::new(true, self.queue);
                present = false;
            }
            data.mailbox.set_online(true);
            return Ok(Held { slot, data, present, expiry, leave });
        }
    }

    /// The slot of `client_id`, made if there is none (within the bound); whether it existed.
    fn slot(&self, client_id: &str) -> Result<(Arc<Slot>, bool), TableError> {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(client_id) {
            return Ok((Arc::clone(slot), true));
        }
        if slots.len() >= self.max {
            return Err(TableError::Full);
        }
        let slot = Arc::new(Slot {
            data: Arc::new(tokio::sync::Mutex::new(SessionData::new(true, self.queue))),
            live: Mutex::new(None),
            expires_ms: AtomicI64::new(i64::MAX),
        });
        slots.insert(client_id.to_owned(), Arc::clone(&slot));
        Ok((slot, false))
    }

    /// Removes sessions offline past their expiry; returns how many.
    pub async fn sweep(&self) -> usize {
        let now = thingline_core::time::now_ms();
        let expired: Vec<(String, Arc<Slot>)> = {
            let slots = self.slots.lock();
            slots
                .iter()
                .filter(|(_, s)| s.expires_ms.load(Ordering::Relaxed) <= now)
                .map(|(k, s)| (k.clone(), Arc::clone(s)))
                .collect()
        };
        let mut removed = 0;
        for (client_id, slot) in expired {
            // Connected again since: the lock is held, or the expiry was reset.
            let Ok(mut data) = Arc::clone(&slot.data).try_lock_owned() else { continue };
            if slot.expires_ms.load(Ordering::Relaxed) > now {
                continue;
            }
            let taken = {
                let mut slots = self.slots.lock();
                let ours = slots.get(&client_id).is_some_and(|s| Arc::ptr_eq(s, &slot));
                if ours {
                    slots.remove(&client_id);
                }
                ours
            };
            if taken {
                removed += 1;
                data.close().await;
            }
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }
}
