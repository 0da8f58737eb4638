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
    /// field), and when the query filters or sorts on a field that cannot be indexed: in a private
    /// collection ([`Owner::User`]) any field is indexed on first use, up to
    /// [`MAX_INDEXED_FIELDS`](thingline_core::classes::MAX_INDEXED_FIELDS); in a shared one
    /// ([`Owner::App`]) only the fields its app declares (below).
    ///
    /// Index declarations: an app's `indexes` ([`App::indexes`]) name, per collection name, the
    /// fields of its shared collections that are indexed; every backend keeps exactly those
    /// indexed in each shared collection of that name — from the collection's first object on,
    /// and, once `create_app`/`update_app` returns, for a changed declaration too (declared
    /// fields indexed with the objects already stored, fields no longer declared dropped).
    ///
    /// [`Owner::User`]: thingline_core::classes::Owner::User
    /// [`Owner::App`]: thingline_core::classes::Owner::App
    /// [`App::indexes`]: thingline_core::model::App::indexes
    async fn list_objects(&self, collection: &Collection, query: &ListQuery) -> Result<Vec<String>>;
    /// The indexed fields of a collection, sorted (none for an unknown collection).
    async fn indexed_fields(&self, collection: &Collection) -> Result<Vec<String>>;
}

/// The index rows of a stored object (JSON text) for the `indexed` fields: what every backend
/// writes to its field index when the object is stored or a field becomes indexed.
pub(crate) fn index_rows_of(
    body: &str,
    indexed: &std::collections::HashSet<String>,
) -> Result<Vec<(String, thingline_core::classes::Scalar)>> {
    let mut fields = thingline_core::classes::indexed_fields(&thingline_core::classes::stored_fields(body)?);
    fields.retain(|(name, _)| indexed.contains(name));
    Ok(fields)
}
