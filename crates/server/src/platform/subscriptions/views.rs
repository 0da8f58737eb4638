//! The views: what a subscriber sees of an event, and the fan-out group it shares with every
//! subscriber that sees the event the same way, whatever its protocol. A view is a bus topic and
//! a channel name (the Socket.IO event name); the group renders each event once for all of them.

use std::sync::Arc;

use thingline_bus::{Event, GroupKey, Renderer, Topic};
use thingline_core::classes::Collection;
use thingline_core::model::Thing;

use crate::platform::objects::{collection_topic, render_object_event};
use crate::wire::{app_items_array, written_array};

/// `key` on one thing, in the app item shape (`{"key","value","id","datetime"}`), on channel
/// `/me/resources/{key}`.
pub fn key_view(thing: &Thing, key: &str) -> (GroupKey, Renderer) {
    let key_owned: Arc<str> = Arc::from(key);
    let render: Renderer = Arc::new(move |ev: &Event| match ev {
        Event::Values { items, thing_id, .. } => app_items_array(items.iter(), &key_owned, thing_id),
        _ => None,
    });
    (GroupKey { topic: Topic::Thing(thing.seq), channel: Arc::from(format!("/me/resources/{key}")) }, render)
}

/// A whole thing, in the thing item shape (`{"key","value"[,"geo"],"datetime"}`, the items as
/// written), on channel `/things/{thingToken}`: what the thing stream, the Socket.IO thing topic
/// and the device protocols show.
pub fn thing_view(thing: &Thing) -> (GroupKey, Renderer) {
    let render: Renderer = Arc::new(|ev: &Event| match ev {
        Event::Values { items, .. } if !items.is_empty() => Some(written_array(items.iter())),
        _ => None,
    });
    (GroupKey { topic: Topic::Thing(thing.seq), channel: thing_channel(&thing.token) }, render)
}

/// The channel of the whole-thing view.
pub fn thing_channel(token: &str) -> Arc<str> {
    Arc::from(format!("/things/{token}"))
}

/// The changes of one object collection: arrays of objects as stored, `[{"_id","_deleted":true}]`
/// for a deletion.
pub fn collection_view(collection: &Collection) -> (GroupKey, Renderer) {
    let key = GroupKey { topic: collection_topic(collection), channel: collection_channel(collection) };
    (key, Arc::new(render_object_event))
}

/// The channel of a collection's view.
pub fn collection_channel(collection: &Collection) -> Arc<str> {
    Arc::from(format!("/classes/{}", collection.topic_key()))
}

/// The internal view of one user's access changes (never sent to a client): each change makes
/// the user's live subscriptions re-check their session and permissions.
pub fn access_view(user_id: i64) -> (GroupKey, Renderer) {
    let render: Renderer = Arc::new(|ev: &Event| matches!(ev, Event::AccessChanged { .. }).then(|| "{}".to_owned()));
    (GroupKey { topic: Topic::User(user_id), channel: Arc::from("access") }, render)
}
