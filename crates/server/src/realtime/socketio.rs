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
//! Every message of one connection is handled in order (socketioxide spawns a task per message;
//! a per-connection async mutex serializes them). Each topic subscription is a membership in the
//! bus fan-out with this socket as sink: delivery is a non-blocking emit into socketioxide's
//! bounded per-socket buffer. A full buffer drops the connection: the client is told on the
//! topic's event (a volatile emit, which bypasses the full buffer) and disconnected. Engine.IO
//! heartbeats close idle and half-open connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SendError, SocketError, SocketIo};
use thingline_bus::{
    ConnectionGuard, DropReason, Event, Fanout, GroupKey, Membership, Payload, Renderer, Sink, SinkError, Topic,
};
use thingline_core::Error;
use thingline_core::keys::validate_key;
use thingline_core::model::Thing;

use super::access::access_removed;
use super::{envelope, key_view, spawn_stats_logger, thing_view};
use crate::platform::{Platform, Session};

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

/// The Socket.IO layer for the HTTPS router, serving namespace `/v2`. Also starts the periodic
/// realtime counters log line.
pub fn layer(platform: Arc<Platform>) -> SocketIoLayer {
    let (layer, io) = SocketIo::builder()
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        // Packets buffered per connection before the client counts as too slow and is dropped
        // (`THINGLINE_REALTIME_QUEUE`, read once: the layer is built at start).
        .max_buffer_size(platform.notifier().limits().queue_capacity())
        .max_payload(MAX_POLLING_PAYLOAD)
        .ws_max_message_size(MAX_INCOMING)
        .ws_max_frame_size(MAX_INCOMING)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .with_state(Arc::clone(&platform))
        .build_layer();
    // Socket.IO 1.x/2.x clients always join the root namespace first: it must exist (and does
    // nothing; everything happens on `/v2`).
    io.ns("/", async || {});
    // The handlers are registered in a connect *middleware*: socketioxide awaits it before it
    // answers the client's namespace connect, whereas the connect handler itself runs in a task
    // spawned after that answer, so an `authenticate` sent right away could arrive before its
    // handler existed and be lost.
    io.ns("/v2", (async || {}).with(on_connect));
    spawn_stats_logger(platform);
    layer
}

/// One connection's state.
struct Conn {
    platform: Arc<Platform>,
    state: tokio::sync::Mutex<ConnState>,
    /// Set once the connection was dropped as too slow: nothing more is delivered.
    dropped: AtomicBool,
}

struct ConnState {
    guard: ConnectionGuard,
    session: Option<Arc<Session>>,
    /// The raw session token, to re-validate the session after an access change.
    token: Option<String>,
    subs: HashMap<String, TopicSub>,
    /// Membership in the fan-out group of the user's access changes (one group per user, not a
    /// task per connection): each change re-checks this connection's subscriptions.
    access: Option<Membership>,
    /// The client is gone: a message still being handled must not subscribe or watch again
    /// (that would keep the connection alive through the fan-out, which holds the socket).
    disconnected: bool,
}

enum Resource {
    Key(String),
    Thing(Arc<Thing>),
}

struct TopicSub {
    resource: Resource,
    /// One membership per thing, by thing seq.
    members: HashMap<i64, Membership>,
}

impl ConnState {
    fn close(&mut self) {
        self.subs.clear();
        self.access = None;
    }

    fn disconnect(&mut self) {
        self.close();
        self.session = None;
        self.token = None;
        self.disconnected = true;
    }
}

