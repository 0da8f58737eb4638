//! App objects in `/v2/classes` collections (issue #4): the one place where the collection a
//! session addresses is decided, objects are validated, stored, read, and every change is
//! published on the collection's notifier topic ([`collection_topic`]) for HTTP streams and
//! Socket.IO alike.
//!
//! Privacy: `/classes/me/…` collections are keyed by (app, user), `/classes/app/…` by the app
//! alone; a session can only ever name collections of its own app, so nothing crosses apps.

use std::sync::Arc;

use serde_json::{Map, Value};
use thingline_bus::{Event, ObjectOp, Subscription, Topic};
use thingline_core::classes::{self, ClassPath, Collection, ListQuery, Owner, Scope};
use thingline_core::{Error, Result};

use super::{Platform, Session, json_error};

/// The notifier topic of a collection: `Topic::Collection("app/<appId>/<owner>/<path>")`, where
/// owner is `app` for shared collections and the user id for `/classes/me`, and path is
/// `Collection[/id/Collection…]` exactly as in the URL (e.g. `app/Xy9/42/Playlists/25/Songs`).
/// Each path is its own topic: a sub-collection is never delivered to its parent's subscribers.
/// Events are [`Event::Object`] with the op and the object as now stored (`{"_id"}` for a
/// deletion).
pub fn collection_topic(collection: &Collection) -> Topic {
    Topic::Collection(Arc::from(collection.topic_key()))
}

/// The collection (and optional object id) a session addresses with `/v2/classes/{scope}/{rest}`.
pub fn addressed(session: &Session, scope: &str, rest: &str) -> Result<(Collection, Option<String>)> {
    let ClassPath { scope, collection, id } = classes::parse_class_path(scope, rest)?;
    let owner = match scope {
        Scope::Me => Owner::User(session.user_id),
        Scope::App => Owner::App,
    };
    Ok((Collection { app_id: session.app_id.clone(), owner, path: collection }, id))
}

/// How a collection event is delivered to subscribers (HTTP stream chunk, Socket.IO payload): an
/// array of one object as now stored for a creation or an update, and `[{"_id":…,"_deleted":true}]`
/// for a deletion.
pub fn render_object_event(event: &Event) -> Option<String> {
    let Event::Object { op, object } = event else { return None };
    let text = match op {
        ObjectOp::Created | ObjectOp::Updated => object.to_string(),
        ObjectOp::Deleted => {
            let mut m = Map::new();
            m.insert("_id".into(), object.get("_id").cloned().unwrap_or(Value::Null));
            m.insert("_deleted".into(), Value::Bool(true));
            Value::Object(m).to_string()
        }
    };
    Some(format!("[{text}]"))
}

/// A request body as the fields of an object.
fn object_fields(body: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::bad_request("The body must be a JSON object")),
        Err(e) => Err(json_error(&e)),
    }
}

/// The `_id` of the body, checked against the one in the path when both are given.
fn body_id(fields: &Map<String, Value>, path_id: Option<&str>) -> Result<Option<String>> {
    let Some(v) = fields.get("_id") else { return Ok(path_id.map(str::to_owned)) };
    let id = classes::id_from_value(v)?;
    match path_id {
        Some(p) if p != id => {
            Err(Error::bad_request(format!("The _id in the body ({id}) differs from the path ({p})")))
        }
        _ => Ok(Some(id)),
    }
}

fn not_found() -> Error {
    Error::not_found("Object not found")
}

impl Platform {
    fn publish_object(&self, collection: &Collection, op: ObjectOp, object: Value) {
        self.notifier.publish(&collection_topic(collection), Event::Object { op, object: Arc::new(object) });
    }

    /// Stores a new object (`_id` from the path, the body, or a new time-ordered id); 409 when
    /// the id exists. Returns the id.
    pub async fn create_object(&self, collection: &Collection, path_id: Option<&str>, body: &str) -> Result<String> {
        let fields = object_fields(body)?;
        let id = body_id(&fields, path_id)?.unwrap_or_else(classes::new_object_id);
        let prepared = classes::prepare_object(id.clone(), fields)?;
        let published = serde_json::from_str::<Value>(&prepared.body).map_err(Error::internal)?;
        self.store.create_object(collection, prepared).await?;
        self.publish_object(collection, ObjectOp::Created, published);
        Ok(id)
    }

    /// Merges the body's top-level fields into a stored object; 404 when absent.
    pub async fn update_object(&self, collection: &Collection, id: &str, body: &str) -> Result<()> {
        let fields = object_fields(body)?;
        body_id(&fields, Some(id))?;
        let merged = self.store.update_object(collection, id, fields).await?.ok_or_else(not_found)?;
        let published = serde_json::from_str::<Value>(&merged).map_err(Error::internal)?;
        self.publish_object(collection, ObjectOp::Updated, published);
        Ok(())
    }

    /// Deletes one object; 404 when absent.
    pub async fn delete_object(&self, collection: &Collection, id: &str) -> Result<()> {
        if !self.store.delete_object(collection, id).await? {
            return Err(not_found());
        }
        let mut m = Map::new();
        m.insert("_id".into(), Value::String(id.to_owned()));
        self.publish_object(collection, ObjectOp::Deleted, Value::Object(m));
        Ok(())
    }

    /// One object's JSON text; 404 when absent.
    pub async fn get_object(&self, collection: &Collection, id: &str) -> Result<String> {
        self.store.object(collection, id).await?.ok_or_else(not_found)
    }

    /// A page of a collection, as JSON texts.
    pub async fn list_objects(&self, collection: &Collection, query: &ListQuery) -> Result<Vec<String>> {
        self.store.list_objects(collection, query).await
    }

    /// Subscribes to the changes of exactly this collection. Call before anything that could
    /// race with a write the subscriber must see.
    pub fn subscribe_collection(&self, collection: &Collection) -> Subscription {
        self.notifier.subscribe(collection_topic(collection))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_changes_as_arrays() {
        let ev = Event::Object { op: ObjectOp::Created, object: Arc::new(json!({"_id": "20", "name": "Classic"})) };
        assert_eq!(render_object_event(&ev).as_deref(), Some(r#"[{"_id":"20","name":"Classic"}]"#));
        let ev = Event::Object { op: ObjectOp::Deleted, object: Arc::new(json!({"_id": "20"})) };
        assert_eq!(render_object_event(&ev).as_deref(), Some(r#"[{"_id":"20","_deleted":true}]"#));
    }

    #[test]
    fn body_ids() {
        let f = object_fields(r#"{"_id": 25, "a": 1}"#).unwrap();
        assert_eq!(body_id(&f, None).unwrap().as_deref(), Some("25"));
        assert_eq!(body_id(&f, Some("25")).unwrap().as_deref(), Some("25"));
        assert_eq!(body_id(&f, Some("26")).unwrap_err().status(), 400);
        assert_eq!(object_fields("[1]").unwrap_err().status(), 400);
        assert_eq!(object_fields("{").unwrap_err().status(), 400);
    }
}
