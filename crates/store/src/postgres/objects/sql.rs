//! The SQL of app objects on PostgreSQL: the typed form of an indexed value ([`Encoded`]), the
//! collection and index-set lookups, index row writes (one statement per object or per page of
//! objects, through `unnest` of bound arrays) and the collection read, built from fixed fragments
//! with every client value bound as a parameter.

use std::collections::HashSet;

use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::{Postgres, Row};
use thingline_core::classes::{Collection, IndexDeclarations, ListOrder, ListQuery, Scalar, sort_key, stored_fields};
use thingline_core::{Error, Result};

use super::super::db_err;
use crate::objects::index_rows_of;

type Query = sqlx::query::Query<'static, Postgres, PgArguments>;

/// An indexed value as the three columns `(vt, vn, vs)` of `object_fields` (see the migration
/// `0002_objects.sql`): ordered and compared as a row, they order and compare exactly as SQLite's
/// untyped `v` column does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Encoded {
    /// Type rank: 0 number, 1 text, 2 null, 3 false, 4 true.
    pub(crate) vt: i16,
    /// A number's exact decimal (bound as text, cast to NUMERIC), `0` otherwise.
    pub(crate) vn: String,
    /// A text's UTF-8 bytes, empty otherwise.
    pub(crate) vs: Vec<u8>,
}

impl Encoded {
    /// `vt` is the value's class in the index order ([`crate::order::rank`]).
    pub(crate) fn of(s: &Scalar) -> Encoded {
        let (vn, vs) = match s {
            Scalar::Int(i) => (i.to_string(), Vec::new()),
            Scalar::Float(f) => (exact_decimal(*f), Vec::new()),
            Scalar::Text(t) => ("0".to_owned(), t.as_bytes().to_vec()),
            Scalar::Null | Scalar::Bool(_) => ("0".to_owned(), Vec::new()),
        };
        Encoded { vt: crate::order::rank(s), vn, vs }
    }
}

/// The exact decimal value of a float (every finite `f64` is a finite decimal fraction), so that
/// NUMERIC compares it with integers and other floats exactly, as SQLite does. (PostgreSQL's own
/// `float8::numeric` keeps only 15 significant digits.)
pub(super) fn exact_decimal(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".to_owned() } else { "-Infinity".to_owned() };
    }
    if f == 0.0 {
        return "0".to_owned();
    }
    let bits = f.to_bits();
    let biased = i32::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exp) = if biased == 0 { (fraction, -1074) } else { (fraction | (1u64 << 52), biased - 1075) };
    // f = mantissa × 2^exp; with the mantissa's trailing zero bits moved into the exponent, a
    // negative exponent -p needs exactly p decimal places.
    let exp = exp + i32::try_from(mantissa.trailing_zeros()).unwrap_or(0);
    let places = usize::try_from(-exp).unwrap_or(0);
    // Rust formats with a given precision exactly (correctly rounded; here nothing to round).
    format!("{f:.places$}")
}

/// The id of a collection, if it was ever written.
pub(super) async fn collection_id(conn: &mut PgConnection, c: &Collection) -> Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM object_collections WHERE app_id = $1 AND owner = $2 AND path = $3")
        .bind(c.app_id.clone())
        .bind(c.owner.as_i64())
        .bind(c.path.clone())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

/// The id of a collection, its row locked `FOR KEY SHARE` until the transaction ends: object
/// writes hold this lock, index changes take `FOR UPDATE` and so wait for them (and they for it).
pub(super) async fn lock_collection_for_write(conn: &mut PgConnection, c: &Collection) -> Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM object_collections WHERE app_id = $1 AND owner = $2 AND path = $3 FOR KEY SHARE")
        .bind(c.app_id.clone())
        .bind(c.owner.as_i64())
        .bind(c.path.clone())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

