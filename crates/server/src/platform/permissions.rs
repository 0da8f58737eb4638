//! What an app user may do on a thing, computed in one place for every protocol.
//!
//! The rule (contract.md): a user's permissions on `key` of a thing are the permissions of the
//! user's own link (all of them) or of the grants the user received for that key, but only when
//! the app asks for the key AND the thing's product declares it public. Magic keys (`$geo`,
//! `$settings`, `$settings.<path>`) follow their base key ([`base_key`]).
//!
//! Hot path: everything here answers from memory. Three caches, each filled from the store on a
//! miss and invalidated when what it mirrors changes:
//! - apps (id → requested keys and index declarations), cleared by [`Platform::app_changed`];
//! - products (id → public keys), cleared by [`Platform::product_changed`];
//! - user access (user id → linked and granted things with their grants), cleared on link,
//!   unlink, grant, and a thing's deletion ([`Platform::forget_thing_access`]). On several nodes each
//!   of these is an [`Invalidation`] every node applies (`coherence`).
//!
//! Fills race with invalidations through a generation counter: a fill that started before an
//! invalidation is not inserted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use serde_json::{Map, Value, json};
use thingline_bus::Invalidation;
use thingline_core::Result;
use thingline_core::classes::IndexDeclarations;
use thingline_core::keys::base_key;
use thingline_core::model::Thing;

use super::{Platform, Session};

/// Permission bits, as stored in grants.
pub mod perm {
    pub const GET: u8 = 1;
    pub const POST: u8 = 2;
    pub const GRANT: u8 = 4;
    pub const PUT: u8 = 8;
    pub const DELETE: u8 = 16;
    /// What a link gives its user.
    pub const ALL: u8 = GET | POST | GRANT | PUT | DELETE;
    /// The names of the guide's roles, in its order.
    pub const NAMES: [(&str, u8); 5] =
        [("get", GET), ("post", POST), ("grant", GRANT), ("put", PUT), ("delete", DELETE)];

    /// `{"get":…, "post":…, "grant":…, "put":…, "delete":…}`
    pub fn to_json(bits: u8) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (name, bit) in NAMES {
            m.insert(name.to_owned(), serde_json::Value::Bool(bits & bit != 0));
        }
        serde_json::Value::Object(m)
    }
}

/// An app as the permission check (and the objects code) needs it.
#[derive(Debug)]
pub struct AppView {
    pub id: String,
    pub owner_id: i64,
    /// Requested keys, in the order the panel gave them.
    pub resources: Vec<String>,
    /// The fields its shared collections may be filtered and sorted on, by collection name.
    pub indexes: IndexDeclarations,
    asked: HashSet<String>,
}

impl AppView {
    pub fn asks_for(&self, key: &str) -> bool {
        self.asked.contains(base_key(key))
    }
}

/// One thing a user reaches, by link or by grants.
#[derive(Debug)]
pub struct ThingAccess {
    pub thing: Arc<Thing>,
    /// The user linked it (all permissions on every visible key).
    pub linked: bool,
    /// Grants received, base key → permission bits.
    pub grants: HashMap<String, u8>,
}

/// Everything a user reaches: linked things first (in link order), then granted ones.
#[derive(Debug, Default)]
pub struct UserAccess {
    pub things: Vec<ThingAccess>,
    /// thingId → position, and thingToken → position.
    index: HashMap<String, usize>,
    by_token: HashMap<String, usize>,
}

impl UserAccess {
    /// A reached thing named by its thingId, or by its thingToken: wherever the App API takes a
    /// thingId it also takes the token of a thing the user reaches (the official Android demo
    /// writes with one), with exactly the same permissions.
    pub fn get(&self, thing: &str) -> Option<&ThingAccess> {
        self.index.get(thing).or_else(|| self.by_token.get(thing)).and_then(|i| self.things.get(*i))
    }

    fn push(&mut self, thing: Thing, linked: bool) -> usize {
        let i = self.things.len();
        self.index.insert(thing.id.clone(), i);
        self.by_token.insert(thing.token.clone(), i);
        self.things.push(ThingAccess { thing: Arc::new(thing), linked, grants: HashMap::new() });
        i
    }
}

/// Caches entries at most before a cache is cleared and refills on demand.
const MAX_ENTRIES: usize = 200_000;

#[derive(Default)]
pub(crate) struct AccessCaches {
    apps: RwLock<HashMap<String, Arc<AppView>>>,
    products: RwLock<HashMap<String, Arc<HashSet<String>>>>,
    users: RwLock<HashMap<i64, Arc<UserAccess>>>,
    generation: AtomicU64,
}

