//! The MQTT adapter: Thingline's own broker, in process on tokio, for MQTT 3.1.1 and 5 over TCP
//! (`THINGLINE_MQTT_ADDR`), TLS (`THINGLINE_MQTTS_ADDR`) and WebSocket (`/mqtt` on the HTTPS
//! listener, subprotocol `mqtt`). A thin adapter over the platform: a PUBLISH on
//! `v2/things/{thingToken}` is the HTTP write (same parsing, same store, acknowledged after the
//! commit), a SUBSCRIBE is a subscription of the platform's subscription service.
//!
//! - [`codec`]: the frame layer (bytes ↔ packets), the `thingline-mqtt-codec` crate, fuzzed alone;
//! - [`topic`]: the topics a thing may use;
//! - [`connection`]: one network connection, CONNECT to end;
//! - [`writes`]: the ordered publish → commit → acknowledgement pipeline;
//! - [`session`]: mailboxes and persistent sessions;
//! - [`websocket`]: MQTT over WebSocket.

/// The frame layer, its own crate (`crates/mqtt-codec`) so that it is fuzzed alone.
pub use thingline_mqtt_codec as codec;
mod connection;
mod session;
pub mod topic;
mod websocket;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::config::MqttSettings;
use crate::net::{self, Conn};
use crate::platform::Platform;

pub use websocket::router as websocket_router;

/// How often expired persistent sessions are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The broker: what every MQTT connection shares.
pub struct Broker {
    platform: Arc<Platform>,
    settings: MqttSettings,
    sessions: session::SessionTable,
}

impl Broker {
    /// A broker over `platform`; sweeps expired persistent sessions until the platform stops.
    pub fn new(platform: Arc<Platform>, settings: MqttSettings) -> Arc<Broker> {
        let sessions = session::SessionTable::new(settings.max_sessions, settings.session_queue);
        let broker = Arc::new(Broker { platform, settings, sessions });
        let weak = Arc::downgrade(&broker);
        let shutdown = broker.platform.shutdown_signal().clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                let Some(broker) = weak.upgrade() else { return };
                let removed = broker.sessions.sweep().await;
                if removed > 0 {
                    tracing::debug!(removed, left = broker.sessions.len(), "expired MQTT sessions removed");
                }
            }
        });
        broker
    }
}

/// Serves MQTT connections from `listener` (plain or TLS) until shutdown, then waits (bounded)
/// for the connections to finish what they acknowledged.
pub async fn serve(mut listener: net::Listener, broker: Arc<Broker>) {
    let tracker = TaskTracker::new();
    while let Some(Conn { stream, info }) = listener.accept().await {
        tracker.spawn(connection::serve(Arc::clone(&broker), stream, info.remote));
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(net::DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
        tracing::warn!("some MQTT connections did not finish within the drain timeout");
    }
}
