//! Socket.IO on namespace `/v2` (default path `/socket.io/`, Engine.IO v4 and v3 so both
//! socket.io-client 4.x and 1.x/2.x work), subscribe-only, with the flow of thing-api.md:
//!
//! - client `authenticate` `{sessionToken}` → server `authenticate` `{"status":"success"}` or the
//!   error envelope;
//! - client `subscribe` `{resource}` → server `subscribe` `{"status":"success","resource"}` (or the
//!   envelope with `resource`), sent only once the subscription is live; the client's ack
//!   callback, when it passes one, gets the same answer;
//! - data: an event named after the topic, one argument: an array of value items;
//! - client `unsubscribe` `{resource}` → server `unsubscribe` `{"status":"success","resource"}`.
//!
//! Topics: `/me/resources/{key}` (that key on every thing the user may read; app item shape
//! `{"key","value","id","datetime"}`) and `/things/{thingToken}` (a whole thing; the token proves
//! possession, as on the Thing API; thing item shape `{"key","value","datetime"}`).
//!
//! A thin sink over the platform's subscription service: each connection is one
//! [`Subscriber`] whose outlet emits into socketioxide's bounded per-socket buffer (non-blocking).
//! Who may subscribe, the caps, re-checks and ends are the platform's; when it ends a subscription
//! (access removed 403, session ended 401, thing deleted 404) the client gets the envelope on
//! the topic's event and the subscription is gone. A full buffer drops the connection: the client
//! is told on the topic's event (a volatile emit, which bypasses the full buffer) and
//! disconnected. A connection that has not authenticated within the auth timeout is closed;
//! Engine.IO heartbeats close idle and half-open connections.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use parking_lot::Mutex;
use serde_json::{Value, json};
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SendError, SocketError, SocketIo};
use thingline_core::Error;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::platform::{
    Ended, Outlet, Payload, Platform, SinkError, Subscriber, Target, WeakSubscriber, authenticate_first, metrics,
};

/// Engine.IO heartbeat: a ping every interval; no answer within the timeout closes the
/// connection (idle and half-open TCP alike).
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest incoming WebSocket message (clients only send small control messages).
const MAX_INCOMING: usize = 64 * 1024;
/// Largest long-polling payload (also bounds what one polling response batches): a write may
/// carry 1 MiB of values, and its rendering adds ids and datetimes.
const MAX_POLLING_PAYLOAD: u64 = 4 * 1024 * 1024;
/// WebSocket read buffer per connection: small, as clients send only small control messages
/// (it grows for a larger one); memory per idle connection matters: 10,000 idle connections must
/// stay cheap.
const WS_READ_BUFFER: usize = 256;

/// Serves Socket.IO (namespace `/v2`) in front of `router`. `auth_timeout`: how long a
/// connection may stay without a successful `authenticate`.
pub fn wrap(router: Router, platform: Arc<Platform>, auth_timeout: Duration) -> Router {
    let (layer, io) = SocketIo::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        // Packets buffered per connection before the client counts as too slow and is dropped
        // (`THINGLINE_REALTIME_QUEUE`, read once: the layer is built at start).
        .max_buffer_size(platform.realtime_limits().queue_capacity())
        .max_payload(MAX_POLLING_PAYLOAD)
        .ws_max_message_size(MAX_INCOMING)
        .ws_max_frame_size(MAX_INCOMING)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .with_state(Handlers {
            platform: Arc::clone(&platform),
            unauthenticated: AuthDeadlines::start(&platform, auth_timeout),
        })
        .build_layer();
    // Socket.IO 1.x/2.x clients always join the root namespace first: it must exist (and does
    // nothing; everything happens on `/v2`).
    io.ns("/", async || {});
    // The handlers are registered in a connect *middleware*: socketioxide awaits it before it
    // answers the client's namespace connect, whereas the connect handler itself runs in a task
    // spawned after that answer, so an `authenticate` sent right away could arrive before its
    // handler existed and be lost.
    io.ns("/v2", (async || {}).with(on_connect));
    router
        .layer(layer)
        // Before Socket.IO sees an upgrade request: it keeps copies, not hyper's read buffer.
        .layer(axum::middleware::map_request(detach_upgrade_request))
}

/// What every connection needs.
#[derive(Clone)]
struct Handlers {
    platform: Arc<Platform>,
    unauthenticated: Arc<AuthDeadlines>,
}

