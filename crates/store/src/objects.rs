//! App objects in `/v2/classes` collections. (Issue #4.)
//!
//! A collection is identified by (app, owner, path) ([`Collection`]); inside it an object by its
//! `_id`. The store keeps each object's JSON text exactly as prepared by the core
//! ([`PreparedObject`]: `_id` first, then the fields as sent) and an index of its top-level scalar
//! fields, so that equality filters and sorting by a field never scan a collection.

use async_trait::async_trait;
use serde_json::{Map, Value};
use thingline_core::Result;
use thingline_core::classes::{Collection, ListQuery, PreparedObject};

/// Storage of app objects. Every write is durable when it returns.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores a new object; `Conflict` when its `_id` exists in that collection. The collection
    /// (and any parent in its path) need not exist.
    async fn create_object(&self, collection: &Collection, object: PreparedObject) -> Result<()>;
    /// Merges `patch` into a stored object (top-level fields replaced or added, others kept) and
    /// returns the object as now stored; `None` when there is no such object. Validation errors
    /// of the merged object (size, depth) leave the stored one unchanged.
    async fn update_object(
        &self,
        collection: &Collection,
        id: &str,
        patch: Map<String, Value>,
    ) -> Result<Option<String>>;
    /// Deletes one object (not the collections under it); false when absent.
    async fn delete_object(&self, collection: &Collection, id: &str) -> Result<bool>;
    /// One object's JSON text.
    async fn object(&self, collection: &Collection, id: &str) -> Result<Option<String>>;
    /// A page of a collection as JSON texts, in the query's order. An unknown collection is empty.
    /// `BadRequest` when `after` names an object that is absent (or, for a field order, lacks the
    /// field).
    async fn list_objects(&self, collection: &Collection, query: &ListQuery) -> Result<Vec<String>>;
}