impl AccessCaches {
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

fn put<K: std::hash::Hash + Eq, V>(map: &RwLock<HashMap<K, V>>, k: K, v: V, caches: &AccessCaches, gen_at_start: u64) {
    let mut m = map.write();
    if caches.generation() != gen_at_start {
        return;
    }
    if m.len() >= MAX_ENTRIES {
        m.clear();
    }
    m.insert(k, v);
}

impl Platform {
    /// The app (requested keys) of an id, from memory; `None` when it does not exist.
    pub async fn app_view(&self, app_id: &str) -> Result<Option<Arc<AppView>>> {
        let caches = &self.app_api.access;
        if self.caches_usable()
            && let Some(a) = caches.apps.read().get(app_id)
        {
            return Ok(Some(Arc::clone(a)));
        }
        let generation = caches.generation();
        let Some(app) = self.store.app(app_id).await? else { return Ok(None) };
        let view = Arc::new(AppView {
            asked: app.resources.iter().cloned().collect(),
            id: app.id,
            owner_id: app.owner_id,
            resources: app.resources,
            indexes: app.indexes,
        });
        put(&caches.apps, app_id.to_owned(), Arc::clone(&view), caches, generation);
        Ok(Some(view))
    }

    /// Keys a product declares public (empty for an unknown product), from memory.
    pub async fn public_keys(&self, product_id: &str) -> Result<Arc<HashSet<String>>> {
        let caches = &self.app_api.access;
        if self.caches_usable()
            && let Some(p) = caches.products.read().get(product_id)
        {
            return Ok(Arc::clone(p));
        }
        let generation = caches.generation();
        let keys: HashSet<String> = match self.store.product(product_id).await? {
            Some(p) => p.resources.into_iter().filter(|r| r.public).map(|r| r.key).collect(),
            None => HashSet::new(),
        };
        let keys = Arc::new(keys);
        put(&caches.products, product_id.to_owned(), Arc::clone(&keys), caches, generation);
        Ok(keys)
    }

    /// The things a user reaches (links and grants), from memory.
    pub async fn user_access(&self, user_id: i64) -> Result<Arc<UserAccess>> {
        let caches = &self.app_api.access;
        if self.caches_usable()
            && let Some(a) = caches.users.read().get(&user_id)
        {
            return Ok(Arc::clone(a));
        }
        let generation = caches.generation();
        let mut access = UserAccess::default();
        for thing in self.store.linked_things(user_id).await? {
            access.push(thing, true);
        }
        for g in self.store.grants_of(user_id).await? {
            let i = match access.index.get(&g.thing.id) {
                Some(i) => *i,
                None => access.push(g.thing, false),
            };
            if let Some(t) = access.things.get_mut(i) {
                t.grants.insert(g.key, g.perms);
            }
        }
        let access = Arc::new(access);
        put(&caches.users, user_id, Arc::clone(&access), caches, generation);
        Ok(access)
    }

    /// Permission bits of a user on `key` of one reached thing (0: the key does not exist for
    /// this user).
    pub async fn perms_on(&self, app: &AppView, t: &ThingAccess, key: &str) -> Result<u8> {
        let base = base_key(key);
        if !app.asks_for(base) {
            return Ok(0);
        }
        if !self.public_keys(&t.thing.product_id).await?.contains(base) {
            return Ok(0);
        }
        Ok(if t.linked { perm::ALL } else { t.grants.get(base).copied().unwrap_or(0) })
    }

    /// The thing the session's user reaches under `thing` (thingId or thingToken) and the user's
    /// permission bits on `key` of it; `None` when the thing is not reached or the key not visible
    /// on it (bits 0). The one lookup behind every app read, write, grant and subscription.
    pub async fn reach(&self, session: &Session, thing: &str, key: &str) -> Result<Option<(Arc<Thing>, u8)>> {
        let Some(app) = self.app_view(&session.app_id).await? else { return Ok(None) };
        let access = self.user_access(session.user_id).await?;
        let Some(t) = access.get(thing) else { return Ok(None) };
        let bits = self.perms_on(&app, t, key).await?;
        Ok((bits != 0).then(|| (Arc::clone(&t.thing), bits)))
    }

    /// Every thing on which the session's user may read `key`, linked things first.
    pub async fn readable_things(&self, session: &Session, key: &str) -> Result<Vec<Arc<Thing>>> {
        let Some(app) = self.app_view(&session.app_id).await? else { return Ok(Vec::new()) };
        let access = self.user_access(session.user_id).await?;
        let mut out = Vec::new();
        for t in &access.things {
            if self.perms_on(&app, t, key).await? & perm::GET != 0 {
                out.push(Arc::clone(&t.thing));
            }
        }
        Ok(out)
    }

    /// The keys the user may see on a reached thing, in the app's order, with their permissions.
    pub async fn visible_keys(&self, app: &AppView, t: &ThingAccess) -> Result<Vec<(String, u8)>> {
        let public = self.public_keys(&t.thing.product_id).await?;
        Ok(app
            .resources
            .iter()
            .filter(|k| public.contains(k.as_str()))
            .filter_map(|k| {
                let bits = if t.linked { perm::ALL } else { t.grants.get(k).copied().unwrap_or(0) };
                (bits != 0).then(|| (k.clone(), bits))
            })
            .collect())
    }