async fn on_connect(socket: SocketRef, State(h): State<Handlers>) -> Result<(), Infallible> {
    let outlet = Arc::new(SocketOutlet { socket: socket.clone(), dropped: AtomicBool::new(false) });
    let subscriber = h.platform.open_subscriber_for(metrics::Protocol::Socketio, outlet);
    // The message handlers hold the subscriber weakly: it holds the socket (its outlet), and
    // socketioxide keeps the handlers as long as the socket. The disconnect handler, which
    // socketioxide drops once it ran, holds it strongly.
    let weak = subscriber.downgrade();
    let (w, p) = (weak.clone(), Arc::clone(&h.platform));
    socket.on("authenticate", move |s: SocketRef, TryData(d): TryData<Value>, ack: AckSender| {
        let (w, p) = (w.clone(), Arc::clone(&p));
        async move { authenticate(&p, &w, s, d.unwrap_or(Value::Null), ack).await }
    });
    let w = weak.clone();
    socket.on("subscribe", move |s: SocketRef, TryData(d): TryData<Value>, ack: AckSender| {
        let w = w.clone();
        async move { subscribe(&w, s, d.unwrap_or(Value::Null), ack).await }
    });
    let w = weak.clone();
    socket.on("unsubscribe", move |s: SocketRef, TryData(d): TryData<Value>, ack: AckSender| {
        let w = w.clone();
        async move { unsubscribe(&w, s, d.unwrap_or(Value::Null), ack).await }
    });
    let strong = subscriber;
    socket.on_disconnect(move || {
        let s = strong.clone();
        async move { s.close().await }
    });
    h.unauthenticated.watch(socket, weak);
    Ok(())
}

/// New connections waiting for their `authenticate`, oldest first. Every connection gets the same
/// timeout, so the queue is in deadline order: one task for the server closes the connections
/// that have not authenticated when their turn comes (no timer per connection).
struct AuthDeadlines {
    timeout: Duration,
    queue: Mutex<VecDeque<(Instant, SocketRef, WeakSubscriber)>>,
    wake: Notify,
}

impl AuthDeadlines {
    fn start(platform: &Platform, timeout: Duration) -> Arc<AuthDeadlines> {
        let deadlines = Arc::new(AuthDeadlines { timeout, queue: Mutex::new(VecDeque::new()), wake: Notify::new() });
        tokio::spawn(Arc::clone(&deadlines).run(platform.shutdown_signal().clone()));
        deadlines
    }

    fn watch(&self, socket: SocketRef, subscriber: WeakSubscriber) {
        let mut queue = self.queue.lock();
        queue.push_back((Instant::now() + self.timeout, socket, subscriber));
        if queue.len() == 1 {
            self.wake.notify_one();
        }
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let (due, next) = {
                let mut queue = self.queue.lock();
                match queue.front().map(|(t, _, _)| *t) {
                    Some(t) if t <= Instant::now() => (queue.pop_front(), None),
                    next => (None, next),
                }
            };
            if let Some((_, socket, subscriber)) = due {
                close_unauthenticated(socket, subscriber, self.timeout).await;
                continue;
            }
            let sleep = next.map_or(self.timeout, |t| t.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

/// Closes the connection unless it authenticated (or is gone).
async fn close_unauthenticated(socket: SocketRef, subscriber: WeakSubscriber, timeout: Duration) {
    let Some(sub) = subscriber.upgrade() else { return };
    if !socket.connected() || sub.is_authenticated().await {
        return;
    }
    let e = Error::Unauthorized(format!("Not authenticated within {} s; connection closed", timeout.as_secs()));
    let _ = socket.emit("authenticate", &e.envelope());
    let _ = socket.disconnect();
}

/// Answers a client event: as an event of the same name, and through its ack callback if any.
fn reply(socket: &SocketRef, event: &str, ack: AckSender, body: &Value) {
    if let Err(e) = socket.emit(event, body) {
        tracing::debug!(error = %e, event, "socket.io reply not sent");
    }
    let _ = ack.send(body);
}

fn error_body(e: &Error, resource: Option<&str>) -> Value {
    let mut v = e.envelope();
    if let (Some(r), Some(o)) = (resource, v.as_object_mut()) {
        o.insert("resource".into(), Value::String(r.to_owned()));
    }
    v
}

/// `{sessionToken}` (or the token as a bare string, as some old clients send).
fn field<'a>(d: &'a Value, name: &str) -> Option<&'a str> {
    match d {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get(name).and_then(Value::as_str),
        Value::Array(a) => a.first().and_then(|v| field(v, name)),
        _ => None,
    }
}

async fn authenticate(p: &Platform, subscriber: &WeakSubscriber, socket: SocketRef, d: Value, ack: AckSender) {
    let Some(sub) = subscriber.upgrade() else { return };
    let result = match p.session(field(&d, "sessionToken")).await {
        Ok(session) => sub.authenticate(session).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => reply(&socket, "authenticate", ack, &json!({"status": "success"})),
        Err(e @ Error::TooManyRequests(_)) => {
            reply(&socket, "authenticate", ack, &error_body(&e, None));
            let _ = socket.disconnect();
        }
        Err(e) => reply(&socket, "authenticate", ack, &error_body(&e, None)),
    }
}

async fn subscribe(subscriber: &WeakSubscriber, socket: SocketRef, d: Value, ack: AckSender) {
    let Some(sub) = subscriber.upgrade() else { return };
    let Some(resource) = field(&d, "resource").map(normalize) else {
        let e = Error::bad_request("resource is required");
        return reply(&socket, "subscribe", ack, &error_body(&e, None));
    };
    let body = match subscribe_topic(&sub, &resource).await {
        Ok(()) => json!({"status": "success", "resource": resource}),
        Err(e) => error_body(&e, Some(&resource)),
    };
    reply(&socket, "subscribe", ack, &body);
}

/// Topics are written with or without the leading slash; the event name keeps the slash.
fn normalize(r: &str) -> String {
    let r = r.trim().trim_end_matches('/');
    if r.starts_with('/') { r.to_owned() } else { format!("/{r}") }
}

/// Socket.IO is the apps' realtime: every topic needs `authenticate` first.
async fn subscribe_topic(sub: &Subscriber, resource: &str) -> thingline_core::Result<()> {
    if !sub.is_authenticated().await {
        return Err(authenticate_first());
    }
    let target = if let Some(key) = resource.strip_prefix("/me/resources/") {
        Target::EveryThing { key: key.to_owned() }
    } else if let Some(token) = resource.strip_prefix("/things/") {
        Target::Thing { token: token.to_owned() }
    } else {
        return Err(Error::bad_request("Unknown topic: use /me/resources/{key} or /things/{thingToken}"));
    };
    sub.subscribe(target).await?;
    Ok(())
}

async fn unsubscribe(subscriber: &WeakSubscriber, socket: SocketRef, d: Value, ack: AckSender) {
    let Some(sub) = subscriber.upgrade() else { return };
    let Some(resource) = field(&d, "resource").map(normalize) else {
        let e = Error::bad_request("resource is required");
        return reply(&socket, "unsubscribe", ack, &error_body(&e, None));
    };
    sub.unsubscribe(&resource).await;
    reply(&socket, "unsubscribe", ack, &json!({"status": "success", "resource": resource}));
}

/// Delivery into this socket's bounded buffer.
struct SocketOutlet {
    socket: SocketRef,
    /// Set once the connection was dropped as too slow: nothing more is delivered.
    dropped: AtomicBool,
}

impl Outlet for SocketOutlet {
    fn deliver(&self, channel: &str, payload: &Arc<Payload>) -> Result<(), SinkError> {
        if self.dropped.load(Ordering::Relaxed) {
            return Err(SinkError::Closed);
        }
        match self.socket.emit(channel, &(payload.raw(),)) {
            Ok(()) => Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(SinkError::Full),
            Err(SendError::Socket(SocketError::Closed)) => Err(SinkError::Closed),
            Err(SendError::Serialize(e)) => {
                tracing::error!(error = %e, "socket.io payload not serialized");
                Ok(())
            }
        }
    }

