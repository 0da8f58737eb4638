//! HTTP subscriptions, answered as a stream: one JSON document per chunk, first
//! `{"status":"success","message":"subscribed"}`, then arrays of items, `{}` after each idle
//! keepAlive. Two kinds share this machinery (a bounded queue fed by the one fan-out):
//! - app subscriptions, `GET /v2/me/resources/{key}/{thingId}?subscribe=true&keepAlive=ms` (one
//!   thing) and `GET /v2/me/resources/{key}?subscribe=true&keepAlive=ms` (every thing the user may
//!   read the key on): app items `{"key","value","id":thingId,"datetime"}`;
//! - the thing stream, `GET /v2/things/{thingToken}?keepAlive=ms`: thing items
//!   `{"key","value","datetime"}`, the same fan-out group (and rendered bytes) as the Socket.IO
//!   topic `/things/{thingToken}`.
//!
//! Order of operations, so nothing falls in a gap and nothing leaks: the access watcher (bus
//! topic of the user) is registered first, then permissions are read, then the fan-out groups are
//! joined; the first message goes out only after that. An access change re-reads permissions: a
//! one-thing subscription that lost read access ends with a 403 envelope; an every-thing
//! subscription drops (or adds) things. A subscriber whose queue is full is dropped with a 503
//! envelope; a failed write ends the response (hyper stops polling the stream, which drops
//! every membership).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use bytes::Bytes;
use parking_lot::Mutex;
use thingline_bus::{
    ConnectionGuard, DropReason, Fanout, Membership, Payload, Received, Sink, SinkError, Subscription, Topic,
};
use thingline_core::Error;
use thingline_core::keys::validate_key;
use thingline_core::model::Thing;
use thingline_core::query::{parse_bool_flag, parse_keep_alive};
use thingline_core::time::now_ms;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::access::{Target, access_removed, readable};
use super::{envelope, key_view, thing_view};
use crate::http::ApiResult;
use crate::http::extract::Query;
use crate::platform::{Platform, Session};

const SUBSCRIBED: &str = r#"{"status":"success","message":"subscribed"}"#;

/// Whether a `/v2/me/resources/…` GET asks for a subscription (`subscribe=true`).
pub fn subscribe_requested(q: &Query) -> thingline_core::Result<bool> {
    parse_bool_flag("subscribe", q.get("subscribe"), false)
}

/// Answers `GET /v2/me/resources/{key}[/{thingId}]?subscribe=true&keepAlive=ms` for an
/// authenticated session: 404 when the user may not read the key on that thing (as a read
/// would), 429 past the per-user connection limit, else the stream.
pub async fn subscribe_resource(
    platform: &Arc<Platform>,
    session: Arc<Session>,
    key: &str,
    thing_id: Option<&str>,
    q: &Query,
) -> ApiResult<Response> {
    let keep_alive = Duration::from_millis(parse_keep_alive(q.get("keepAlive"))?);
    validate_key(key)?;
    let target = match thing_id {
        Some(id) => Target::One { key: key.to_owned(), thing_id: id.to_owned() },
        None => Target::Every { key: key.to_owned() },
    };
    let notifier = platform.notifier();
    let mut guard = notifier.connections().open();
    if !guard.bind_user(session.user_id, notifier.limits().max_connections_per_user()) {
        return Err(Error::TooManyRequests("too many realtime connections for this user".into()).into());
    }
    // Watch access changes before reading permissions: a change after the read is seen.
    let access = notifier.subscribe(Topic::User(session.user_id));
    let things = readable(platform, &session, &target).await?;
    let mut live = Live::new(platform, keep_alive, guard, Some(AccessWatch { session, target, sub: access }));
    for thing in things.values() {
        live.join_key(thing);
    }
    Ok(stream_response(live))
}

/// Answers the thing stream `GET /v2/things/{thingToken}?keepAlive=ms` for an authenticated
/// thing: the thing's values as the thing wrote or an app wrote them.
pub fn subscribe_thing(platform: &Arc<Platform>, thing: &Thing, q: &Query) -> ApiResult<Response> {
    let keep_alive = Duration::from_millis(parse_keep_alive(q.get("keepAlive"))?);
    let guard = platform.notifier().connections().open();
    let mut live = Live::new(platform, keep_alive, guard, None);
    let (key, render) = thing_view(thing);
    let member = Fanout::join(platform.notifier(), key, render, Arc::clone(&live.sink));
    live.members.insert(thing.seq, member);
    Ok(stream_response(live))
}

/// Why the fan-out dropped this subscriber, and a wake-up for the stream.
#[derive(Default)]
struct Control {
    reason: Mutex<Option<DropReason>>,
    notify: Notify,
}

/// The subscriber's outlet: a bounded queue read by the response stream.
struct ChannelSink {
    tx: mpsc::Sender<Arc<Payload>>,
    control: Arc<Control>,
}

