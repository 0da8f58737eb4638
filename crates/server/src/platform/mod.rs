//! The platform core: the one service every protocol adapter calls. Permissions, validation,
//! datetimes, storage and fan-out happen here, once; adapters only parse their wire format,
//! authenticate the caller and render the result.

mod auth;
mod coherence;
mod health;
mod latest;
mod limiter;
mod mail;
pub mod metrics;
pub mod objects;
mod panel;
pub mod panel_views;
pub mod permissions;
mod resources;
mod sessions;
pub mod subscriptions;
mod things;
mod users;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use limiter::RateLimiter;
use thingline_bus::{Bus, Notifier};
use thingline_store::Store;
use tokio_util::sync::CancellationToken;

pub use auth::bare_token;
pub use coherence::spawn_remote_invalidations;
pub use health::Readiness;
pub use panel::{AppInput, ProductInput};
pub use permissions::perm;
pub use resources::LinkedThing;
pub use sessions::Session;
pub use subscriptions::{
    Ended, Inbox, Next, Outlet, Payload, SinkError, StatsSnapshot, Subscriber, Target, WeakSubscriber,
    authenticate_first, thing_channel,
};
pub use users::{LinkBy, LoginOutcome, session_lifetime};
pub use values::{AllResources, ReadOut, WriteFlags, WriteItem, json_error, parse_write_items};

/// The server's clock as `GET /v2/utils/date` answers it on every protocol: `{"date": d,
/// "values": [{"value": d}]}`, `format=UTC` (default, ISO-8601) or `unix_timestamp` (seconds).
pub fn server_date(format: Option<&str>) -> thingline_core::Result<serde_json::Value> {
    use thingline_core::time::{format_datetime, now_ms};
    let now = now_ms();
    let value = match format.unwrap_or("UTC") {
        f if f.eq_ignore_ascii_case("utc") => serde_json::json!(format_datetime(now)),
        f if f.eq_ignore_ascii_case("unix_timestamp") => serde_json::json!(now.div_euclid(1000)),
        other => {
            return Err(thingline_core::Error::bad_request(format!(
                "format must be UTC or unix_timestamp, not {other:?}"
            )));
        }
    };
    Ok(serde_json::json!({"date": value, "values": [{"value": value}]}))
}

/// Limits that protect the platform from one client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (and so largest value), bytes.
    pub body_limit: usize,
    /// Most values in one write request.
    pub max_values_per_write: usize,
    /// Most activation codes created in one call.
    pub max_codes_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { body_limit: crate::config::DEFAULT_BODY_LIMIT, max_values_per_write: 10_000, max_codes_per_call: 1000 }
    }
}

/// The platform service. Cheap to share behind an `Arc`.
pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    /// How this node tells every node (itself included) what happened.
    pub(crate) bus: Arc<dyn Bus>,
    /// This node's notifier (the bus's): realtime paths subscribe here.
    pub(crate) notifier: Arc<Notifier>,
    /// Several nodes share the store (the bus reaches other nodes): caches another node's change
    /// could make stale answer only while the bus is coherent, and session and latest-value
    /// lookups always ask the store (see `coherence`).
    pub(crate) clustered: bool,
    pub(crate) things: things::ThingCache,
    /// The newest value of each timeline (limit=1 reads).
    pub(crate) latest: latest::LatestCache,
    pub(crate) limits: Limits,
    pub(crate) shutdown: CancellationToken,
    /// Failed panel logins, per email and per client address.
    pub(crate) panel_logins: RateLimiter,
    /// Failed thing activations, per client address.
    pub(crate) activations: RateLimiter,
    /// The App API's sessions, permission caches, login limiter and mailer.
    pub(crate) app_api: users::AppApi,
    /// Session expiries of live subscribers.
    pub(crate) deadlines: Arc<subscriptions::Deadlines>,
    /// Digests of panel sessions that ended (sign-out, on any node): the web panel's live
    /// streams of those sessions end.
    pub(crate) panel_ends: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Live web-panel streams per panel account (reserved before a stream opens).
    pub(crate) panel_streams: parking_lot::Mutex<HashMap<i64, usize>>,
}

impl Platform {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, limits: Limits, shutdown: CancellationToken) -> Arc<Self> {
        let notifier = Arc::clone(bus.notifier());
        let clustered = bus.status().backend != "in-process";
        Arc::new(Platform {
            store,
            bus,
            notifier,
            clustered,
            things: things::ThingCache::default(),
            latest: latest::LatestCache::default(),
            limits,
            shutdown,
            panel_logins: RateLimiter::login_default("panel-login"),
            activations: RateLimiter::activation_default(),
            app_api: users::AppApi::default(),
            deadlines: Arc::default(),
            panel_ends: tokio::sync::broadcast::channel(256).0,
            panel_streams: parking_lot::Mutex::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Sends what the bus still holds to the other nodes and disconnects (at shutdown).
    pub async fn close_bus(&self) {
        self.bus.close().await;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Fires when the server stops: long-lived responses end themselves.
    pub fn shutdown_signal(&self) -> &CancellationToken {
        &self.shutdown
    }
}
