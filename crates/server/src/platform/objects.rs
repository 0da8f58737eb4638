//! App objects in `/v2/classes` collections (issue #4): the one place where the collection a
//! session addresses is decided, objects are validated, stored, read, and every change is
//! published on the collection's notifier topic ([`collection_topic`]) for HTTP streams and
//! Socket.IO alike.
//!
//! Privacy: `/classes/me/…` collections are keyed by (app, user), `/classes/app/…` by the app
//! alone; a session can only ever name collections of its own app, so nothing crosses apps.
//!
//! Indexes: a read of a shared collection filters and sorts only on `_id` and the fields the
//! app's operator declared for its name (`classes::check_declared`, from the cached app view),
//! so no user can spend a shared collection's index budget; a private collection indexes any
//! field on first use, for its owner alone.

use std::sync::Arc;

use serde_json::{Map, Value};
use thingline_bus::{Event, ObjectOp, Topic};
use thingline_core::classes::{self, ClassPath, Collection, ListQuery, Owner, Scope};
use thingline_core::{Error, Result};

use super::{Platform, Session, json_error};

/// The notifier topic of a collection: `Topic::Collection("app/<appId>/<owner>/<path>")`, where
/// owner is `app` for shared collections and the user id for `/classes/me`, and path is
/// `Collection[/id/Collection…]` exactly as in the URL (e.g. `app/Xy9/42/Playlists/25/Songs`).
/// Each path is its own topic: a sub-collection is never delivered to its parent's subscribers.
/// Events are [`Event::Object`] with the op, the `_id` and the object as now stored (none for a
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
    let Event::Object { op, id, body } = event else { return None };
    match (op, body) {
        (ObjectOp::Created | ObjectOp::Updated, Some(body)) => Some(format!("[{body}]")),
        (ObjectOp::Deleted, _) => {
            let id = serde_json::to_string(id.as_ref()).ok()?;
            Some(format!(r#"[{{"_id":{id},"_deleted":true}}]"#))
        }
        _ => None,
    }
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
    /// Tells the collection's subscribers; `body`: the object as now stored (JSON text), none for
    /// a deletion. Nothing is rendered here: the fan-out renders once per subscribed view.
    fn publish_object(&self, collection: &Collection, op: ObjectOp, id: &str, body: Option<String>) {
        let event = Event::Object { op, id: Arc::from(id), body: body.map(Arc::from) };
        self.bus.publish(&collection_topic(collection), event);
    }

    /// Stores a new object (`_id` from the path, the body, or a new time-ordered id); 409 when
    /// the id exists. Returns the id.
    pub async fn create_object(&self, collection: &Collection, path_id: Option<&str>, body: &str) -> Result<String> {
        let fields = object_fields(body)?;
        let id = body_id(&fields, path_id)?.unwrap_or_else(classes::new_object_id);
        let prepared = classes::prepare_object(id.clone(), fields)?;
        let body = prepared.body.clone();
        self.store.create_object(collection, prepared).await?;
        self.publish_object(collection, ObjectOp::Created, &id, Some(body));
        Ok(id)
    }

    /// Merges the body's top-level fields into a stored object; 404 when absent.
    pub async fn update_object(&self, collection: &Collection, id: &str, body: &str) -> Result<()> {
        let fields = object_fields(body)?;
        body_id(&fields, Some(id))?;
        let merged = self.store.update_object(collection, id, fields).await?.ok_or_else(not_found)?;
        self.publish_object(collection, ObjectOp::Updated, id, Some(merged));
        Ok(())
    }

    /// Deletes one object; 404 when absent.
    pub async fn delete_object(&self, collection: &Collection, id: &str) -> Result<()> {
        if !self.store.delete_object(collection, id).await? {
            return Err(not_found());
        }
        self.publish_object(collection, ObjectOp::Deleted, id, None);
        Ok(())
    }

    /// One object's JSON text; 404 when absent.
    pub async fn get_object(&self, collection: &Collection, id: &str) -> Result<String> {
        self.store.object(collection, id).await?.ok_or_else(not_found)
    }

    /// A page of a collection, as JSON texts. A read of a shared collection naming a field its
    /// app does not declare is a 400 (answered from memory, before the store).
    pub async fn list_objects(&self, collection: &Collection, query: &ListQuery) -> Result<Vec<String>> {
        if collection.owner == Owner::App && query.field_names().next().is_some() {
            let app = self
                .app_view(&collection.app_id)
                .await?
                .ok_or_else(|| Error::Unauthorized("Invalid session token".into()))?;
            classes::check_declared(&app.indexes, &collection.path, query)?;
        }
        self.store.list_objects(collection, query).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_changes_as_arrays() {
        let body = json!({"_id": "20", "name": "Classic"}).to_string();
        let ev = Event::Object { op: ObjectOp::Created, id: Arc::from("20"), body: Some(Arc::from(body)) };
        assert_eq!(render_object_event(&ev).as_deref(), Some(r#"[{"_id":"20","name":"Classic"}]"#));
        let ev = Event::Object { op: ObjectOp::Deleted, id: Arc::from("2\"0"), body: None };
        assert_eq!(render_object_event(&ev).as_deref(), Some(r#"[{"_id":"2\"0","_deleted":true}]"#));
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
