//! The subscription service: the one place where live subscriptions are decided, kept and ended,
//! whatever the protocol. Socket.IO, the HTTP streams (thing stream, app subscriptions, collection
//! subscriptions), and next MQTT subscribe and CoAP Observe are thin sinks over it: an adapter
//! opens a [`Subscriber`] per connection (or per stream) with an [`Outlet`] that puts a rendered
//! payload on its wire, and asks it for [`Target`]s.
//!
//! The service owns:
//! - **who may subscribe to what**: a user's key on one thing or on every thing it may read (the
//!   same permission rules as reads), a whole thing by its thingToken (possession proves access),
//!   an object collection of the session's app;
//! - **the caps**: realtime connections per user, subscriptions per connection, device
//!   subscriptions per thing (429 beyond);
//! - **joining the fan-out** ([`thingline_bus::fanout`]): a subscription is live when
//!   [`Subscriber::subscribe`] returns, so an acknowledgement sent after it never misses a write;
//! - **re-checking** when what a subscription hangs on changes: a link, grant, product or app
//!   change re-reads permissions; a logout, password change, deleted user or expired session ends
//!   the user's subscriptions; a deleted thing ends the subscriptions of it;
//! - **the end of a subscription** and its reason ([`Ended`]: 403, 401, 404, 503), told to the
//!   outlet once.
//!
//! Order of operations, so that nothing falls in a gap: a subscriber joins its user's
//! access-change group when it authenticates, before any permission is read; a change after that
//! read is seen and re-checked. Every state change of one subscriber happens under its own lock,
//! one at a time.

mod expiry;
mod queue;
mod stats;
mod views;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use thingline_bus::{ConnectionGuard, DropReason, Fanout, GroupKey, Membership, Renderer, Sink, ThingStreamGuard};
use thingline_core::classes::{Collection, Owner};
use thingline_core::keys::validate_key;
use thingline_core::model::Thing;
use thingline_core::{Error, Result};

use super::metrics::{self, Live, Protocol};
use super::{Platform, Session};

pub(crate) use expiry::Deadlines;
pub use queue::{Inbox, Next};
pub use stats::spawn_stats_logger;
pub use thingline_bus::{Payload, SinkError, StatsSnapshot};
/// The channel of a whole thing's subscription ([`Target::Thing`]): what [`Outlet::deliver`] is
/// called with, so that an adapter can route it before the subscription is live.
pub use views::thing_channel;

/// What a subscription is to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `key` on one thing the user may read it on, named by thingId or thingToken: app items on
    /// channel `/me/resources/{key}`.
    Key { key: String, thing: String },
    /// `key` on every thing the user may read it on, now and as links and grants change.
    EveryThing { key: String },
    /// A whole thing, named by its thingToken: thing items on channel `/things/{thingToken}`.
    Thing { token: String },
    /// An object collection of the session's app.
    Collection(Collection),
}

/// Why the platform ended a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The user may no longer read what it subscribed to (a link or grant removed): 403.
    AccessRemoved,
    /// The session ended (logout, password change, user deleted, expired): 401.
    SessionEnded,
    /// The thing was deleted: 404.
    ThingGone,
    /// The subscriber's queue was full: 503.
    SlowConsumer,
    /// The server fell behind and skipped events for this subscriber: 503.
    Lagged,
    /// Access could not be re-checked (the store failed): 503.
    Unverified,
}

impl Ended {
    /// The error the subscriber is told (its envelope).
    pub fn error(self) -> Error {
        match self {
            Ended::AccessRemoved => Error::Forbidden("Access to this resource was removed".into()),
            Ended::SessionEnded => Error::Unauthorized("Invalid session token".into()),
            Ended::ThingGone => Error::thing_not_found(),
            Ended::SlowConsumer => {
                Error::Unavailable("Subscriber too slow: its queue was full; subscribe again".into())
            }
            Ended::Lagged => Error::Unavailable("Subscriber fell behind: values were skipped; subscribe again".into()),
            Ended::Unverified => Error::Unavailable("Could not re-check access; subscribe again".into()),
        }
    }
}

