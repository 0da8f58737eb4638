//! The SQL of app objects: collection ids, row writes (used inside the writer's transactions) and
//! the collection read, built from fixed fragments with every client value bound as a parameter.

use std::collections::HashSet;

use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Row, Sqlite};
use thingline_core::classes::{
    Collection, IndexDeclarations, ListOrder, ListQuery, PreparedObject, SHARED_OWNER, Scalar, sort_key, stored_fields,
};
use thingline_core::{Error, Result};

use super::super::{db_err, is_unique_violation, returned};
use crate::objects::index_rows_of;

type Query = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// Binds an indexed value: numbers and text as themselves, null/false/true as one-byte blobs.
fn bind_scalar(q: Query, s: &Scalar) -> Query {
    match s {
        Scalar::Null => q.bind(vec![0u8]),
        Scalar::Bool(false) => q.bind(vec![1u8]),
        Scalar::Bool(true) => q.bind(vec![2u8]),
        Scalar::Int(i) => q.bind(*i),
        Scalar::Float(f) => q.bind(*f),
        Scalar::Text(t) => q.bind(t.clone()),
    }
}

/// The id of a collection, if it was ever written.
pub(super) async fn collection_id(conn: &mut SqliteConnection, c: &Collection) -> Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM object_collections WHERE app_id = ? AND owner = ? AND path = ?")
        .bind(&c.app_id)
        .bind(c.owner.as_i64())
        .bind(&c.path)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

/// The id of a collection, created on first use.
pub(super) async fn ensure_collection(conn: &mut SqliteConnection, c: &Collection) -> Result<i64> {
    if let Some(id) = collection_id(conn, c).await? {
        return Ok(id);
    }
    let id = sqlx::query_scalar("INSERT INTO object_collections (app_id, owner, path) VALUES (?, ?, ?) RETURNING id")
        .bind(&c.app_id)
        .bind(c.owner.as_i64())
        .bind(&c.path)
        .fetch_all(&mut *conn)
        .await;
    returned(id).map_err(db_err)
}

