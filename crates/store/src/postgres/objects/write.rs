//! Object writes and index changes on PostgreSQL, each one plain transaction (durable when it
//! commits, before the call returns), correct with any number of stores on one database.
//!
//! Which fields of a collection are indexed (`object_indexes`) and the index rows of its objects
//! (`object_fields`) must agree. A write reads the indexed set after locking its collection's row
//! `FOR KEY SHARE` (compatible with other writes); a change of the set locks it `FOR UPDATE`,
//! which waits for the writes in progress and holds off new ones until it commits: no write can
//! miss an index added meanwhile, and a backfill sees every committed object.
//!
//! A new shared collection records its app's declaration for its name, read `FOR SHARE` from the
//! app's row: a declaration change updates that row first (in the transaction that then calls
//! [`apply_index_declaration`]), so either the creation sees the new declaration or the change
//! sees the new collection.

use std::collections::HashSet;

use serde_json::{Map, Value};
use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPool};
use thingline_core::classes::{
    Collection, IndexDeclarations, MAX_INDEXED_FIELDS, Owner, PreparedObject, merge_object, sort_key, undeclared,
};
use thingline_core::{Error, Result};

use super::super::{db_err, is_unique_violation};
use super::sql;

/// Attempts at finding or creating a collection while others create it concurrently.
const COLLECTION_ATTEMPTS: usize = 3;

/// The id of the collection a write goes to, locked for the write, and its indexed fields;
/// `None` when it does not exist and `create` is false. A new shared collection gets its app's
/// declared fields for its name, a new private one none.
async fn collection_for_write(
    conn: &mut PgConnection,
    c: &Collection,
    create: bool,
) -> Result<Option<(i64, HashSet<String>)>> {
    for _ in 0..COLLECTION_ATTEMPTS {
        if let Some(cid) = sql::lock_collection_for_write(conn, c).await? {
            // A statement after the lock: it sees an index change the lock waited for.
            return Ok(Some((cid, sql::indexed_names(conn, cid).await?)));
        }
        if !create {
            return Ok(None);
        }
        let declared = match c.owner {
            Owner::App => sql::app_indexes(conn, &c.app_id, true).await?.fields_of(&c.path).to_vec(),
            Owner::User(_) => Vec::new(),
        };
        if let Some(cid) = sql::insert_collection(conn, c).await? {
            sql::record_indexes(conn, cid, &declared).await?;
            return Ok(Some((cid, declared.into_iter().collect())));
        }
        // Created by a concurrent transaction (committed): lock it as an existing one.
    }
    Err(Error::Unavailable("the collection is being created concurrently; retry".into()))
}

pub(super) async fn create(pool: &PgPool, c: &Collection, mut object: PreparedObject) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let Some((cid, indexed)) = collection_for_write(&mut tx, c, true).await? else {
        return Err(Error::internal("a created collection was not found"));
    };
    object.fields.retain(|(name, _)| indexed.contains(name));
    let inserted = sqlx::query("INSERT INTO objects (cid, k, body) VALUES ($1, $2, $3)")
        .bind(cid)
        .bind(object.key.clone())
        .bind(object.body.clone())
        .execute(&mut *tx)
        .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::Conflict(format!(
                "An object with _id {:?} already exists in this collection",
                object.id
            )));
        }
        Err(e) => return Err(db_err(e)),
    }
    sql::insert_fields(&mut tx, cid, &object.key, &object.fields).await?;
    tx.commit().await.map_err(db_err)
}

pub(super) async fn update(
    pool: &PgPool,
    c: &Collection,
    id: &str,
    patch: Map<String, Value>,
) -> Result<Option<String>> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let Some((cid, indexed)) = collection_for_write(&mut tx, c, false).await? else { return Ok(None) };
    let k = sort_key(id);
    // Locked: concurrent merges into one object apply one after the other, none lost.
    let old: Option<String> = sqlx::query_scalar("SELECT body FROM objects WHERE cid = $1 AND k = $2 FOR UPDATE")
        .bind(cid)
        .bind(k.clone())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    let Some(old) = old else { return Ok(None) };
    // A merged object over the limits is refused here, before anything is written.
    let mut merged = merge_object(id, &old, patch)?;
    merged.fields.retain(|(name, _)| indexed.contains(name));
    let before = crate::objects::index_rows_of(&old, &indexed)?;
    let gone: Vec<_> = before.iter().filter(|f| !merged.fields.contains(f)).cloned().collect();
    let added: Vec<_> = merged.fields.iter().filter(|f| !before.contains(f)).cloned().collect();
    sql::delete_fields(&mut tx, cid, &k, &gone).await?;
    sqlx::query("UPDATE objects SET body = $1 WHERE cid = $2 AND k = $3")
        .bind(merged.body.clone())
        .bind(cid)
        .bind(k.clone())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sql::insert_fields(&mut tx, cid, &k, &added).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some(merged.body))
}

