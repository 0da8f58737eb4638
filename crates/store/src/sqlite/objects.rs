//! App objects on SQLite. Reads go through the read pool; every write goes through the objects
//! writer ([`writer`]), which commits concurrent writes in groups on its own connection.
//!
//! Tables (migration 0003): `object_collections` maps (app, owner, path) to a small integer `cid`;
//! `objects` is clustered by (cid, k) where `k` is the sortable form of `_id`; `object_fields`
//! indexes top-level scalar fields by (cid, name, v, k), for the fields of each collection listed
//! in `object_indexes` (migration 0004): in a private collection those a `where` or `sort` has
//! named, in a shared one those its app declares (`apps.indexes`, migration 0005). See
//! docs/objects-api.md.

mod sql;
mod writer;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::Row;
use thingline_core::Result;
use thingline_core::classes::{Collection, ListOrder, ListQuery, PreparedObject};

use super::{SqliteStore, db_err};
use crate::ObjectStore;
pub(crate) use writer::{ObjectWriter, spawn as spawn_writer};

#[async_trait]
impl ObjectStore for SqliteStore {
    async fn create_object(&self, collection: &Collection, object: PreparedObject) -> Result<()> {
        self.objects.create(collection.clone(), object).await
    }

    async fn update_object(
        &self,
        collection: &Collection,
        id: &str,
        patch: Map<String, Value>,
    ) -> Result<Option<String>> {
        self.objects.update(collection.clone(), id.to_owned(), patch).await
    }

    async fn delete_object(&self, collection: &Collection, id: &str) -> Result<bool> {
        self.objects.delete(collection.clone(), id.to_owned()).await
    }

    async fn object(&self, collection: &Collection, id: &str) -> Result<Option<String>> {
        let row = sqlx::query(concat!(
            "SELECT o.body FROM object_collections c JOIN objects o ON o.cid = c.id AND o.k = ? ",
            "WHERE c.app_id = ? AND c.owner = ? AND c.path = ?"
        ))
        .bind(thingline_core::classes::sort_key(id))
        .bind(&collection.app_id)
        .bind(collection.owner.as_i64())
        .bind(&collection.path)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db_err)).transpose()
    }

    async fn list_objects(&self, collection: &Collection, query: &ListQuery) -> Result<Vec<String>> {
        let mut conn = self.read.acquire().await.map_err(db_err)?;
        let Some(cid) = sql::collection_id(&mut conn, collection).await? else {
            return Ok(Vec::new());
        };
        // The fields this read filters or sorts on must be indexed (by the writer: a field of a
        // private collection named for the first time is indexed now, one a shared collection's
        // app does not declare is refused): the read connection is not held meanwhile.
        let mut names: Vec<(&'static str, &str)> =
            query.filters.iter().map(|(name, _)| ("where", name.as_str())).collect();
        if let ListOrder::Field { name, .. } = &query.order {
            names.push(("sort", name));
        }
        if !self.objects.all_indexed(cid, &names) {
            drop(conn);
            self.objects.ensure_indexed(collection, cid, &names).await?;
            conn = self.read.acquire().await.map_err(db_err)?;
        }
        sql::list(&mut conn, cid, query).await
    }

    async fn indexed_fields(&self, collection: &Collection) -> Result<Vec<String>> {
        sqlx::query_scalar(concat!(
            "SELECT i.name FROM object_collections c JOIN object_indexes i ON i.cid = c.id ",
            "WHERE c.app_id = ? AND c.owner = ? AND c.path = ? ORDER BY i.name"
        ))
        .bind(&collection.app_id)
        .bind(collection.owner.as_i64())
        .bind(&collection.path)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)
    }
}