/// The adapter's side of a subscriber: puts payloads on its wire.
pub trait Outlet: Send + Sync + 'static {
    /// Hands a rendered event of `channel` to the client. Must not block: enqueue or fail.
    /// [`SinkError::Full`] drops the subscription as too slow ([`Ended::SlowConsumer`]).
    fn deliver(&self, channel: &str, payload: &Arc<Payload>) -> std::result::Result<(), SinkError>;
    /// The platform ended the subscription of `channel`: tell the client. Called once per end,
    /// never for an adapter's own [`Subscriber::unsubscribe`] or [`Subscriber::close`].
    fn ended(&self, channel: &str, why: Ended);
}

/// One realtime connection (or stream): its session, if any, and its subscriptions. Cheap to
/// clone; the subscriptions end when the last clone is dropped or [`Subscriber::close`] is called.
#[derive(Clone)]
pub struct Subscriber {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    id: u64,
    platform: Arc<Platform>,
    outlet: Arc<dyn Outlet>,
    /// Which protocol's subscriptions these are (counted by protocol for the metrics endpoint).
    protocol: Protocol,
    /// Counts the connection for the metrics endpoint where one subscriber is one connection
    /// (Socket.IO, a panel live stream).
    _connection: Option<Live>,
    /// Whether its thing subscriptions without a session take one of the thing's device stream
    /// places (devices, and anyone holding the token); the operator's panel does not: it bounds
    /// its own streams, and must never lock a device out of its own channel.
    per_thing_cap: bool,
    state: tokio::sync::Mutex<State>,
}

struct State {
    /// The app session, once authenticated (cleared when it ends).
    session: Option<Arc<Session>>,
    /// Counts the connection, and towards the per-user cap once authenticated.
    guard: ConnectionGuard,
    /// By channel.
    subs: Subs,
    /// Membership in the user's access-change group.
    access: Option<Membership>,
    /// The session expiry watched by [`Deadlines`].
    deadline: Option<i64>,
    closed: bool,
}

struct Sub {
    target: Target,
    /// The thing of a [`Target::Key`] subscription, once resolved.
    one: Option<Arc<Thing>>,
    /// One membership per thing (by seq); a collection's under 0.
    members: HashMap<i64, Membership>,
    /// A device subscription counts towards its thing's cap.
    _per_thing: Option<ThingStreamGuard>,
    /// Counts the subscription by protocol (set once it is live).
    _live: Option<Live>,
}

/// A connection's subscriptions by channel: a few at most (the cap is per connection), so a
/// vector sized to fit, not a hash map with spare buckets (10,000 idle connections add up).
#[derive(Default)]
struct Subs(Vec<(Arc<str>, Sub)>);

impl Subs {
    fn get_mut(&mut self, channel: &str) -> Option<&mut Sub> {
        self.0.iter_mut().find(|(c, _)| c.as_ref() == channel).map(|(_, s)| s)
    }

    fn insert(&mut self, channel: Arc<str>, sub: Sub) {
        self.0.reserve_exact(1);
        self.0.push((channel, sub));
    }

    fn remove(&mut self, channel: &str) -> Option<Sub> {
        let i = self.0.iter().position(|(c, _)| c.as_ref() == channel)?;
        Some(self.0.swap_remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn channels(&self) -> Vec<Arc<str>> {
        self.0.iter().map(|(c, _)| Arc::clone(c)).collect()
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn drain(&mut self) -> impl Iterator<Item = (Arc<str>, Sub)> + '_ {
        self.0.drain(..)
    }
}

/// Ids of subscribers (for the expiry map).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Platform {
    /// Opens a subscriber that delivers through `outlet`; counts a realtime connection. Its
    /// subscriptions are counted as HTTP's ([`Self::open_subscriber_for`] names the protocol).
    pub fn open_subscriber(self: &Arc<Self>, outlet: Arc<dyn Outlet>) -> Subscriber {
        self.open_subscriber_with(outlet, true, Protocol::Http)
    }

    /// [`Self::open_subscriber`] for `protocol`: its connection (Socket.IO: one subscriber per
    /// connection) and subscriptions are counted under that protocol on the metrics endpoint.
    pub fn open_subscriber_for(self: &Arc<Self>, protocol: Protocol, outlet: Arc<dyn Outlet>) -> Subscriber {
        self.open_subscriber_with(outlet, true, protocol)
    }

    fn open_subscriber_with(
        self: &Arc<Self>,
        outlet: Arc<dyn Outlet>,
        per_thing_cap: bool,
        protocol: Protocol,
    ) -> Subscriber {
        let state = State {
            session: None,
            guard: self.notifier.connections().open(),
            subs: Subs::default(),
            access: None,
            deadline: None,
            closed: false,
        };
        let inner = Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            platform: Arc::clone(self),
            outlet,
            protocol,
            _connection: matches!(protocol, Protocol::Socketio | Protocol::Panel)
                .then(|| metrics::connection(protocol)),
            per_thing_cap,
            state: tokio::sync::Mutex::new(state),
        };
        Subscriber { inner: Arc::new(inner) }
    }