    /// The session's roles in the guide's shape: `RSRC_<key>` → thingId → permissions.
    pub async fn roles(&self, session: &Session) -> Result<Value> {
        self.roles_of(&session.app_id, session.user_id).await
    }

    /// The roles of a user of an app (what its sessions carry; the panel's users table shows them).
    pub async fn roles_of(&self, app_id: &str, user_id: i64) -> Result<Value> {
        let mut roles = Map::new();
        let Some(app) = self.app_view(app_id).await? else { return Ok(Value::Object(roles)) };
        let access = self.user_access(user_id).await?;
        for t in &access.things {
            for (key, bits) in self.visible_keys(&app, t).await? {
                let entry = roles.entry(format!("RSRC_{key}")).or_insert_with(|| json!({}));
                if let Some(o) = entry.as_object_mut() {
                    o.insert(t.thing.id.clone(), perm::to_json(bits));
                }
            }
        }
        Ok(Value::Object(roles))
    }

    /// `[{name, things}]`: every key the user may read, with the things it may be read on.
    pub async fn user_resources(&self, session: &Session) -> Result<Vec<(String, Vec<String>)>> {
        let Some(app) = self.app_view(&session.app_id).await? else { return Ok(Vec::new()) };
        let access = self.user_access(session.user_id).await?;
        let mut by_key: Vec<(String, Vec<String>)> = app.resources.iter().map(|k| (k.clone(), Vec::new())).collect();
        for t in &access.things {
            for (key, bits) in self.visible_keys(&app, t).await? {
                if bits & perm::GET == 0 {
                    continue;
                }
                if let Some((_, things)) = by_key.iter_mut().find(|(k, _)| *k == key) {
                    things.push(t.thing.id.clone());
                }
            }
        }
        by_key.retain(|(_, things)| !things.is_empty());
        Ok(by_key)
    }

    /// Forgets a user's cached access (after a link, unlink or grant was stored).
    pub(crate) fn forget_user_access(&self, user_id: i64) {
        let caches = &self.app_api.access;
        caches.bump();
        caches.users.write().remove(&user_id);
    }

    /// Forgets every cached user access (after a change whose reach is not known, like deleting
    /// a user whose grants to others are gone).
    pub(crate) fn forget_all_user_access(&self) -> Vec<i64> {
        let caches = &self.app_api.access;
        caches.bump();
        caches.users.write().drain().map(|(u, _)| u).collect()
    }

    /// Empties every access cache (apps, products, users).
    pub(crate) fn forget_all_access(&self) {
        let caches = &self.app_api.access;
        caches.bump();
        caches.apps.write().clear();
        caches.products.write().clear();
        caches.users.write().clear();
    }

    /// An app was updated or deleted: its requested keys are reloaded, its sessions re-checked
    /// (a deleted app's sessions stop working), and live subscriptions of its users re-check.
    pub fn app_changed(&self, app_id: &str) {
        self.invalidate(Invalidation::App { app_id: app_id.to_owned() });
    }

    /// A product's resources changed: public keys are reloaded, users reaching its things re-check.
    pub fn product_changed(&self, product_id: &str) {
        self.invalidate(Invalidation::Product { product_id: product_id.to_owned() });
    }

    /// Drops an app's view and its cached sessions; returns the users whose sessions were cached.
    pub(crate) fn forget_app(&self, app_id: &str) -> Vec<i64> {
        let caches = &self.app_api.access;
        caches.bump();
        caches.apps.write().remove(app_id);
        self.forget_sessions_where(|s| s.app_id == app_id)
    }

    /// Drops a product's public keys; returns the users whose cached access reaches its things.
    pub(crate) fn forget_product(&self, product_id: &str) -> Vec<i64> {
        let caches = &self.app_api.access;
        caches.bump();
        caches.products.write().remove(product_id);
        caches
            .users
            .read()
            .iter()
            .filter(|(_, a)| a.things.iter().any(|t| t.thing.product_id == product_id))
            .map(|(u, _)| *u)
            .collect()
    }

    /// A thing was deleted: its links and grants are gone (the store cascades); the users whose
    /// cached access reached it reload it. Returns those users.
    pub(crate) fn forget_thing_access(&self, thing_id: &str) -> Vec<i64> {
        let caches = &self.app_api.access;
        caches.bump();
        let mut map = caches.users.write();
        let users: Vec<i64> = map.iter().filter(|(_, a)| a.get(thing_id).is_some()).map(|(u, _)| *u).collect();
        for u in &users {
            map.remove(u);
        }
        users
    }
}