    fn ended(&self, channel: &str, why: Ended) {
        if why == Ended::SlowConsumer {
            if !self.dropped.swap(true, Ordering::Relaxed) {
                tokio::spawn(drop_slow(self.socket.clone(), Arc::from(channel)));
            }
            return;
        }
        let _ = self.socket.emit(channel, &error_body(&why.error(), Some(channel)));
    }
}

/// A connection whose buffer is full: tell it on the topic's event (volatile: bypasses the full
/// buffer) and disconnect it (retried while the buffer is still full; the heartbeat closes it
/// anyway if it never drains). The disconnect ends its other subscriptions.
async fn drop_slow(socket: SocketRef, channel: Arc<str>) {
    tracing::info!(sid = %socket.id, "socket.io subscriber too slow; dropping the connection");
    let body = json!({"status": "error", "code": 503, "message": "Subscriber too slow: its queue was full; reconnect"});
    let _ = socket.volatile().emit(channel.as_ref(), &body);
    for _ in 0..200 {
        match socket.clone().disconnect() {
            Err(SocketError::InternalChannelFull) => tokio::time::sleep(Duration::from_millis(250)).await,
            _ => return,
        }
    }
}

/// A Socket.IO WebSocket upgrade request (path `/socket.io/…`, `Upgrade: websocket`) lives as
/// long as its connection (socketioxide keeps its head), and hyper parses the URI and header values as views into the connection's read buffer (8–16 KiB):
/// keeping them would keep that buffer. The request keeps copies of its URI and of the headers the
/// WebSocket handshake uses (nothing after the handshake reads the others): ~16 KiB less resident
/// memory per idle Socket.IO connection.
async fn detach_upgrade_request(mut req: axum::extract::Request) -> axum::extract::Request {
    use http::header;
    const KEPT: [header::HeaderName; 6] = [
        header::HOST,
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_PROTOCOL,
    ];
    let websocket = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !websocket || !req.uri().path().starts_with("/socket.io") {
        return req;
    }
    let mut headers = http::HeaderMap::with_capacity(KEPT.len());
    for name in KEPT {
        for value in req.headers().get_all(&name) {
            if let Ok(copy) = http::HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), copy);
            }
        }
    }
    *req.headers_mut() = headers;
    if let Ok(uri) = http::Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
    req
}
