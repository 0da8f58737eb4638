//! Keeping every node's caches true. The platform caches what the hot paths read (things by
//! token, app views, product keys, user access, sessions, latest values); a change that makes an
//! entry stale is an [`Invalidation`], which the node that made the change applies at once and the
//! bus carries to every other node, where [`spawn_remote_invalidations`] applies it the same way.
//! Applying one also tells the node's live subscriptions of the users it touched to re-check
//! (after the cache is dropped, so the re-check reads the truth), whatever order the event and
//! the invalidation arrive in.
//!
//! What stays strict across nodes, and how:
//! - sessions and `limit=1` latest values are not answered from memory at all when several nodes
//!   share the store (`Platform::clustered`): a logout on one node is a 401 on every other at
//!   once, and a read never returns a value older than one another node acknowledged;
//! - the other caches answer only while the bus is coherent (it hears every other node now);
//!   when its link to the other nodes drops it stops being coherent, and when it is back the
//!   bus sends [`Remote::Reset`]: every cache is emptied, since invalidations may have been
//!   missed in between;
//! - what no node can see is its peers' link going down: while node A cannot reach NATS, the
//!   invalidations of A's changes reach the others only when A's link is back. So when several
//!   nodes share the store, every cache is also emptied every [`CLUSTER_CACHE_LIFETIME`]: a
//!   change made on a node cut off from the others (a revoked grant, a deleted thing) holds on
//!   every node within that time at most, whatever the bus did.

use std::sync::Arc;
use std::time::Duration;

use thingline_bus::{Invalidation, Remote};

use super::Platform;

/// When several nodes share the store, the longest any cached entry is used before it is read
/// from the store again.
pub const CLUSTER_CACHE_LIFETIME: Duration = Duration::from_secs(10);

impl Platform {
    /// Applies an invalidation on this node and sends it to every other node.
    pub(crate) fn invalidate(&self, invalidation: Invalidation) {
        self.apply_invalidation(&invalidation);
        self.bus.invalidate(invalidation);
    }

    /// Whether caches that another node's change could make stale may answer now.
    pub(crate) fn caches_usable(&self) -> bool {
        self.bus.coherent()
    }

    /// Drops what `invalidation` names from this node's caches; the live subscriptions of the
    /// users it touched re-check their session and permissions.
    fn apply_invalidation(&self, invalidation: &Invalidation) {
        let users = match invalidation {
            Invalidation::Thing { seq, id, token } => {
                self.things.forget(token);
                self.latest.forget_thing(*seq);
                self.forget_thing_access(id)
            }
            Invalidation::Session { user_id, digest } => {
                self.forget_session(digest);
                vec![*user_id]
            }
            Invalidation::UserSessions { user_id, keep } => {
                let user = *user_id;
                self.forget_sessions_where(|s| s.user_id == user && Some(&s.token_digest) != keep.as_ref());
                vec![user]
            }
            Invalidation::UserAccess { user_id } => {
                self.forget_user_access(*user_id);
                vec![*user_id]
            }
            // These three reach users this node may not have in its caches (emptied, or filled on
            // another node): every live subscriber they may concern re-checks as well, after the
            // caches are dropped.
            Invalidation::AllUserAccess => {
                let users = self.forget_all_user_access();
                self.deadlines.recheck_app(None);
                users
            }
            Invalidation::App { app_id } => {
                let users = self.forget_app(app_id);
                self.deadlines.recheck_app(Some(app_id));
                users
            }
            Invalidation::Product { product_id } => {
                let users = self.forget_product(product_id);
                self.deadlines.recheck_app(None);
                users
            }
            Invalidation::PanelSession { digest } => {
                // No receiver (no live panel stream on this node) is not an error.
                let _ = self.panel_ends.send(Arc::from(digest.as_str()));
                Vec::new()
            }
        };
        for user_id in users {
            self.access_changed(user_id);
        }
    }

    /// Empties every cache: they refill from the store on demand.
    fn empty_caches(&self) {
        self.things.clear();
        self.latest.clear();
        self.forget_all_sessions();
        self.forget_all_access();
    }
}

/// Applies other nodes' invalidations as they arrive, and empties the caches every
/// [`CLUSTER_CACHE_LIFETIME`], until the server stops. Nothing to do on one node (the in-process
/// bus has no other node).
pub fn spawn_remote_invalidations(platform: Arc<Platform>) {
    let Some(mut remote) = platform.bus.take_remote() else { return };
    let stop = platform.shutdown.clone();
    tokio::spawn(async move {
        let mut lifetime = tokio::time::interval(CLUSTER_CACHE_LIFETIME);
        lifetime.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        lifetime.tick().await;
        loop {
            let next = tokio::select! {
                next = remote.recv() => next,
                _ = lifetime.tick() => {
                    platform.empty_caches();
                    continue;
                }
                () = stop.cancelled() => return,
            };
            match next {
                Some(Remote::Invalidate(invalidation)) => platform.apply_invalidation(&invalidation),
                Some(Remote::Reset) => {
                    platform.empty_caches();
                    tracing::info!("caches emptied: the bus was away and may have missed other nodes' changes");
                }
                None => return,
            }
        }
    });
}
