//! Things: activation with single-use codes (failed attempts limited per client address), and
//! the token → thing cache that keeps device requests off the store (invalidated when a thing is
//! deleted).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use thingline_bus::{Event, Invalidation, Topic};
use thingline_core::ids::{looks_like_thing_token, new_id, new_thing_token};
use thingline_core::model::Thing;
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};
use thingline_store::NewThing;

use super::Platform;
use super::limiter::LimitKey;

/// Things most recently used by token. Bounded: past the cap it is cleared and refills on demand.
#[derive(Default)]
pub struct ThingCache {
    by_token: RwLock<HashMap<String, Arc<Thing>>>,
}

const MAX_CACHED_THINGS: usize = 500_000;

impl ThingCache {
    pub(super) fn get(&self, token: &str) -> Option<Arc<Thing>> {
        self.by_token.read().get(token).cloned()
    }

    pub(super) fn put(&self, thing: Arc<Thing>) {
        let mut map = self.by_token.write();
        if map.len() >= MAX_CACHED_THINGS {
            map.clear();
        }
        map.insert(thing.token.clone(), thing);
    }

    pub(super) fn forget(&self, token: &str) {
        self.by_token.write().remove(token);
    }

    pub(super) fn clear(&self) {
        self.by_token.write().clear();
    }
}

impl Platform {
    /// Activates a thing with a single-use code (optionally checked against a product), for a
    /// device at `client` (the address the adapter saw). Failed activations (unknown code, code
    /// of another product, code already used) are limited per client address like logins: the
    /// attempt is reserved before the store is asked and released only when the thing is
    /// activated, so successful activations never count; past the limit, 429.
    pub async fn activate(&self, code: &str, product_id: Option<&str>, client: IpAddr) -> Result<Arc<Thing>> {
        let code = code.trim();
        if code.is_empty() || code.len() > 128 {
            return Err(Error::bad_request("activationCode is required"));
        }
        let attempt = self.activations.reserve_in(self.store.attempts(), &[LimitKey::Addr(client)]).await?;
        // A failure (or an error) keeps the reservation: it counts.
        let thing = self
            .store
            .activate(code, product_id, NewThing { id: new_id(), token: new_thing_token(), now_ms: now_ms() })
            .await?;
        attempt.release().await;
        let thing = Arc::new(thing);
        self.things.put(Arc::clone(&thing));
        tracing::info!(thing_id = %thing.id, product_id = %thing.product_id, "thing activated");
        Ok(thing)
    }

    /// The thing a thingToken names; 404 when there is none.
    pub async fn thing_by_token(&self, token: &str) -> Result<Arc<Thing>> {
        if self.caches_usable()
            && let Some(t) = self.things.get(token)
        {
            return Ok(t);
        }
        if !looks_like_thing_token(token) {
            return Err(Error::thing_not_found());
        }
        let thing = Arc::new(self.store.thing_by_token(token).await?.ok_or_else(Error::thing_not_found)?);
        self.things.put(Arc::clone(&thing));
        Ok(thing)
    }

    pub async fn thing_by_id(&self, id: &str) -> Result<Arc<Thing>> {
        Ok(Arc::new(self.store.thing_by_id(id).await?.ok_or_else(Error::thing_not_found)?))
    }

    /// Deletes a thing with all its values; its token stops working at once, and every live
    /// subscription of it ends (404), on every protocol.
    pub async fn delete_thing(&self, thing: &Thing) -> Result<()> {
        self.things.forget(&thing.token);
        if !self.store.delete_thing(&thing.id).await? {
            return Err(Error::thing_not_found());
        }
        self.invalidate(Invalidation::Thing { seq: thing.seq, id: thing.id.clone(), token: thing.token.clone() });
        self.bus.publish(&Topic::Thing(thing.seq), Event::ThingDeleted { thing_seq: thing.seq });
        Ok(())
    }
}
