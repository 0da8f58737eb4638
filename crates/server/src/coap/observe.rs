//! Observe (RFC 7641) of a whole thing, `GET v2/things/{thingToken}` with Observe=0: a thin sink
//! over the platform's subscription service ([`Target::Thing`], so the per-thing cap holds). The
//! answer to the registration is the first notification, `{"status":"success","message":
//! "subscribed"}`; then every value written to the thing, by any protocol, as the HTTP stream
//! carries it, and `{}` after each idle keepAlive.
//!
//! Notifications are non-confirmable, except keep-alives and at least one per keepAlive, which
//! are confirmable: one unacknowledged after RFC 7252's retransmissions means the client is gone
//! and ends the observation, as does a RST in reply to any recent notification or a GET with
//! Observe=1 and the same token. One confirmable notification is in flight at a time. When the
//! platform ends the subscription (thing deleted, too slow) or the server stops, a last
//! notification without the Observe option carries the error envelope.
//!
//! Bounded: observations per client address (IPv6: per /64) and in all (reserved before subscribing, released
//! when the observation ends).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use thingline_coap_message::{Block, JSON, Kind, Response, code};
use thingline_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Endpoint;
use super::outbox::Delivery;
use crate::platform::metrics::{self, Protocol};
use crate::platform::{Inbox, Next, Subscriber, Target};

/// The first notification.
pub const SUBSCRIBED: &[u8] = br#"{"status":"success","message":"subscribed"}"#;
/// Non-confirmable notifications remembered per observation, for a RST in reply to one.
const RECENT: usize = 4;

type Key = (SocketAddr, Vec<u8>);

/// One observation, as the table keeps it.
struct Entry {
    cancel: CancellationToken,
    id: u64,
}

#[derive(Default)]
struct Table {
    map: HashMap<Key, Entry>,
    per_address: HashMap<IpAddr, usize>,
    total: usize,
    next_id: u64,
}

/// Every observation of the endpoint.
pub struct Observers {
    table: Mutex<Table>,
    per_address: usize,
    max: usize,
}

/// A reserved place in the table, released when dropped unless the observation started.
struct Reservation<'a> {
    observers: &'a Observers,
    key: Key,
    id: u64,
    started: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.started {
            self.observers.remove(&self.key, self.id);
        }
    }
}

impl Observers {
    pub fn new(per_address: usize, max: usize) -> Observers {
        Observers { table: Mutex::new(Table::default()), per_address, max }
    }

    /// Reserves the place of `key`: a re-registration replaces the observation of the same
    /// endpoint and token (which ends); otherwise the caps are checked.
    fn reserve(&self, key: Key) -> Result<(Reservation<'_>, CancellationToken)> {
        let mut t = self.table.lock();
        let ip = crate::net::client_subnet(key.0.ip());
        if let Some(old) = t.map.remove(&key) {
            old.cancel.cancel();
        } else {
            if t.total >= self.max {
                return Err(Error::Unavailable("Too many observations on this server".into()));
            }
            if t.per_address.get(&ip).copied().unwrap_or(0) >= self.per_address {
                metrics::rate_limited("coap-observers-per-address");
                return Err(Error::TooManyRequests("Too many observations from this address".into()));
            }
            t.total += 1;
            *t.per_address.entry(ip).or_insert(0) += 1;
        }
        t.next_id += 1;
        let id = t.next_id;
        let cancel = CancellationToken::new();
        t.map.insert(key.clone(), Entry { cancel: cancel.clone(), id });
        Ok((Reservation { observers: self, key, id, started: false }, cancel))
    }

    /// Removes observation `id` of `key` (if it is still that one) and frees its place.
    fn remove(&self, key: &Key, id: u64) {
        let mut t = self.table.lock();
        if t.map.get(key).is_some_and(|e| e.id == id) {
            t.map.remove(key);
            t.total -= 1;
            let ip = crate::net::client_subnet(key.0.ip());
            if let Some(n) = t.per_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    t.per_address.remove(&ip);
                }
            }
        }
    }

    /// Ends the observation of `key` (a GET with Observe=1); whether there was one.
    pub fn deregister(&self, key: &Key) -> bool {
        let cancel = self.table.lock().map.get(key).map(|e| e.cancel.clone());
        cancel.map(|c| c.cancel()).is_some()
    }

    /// Observations now.
    pub fn len(&self) -> usize {
        self.table.lock().total
    }
}

/// What the registration's answer needs, and the signal that it went out.
pub struct Registered {
    pub sequence: u32,
    pub sent: oneshot::Sender<()>,
}