    /// A subscriber with one subscription, delivering into a bounded queue the caller pulls from:
    /// what an HTTP stream (or a CoAP observer) needs. `session`: the app user's, or `None` for a
    /// device (a [`Target::Thing`]).
    pub async fn subscribe_queue(
        self: &Arc<Self>,
        session: Option<Arc<Session>>,
        target: Target,
    ) -> Result<(Subscriber, Inbox)> {
        self.subscribe_queue_for(Protocol::Http, session, target).await
    }

    /// [`Self::subscribe_queue`], its subscription counted under `protocol` (CoAP's observations).
    pub async fn subscribe_queue_for(
        self: &Arc<Self>,
        protocol: Protocol,
        session: Option<Arc<Session>>,
        target: Target,
    ) -> Result<(Subscriber, Inbox)> {
        let (outlet, inbox) = queue::queue(self.notifier.limits().queue_capacity());
        let subscriber = self.open_subscriber_with(outlet, true, protocol);
        if let Some(s) = session {
            subscriber.authenticate(s).await?;
        }
        subscriber.subscribe(target).await?;
        Ok((subscriber, inbox))
    }

    /// The operator's subscriber of several whole things (the web panel's live stream of the
    /// things a page shows), delivering into one bounded queue that keeps each payload's channel.
    /// Its subscriptions take none of the things' device stream places (the caller bounds its
    /// streams). All or nothing: the first target refused ends the subscriber and is the error.
    pub(crate) async fn subscribe_operator_queue(
        self: &Arc<Self>,
        targets: Vec<Target>,
    ) -> Result<(Subscriber, Inbox)> {
        let (outlet, inbox) = queue::queue_with_channels(self.notifier.limits().queue_capacity());
        let subscriber = self.open_subscriber_with(outlet, false, Protocol::Panel);
        for target in targets {
            if let Err(e) = subscriber.subscribe(target).await {
                subscriber.close().await;
                return Err(e);
            }
        }
        Ok((subscriber, inbox))
    }

    /// Every realtime counter now (connections, subscriptions, deliveries, drops): what the logs
    /// and the metrics endpoint read.
    pub fn realtime_snapshot(&self) -> StatsSnapshot {
        self.notifier.snapshot()
    }

    /// The realtime limits (adjustable at run time).
    pub fn realtime_limits(&self) -> &thingline_bus::RealtimeLimits {
        self.notifier.limits()
    }
}

impl Subscriber {
    /// Binds an app session. Another user's session replaces the first user's subscriptions;
    /// 429 past the user's realtime connections.
    pub async fn authenticate(&self, session: Arc<Session>) -> Result<()> {
        let inner = &self.inner;
        let p = &inner.platform;
        let mut st = inner.state.lock().await;
        if st.closed {
            return Err(Error::Unavailable("The connection is closed".into()));
        }
        if st.session.as_ref().is_some_and(|s| s.user_id != session.user_id) {
            // Another user on the same connection: nothing of the first one carries over.
            st.subs.clear();
            inner.forget_session(&mut st);
        }
        if !st.guard.bind_user(session.user_id, p.notifier.limits().max_connections_per_user()) {
            metrics::rate_limited("realtime-connections-per-user");
            return Err(Error::TooManyRequests("too many realtime connections for this user".into()));
        }
        if st.access.is_none() {
            st.access = Some(inner.join_access(session.user_id));
        }
        inner.watch_expiry(&mut st, session.expires_ms, &session.app_id);
        st.session = Some(session);
        Ok(())
    }

    /// Whether a session is bound (and has not ended).
    pub async fn is_authenticated(&self) -> bool {
        self.inner.state.lock().await.session.is_some()
    }

