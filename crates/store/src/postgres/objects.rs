//! App objects in `/v2/classes` collections on PostgreSQL ([`ObjectStore`] for [`PgStore`]), with
//! the semantics of the SQLite backend (docs/objects-api.md) and its table and column names
//! (migration `postgres/0002_objects.sql`): `object_collections` maps (app, owner, path) to an id
//! `cid`; `objects` holds each object's JSON text by (cid, k), `k` the sortable form of `_id`;
//! `object_fields` indexes the top-level scalar fields listed per collection in
//! `object_indexes`: in a private collection those a `where` or `sort` has named, in a shared one
//! exactly those its app declares (`apps.indexes`, applied by the catalog through
//! [`apply_index_declaration`]).
//!
//! SQLite's untyped `object_fields.v` is three columns here, ordered and compared as a row
//! exactly as SQLite orders and compares `v` ([`sql::Encoded`]): `vt` a type rank (0 number,
//! 1 text, 2 null, 3 false, 4 true), `vn` NUMERIC (a number's exact value, a float's exact
//! binary value as a decimal; 0 otherwise), `vs` BYTEA (a text's UTF-8 bytes; empty otherwise).
//!
//! Writes are plain transactions ([`write`]), durable when they return; the database enforces
//! unique `_id`s and orders index changes with object writes (row locks on the collection), so
//! any number of stores may share one database. A read runs in one read-only snapshot; a field it
//! needs that is not indexed yet is indexed first (private) or refused (shared, undeclared).
//! Field names containing U+0000 cannot be stored in PostgreSQL text: reads naming one are a 400
//! here (SQLite would index them).

mod sql;

/// The typed form of an indexed value, also used by `thingline migrate` to copy SQLite's
/// `object_fields.v`.
pub(crate) use sql::Encoded;
mod write;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::postgres::PgConnection;
use thingline_core::classes::{Collection, IndexDeclarations, ListQuery, PreparedObject, sort_key};
use thingline_core::{Error, Result};

use super::{PgStore, db_err};
use crate::ObjectStore;

/// Brings every shared collection of app `app_id` in line with its index declaration
/// `indexes`: declared fields are indexed (objects already stored included), fields no longer
/// declared dropped (their index rows deleted). Collections already in line are not touched.
///
/// Call it from `create_app` / `update_app` on the connection of the transaction that wrote
/// `apps.indexes`, after that write and before the commit (`&mut *tx`): the declaration and the
/// indexes then change together, and a shared collection being created concurrently (which reads
/// the declaration `FOR SHARE`) is ordered with it. It runs inside a savepoint of that
/// transaction (all collections or none) and locks the app's row and each collection it changes;
/// given a connection outside a transaction it runs in a transaction of its own.
pub(crate) async fn apply_index_declaration(
    conn: &mut PgConnection,
    app_id: &str,
    indexes: &IndexDeclarations,
) -> Result<()> {
    write::apply_declaration(conn, app_id, indexes).await
}

/// Begins the read-only snapshot a read runs in.
const READ_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// Attempts of a read whose fields are being indexed (or dropped) concurrently.
const READ_ATTEMPTS: usize = 3;

#[async_trait]
impl ObjectStore for PgStore {
    async fn create_object(&self, collection: &Collection, object: PreparedObject) -> Result<()> {
        write::create(&self.pool, collection, object).await
    }

    async fn update_object(
        &self,
        collection: &Collection,
        id: &str,
        patch: Map<String, Value>,
    ) -> Result<Option<String>> {
        write::update(&self.pool, collection, id, patch).await
    }

    async fn delete_object(&self, collection: &Collection, id: &str) -> Result<bool> {
        write::delete(&self.pool, collection, id).await
    }

    async fn object(&self, collection: &Collection, id: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT o.body FROM object_collections c JOIN objects o ON o.cid = c.id AND o.k = $1 \
             WHERE c.app_id = $2 AND c.owner = $3 AND c.path = $4",
        )
        .bind(sort_key(id))
        .bind(collection.app_id.clone())
        .bind(collection.owner.as_i64())
        .bind(collection.path.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn list_objects(&self, collection: &Collection, query: &ListQuery) -> Result<Vec<String>> {
        let mut names: Vec<(&'static str, String)> =
            query.filters.iter().map(|(name, _)| ("where", name.clone())).collect();
        if let thingline_core::classes::ListOrder::Field { name, .. } = &query.order {
            names.push(("sort", name.clone()));
        }
        if let Some((param, _)) = names.iter().find(|(_, name)| name.contains('\0')) {
            return Err(Error::bad_request(format!("{param}: field names containing U+0000 cannot be indexed")));
        }
        for _ in 0..READ_ATTEMPTS {
            let mut tx = self.pool.begin_with(READ_SNAPSHOT).await.map_err(db_err)?;
            let Some(cid) = sql::collection_id(&mut tx, collection).await? else { return Ok(Vec::new()) };
            if !names.is_empty() {
                let indexed = sql::indexed_names(&mut tx, cid).await?;
                if !names.iter().all(|(_, name)| indexed.contains(name)) {
                    // Not held while the fields are indexed (or refused).
                    drop(tx);
                    write::ensure_indexed(&self.pool, collection, cid, &names).await?;
                    continue;
                }
            }
            let page = sql::list(&mut tx, cid, query).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(page);
        }
        Err(Error::Unavailable("the indexes of this collection are changing; retry".into()))
    }

    async fn indexed_fields(&self, collection: &Collection) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT i.name FROM object_collections c JOIN object_indexes i ON i.cid = c.id \
             WHERE c.app_id = $1 AND c.owner = $2 AND c.path = $3 ORDER BY i.name",
        )
        .bind(collection.app_id.clone())
        .bind(collection.owner.as_i64())
        .bind(collection.path.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }
}