async fn on_connect(socket: SocketRef, State(platform): State<Arc<Platform>>) -> Result<(), Infallible> {
    let guard = platform.notifier().connections().open();
    let conn = Arc::new(Conn {
        platform,
        state: tokio::sync::Mutex::new(ConnState {
            guard,
            session: None,
            token: None,
            subs: HashMap::new(),
            access: None,
            disconnected: false,
        }),
        dropped: AtomicBool::new(false),
    });
    let c = Arc::clone(&conn);
    socket.on("authenticate", move |s: SocketRef, TryData(d): TryData<Value>, ack: AckSender| {
        let c = Arc::clone(&c);
        async move { authenticate(&c, s, d.unwrap_or(Value::Null), ack).await }
    });
    let c = Arc::clone(&conn);
    socket.on("subscribe", move |s: SocketRef, TryData(d): TryData<Value>, ack: AckSender| {
        let c = Arc::clone(&c);
        async move { subscribe(&c, s, d.unwrap_or(Value::Null), ack).await }
    });
    let c = Arc::clone(&conn);
    socket.on("unsubscribe", move |s: SocketRef, TryData(d): TryData<Value>, ack: AckSender| {
        let c = Arc::clone(&c);
        async move { unsubscribe(&c, s, d.unwrap_or(Value::Null), ack).await }
    });
    let c = conn;
    socket.on_disconnect(move || {
        let c = Arc::clone(&c);
        async move { c.state.lock().await.disconnect() }
    });
    Ok(())
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

async fn authenticate(conn: &Arc<Conn>, socket: SocketRef, d: Value, ack: AckSender) {
    let p = &conn.platform;
    let token = field(&d, "sessionToken").map(str::to_owned);
    let session = match p.session(token.as_deref()).await {
        Ok(s) => s,
        Err(e) => return reply(&socket, "authenticate", ack, &error_body(&e, None)),
    };
    let mut st = conn.state.lock().await;
    if st.disconnected {
        return;
    }
    if st.session.as_ref().is_some_and(|s| s.user_id != session.user_id) {
        // Another user on the same connection: nothing of the first one carries over.
        st.close();
    }
    let max = p.notifier().limits().max_connections_per_user();
    if !st.guard.bind_user(session.user_id, max) {
        let e = Error::TooManyRequests("too many realtime connections for this user".into());
        reply(&socket, "authenticate", ack, &error_body(&e, None));
        drop(st);
        let _ = socket.disconnect();
        return;
    }
    if st.access.is_none() || st.session.as_ref().is_none_or(|s| s.user_id != session.user_id) {
        st.access = Some(watch_access(conn, &socket, session.user_id));
    }
    st.session = Some(session);
    st.token = token;
    drop(st);
    reply(&socket, "authenticate", ack, &json!({"status": "success"}));
}

async fn subscribe(conn: &Arc<Conn>, socket: SocketRef, d: Value, ack: AckSender) {
    let Some(resource) = field(&d, "resource").map(normalize) else {
        let e = Error::bad_request("resource is required");
        return reply(&socket, "subscribe", ack, &error_body(&e, None));
    };
    let body = match subscribe_inner(conn, &socket, &resource).await {
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

async fn subscribe_inner(conn: &Arc<Conn>, socket: &SocketRef, resource: &str) -> thingline_core::Result<()> {
    if conn.dropped.load(Ordering::Relaxed) {
        return Err(Error::Unavailable("connection dropped as too slow".into()));
    }
    let p = &conn.platform;
    let mut st = conn.state.lock().await;
    let Some(session) = st.session.clone() else {
        return Err(Error::Unauthorized("Invalid session token: authenticate first".into()));
    };
    if st.subs.contains_key(resource) {
        return Ok(());
    }
    if st.subs.len() >= p.notifier().limits().max_subscriptions_per_connection() {
        return Err(Error::TooManyRequests("too many subscriptions on this connection".into()));
    }
    let channel: Arc<str> = Arc::from(resource);
    let sink: Arc<dyn Sink> =
        Arc::new(SocketSink { socket: socket.clone(), conn: Arc::downgrade(conn), channel: Arc::clone(&channel) });
    let mut sub = if let Some(key) = resource.strip_prefix("/me/resources/") {
        validate_key(key)?;
        TopicSub { resource: Resource::Key(key.to_owned()), members: HashMap::new() }
    } else if let Some(token) = resource.strip_prefix("/things/") {
        let thing = p.thing_by_token(token).await?;
        TopicSub { resource: Resource::Thing(thing), members: HashMap::new() }
    } else {
        return Err(Error::bad_request("Unknown topic: use /me/resources/{key} or /things/{thingToken}"));
    };
    refresh(p, &session, &mut sub, &sink).await?;
    st.subs.insert(resource.to_owned(), sub);
    Ok(())
}

/// (Re)computes what a topic subscription covers: joins readable things not yet joined, leaves
/// the ones no longer readable. A thing topic fails when the thing is gone.
async fn refresh(
    p: &Platform,
    session: &Session,
    sub: &mut TopicSub,
    sink: &Arc<dyn Sink>,
) -> thingline_core::Result<()> {
    match &sub.resource {
        Resource::Key(key) => {
            let things = p.readable_things(session, key).await?;
            if things.is_empty() {
                // 404 at subscribe time (as a read answers), 403 once access was removed.
                return Err(if sub.members.is_empty() {
                    Error::not_found(format!("Resource {key} not found"))
                } else {
                    access_removed()
                });
            }
            sub.members.retain(|seq, _| things.iter().any(|t| t.seq == *seq));
            for t in things {
                if let std::collections::hash_map::Entry::Vacant(slot) = sub.members.entry(t.seq) {
                    let (gk, render) = key_view(&t, key);
                    slot.insert(Fanout::join(p.notifier(), gk, render, Arc::clone(sink)));
                }
            }
        }
        Resource::Thing(thing) => {
            let current = p.thing_by_token(&thing.token).await?;
            if let std::collections::hash_map::Entry::Vacant(slot) = sub.members.entry(current.seq) {
                let (gk, render) = thing_view(&current);
                slot.insert(Fanout::join(p.notifier(), gk, render, Arc::clone(sink)));
            }
        }
    }
    Ok(())
}

async fn unsubscribe(conn: &Arc<Conn>, socket: SocketRef, d: Value, ack: AckSender) {
    let Some(resource) = field(&d, "resource").map(normalize) else {
        let e = Error::bad_request("resource is required");
        return reply(&socket, "unsubscribe", ack, &error_body(&e, None));
    };
    conn.state.lock().await.subs.remove(&resource);
    reply(&socket, "unsubscribe", ack, &json!({"status": "success", "resource": resource}));
}

/// Joins the fan-out group of `user_id`'s access changes: every change (a link or grant removed,
/// the session ended) re-checks the connection's subscriptions. (Such a notice counts in the
/// fan-out's `delivered` like a value; access changes are rare next to values.)
fn watch_access(conn: &Arc<Conn>, socket: &SocketRef, user_id: i64) -> Membership {
    let key = GroupKey { topic: Topic::User(user_id), channel: Arc::from(ACCESS_CHANNEL) };
    let render: Renderer = Arc::new(|ev: &Event| matches!(ev, Event::AccessChanged { .. }).then(|| "{}".to_owned()));
    let sink = Arc::new(AccessSink { conn: Arc::downgrade(conn), socket: socket.clone(), user_id });
    Fanout::join(conn.platform.notifier(), key, render, sink)
}

/// Internal channel name of the access-change groups (never sent to a client).
const ACCESS_CHANNEL: &str = "access";

/// A connection's outlet for its user's access changes: starts a re-check (rare; never blocks the
/// fan-out). Re-checks of one connection run one at a time (they take the connection's lock).
struct AccessSink {
    conn: Weak<Conn>,
    socket: SocketRef,
    user_id: i64,
}

impl Sink for AccessSink {
    fn deliver(&self, _channel: &str, _payload: &Arc<Payload>) -> Result<(), SinkError> {
        let Some(conn) = self.conn.upgrade().filter(|_| self.socket.connected()) else {
            return Err(SinkError::Closed);
        };
        let socket = self.socket.clone();
        tokio::spawn(async move { recheck(&conn, &socket).await });
        Ok(())
    }

    fn dropped(&self, reason: DropReason) {
        // Lagged: changes were skipped; re-check, and watch again if the user is still the same.
        if reason != DropReason::Lagged {
            return;
        }
        let Some(conn) = self.conn.upgrade() else { return };
        let socket = self.socket.clone();
        let user_id = self.user_id;
        tokio::spawn(async move {
            {
                let mut st = conn.state.lock().await;
                if st.session.as_ref().is_some_and(|s| s.user_id == user_id) {
                    st.access = Some(watch_access(&conn, &socket, user_id));
                }
            }
            recheck(&conn, &socket).await;
        });
    }
}

async fn recheck(conn: &Arc<Conn>, socket: &SocketRef) {
    let p = &conn.platform;
    let mut st = conn.state.lock().await;
    let session = match p.session(st.token.as_deref()).await {
        Ok(s) => s,
        Err(e) => {
            for (resource, _) in st.subs.drain() {
                let _ = socket.emit(resource.as_str(), &error_body(&e, Some(&resource)));
            }
            st.session = None;
            st.access = None;
            return;
        }
    };
    let mut ended = Vec::new();
    for (resource, sub) in st.subs.iter_mut() {
        let sink: Arc<dyn Sink> = Arc::new(SocketSink {
            socket: socket.clone(),
            conn: Arc::downgrade(conn),
            channel: Arc::from(resource.as_str()),
        });
        if let Err(e) = refresh(p, &session, sub, &sink).await {
            ended.push((resource.clone(), e));
        }
    }
    for (resource, e) in ended {
        st.subs.remove(&resource);
        let _ = socket.emit(resource.as_str(), &error_body(&e, Some(&resource)));
    }
    st.session = Some(session);
}

/// Delivery into this socket's bounded buffer.
struct SocketSink {
    socket: SocketRef,
    conn: Weak<Conn>,
    channel: Arc<str>,
}

impl Sink for SocketSink {
    fn deliver(&self, channel: &str, payload: &Arc<Payload>) -> Result<(), SinkError> {
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

    fn dropped(&self, reason: DropReason) {
        let Some(conn) = self.conn.upgrade() else { return };
        let socket = self.socket.clone();
        let channel = Arc::clone(&self.channel);
        tokio::spawn(async move {
            match reason {
                DropReason::SlowConsumer => drop_slow(&conn, socket, &channel).await,
                DropReason::Lagged => {
                    conn.state.lock().await.subs.remove(channel.as_ref());
                    let msg = envelope(503, "Subscriber fell behind: values were skipped; subscribe again");
                    let body: Value = serde_json::from_str(&msg).unwrap_or(Value::Null);
                    let _ = socket.emit(channel.as_ref(), &body);
                }
                DropReason::Closed => {}
            }
        });
    }
}

/// A connection whose buffer is full: tell it on the topic's event (volatile: bypasses the full
/// buffer), forget its subscriptions, and disconnect it (retried while the buffer is still full;
/// the heartbeat closes it anyway if it never drains).
async fn drop_slow(conn: &Arc<Conn>, socket: SocketRef, channel: &str) {
    if conn.dropped.swap(true, Ordering::Relaxed) {
        return;
    }
    tracing::info!(sid = %socket.id, "socket.io subscriber too slow; dropping the connection");
    conn.state.lock().await.close();
    let body = json!({"status": "error", "code": 503, "message": "Subscriber too slow: its queue was full; reconnect"});
    let _ = socket.volatile().emit(channel, &body);
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
pub async fn detach_upgrade_request(mut req: axum::extract::Request) -> axum::extract::Request {
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