impl Endpoint {
    /// Registers an observation of the thing `token` for `peer`'s request `token_bytes`,
    /// `{}` after each idle `keep_alive`. The observation starts sending once `sent` fires
    /// (after the registration's answer went out).
    pub(super) async fn observe(
        self: &Arc<Self>,
        peer: SocketAddr,
        request_token: Vec<u8>,
        thing_token: &str,
        resource: String,
        keep_alive: Duration,
    ) -> Result<Registered> {
        let key = (peer, request_token);
        let (mut reservation, cancel) = self.observers.reserve(key.clone())?;
        let (subscriber, inbox) = self
            .platform
            .subscribe_queue_for(Protocol::Coap, None, Target::Thing { token: thing_token.to_owned() })
            .await?;
        reservation.started = true;
        let id = reservation.id;
        drop(reservation);
        let (sent, started) = oneshot::channel();
        let ep = Arc::clone(self);
        self.tracker.spawn(async move {
            let obs = Observation {
                ep: Arc::clone(&ep),
                peer,
                token: key.1.clone(),
                resource,
                cancel,
                sequence: 1,
                recent: VecDeque::new(),
            };
            obs.run(subscriber, inbox, keep_alive, started).await;
            ep.observers.remove(&key, id);
        });
        Ok(Registered { sequence: 1, sent })
    }
}

struct Observation {
    ep: Arc<Endpoint>,
    peer: SocketAddr,
    token: Vec<u8>,
    resource: String,
    cancel: CancellationToken,
    sequence: u32,
    recent: VecDeque<u16>,
}

/// Why an observation loop ended.
enum End {
    /// Deregistered, replaced, reset, or the client is gone: nothing more to send.
    Quiet,
    /// Tell the client (a last notification without Observe).
    Tell(Error),
}

impl Observation {
    async fn run(
        mut self,
        subscriber: Subscriber,
        mut inbox: Inbox,
        keep_alive: Duration,
        started: oneshot::Receiver<()>,
    ) {
        let shutdown = self.ep.platform.shutdown_signal().clone();
        tokio::select! {
            r = started => if r.is_err() { return },
            _ = self.cancel.cancelled() => return,
        }
        let (con_tx, mut con_rx) = mpsc::channel::<Delivery>(1);
        let mut con_in_flight = false;
        let mut last_sent = Instant::now();
        let mut last_con = Instant::now();
        let end = loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break End::Quiet,
                _ = shutdown.cancelled() => break End::Tell(Error::Unavailable("Server shutting down; observe again".into())),
                Some(d) = con_rx.recv() => match d {
                    Delivery::Acked => {
                        con_in_flight = false;
                        last_con = Instant::now();
                    }
                    Delivery::Reset | Delivery::TimedOut | Delivery::Stopped => break End::Quiet,
                },
                next = inbox.next() => match next {
                    Next::Payload(p) => {
                        let con = !con_in_flight && last_con.elapsed() >= keep_alive;
                        self.notify(p.as_ref().as_ref(), con, &con_tx);
                        con_in_flight |= con;
                        last_sent = Instant::now();
                    }
                    Next::Ended(why) => break End::Tell(why.error()),
                    Next::Closed => break End::Quiet,
                },
                _ = tokio::time::sleep_until(last_sent + keep_alive) => {
                    let con = !con_in_flight;
                    self.notify(b"{}", con, &con_tx);
                    con_in_flight |= con;
                    last_sent = Instant::now();
                }
            }
        };
        drop(subscriber);
        for mid in self.recent.drain(..) {
            self.ep.outbox.forget(self.peer, mid);
        }
        if let End::Tell(e) = end {
            let r = Response {
                kind: Some(Kind::Non),
                mid: self.ep.outbox.next_mid(),
                token: self.token.clone(),
                code: code::from_http(e.status()),
                content_format: Some(JSON),
                payload: e.envelope().to_string().into_bytes(),
                ..Response::default()
            };
            self.ep.outbox.send(&r.encode(), self.peer);
        }
    }

    /// Sends one notification.
    fn notify(&mut self, payload: &[u8], con: bool, con_tx: &mpsc::Sender<Delivery>) {
        self.sequence = (self.sequence + 1) & 0xFF_FFFF;
        let mid = self.ep.outbox.next_mid();
        let mut r = Response {
            kind: Some(if con { Kind::Con } else { Kind::Non }),
            mid,
            token: self.token.clone(),
            code: code::CONTENT,
            observe: Some(self.sequence),
            content_format: Some(JSON),
            ..Response::default()
        };
        let first = Block { num: 0, more: false, szx: Block::MAX_SZX };
        if payload.len() > first.size() {
            // The first block; the client fetches the rest with GETs of the same resource.
            match self.ep.blocks.serve((self.peer, self.resource.clone()), payload.to_vec(), first) {
                Some(slice) => {
                    r.block2 = Some(slice.block);
                    r.size2 = Some(slice.total as u32);
                    r.etag = Some(slice.etag.to_vec());
                    r.payload = slice.payload;
                }
                None => return,
            }
        } else {
            r.payload = payload.to_vec();
        }
        let bytes = r.encode();
        if con {
            let ep = Arc::clone(&self.ep);
            let peer = self.peer;
            let tx = con_tx.clone();
            tokio::spawn(async move {
                let d = ep.outbox.send_con(Arc::from(bytes), mid, peer).await;
                let _ = tx.send(d).await;
            });
        } else {
            self.ep.outbox.note_non(self.peer, mid, self.cancel.clone());
            self.recent.push_back(mid);
            if self.recent.len() > RECENT
                && let Some(old) = self.recent.pop_front()
            {
                self.ep.outbox.forget(self.peer, old);
            }
            self.ep.outbox.send(&bytes, self.peer);
        }
    }
}