pub(super) async fn object_body(conn: &mut SqliteConnection, cid: i64, k: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT body FROM objects WHERE cid = ? AND k = ?")
        .bind(cid)
        .bind(k.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

/// Inserts index rows `(name, value, k)` of collection `cid` with one statement, values bound.
async fn insert_index_rows(conn: &mut SqliteConnection, cid: i64, rows: &[(&str, &Scalar, &str)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::with_capacity(64 + rows.len() * 16);
    sql.push_str("INSERT INTO object_fields (cid, name, v, k) VALUES ");
    for i in 0..rows.len() {
        sql.push_str(if i == 0 { "(?, ?, ?, ?)" } else { ", (?, ?, ?, ?)" });
    }
    // Safe: `sql` is constant text repeated per row; every value is bound.
    let mut q: Query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (name, v, k) in rows {
        q = bind_scalar(q.bind(cid).bind((*name).to_owned()), v).bind((*k).to_owned());
    }
    q.execute(&mut *conn).await.map_err(db_err)?;
    Ok(())
}

/// Inserts the index rows of one object.
async fn insert_fields(conn: &mut SqliteConnection, cid: i64, k: &str, fields: &[(String, Scalar)]) -> Result<()> {
    let rows: Vec<(&str, &Scalar, &str)> = fields.iter().map(|(name, v)| (name.as_str(), v, k)).collect();
    insert_index_rows(conn, cid, &rows).await
}

async fn delete_fields(conn: &mut SqliteConnection, cid: i64, k: &str, fields: &[(String, Scalar)]) -> Result<()> {
    for (name, v) in fields {
        let q = sqlx::query("DELETE FROM object_fields WHERE cid = ? AND name = ? AND v = ? AND k = ?")
            .bind(cid)
            .bind(name.clone());
        bind_scalar(q, v).bind(k.to_owned()).execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// Inserts a new object's row (its index rows go through [`PendingFields`]); `Conflict` when the
/// id is taken.
pub(super) async fn insert_object_row(conn: &mut SqliteConnection, cid: i64, o: &PreparedObject) -> Result<()> {
    let r = sqlx::query("INSERT INTO objects (cid, k, body) VALUES (?, ?, ?)")
        .bind(cid)
        .bind(o.key.clone())
        .bind(o.body.clone())
        .execute(&mut *conn)
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            Err(Error::Conflict(format!("An object with _id {:?} already exists in this collection", o.id)))
        }
        Err(e) => Err(db_err(e)),
    }
}

/// Inserts many new objects' rows with one statement. `Ok(false)`: an `_id` was taken (nothing
/// was inserted; SQLite rolls the failing statement back alone).
pub(super) async fn insert_object_rows(conn: &mut SqliteConnection, rows: &[(i64, &str, &str)]) -> Result<bool> {
    let mut param = String::from("[");
    for (i, (cid, k, body)) in rows.iter().enumerate() {
        if i > 0 {
            param.push(',');
        }
        param.push_str(&serde_json::json!([cid, k, body]).to_string());
    }
    param.push(']');
    let r = sqlx::query(
        "INSERT INTO objects (cid, k, body) SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
    )
    .bind(param)
    .execute(&mut *conn)
    .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(db_err(e)),
    }
}

/// Index rows of created objects waiting to be inserted: every row of a group goes in with one
/// statement (`INSERT … SELECT … FROM json_each(?)`), one round trip however many objects.
#[derive(Default)]
pub(super) struct PendingFields {
    /// JSON array of `[cid, name, tag, value, k]`; `tag` 1 marks a hex blob (null/false/true).
    rows: String,
    count: usize,
}

impl PendingFields {
    /// Queues an object's index rows. Objects with float fields are not batched: SQLite's JSON
    /// number parser is not exact for every f64 (e.g. 1e-300), so they are inserted right away
    /// with bound parameters.
    pub(super) async fn add(&mut self, conn: &mut SqliteConnection, cid: i64, o: PreparedObject) -> Result<()> {
        if has_float(&o) {
            return insert_fields(conn, cid, &o.key, &o.fields).await;
        }
        self.push(cid, &o);
        Ok(())
    }

    /// Appends an object's index rows to the JSON text (the object must have no float field).
    fn push(&mut self, cid: i64, o: &PreparedObject) {
        for (name, v) in &o.fields {
            self.rows.push(if self.count == 0 { '[' } else { ',' });
            self.count += 1;
            let (tag, value) = match v {
                Scalar::Null => (1, serde_json::json!("00")),
                Scalar::Bool(false) => (1, serde_json::json!("01")),
                Scalar::Bool(true) => (1, serde_json::json!("02")),
                Scalar::Int(i) => (0, serde_json::json!(i)),
                Scalar::Float(f) => (0, serde_json::json!(f)),
                Scalar::Text(t) => (0, serde_json::json!(t)),
            };
            self.rows.push_str(&serde_json::json!([cid, name, tag, value, o.key]).to_string());
        }
    }

    /// The pending rows as one JSON array (`[]` when none), leaving nothing pending.
    fn take_json(&mut self) -> String {
        let mut rows = std::mem::take(&mut self.rows);
        if self.count == 0 {
            rows = "[".to_owned();
        }
        rows.push(']');
        self.count = 0;
        rows
    }

    /// Inserts what is pending.
    pub(super) async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let rows = self.take_json();
        sqlx::query(
            "INSERT INTO object_fields (cid, name, v, k) \
             SELECT value ->> 0, value ->> 1, \
                    CASE value ->> 2 WHEN 1 THEN unhex(value ->> 3) ELSE value ->> 3 END, value ->> 4 \
             FROM json_each(?)",
        )
        .bind(rows)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}

/// Whether an object has a float field (its index rows cannot travel as JSON text).
pub(super) fn has_float(o: &PreparedObject) -> bool {
    o.fields.iter().any(|(_, v)| matches!(v, Scalar::Float(_)))
}

/// Sets up, on the writer's own connection, the one-statement create: inserting a row into the
/// TEMP table `object_batch` fires a TEMP trigger that inserts every object and every index row of
/// the batch and removes the row again. One statement in autocommit mode is atomic: the whole
/// group costs one round trip and one commit, like the timeline writer's.
pub(super) async fn prepare_batch_insert(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TEMP TABLE IF NOT EXISTS object_batch (objects TEXT NOT NULL, fields TEXT NOT NULL); \
         CREATE TEMP TRIGGER IF NOT EXISTS object_batch_apply AFTER INSERT ON object_batch BEGIN \
           INSERT INTO objects (cid, k, body) \
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(NEW.objects); \
           INSERT INTO object_fields (cid, name, v, k) \
             SELECT value ->> 0, value ->> 1, \
                    CASE value ->> 2 WHEN 1 THEN unhex(value ->> 3) ELSE value ->> 3 END, value ->> 4 \
             FROM json_each(NEW.fields); \
           DELETE FROM object_batch WHERE rowid = NEW.rowid; \
         END;",
    )
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Creates every object of `batch` (collection id, object without float fields) and its index
/// rows with one statement. Fails as a whole (nothing inserted) on a taken `_id`.
pub(super) async fn insert_batch(conn: &mut SqliteConnection, batch: &[(i64, &PreparedObject)]) -> Result<()> {
    let mut objects = String::from("[");
    let mut fields = PendingFields::default();
    for (i, (cid, o)) in batch.iter().enumerate() {
        if i > 0 {
            objects.push(',');
        }
        objects.push_str(&serde_json::json!([cid, o.key, o.body]).to_string());
        fields.push(*cid, o);
    }
    objects.push(']');
    sqlx::query("INSERT INTO object_batch (objects, fields) VALUES (?, ?)")
        .bind(objects)
        .bind(fields.take_json())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Replaces a stored object's text and updates only the index rows that changed (`new.fields`
/// holds only the collection's indexed fields).
pub(super) async fn replace_object(
    conn: &mut SqliteConnection,
    cid: i64,
    indexed: &HashSet<String>,
    old_body: &str,
    new: &PreparedObject,
) -> Result<()> {
    let old = index_rows_of(old_body, indexed)?;
    let gone: Vec<(String, Scalar)> = old.iter().filter(|f| !new.fields.contains(f)).cloned().collect();
    let added: Vec<(String, Scalar)> = new.fields.iter().filter(|f| !old.contains(f)).cloned().collect();
    delete_fields(conn, cid, &new.key, &gone).await?;
    sqlx::query("UPDATE objects SET body = ? WHERE cid = ? AND k = ?")
        .bind(new.body.clone())
        .bind(cid)
        .bind(new.key.clone())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    insert_fields(conn, cid, &new.key, &added).await
}

/// Deletes a stored object and its index rows.
pub(super) async fn remove_object(
    conn: &mut SqliteConnection,
    cid: i64,
    indexed: &HashSet<String>,
    k: &str,
    body: &str,
) -> Result<()> {
    delete_fields(conn, cid, k, &index_rows_of(body, indexed)?).await?;
    sqlx::query("DELETE FROM objects WHERE cid = ? AND k = ?")
        .bind(cid)
        .bind(k.to_owned())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The indexed fields of collection `cid`.
pub(super) async fn indexed_names(conn: &mut SqliteConnection, cid: i64) -> Result<HashSet<String>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM object_indexes WHERE cid = ?")
        .bind(cid)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(names.into_iter().collect())
}

/// Objects read per step while indexing fields of an existing collection.
const BACKFILL_PAGE: i64 = 400;

/// Makes `names` indexed fields of collection `cid` (call inside a transaction): records them and
/// writes their index rows for every object already stored, a page of objects at a time (one
/// pass however many fields), with the values computed exactly as a create computes them.
pub(super) async fn index_fields(conn: &mut SqliteConnection, cid: i64, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    record_indexes(conn, cid, names).await?;
    let only: HashSet<String> = names.iter().cloned().collect();
    let mut after = String::new();
    loop {
        let page: Vec<(String, String)> =
            sqlx::query_as("SELECT k, body FROM objects WHERE cid = ? AND k > ? ORDER BY k LIMIT ?")
                .bind(cid)
                .bind(after.clone())
                .bind(BACKFILL_PAGE)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
        let Some((last, _)) = page.last() else { return Ok(()) };
        after = last.clone();
        let mut values = Vec::new();
        for (k, body) in &page {
            values.extend(index_rows_of(body, &only)?.into_iter().map(|(name, v)| (name, v, k.as_str())));
        }
        // 4 bound parameters per row: 1000 rows stay well under SQLite's 32,766.
        for chunk in values.chunks(1000) {
            let rows: Vec<(&str, &Scalar, &str)> = chunk.iter().map(|(name, v, k)| (name.as_str(), v, *k)).collect();
            insert_index_rows(conn, cid, &rows).await?;
        }
        if page.len() < BACKFILL_PAGE as usize {
            return Ok(());
        }
    }
}

/// Records `names` as indexed fields of collection `cid` without writing index rows (for a
/// collection with no objects yet, or inside [`index_fields`]).
pub(super) async fn record_indexes(conn: &mut SqliteConnection, cid: i64, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let names = serde_json::to_string(names).map_err(Error::internal)?;
    sqlx::query("INSERT OR IGNORE INTO object_indexes (cid, name) SELECT ?, value FROM json_each(?)")
        .bind(cid)
        .bind(names)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Stops indexing field `name` of collection `cid`: its record and every index row go.
pub(super) async fn drop_index(conn: &mut SqliteConnection, cid: i64, name: &str) -> Result<()> {
    for sql in [
        "DELETE FROM object_fields WHERE cid = ? AND name = ?",
        "DELETE FROM object_indexes WHERE cid = ? AND name = ?",
    ] {
        sqlx::query(sql).bind(cid).bind(name.to_owned()).execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// The index declarations of an app (none for an unknown app).
pub(super) async fn app_indexes(conn: &mut SqliteConnection, app_id: &str) -> Result<IndexDeclarations> {
    let text: Option<String> = sqlx::query_scalar("SELECT indexes FROM apps WHERE id = ?")
        .bind(app_id.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match text {
        Some(t) => serde_json::from_str(&t).map_err(|e| Error::internal(format!("corrupt apps.indexes: {e}"))),
        None => Ok(IndexDeclarations::default()),
    }
}

/// The shared collections of an app: (id, path).
pub(super) async fn shared_collections(conn: &mut SqliteConnection, app_id: &str) -> Result<Vec<(i64, String)>> {
    sqlx::query_as("SELECT id, path FROM object_collections WHERE app_id = ? AND owner = ? ORDER BY id")
        .bind(app_id.to_owned())
        .bind(SHARED_OWNER)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)
}

/// A value bound into the read.
enum Bind {
    Int(i64),
    Text(String),
    Scalar(Scalar),
}

/// A filter matching at most this many objects is "selective": with a field order, its matches
/// are read through the filter index and sorted in memory instead of walking the sort index.
const SELECTIVE: i64 = 1000;

/// A page of collection `cid`, choosing the access path. Filters alone walk the filter index
/// (already in primary key order); a field order alone walks the sort index; both together walk
/// the sort index and probe the filters, unless one filter is selective (≤ [`SELECTIVE`]
/// matches, counted with a bounded scan), whose matches are then sorted in memory.
pub(super) async fn list(conn: &mut SqliteConnection, cid: i64, q: &ListQuery) -> Result<Vec<String>> {
    if let ListOrder::Field { name, desc } = &q.order {
        let mut best: Option<(usize, i64)> = None;
        for (i, (field, v)) in q.filters.iter().enumerate() {
            let n = bounded_count(conn, cid, field, v).await?;
            if best.is_none_or(|(_, m)| n < m) {
                best = Some((i, n));
            }
        }
        if let Some((i, n)) = best.filter(|(_, n)| *n <= SELECTIVE) {
            let mut filters = q.filters.clone();
            filters.swap(0, i);
            let matches = ListQuery { limit: u32::try_from(n).unwrap_or(0).max(1), filters, ..ListQuery::default() };
            let bodies = list_with_sql(conn, cid, &matches).await?;
            let cursor = match &q.after {
                Some(after) => {
                    let k = sort_key(after);
                    Some((cursor_value(conn, cid, &k, name).await?, k))
                }
                None => None,
            };
            return crate::order::sort_in_memory(bodies, name, *desc, cursor, q.skip, q.limit);
        }
    }
    list_with_sql(conn, cid, q).await
}

/// How many objects match one equality, counting no further than [`SELECTIVE`] + 1.
async fn bounded_count(conn: &mut SqliteConnection, cid: i64, name: &str, v: &Scalar) -> Result<i64> {
    let q = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM object_fields WHERE cid = ? AND name = ? AND v = ? LIMIT ?)",
    )
    .bind(cid)
    .bind(name.to_owned());
    let q = match v {
        Scalar::Null => q.bind(vec![0u8]),
        Scalar::Bool(false) => q.bind(vec![1u8]),
        Scalar::Bool(true) => q.bind(vec![2u8]),
        Scalar::Int(i) => q.bind(*i),
        Scalar::Float(f) => q.bind(*f),
        Scalar::Text(t) => q.bind(t.clone()),
    };
    q.bind(SELECTIVE + 1).fetch_one(&mut *conn).await.map_err(db_err)
}

/// A page of collection `cid` in one statement, assembled from constant fragments and table
/// aliases chosen here; field names, values, cursors and limits are all bound parameters.
async fn list_with_sql(conn: &mut SqliteConnection, cid: i64, q: &ListQuery) -> Result<Vec<String>> {
    let mut sql = String::with_capacity(512);
    let mut binds: Vec<Bind> = Vec::new();
    let (filters, driver): (&[(String, Scalar)], &str) = match (&q.order, q.filters.as_slice()) {
        (ListOrder::Field { .. }, all) => (all, "s"),
        (_, []) => (&[], "o"),
        (_, [_, rest @ ..]) => (rest, "f0"),
    };
    sql.push_str("SELECT o.body FROM ");
    sql.push_str(if driver == "o" { "objects o" } else { "object_fields " });
    if driver != "o" {
        sql.push_str(driver);
    }
    for (i, (name, v)) in filters.iter().enumerate() {
        let alias = format!("j{i}");
        sql.push_str(&format!(
            " JOIN object_fields {alias} ON {alias}.cid = {driver}.cid AND {alias}.name = ? AND {alias}.v = ? AND {alias}.k = {driver}.k"
        ));
        binds.push(Bind::Text(name.clone()));
        binds.push(Bind::Scalar(v.clone()));
    }
    if driver != "o" {
        sql.push_str(&format!(" JOIN objects o ON o.cid = {driver}.cid AND o.k = {driver}.k"));
    }
    sql.push_str(&format!(" WHERE {driver}.cid = ?"));
    binds.push(Bind::Int(cid));
    match &q.order {
        ListOrder::Field { name, desc } => {
            sql.push_str(" AND s.name = ?");
            binds.push(Bind::Text(name.clone()));
            if let Some(after) = &q.after {
                let k = sort_key(after);
                let v = cursor_value(conn, cid, &k, name).await?;
                sql.push_str(if *desc { " AND (s.v, s.k) < (?, ?)" } else { " AND (s.v, s.k) > (?, ?)" });
                binds.push(Bind::Scalar(v));
                binds.push(Bind::Text(k));
            }
            sql.push_str(if *desc { " ORDER BY s.v DESC, s.k DESC" } else { " ORDER BY s.v ASC, s.k ASC" });
        }
        order => {
            let desc = *order == ListOrder::IdDesc;
            if driver == "f0" {
                let (name, v) = &q.filters[0];
                sql.push_str(" AND f0.name = ? AND f0.v = ?");
                binds.push(Bind::Text(name.clone()));
                binds.push(Bind::Scalar(v.clone()));
            }
            if let Some(after) = &q.after {
                sql.push_str(&format!(" AND {driver}.k {} ?", if desc { "<" } else { ">" }));
                binds.push(Bind::Text(sort_key(after)));
            }
            sql.push_str(&format!(" ORDER BY {driver}.k {}", if desc { "DESC" } else { "ASC" }));
        }
    }
    sql.push_str(" LIMIT ? OFFSET ?");
    binds.push(Bind::Int(i64::from(q.limit)));
    binds.push(Bind::Int(i64::try_from(q.skip).unwrap_or(i64::MAX)));

    // Safe: `sql` holds only the constant fragments and aliases above; all values are bound.
    let mut query: Query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = match b {
            Bind::Int(i) => query.bind(i),
            Bind::Text(t) => query.bind(t),
            Bind::Scalar(s) => bind_scalar(query, &s),
        };
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(db_err)?;
    rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect()
}

/// The sort field's value of the cursor object, for paging a field order with `after`.
async fn cursor_value(conn: &mut SqliteConnection, cid: i64, k: &str, field: &str) -> Result<Scalar> {
    let body = object_body(conn, cid, k)
        .await?
        .ok_or_else(|| Error::bad_request("after: no object with that _id in this collection"))?;
    let fields = stored_fields(&body)?;
    fields
        .get(field)
        .and_then(Scalar::of)
        .ok_or_else(|| Error::bad_request(format!("after: that object has no sortable value in {field:?}")))
}