/// Locks collection `cid` for changing its indexed fields (`FOR UPDATE`: waits for the object
/// writes in progress, holds off new ones until the transaction ends). False when it is gone.
pub(super) async fn lock_collection_for_indexing(conn: &mut PgConnection, cid: i64) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM object_collections WHERE id = $1 FOR UPDATE")
        .bind(cid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(found.is_some())
}

/// Inserts a collection row; `None` when a concurrent transaction inserted it first (committed).
pub(super) async fn insert_collection(conn: &mut PgConnection, c: &Collection) -> Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO object_collections (app_id, owner, path) VALUES ($1, $2, $3) \
         ON CONFLICT (app_id, owner, path) DO NOTHING RETURNING id",
    )
    .bind(c.app_id.clone())
    .bind(c.owner.as_i64())
    .bind(c.path.clone())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
}

/// The index declarations of an app (none for an unknown app). `lock`: hold the app's row
/// `FOR SHARE` until the transaction ends, so that a declaration change (which updates that row
/// before it brings the app's shared collections in line) is ordered with this transaction.
pub(super) async fn app_indexes(conn: &mut PgConnection, app_id: &str, lock: bool) -> Result<IndexDeclarations> {
    let sql = if lock {
        "SELECT indexes::text FROM apps WHERE id = $1 FOR SHARE"
    } else {
        "SELECT indexes::text FROM apps WHERE id = $1"
    };
    let text: Option<String> =
        sqlx::query_scalar(sql).bind(app_id.to_owned()).fetch_optional(&mut *conn).await.map_err(db_err)?;
    match text {
        Some(t) => serde_json::from_str(&t).map_err(|e| Error::internal(format!("corrupt apps.indexes: {e}"))),
        None => Ok(IndexDeclarations::default()),
    }
}

/// The indexed fields of collection `cid`.
pub(super) async fn indexed_names(conn: &mut PgConnection, cid: i64) -> Result<HashSet<String>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM object_indexes WHERE cid = $1")
        .bind(cid)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(names.into_iter().collect())
}

/// The shared collections of an app with their indexed fields: (id, path, names).
pub(super) async fn shared_collections(
    conn: &mut PgConnection,
    app_id: &str,
) -> Result<Vec<(i64, String, HashSet<String>)>> {
    let rows = sqlx::query(
        "SELECT c.id, c.path, i.name FROM object_collections c LEFT JOIN object_indexes i ON i.cid = c.id \
         WHERE c.app_id = $1 AND c.owner = $2 ORDER BY c.id",
    )
    .bind(app_id.to_owned())
    .bind(thingline_core::classes::SHARED_OWNER)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let mut out: Vec<(i64, String, HashSet<String>)> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get(0).map_err(db_err)?;
        let name: Option<String> = row.try_get(2).map_err(db_err)?;
        if out.last().is_none_or(|(last, _, _)| *last != id) {
            out.push((id, row.try_get(1).map_err(db_err)?, HashSet::new()));
        }
        if let (Some(name), Some((_, _, names))) = (name, out.last_mut()) {
            names.insert(name);
        }
    }
    Ok(out)
}

/// Records `names` as indexed fields of collection `cid` (no index rows written).
pub(super) async fn record_indexes(conn: &mut PgConnection, cid: i64, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO object_indexes (cid, name) SELECT $1, n FROM unnest($2::text[]) AS u(n) \
         ON CONFLICT (cid, name) DO NOTHING",
    )
    .bind(cid)
    .bind(names.to_vec())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Stops indexing `names` in collection `cid`: their records and every index row go.