pub(super) async fn delete(pool: &PgPool, c: &Collection, id: &str) -> Result<bool> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let Some((cid, indexed)) = collection_for_write(&mut tx, c, false).await? else { return Ok(false) };
    let k = sort_key(id);
    let old: Option<String> = sqlx::query_scalar("DELETE FROM objects WHERE cid = $1 AND k = $2 RETURNING body")
        .bind(cid)
        .bind(k.clone())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    let Some(old) = old else { return Ok(false) };
    sql::delete_fields(&mut tx, cid, &k, &crate::objects::index_rows_of(&old, &indexed)?).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

/// Makes the fields a read names (`where`/`sort`, field) indexed in collection `c` (id `cid`),
/// or refuses them: a private collection indexes each new one, objects already stored included,
/// up to [`MAX_INDEXED_FIELDS`]; a shared one takes only the fields its app declares (and,
/// should its indexes differ from the declaration, is brought in line).
pub(super) async fn ensure_indexed(
    pool: &PgPool,
    c: &Collection,
    cid: i64,
    names: &[(&'static str, String)],
) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    match c.owner {
        Owner::User(_) => {
            if !sql::lock_collection_for_indexing(&mut tx, cid).await? {
                return Ok(());
            }
            let indexed = sql::indexed_names(&mut tx, cid).await?;
            let mut new: Vec<String> = Vec::new();
            let mut refused = None;
            for (_, name) in names {
                if indexed.contains(name) || new.contains(name) {
                    continue;
                }
                if indexed.len() + new.len() >= MAX_INDEXED_FIELDS {
                    refused = Some(name);
                    break;
                }
                new.push(name.clone());
            }
            // The fields that fit are indexed even when a later one is refused (as one
            // transaction per field would leave them).
            sql::index_fields(&mut tx, cid, &new).await?;
            tx.commit().await.map_err(db_err)?;
            if !new.is_empty() {
                tracing::info!(cid, fields = ?new, "objects: fields indexed on first use");
            }
            match refused {
                Some(name) => Err(Error::bad_request(format!(
                    "This collection already has {MAX_INDEXED_FIELDS} indexed fields (a field is indexed from the \
                     first where or sort naming it): {name:?} cannot be filtered or sorted on"
                ))),
                None => Ok(()),
            }
        }
        Owner::App => {
            // The app's row first, then the collection's: the order a declaration change takes.
            let declared = sql::app_indexes(&mut tx, &c.app_id, true).await?;
            let wanted = declared.fields_of(&c.path);
            if let Some((param, name)) = names.iter().find(|(_, name)| !wanted.contains(name)) {
                return Err(undeclared(param, &c.path, name));
            }
            if reconcile(&mut tx, cid, wanted).await? {
                tracing::info!(cid, "objects: a shared collection's indexes brought in line with its declaration");
            }
            tx.commit().await.map_err(db_err)
        }
    }
}

/// Makes the indexed fields of collection `cid` exactly `wanted` (inside a transaction): fields
/// no longer wanted are dropped (their index rows go), new ones indexed (objects already stored
/// included). Locks the collection only when something changes; true when something changed.
async fn reconcile(conn: &mut PgConnection, cid: i64, wanted: &[String]) -> Result<bool> {
    let indexed = sql::indexed_names(conn, cid).await?;
    if indexed.len() == wanted.len() && wanted.iter().all(|name| indexed.contains(name)) {
        return Ok(false);
    }
    if !sql::lock_collection_for_indexing(conn, cid).await? {
        return Ok(false);
    }
    // Read again under the lock.
    let indexed = sql::indexed_names(conn, cid).await?;
    let gone: Vec<String> = indexed.iter().filter(|name| !wanted.contains(name)).cloned().collect();
    let added: Vec<String> = wanted.iter().filter(|name| !indexed.contains(*name)).cloned().collect();
    if gone.is_empty() && added.is_empty() {
        return Ok(false);
    }
    sql::drop_indexes(conn, cid, &gone).await?;
    sql::index_fields(conn, cid, &added).await?;
    tracing::debug!(cid, dropped = ?gone, indexed = ?added, "objects: shared collection indexes follow the declaration");
    Ok(true)
}

/// See [`super::apply_index_declaration`].
pub(super) async fn apply_declaration(
    conn: &mut PgConnection,
    app_id: &str,
    declared: &IndexDeclarations,
) -> Result<()> {
    // Savepoint (or transaction, on a connection outside one): all collections or none.
    let mut tx = conn.begin().await.map_err(db_err)?;
    sqlx::query("SELECT id FROM apps WHERE id = $1 FOR UPDATE")
        .bind(app_id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    let (mut seen, mut changed) = (0usize, 0usize);
    for (cid, path, indexed) in sql::shared_collections(&mut tx, app_id).await? {
        seen += 1;
        let wanted = declared.fields_of(&path);
        if indexed.len() == wanted.len() && wanted.iter().all(|name| indexed.contains(name)) {
            continue;
        }
        changed += usize::from(reconcile(&mut tx, cid, wanted).await?);
    }
    tx.commit().await.map_err(db_err)?;
    if changed > 0 {
        tracing::info!(app_id, shared_collections = seen, changed, "objects: indexes follow the app's declaration");
    }
    Ok(())
}
