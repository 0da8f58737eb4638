//! Realtime for apps: the HTTP app subscriptions (`GET /v2/me/resources/{key}[/{thingId}]?subscribe=true`)
//! and Socket.IO (namespace `/v2`), both fed by the one fan-out of the bus
//! ([`thingline_bus::fanout`]): every committed or broadcast-only write to a thing is rendered once
//! per view and handed to every subscriber's bounded queue. See docs/realtime.md.
//!
//! The views (what a subscriber sees of a thing's write) are defined here, so every protocol that
//! shows the same view shares the same fan-out group and the same rendered bytes.

mod access;
pub mod http_subscriptions;
mod socketio;
mod stats;

use std::sync::Arc;

use thingline_bus::{Event, GroupKey, Renderer, Topic};
use thingline_core::model::Thing;

use crate::wire::{app_items_array, items_array};

pub use http_subscriptions::{subscribe_resource, subscribe_thing};
pub use socketio::{detach_upgrade_request, layer};
pub use stats::{snapshot, spawn_stats_logger};

/// The view of `key` on one thing, in the app item shape, on channel `/me/resources/{key}`.
pub fn key_view(thing: &Thing, key: &str) -> (GroupKey, Renderer) {
    let key_owned: Arc<str> = Arc::from(key);
    let render: Renderer = Arc::new(move |ev: &Event| match ev {
        Event::Values { items, thing_id, .. } => app_items_array(items.iter(), &key_owned, thing_id),
        _ => None,
    });
    (GroupKey { topic: Topic::Thing(thing.seq), channel: Arc::from(format!("/me/resources/{key}")) }, render)
}

/// The view of a whole thing, in the thing item shape (`{"key","value","datetime"}`), on channel
/// `/things/{thingToken}`: what the thing stream and the Socket.IO thing topic show.
pub fn thing_view(thing: &Thing) -> (GroupKey, Renderer) {
    let render: Renderer = Arc::new(|ev: &Event| match ev {
        Event::Values { items, .. } if !items.is_empty() => Some(items_array(items.iter())),
        _ => None,
    });
    (GroupKey { topic: Topic::Thing(thing.seq), channel: Arc::from(format!("/things/{}", thing.token)) }, render)
}

/// The error envelope as JSON text.
pub(crate) fn envelope(code: u16, message: &str) -> String {
    serde_json::json!({"status": "error", "code": code, "message": message}).to_string()
}
