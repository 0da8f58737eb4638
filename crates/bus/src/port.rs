//! The bus port: how the platform publishes what happened so that every node's subscribers and
//! caches hear of it. Two implementations: [`InProcessBus`] (one node: the [`Notifier`] alone)
//! and `nats::NatsBus` (many nodes: the same notifier on each, bridged through NATS). The
//! platform only ever holds an `Arc<dyn Bus>`; realtime paths subscribe to the local notifier.
//!
//! Events and invalidations are serializable: they are what crosses between nodes.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{Event, Notifier, Topic};

/// Cached state another node must drop, because what it was read from changed on this node.
/// The node that made the change applies it to its own caches itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Invalidation {
    /// A thing was deleted: its token, its latest values and the access entries naming it.
    Thing { seq: i64, id: String, token: String },
    /// One app session ended (logout).
    Session { user_id: i64, digest: String },
    /// Every session of a user ended but `keep` (password change, user deleted).
    UserSessions { user_id: i64, keep: Option<String> },
    /// What one user may access changed (link, unlink, grant).
    UserAccess { user_id: i64 },
    /// What any user may access may have changed (a change whose reach is not known).
    AllUserAccess,
    /// An app changed or was deleted (its view, its sessions).
    App { app_id: String },
    /// A product changed or was deleted (its resource declarations).
    Product { product_id: String },
    /// A panel session ended (sign-out): the live streams of the web panel opened with it end.
    PanelSession { digest: String },
}

/// What another node told this one, in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Drop this cached state.
    Invalidate(Invalidation),
    /// Invalidations may have been missed (the connection to the other nodes was lost and is
    /// back): drop every cache.
    Reset,
}

/// The bus's state for readiness checks and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BusStatus {
    /// `in-process` or `nats`.
    pub backend: &'static str,
    /// Whether events reach the other nodes now (always true in process).
    pub connected: bool,
    /// Events from other nodes received, and events this node could not send to them.
    pub received: u64,
    pub send_failures: u64,
}

/// The port.
#[async_trait]
pub trait Bus: Send + Sync {
    /// The local notifier: realtime paths subscribe here.
    fn notifier(&self) -> &Arc<Notifier>;
    /// Delivers `event` to the subscribers of `topic` on this node at once and on every other
    /// node; returns how many local subscribers it reached. Never blocks on the network.
    fn publish(&self, topic: &Topic, event: Event) -> usize;
    /// Tells every other node to drop cached state (the caller applied it locally already).
    fn invalidate(&self, invalidation: Invalidation);
    /// Whether this node hears every other node's invalidations now: while false, the platform
    /// must not answer from caches that another node's change could have made stale.
    fn coherent(&self) -> bool;
    /// Invalidations from other nodes (and resets). Taken once, by the platform.
    fn take_remote(&self) -> Option<mpsc::Receiver<Remote>>;
    fn status(&self) -> BusStatus;
    /// Flushes what is being sent and disconnects.
    async fn close(&self);
}

/// One node: the notifier alone.
pub struct InProcessBus {
    notifier: Arc<Notifier>,
}

impl InProcessBus {
    pub fn new(notifier: Arc<Notifier>) -> Arc<Self> {
        Arc::new(InProcessBus { notifier })
    }
}

#[async_trait]
impl Bus for InProcessBus {
    fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    fn publish(&self, topic: &Topic, event: Event) -> usize {
        self.notifier.publish(topic, event)
    }

    fn invalidate(&self, _invalidation: Invalidation) {}

    fn coherent(&self) -> bool {
        true
    }

    fn take_remote(&self) -> Option<mpsc::Receiver<Remote>> {
        None
    }

    fn status(&self) -> BusStatus {
        BusStatus { backend: "in-process", connected: true, received: 0, send_failures: 0 }
    }

    async fn close(&self) {}
}