impl Sink for ChannelSink {
    fn deliver(&self, _channel: &str, payload: &Arc<Payload>) -> Result<(), SinkError> {
        self.tx.try_send(Arc::clone(payload)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }

    fn dropped(&self, reason: DropReason) {
        self.control.reason.lock().get_or_insert(reason);
        self.control.notify.notify_one();
    }
}

/// A live subscription, owned by its response stream.
struct Live {
    platform: Arc<Platform>,
    /// One membership per thing, by thing seq.
    members: HashMap<i64, Membership>,
    sink: Arc<dyn Sink>,
    rx: mpsc::Receiver<Arc<Payload>>,
    control: Arc<Control>,
    /// App subscriptions only: whose access is re-checked, and when.
    watch: Option<AccessWatch>,
    keep_alive: Duration,
    shutdown: CancellationToken,
    first: bool,
    _guard: ConnectionGuard,
}

/// An app subscription's session, what it asked for, and the bus topic of the user's access
/// changes.
struct AccessWatch {
    session: Arc<Session>,
    target: Target,
    sub: Subscription,
}

/// Shares a rendered payload with the response body without copying.
struct Shared(Arc<Payload>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().as_ref()
    }
}

enum Step {
    Send(Bytes),
    /// Send this, then end.
    End(Bytes),
    Stop,
}

impl Live {
    fn new(platform: &Arc<Platform>, keep_alive: Duration, guard: ConnectionGuard, watch: Option<AccessWatch>) -> Live {
        let (tx, rx) = mpsc::channel(platform.notifier().limits().queue_capacity());
        let control = Arc::new(Control::default());
        Live {
            platform: Arc::clone(platform),
            members: HashMap::new(),
            sink: Arc::new(ChannelSink { tx, control: Arc::clone(&control) }),
            rx,
            control,
            watch,
            keep_alive,
            shutdown: platform.shutdown_signal().clone(),
            first: true,
            _guard: guard,
        }
    }

    /// Joins the app view of the subscription's key on `thing` (app subscriptions).
    fn join_key(&mut self, thing: &Thing) {
        let Some(watch) = &self.watch else { return };
        if self.members.contains_key(&thing.seq) {
            return;
        }
        let (key, render) = key_view(thing, watch.target.key());
        let m = Fanout::join(self.platform.notifier(), key, render, Arc::clone(&self.sink));
        self.members.insert(thing.seq, m);
    }

    /// Whether the app session of this subscription has ended (never for a thing stream).
    fn session_expired(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.session.expires_ms <= now_ms())
    }

    /// Re-reads permissions after an access change; `Some(envelope)` ends the subscription.
    async fn recheck(&mut self) -> Option<String> {
        let Some(watch) = &self.watch else { return None };
        if watch.session.expires_ms <= now_ms() {
            return Some(envelope(401, "Invalid session token"));
        }
        match readable(&self.platform, &watch.session, &watch.target).await {
            Ok(now) => {
                self.members.retain(|seq, _| now.contains_key(seq));
                for thing in now.values() {
                    self.join_key(thing);
                }
                None
            }
            Err(Error::NotFound(_)) => {
                let e = access_removed();
                Some(envelope(e.status(), &e.public_message()))
            }
            Err(e) => {
                tracing::warn!(error = %e.public_message(), "re-checking a subscription's access failed");
                Some(envelope(503, "Could not re-check access; subscribe again"))
            }
        }
    }

    async fn next(&mut self) -> Step {
        if self.first {
            self.first = false;
            return Step::Send(Bytes::from_static(SUBSCRIBED.as_bytes()));
        }
        loop {
            let idle = tokio::time::sleep(self.keep_alive);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Step::Stop,
                _ = self.control.notify.notified() => {
                    let text = match *self.control.reason.lock() {
                        Some(DropReason::Closed) | None => return Step::Stop,
                        Some(DropReason::SlowConsumer) => {
                            envelope(503, "Subscriber too slow: its queue was full; subscribe again")
                        }
                        Some(DropReason::Lagged) => envelope(503, "Subscriber fell behind: values were skipped; subscribe again"),
                    };
                    return Step::End(Bytes::from(text));
                }
                r = access_changes(&mut self.watch) => match r {
                    Received::Event(_) | Received::Lagged(_) => {
                        if let Some(text) = self.recheck().await {
                            return Step::End(Bytes::from(text));
                        }
                    }
                    Received::Closed => return Step::Stop,
                },
                m = self.rx.recv() => match m {
                    Some(p) => return Step::Send(Bytes::from_owner(Shared(p))),
                    None => return Step::Stop,
                },
                _ = idle => {
                    if self.session_expired() {
                        return Step::End(Bytes::from(envelope(401, "Invalid session token")));
                    }
                    return Step::Send(Bytes::from_static(b"{}"));
                }
            }
        }
    }
}

/// The next access change of an app subscription; never for a thing stream.
async fn access_changes(watch: &mut Option<AccessWatch>) -> Received {
    match watch {
        Some(w) => w.sub.recv().await,
        None => std::future::pending().await,
    }
}

fn stream_response(live: Live) -> Response {
    let stream = futures_util::stream::unfold(Some(live), |state| async move {
        let mut live = state?;
        match live.next().await {
            Step::Send(b) => Some((Ok::<_, std::convert::Infallible>(b), Some(live))),
            Step::End(b) => Some((Ok(b), None)),
            Step::Stop => None,
        }
    });
    Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