    /// Subscribes to `target`; returns its channel. Live when this returns: every later write
    /// is delivered. Subscribing again to a channel already held is a no-op. Errors: 401 without
    /// a live session (for user targets), 404 for what the caller may not read, 429 past a cap.
    pub async fn subscribe(&self, target: Target) -> Result<Arc<str>> {
        let inner = &self.inner;
        let p = &inner.platform;
        let mut st = inner.state.lock().await;
        if st.closed {
            return Err(Error::Unavailable("The connection is closed".into()));
        }
        // The session may have ended since the last re-check ran: look now.
        if st.session.is_some() {
            inner.revalidate(&mut st).await?;
        }
        let channel = target_channel(&target)?;
        if st.subs.get_mut(&channel).is_some() {
            return Ok(channel);
        }
        if st.subs.len() >= p.notifier.limits().max_subscriptions_per_connection() {
            metrics::rate_limited("realtime-subscriptions-per-connection");
            return Err(Error::TooManyRequests("too many subscriptions on this connection".into()));
        }
        let mut sub = Sub { target, one: None, members: HashMap::new(), _per_thing: None, _live: None };
        match &sub.target {
            Target::Key { .. } | Target::EveryThing { .. } | Target::Collection(_) => {
                let session = st.session.clone().ok_or_else(authenticate_first)?;
                // A new subscription has nothing to lose: `refresh` answers 404 for what is not
                // readable.
                if let Some(why) = inner.refresh(&session, &channel, &mut sub).await? {
                    return Err(why.error());
                }
            }
            Target::Thing { token } => {
                let thing = p.thing_by_token(token).await?;
                if st.session.is_none() && inner.per_thing_cap {
                    let max = p.notifier.limits().max_streams_per_thing();
                    let guard = p.notifier.connections().open_thing_stream(thing.seq, max).ok_or_else(|| {
                        metrics::rate_limited("realtime-streams-per-thing");
                        Error::TooManyRequests(format!("too many subscriptions of this thing (at most {max})"))
                    })?;
                    sub._per_thing = Some(guard);
                }
                let (key, render) = views::thing_view(&thing);
                sub.members.insert(thing.seq, inner.join(key, render, &channel, thing.seq));
            }
        }
        sub._live = Some(metrics::subscription(inner.protocol));
        st.subs.insert(Arc::clone(&channel), sub);
        Ok(channel)
    }

    /// Ends one subscription (the client asked); `false` when there was none.
    pub async fn unsubscribe(&self, channel: &str) -> bool {
        self.inner.state.lock().await.subs.remove(channel).is_some()
    }

    /// Ends every subscription and the session binding: the connection is gone. Later calls
    /// fail; nothing is told to the outlet.
    pub async fn close(&self) {
        let mut st = self.inner.state.lock().await;
        st.closed = true;
        st.subs.clear();
        self.inner.forget_session(&mut st);
    }
}

/// A subscriber that does not keep it alive (for adapters whose connection object must not hold
/// its subscriber in a cycle).
#[derive(Clone)]
pub struct WeakSubscriber {
    inner: Weak<Inner>,
}

impl WeakSubscriber {
    pub fn upgrade(&self) -> Option<Subscriber> {
        self.inner.upgrade().map(|inner| Subscriber { inner })
    }
}

impl Subscriber {
    pub fn downgrade(&self) -> WeakSubscriber {
        WeakSubscriber { inner: Arc::downgrade(&self.inner) }
    }
}

/// The 401 of a subscription asked for before a session was bound.
pub fn authenticate_first() -> Error {
    Error::Unauthorized("Invalid session token: authenticate first".into())
}

/// The channel of a target (also the fan-out view's channel), with the key checked.
fn target_channel(target: &Target) -> Result<Arc<str>> {
    Ok(match target {
        Target::Key { key, .. } | Target::EveryThing { key } => {
            validate_key(key)?;
            Arc::from(format!("/me/resources/{key}"))
        }
        Target::Thing { token } => views::thing_channel(token),
        Target::Collection(c) => views::collection_channel(c),
    })
}

impl Inner {
    /// Joins a fan-out group with a sink of this subscriber.
    fn join(self: &Arc<Self>, key: GroupKey, render: Renderer, channel: &Arc<str>, seq: i64) -> Membership {
        let sink = Arc::new(SubSink {
            outlet: Arc::clone(&self.outlet),
            inner: Arc::downgrade(self),
            channel: Arc::clone(channel),
            seq,
        });
        Fanout::join(&self.platform.notifier, key, render, sink)
    }