pub(super) async fn drop_indexes(conn: &mut PgConnection, cid: i64, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    for sql in [
        "DELETE FROM object_fields WHERE cid = $1 AND name = ANY($2::text[])",
        "DELETE FROM object_indexes WHERE cid = $1 AND name = ANY($2::text[])",
    ] {
        sqlx::query(sql).bind(cid).bind(names.to_vec()).execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// Index rows as bound arrays (one element per row), for `unnest`.
#[derive(Default)]
struct Rows {
    names: Vec<String>,
    vt: Vec<i16>,
    vn: Vec<String>,
    vs: Vec<Vec<u8>>,
    k: Vec<String>,
}

impl Rows {
    fn push(&mut self, name: &str, v: &Scalar, k: &str) {
        let e = Encoded::of(v);
        self.names.push(name.to_owned());
        self.vt.push(e.vt);
        self.vn.push(e.vn);
        self.vs.push(e.vs);
        self.k.push(k.to_owned());
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Inserts index rows of collection `cid` with one statement.
async fn insert_rows(conn: &mut PgConnection, cid: i64, rows: Rows) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO object_fields (cid, name, vt, vn, vs, k) \
         SELECT $1, u.name, u.vt, u.vn::numeric, u.vs, u.k \
         FROM unnest($2::text[], $3::int2[], $4::text[], $5::bytea[], $6::text[]) AS u(name, vt, vn, vs, k)",
    )
    .bind(cid)
    .bind(rows.names)
    .bind(rows.vt)
    .bind(rows.vn)
    .bind(rows.vs)
    .bind(rows.k)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Inserts the index rows of one object (`fields`: its indexed fields only).
pub(super) async fn insert_fields(
    conn: &mut PgConnection,
    cid: i64,
    k: &str,
    fields: &[(String, Scalar)],
) -> Result<()> {
    let mut rows = Rows::default();
    for (name, v) in fields {
        rows.push(name, v, k);
    }
    insert_rows(conn, cid, rows).await
}

/// Deletes index rows of one object, each by its whole primary key.
pub(super) async fn delete_fields(
    conn: &mut PgConnection,
    cid: i64,
    k: &str,
    fields: &[(String, Scalar)],
) -> Result<()> {
    if fields.is_empty() {
        return Ok(());
    }
    let mut rows = Rows::default();
    for (name, v) in fields {
        rows.push(name, v, k);
    }
    sqlx::query(
        "DELETE FROM object_fields f \
         USING unnest($3::text[], $4::int2[], $5::text[], $6::bytea[]) AS u(name, vt, vn, vs) \
         WHERE f.cid = $1 AND f.name = u.name AND f.vt = u.vt AND f.vn = u.vn::numeric AND f.vs = u.vs \
         AND f.k = $2",
    )
    .bind(cid)
    .bind(k.to_owned())
    .bind(rows.names)
    .bind(rows.vt)
    .bind(rows.vn)
    .bind(rows.vs)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Objects read per step while indexing fields of an existing collection.
const BACKFILL_PAGE: i64 = 1000;

/// Makes `names` indexed fields of collection `cid` (inside a transaction holding the
/// collection's row `FOR UPDATE`): records them and writes their index rows for every object
/// already stored, a page of objects at a time (one pass however many fields), with the values
/// computed exactly as a create computes them.
pub(super) async fn index_fields(conn: &mut PgConnection, cid: i64, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    record_indexes(conn, cid, names).await?;
    let only: HashSet<String> = names.iter().cloned().collect();
    let mut after = String::new();
    loop {
        let page: Vec<(String, String)> =
            sqlx::query_as("SELECT k, body FROM objects WHERE cid = $1 AND k > $2 ORDER BY k LIMIT $3")
                .bind(cid)
                .bind(after.clone())
                .bind(BACKFILL_PAGE)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
        let Some((last, _)) = page.last() else { return Ok(()) };
        after = last.clone();
        let mut rows = Rows::default();
        for (k, body) in &page {
            for (name, v) in index_rows_of(body, &only)? {
                rows.push(&name, &v, k);
            }
        }
        insert_rows(conn, cid, rows).await?;
        if page.len() < usize::try_from(BACKFILL_PAGE).unwrap_or(usize::MAX) {
            return Ok(());
        }
    }
}

/// A value bound into the read: one per placeholder.
enum Bind {
    Int(i64),
    Small(i16),
    Text(String),
    Bytes(Vec<u8>),
}

/// Pushes an encoded value as three placeholders' values (`vt`, `vn`, `vs`).
fn push_value(binds: &mut Vec<Bind>, e: Encoded) {
    binds.push(Bind::Small(e.vt));
    binds.push(Bind::Text(e.vn));
    binds.push(Bind::Bytes(e.vs));
}

/// A filter matching at most this many objects is "selective": with a field order, its matches
/// are read through the filter index and sorted in memory instead of walking the sort index.
const SELECTIVE: i64 = 1000;

/// A page of collection `cid`, choosing the access path as the SQLite backend does. Filters
/// alone walk the filter index (already in primary key order); a field order alone walks the
/// sort index; both together walk the sort index and probe the filters, unless one filter is
/// selective (≤ [`SELECTIVE`] matches, counted with a bounded scan), whose matches are then
/// sorted in memory: the index has no path from an object to its value of the sort field, so
/// the planner could only probe the sort field's whole range per match.
pub(super) async fn list(conn: &mut PgConnection, cid: i64, q: &ListQuery) -> Result<Vec<String>> {
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
            let limit = u32::try_from(n).unwrap_or(0).max(1);
            let matches = ListQuery { limit, filters, order: ListOrder::IdAsc, ..ListQuery::default() };
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
async fn bounded_count(conn: &mut PgConnection, cid: i64, name: &str, v: &Scalar) -> Result<i64> {
    let e = Encoded::of(v);
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM object_fields \
         WHERE cid = $1 AND name = $2 AND vt = $3 AND vn = $4::numeric AND vs = $5 LIMIT $6) AS m",
    )
    .bind(cid)
    .bind(name.to_owned())
    .bind(e.vt)
    .bind(e.vn)
    .bind(e.vs)
    .bind(SELECTIVE + 1)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)
}

/// A page of collection `cid` in one statement, assembled from constant fragments and table
/// aliases chosen here; field names, values, cursors and limits are all bound parameters.
/// Filters alone are driven by the first filter's index range (already in primary key order),
/// a field order by the sort field's range (ordered by value, then key); the other filters are
/// probes on the whole primary key of `object_fields`. Planned for its parameters each time (not
/// a cached generic plan): how selective a filter is depends on its value.
async fn list_with_sql(conn: &mut PgConnection, cid: i64, q: &ListQuery) -> Result<Vec<String>> {
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
    // The placeholder number of the next value pushed.
    let next = |binds: &Vec<Bind>| binds.len() + 1;
    for (i, (name, v)) in filters.iter().enumerate() {
        let n = next(&binds);
        sql.push_str(&format!(
            " JOIN object_fields j{i} ON j{i}.cid = {driver}.cid AND j{i}.name = ${} AND j{i}.vt = ${} \
             AND j{i}.vn = ${}::numeric AND j{i}.vs = ${} AND j{i}.k = {driver}.k",
            n,
            n + 1,
            n + 2,
            n + 3
        ));
        binds.push(Bind::Text(name.clone()));
        push_value(&mut binds, Encoded::of(v));
    }
    if driver != "o" {
        sql.push_str(&format!(" JOIN objects o ON o.cid = {driver}.cid AND o.k = {driver}.k"));
    }
    sql.push_str(&format!(" WHERE {driver}.cid = ${}", next(&binds)));
    binds.push(Bind::Int(cid));
    match &q.order {
        ListOrder::Field { name, desc } => {
            sql.push_str(&format!(" AND s.name = ${}", next(&binds)));
            binds.push(Bind::Text(name.clone()));
            if let Some(after) = &q.after {
                let k = sort_key(after);
                let v = Encoded::of(&cursor_value(conn, cid, &k, name).await?);
                let n = next(&binds);
                sql.push_str(&format!(
                    " AND (s.vt, s.vn, s.vs, s.k) {} (${}, ${}::numeric, ${}, ${})",
                    if *desc { "<" } else { ">" },
                    n,
                    n + 1,
                    n + 2,
                    n + 3
                ));
                push_value(&mut binds, v);
                binds.push(Bind::Text(k));
            }
            sql.push_str(if *desc {
                " ORDER BY s.vt DESC, s.vn DESC, s.vs DESC, s.k DESC"
            } else {
                " ORDER BY s.vt, s.vn, s.vs, s.k"
            });
        }
        order => {
            let desc = *order == ListOrder::IdDesc;
            if let (true, Some((name, v))) = (driver == "f0", q.filters.first()) {
                let n = next(&binds);
                sql.push_str(&format!(
                    " AND f0.name = ${} AND f0.vt = ${} AND f0.vn = ${}::numeric AND f0.vs = ${}",
                    n,
                    n + 1,
                    n + 2,
                    n + 3
                ));
                binds.push(Bind::Text(name.clone()));
                push_value(&mut binds, Encoded::of(v));
            }
            if let Some(after) = &q.after {
                sql.push_str(&format!(" AND {driver}.k {} ${}", if desc { "<" } else { ">" }, next(&binds)));
                binds.push(Bind::Text(sort_key(after)));
            }
            sql.push_str(&format!(" ORDER BY {driver}.k {}", if desc { "DESC" } else { "ASC" }));
        }
    }
    let n = next(&binds);
    sql.push_str(&format!(" LIMIT ${} OFFSET ${}", n, n + 1));
    binds.push(Bind::Int(i64::from(q.limit)));
    binds.push(Bind::Int(i64::try_from(q.skip).unwrap_or(i64::MAX)));

    // Safe: `sql` holds only the constant fragments, aliases and placeholders above; all values
    // are bound.
    let mut query: Query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
    for b in binds {
        query = match b {
            Bind::Int(i) => query.bind(i),
            Bind::Text(t) => query.bind(t),
            Bind::Small(i) => query.bind(i),
            Bind::Bytes(b) => query.bind(b),
        };
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(db_err)?;
    rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect()
}

/// One stored object's text.
pub(super) async fn object_body(conn: &mut PgConnection, cid: i64, k: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT body FROM objects WHERE cid = $1 AND k = $2")
        .bind(cid)
        .bind(k.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

/// The sort field's value of the cursor object, for paging a field order with `after`.
async fn cursor_value(conn: &mut PgConnection, cid: i64, k: &str, field: &str) -> Result<Scalar> {
    let body = object_body(conn, cid, k)
        .await?
        .ok_or_else(|| Error::bad_request("after: no object with that _id in this collection"))?;
    let fields = stored_fields(&body)?;
    fields
        .get(field)
        .and_then(Scalar::of)
        .ok_or_else(|| Error::bad_request(format!("after: that object has no sortable value in {field:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_exact_decimals() {
        assert_eq!(exact_decimal(0.5), "0.5");
        assert_eq!(exact_decimal(-0.0), "0");
        assert_eq!(exact_decimal(90.0), "90");
        assert_eq!(exact_decimal(0.1), "0.1000000000000000055511151231257827021181583404541015625");
        assert_eq!(exact_decimal(1152921504606846976.0), "1152921504606846976");
        assert_eq!(exact_decimal(-2.5e-3), "-0.0025000000000000000520417042793042128323577344417572021484375");
        let tiny = exact_decimal(f64::from_bits(1));
        assert!(tiny.starts_with("0.000") && tiny.ends_with("5") && tiny.len() == 2 + 1074, "{tiny}");
        let huge = exact_decimal(f64::MAX);
        assert_eq!(huge.len(), 309);
        assert!(huge.starts_with("17976931348623157") && huge.ends_with("858368"), "{huge}");
    }
}
