//! The App API's door to things and their resources: every read, write and listing an app user
//! makes goes through these calls, whatever the protocol. They name a thing by its thingId or by
//! the thingToken of a thing the user reaches, check the user's permission bits on the key
//! ([`super::permissions`]) and then read or write like the Thing API does. A key or thing the
//! user may not see answers exactly like one that does not exist (404 `Resource … not found`);
//! a visible key without the needed bit for a write is a 403.

use std::sync::Arc;

use thingline_core::json::JsonText;
use thingline_core::keys::{GEO_KEY, validate_key};
use thingline_core::model::Thing;
use thingline_core::query::TimelineQuery;
use thingline_core::{Error, Result};

use super::permissions::perm;
use super::{Platform, ReadOut, Session, WriteFlags, parse_write_items};

/// A thing as the user's `GET /v2/me/things` lists it.
pub struct LinkedThing {
    pub thing: Arc<Thing>,
    /// The keys the user may see on it, in the app's order.
    pub keys: Vec<String>,
}

impl Platform {
    /// The thing `thing` names and the user's bits on `key` of it, or 404 for the key.
    async fn reach_key(&self, session: &Session, thing: &str, key: &str) -> Result<(Arc<Thing>, u8)> {
        validate_key(key)?;
        self.reach(session, thing, key).await?.ok_or_else(|| Error::resource_not_found(key))
    }

    /// Reads `key` of one thing the user may read it on (`get`), newest first.
    pub async fn read_as(&self, session: &Session, thing: &str, key: &str, query: &TimelineQuery) -> Result<ReadOut> {
        let (thing, bits) = self.reach_key(session, thing, key).await?;
        if bits & perm::GET == 0 {
            return Err(Error::resource_not_found(key));
        }
        self.read_values(&thing, key, query).await
    }

    /// Reads `key` on every thing the user may read it on, linked things first; things where it
    /// was never written are left out. 404 when the user may read it on no thing.
    pub async fn read_every_as(
        &self,
        session: &Session,
        key: &str,
        query: &TimelineQuery,
    ) -> Result<Vec<(Arc<Thing>, ReadOut)>> {
        validate_key(key)?;
        let things = self.readable_things(session, key).await?;
        if things.is_empty() {
            return Err(Error::resource_not_found(key));
        }
        let mut out = Vec::with_capacity(things.len());
        for thing in things {
            match self.read_values(&thing, key, query).await {
                Ok(read) => out.push((thing, read)),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Writes `{"values":[…]}` (JSON text; its nesting bounded, see `parse_write_items`) to `key` of one thing: needs `post` on the key, and on
    /// `$geo` too when an item carries a `geo` attribute (it also records `$geo`).
    pub async fn write_as(
        &self,
        session: &Session,
        thing: &str,
        key: &str,
        body: &(impl JsonText + ?Sized),
        flags: WriteFlags,
    ) -> Result<()> {
        let (thing, bits) = self.reach_key(session, thing, key).await?;
        if bits & perm::POST == 0 {
            return Err(Error::Forbidden(format!("You have no post permission on resource {key} of this thing")));
        }
        let items = parse_write_items(body, Some(key), self.limits.max_values_per_write)?;
        if items.iter().any(|i| i.geo.is_some()) {
            let geo_bits = self.reach(session, &thing.id, GEO_KEY).await?.map_or(0, |(_, b)| b);
            if geo_bits & perm::POST == 0 {
                return Err(Error::Forbidden("You have no post permission on $geo of this thing".into()));
            }
        }
        self.write_values(&thing, items, flags).await
    }

    /// The user's linked things with the keys the user may see on each.
    pub async fn linked_things(&self, session: &Session) -> Result<Vec<LinkedThing>> {
        let Some(app) = self.app_view(&session.app_id).await? else { return Ok(Vec::new()) };
        let access = self.user_access(session.user_id).await?;
        let mut out = Vec::new();
        for t in access.things.iter().filter(|t| t.linked) {
            let keys = self.visible_keys(&app, t).await?.into_iter().map(|(k, _)| k).collect();
            out.push(LinkedThing { thing: Arc::clone(&t.thing), keys });
        }
        Ok(out)
    }
}