    fn join_access(self: &Arc<Self>, user_id: i64) -> Membership {
        let (key, render) = views::access_view(user_id);
        let sink = Arc::new(AccessSink { inner: Arc::downgrade(self), user_id });
        Fanout::join(&self.platform.notifier, key, render, sink)
    }

    fn watch_expiry(self: &Arc<Self>, st: &mut State, expires_ms: i64, app_id: &str) {
        if st.deadline == Some(expires_ms) {
            return;
        }
        self.unwatch_expiry(st);
        let app = Arc::from(app_id);
        self.platform.deadlines.insert(expires_ms, self.id, Arc::downgrade(self), app, &self.platform.shutdown);
        st.deadline = Some(expires_ms);
    }

    fn unwatch_expiry(&self, st: &mut State) {
        if let Some(t) = st.deadline.take() {
            self.platform.deadlines.remove(t, self.id);
        }
    }

    /// Unbinds the session: no access watch, no expiry watch (the subscriptions are the caller's).
    fn forget_session(&self, st: &mut State) {
        st.session = None;
        st.access = None;
        self.unwatch_expiry(st);
    }

    /// (Re)computes what a subscription covers: joins readable things not yet joined and leaves
    /// the ones no longer readable. `Some(why)` when a live subscription lost what it covers (403
    /// access removed, 404 its one thing deleted); `Err`: nothing readable for a new subscription
    /// (404, as a read answers), or a failure.
    async fn refresh(self: &Arc<Self>, session: &Session, channel: &Arc<str>, sub: &mut Sub) -> Result<Option<Ended>> {
        let p = &self.platform;
        let (key, readable) = match &sub.target {
            Target::Thing { token } => {
                return match p.thing_by_token(token).await {
                    Ok(_) => Ok(None),
                    Err(Error::NotFound(_)) => Ok(Some(Ended::ThingGone)),
                    Err(e) => Err(e),
                };
            }
            Target::Collection(c) => {
                let owned = c.app_id == session.app_id
                    && match c.owner {
                        Owner::App => true,
                        Owner::User(u) => u == session.user_id,
                    };
                if !owned {
                    return Err(Error::not_found("Collection not found"));
                }
                if let Entry::Vacant(slot) = sub.members.entry(0) {
                    let (key, render) = views::collection_view(c);
                    slot.insert(self.join(key, render, channel, 0));
                }
                return Ok(None);
            }
            Target::Key { key, thing } => match (p.reach(session, thing, key).await?, &sub.one) {
                (Some((t, bits)), _) if bits & super::perm::GET != 0 => {
                    sub.one = Some(Arc::clone(&t));
                    (key, vec![t])
                }
                (_, None) => return Err(Error::resource_not_found(key)),
                // Lost: the thing was deleted, or the user's access to it removed.
                (_, Some(one)) => {
                    return Ok(Some(match p.thing_by_id(&one.id).await {
                        Err(Error::NotFound(_)) => Ended::ThingGone,
                        _ => Ended::AccessRemoved,
                    }));
                }
            },
            Target::EveryThing { key } => {
                let things = p.readable_things(session, key).await?;
                if things.is_empty() {
                    if sub.members.is_empty() {
                        return Err(Error::resource_not_found(key));
                    }
                    return Ok(Some(Ended::AccessRemoved));
                }
                (key, things)
            }
        };
        sub.members.retain(|seq, _| readable.iter().any(|t| t.seq == *seq));
        for t in readable {
            if let Entry::Vacant(slot) = sub.members.entry(t.seq) {
                let (gk, render) = views::key_view(&t, key);
                slot.insert(self.join(gk, render, channel, t.seq));
            }
        }
        Ok(None)
    }

    /// Checks that the bound session is still live; when it is not, ends every subscription with
    /// 401 (told to the outlet) and forgets the session.
    async fn revalidate(self: &Arc<Self>, st: &mut State) -> Result<Arc<Session>> {
        let Some(session) = st.session.clone() else { return Err(authenticate_first()) };
        match self.platform.session_by_digest(&session.token_digest).await {
            Ok(s) => Ok(s),
            Err(e @ Error::Unauthorized(_)) => {
                self.end_all(st, Ended::SessionEnded);
                self.forget_session(st);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// After an access change or at the session's expiry: re-validates the session and
    /// re-computes every subscription; ends what is no longer allowed.
    pub(crate) async fn recheck(self: &Arc<Self>) {
        let mut st = self.state.lock().await;
        if st.closed || st.session.is_none() {
            return;
        }
        let session = match self.revalidate(&mut st).await {
            Ok(s) => s,
            Err(Error::Unauthorized(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e.public_message(), "re-checking a subscriber's session failed");
                self.end_all(&mut st, Ended::Unverified);
                return;
            }
        };
        for channel in st.subs.channels() {
            let Some(mut sub) = st.subs.remove(&channel) else { continue };
            let why = match self.refresh(&session, &channel, &mut sub).await {
                Ok(None) => {
                    st.subs.insert(channel, sub);
                    continue;
                }
                Ok(Some(why)) => why,
                Err(e) => {
                    tracing::warn!(error = %e.public_message(), "re-checking a subscription failed");
                    Ended::Unverified
                }
            };
            self.outlet.ended(&channel, why);
        }
        st.session = Some(session);
    }

    /// Ends every subscription with `why`, telling the outlet for each.
    fn end_all(&self, st: &mut State, why: Ended) {
        for (channel, _) in st.subs.drain() {
            self.outlet.ended(&channel, why);
        }
    }

    /// The fan-out dropped this subscriber's sink of `channel` (for thing `seq`).
    async fn dropped(self: &Arc<Self>, channel: Arc<str>, seq: i64, reason: DropReason) {
        let mut st = self.state.lock().await;
        let why = match reason {
            DropReason::SlowConsumer => Ended::SlowConsumer,
            DropReason::Lagged => Ended::Lagged,
            DropReason::Gone => {
                // One thing of an every-thing subscription is gone: the others go on.
                if let Some(sub) = st.subs.get_mut(&channel)
                    && matches!(sub.target, Target::EveryThing { .. })
                {
                    sub.members.remove(&seq);
                    if !sub.members.is_empty() {
                        return;
                    }
                    st.subs.remove(&channel);
                    self.outlet.ended(&channel, Ended::AccessRemoved);
                    return;
                }
                Ended::ThingGone
            }
            DropReason::Closed => return,
        };
        // Only a subscription still held ends (an unsubscribe may have come first).
        if st.subs.get_mut(&channel).is_some_and(|s| s.members.contains_key(&seq)) {
            st.subs.remove(&channel);
            self.outlet.ended(&channel, why);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.state.get_mut().deadline {
            self.platform.deadlines.remove(t, self.id);
        }
    }
}

/// The sink one subscription has in one fan-out group: delivery goes straight to the outlet.
struct SubSink {
    outlet: Arc<dyn Outlet>,
    inner: Weak<Inner>,
    channel: Arc<str>,
    seq: i64,
}

impl Sink for SubSink {
    fn deliver(&self, channel: &str, payload: &Arc<Payload>) -> std::result::Result<(), SinkError> {
        self.outlet.deliver(channel, payload)
    }

    fn dropped(&self, reason: DropReason) {
        let Some(inner) = self.inner.upgrade() else { return };
        let channel = Arc::clone(&self.channel);
        let seq = self.seq;
        tokio::spawn(async move { inner.dropped(channel, seq, reason).await });
    }
}

/// A subscriber's outlet for its user's access changes: starts a re-check (rare; never blocks
/// the fan-out).
struct AccessSink {
    inner: Weak<Inner>,
    user_id: i64,
}

impl Sink for AccessSink {
    fn deliver(&self, _channel: &str, _payload: &Arc<Payload>) -> std::result::Result<(), SinkError> {
        let Some(inner) = self.inner.upgrade() else { return Err(SinkError::Closed) };
        tokio::spawn(async move { inner.recheck().await });
        Ok(())
    }

    fn dropped(&self, reason: DropReason) {
        // Lagged: changes were skipped. Watch again (if the user is still the same), re-check.
        if reason != DropReason::Lagged {
            return;
        }
        let Some(inner) = self.inner.upgrade() else { return };
        let user_id = self.user_id;
        tokio::spawn(async move {
            {
                let mut st = inner.state.lock().await;
                if st.session.as_ref().is_some_and(|s| s.user_id == user_id) {
                    st.access = Some(inner.join_access(user_id));
                }
            }
            inner.recheck().await;
        });
    }
}
