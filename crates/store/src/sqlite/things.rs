//! Things on SQLite: activation consumes a code and creates the thing in one transaction; a bulk
//! creation inserts batches of rows from one JSON parameter each (as the timeline writer inserts
//! values); the panel's pages of a product's things are index ranges (migration 0006).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::{SqliteStore, db_err, is_unique_violation, returned};
use crate::things::{CREATE_BATCH, search_of, settings_name, skip_limit};
use crate::{NewThing, ThingPage, ThingPageQuery, ThingRow, ThingSort, ThingStore};
use thingline_core::model::Thing;

macro_rules! thing_select {
    ($rest:literal) => {
        concat!("SELECT seq, id, token, product_id, activation_code, created_ms FROM things ", $rest)
    };
}

/// A `Thing` from a row with its six columns (also used by the app-user queries).
pub(super) fn thing_from(row: &sqlx::sqlite::SqliteRow) -> Result<Thing> {
    Ok(Thing {
        seq: row.try_get("seq").map_err(db_err)?,
        id: row.try_get("id").map_err(db_err)?,
        token: row.try_get("token").map_err(db_err)?,
        product_id: row.try_get("product_id").map_err(db_err)?,
        activation_code: row.try_get("activation_code").map_err(db_err)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
    })
}

#[async_trait]
impl ThingStore for SqliteStore {
    async fn activate(&self, code: &str, product_id: Option<&str>, new: NewThing) -> Result<Thing> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let row = sqlx::query("SELECT product_id, thing_id FROM activation_codes WHERE code = ?")
            .bind(code)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row else {
            return Err(Error::not_found("Activation code not found"));
        };
        let code_product: String = row.try_get("product_id").map_err(db_err)?;
        let used_by: Option<String> = row.try_get("thing_id").map_err(db_err)?;
        if product_id.is_some_and(|p| p != code_product) {
            return Err(Error::not_found("Activation code not found for this product"));
        }
        if used_by.is_some() {
            return Err(Error::Conflict("Activation code already used".into()));
        }
        let seq: sqlx::Result<Vec<i64>> = sqlx::query_scalar(
            "INSERT INTO things (id, token, product_id, activation_code, created_ms) VALUES (?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(&new.id)
        .bind(&new.token)
        .bind(&code_product)
        .bind(code)
        .bind(new.now_ms)
        .fetch_all(&mut *tx)
        .await;
        let seq = returned(seq).map_err(db_err)?;
        sqlx::query("UPDATE activation_codes SET thing_id = ?, used_ms = ? WHERE code = ?")
            .bind(&new.id)
            .bind(new.now_ms)
            .bind(code)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Thing {
            seq,
            id: new.id,
            token: new.token,
            product_id: code_product,
            activation_code: Some(code.to_owned()),
            created_ms: new.now_ms,
        })
    }

    async fn thing_by_token(&self, token: &str) -> Result<Option<Thing>> {
        let row = sqlx::query(thing_select!("WHERE token = ?"))
            .bind(token)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(thing_from).transpose()
    }

    async fn thing_by_id(&self, id: &str) -> Result<Option<Thing>> {
        let row =
            sqlx::query(thing_select!("WHERE id = ?")).bind(id).fetch_optional(&self.read).await.map_err(db_err)?;
        row.as_ref().map(thing_from).transpose()
    }

    async fn things_of_product(&self, product_id: &str) -> Result<Vec<Thing>> {
        let rows = sqlx::query(thing_select!("WHERE product_id = ? ORDER BY seq"))
            .bind(product_id)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(thing_from).collect()
    }

    async fn create_things(&self, product_id: &str, things: &[NewThing], now_ms: i64) -> Result<Vec<Thing>> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let product: Option<i64> = sqlx::query_scalar("SELECT 1 FROM products WHERE id = ?")
            .bind(product_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if product.is_none() {
            return Err(Error::not_found(format!("Product {product_id} not found")));
        }
        let mut seqs: HashMap<String, i64> = HashMap::with_capacity(things.len());
        for batch in things.chunks(CREATE_BATCH) {
            let pairs: Vec<[&str; 2]> = batch.iter().map(|t| [t.id.as_str(), t.token.as_str()]).collect();
            let param = serde_json::to_string(&pairs).map_err(Error::internal)?;
            // RETURNING gives its rows in no promised order: they are matched by id.
            let rows = sqlx::query(
                "INSERT INTO things (id, token, product_id, created_ms) \
                 SELECT value ->> 0, value ->> 1, ?, ? FROM json_each(?) RETURNING seq, id",
            )
            .bind(product_id)
            .bind(now_ms)
            .bind(param)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict("a thing with this id or token exists".into())
                } else {
                    db_err(e)
                }
            })?;
            for row in &rows {
                seqs.insert(row.try_get("id").map_err(db_err)?, row.try_get("seq").map_err(db_err)?);
            }
        }
        tx.commit().await.map_err(db_err)?;
        crate::things::created_things(product_id, things, &seqs, now_ms)
    }

    async fn things_page(&self, product_id: &str, q: &ThingPageQuery) -> Result<ThingPage> {
        let search = search_of(q);
        let sql = page_sql(search.is_some(), q.sort, q.descending);
        let (skip, limit) = skip_limit(q);
        // Bound also without a search (the statement numbers ?4 and ?5 after them).
        let (prefix, lowered) = search.map_or(("", String::new()), |s| (s.prefix, s.lowered));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product_id)
            .bind(prefix)
            .bind(&lowered)
            .bind(limit)
            .bind(skip)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        let mut page = ThingPage { total: 0, rows: Vec::with_capacity(rows.len()) };
        for row in &rows {
            page.total = u64::try_from(row.try_get::<i64, _>("total").map_err(db_err)?).unwrap_or(0);
            // The one row of an empty page has no thing.
            if row.try_get::<Option<i64>, _>("seq").map_err(db_err)?.is_some() {
                page.rows.push(ThingRow {
                    thing: thing_from(row)?,
                    name: row.try_get("name").map_err(db_err)?,
                    last_seen_ms: row.try_get("last_seen_ms").map_err(db_err)?,
                });
            }
        }
        Ok(page)
    }

    async fn delete_thing(&self, id: &str) -> Result<bool> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM things WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        match seq {
            Some(seq) => self.writer.delete_thing(seq).await,
            None => Ok(false),
        }
    }

    async fn thing_settings(&self, seq: i64) -> Result<serde_json::Value> {
        let doc: Option<String> = sqlx::query_scalar("SELECT settings FROM things WHERE seq = ?")
            .bind(seq)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        let doc = doc.ok_or_else(|| Error::not_found("Thing not found"))?;
        serde_json::from_str(&doc).map_err(|e| Error::internal(format!("corrupt settings: {e}")))
    }

    async fn update_thing_settings(
        &self,
        seq: i64,
        path: Option<&str>,
        value: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let doc: Option<String> = sqlx::query_scalar("SELECT settings FROM things WHERE seq = ?")
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let doc = doc.ok_or_else(|| Error::not_found("Thing not found"))?;
        let mut doc: serde_json::Value =
            serde_json::from_str(&doc).map_err(|e| Error::internal(format!("corrupt settings: {e}")))?;
        match path {
            None => doc = value,
            Some(path) => thingline_core::keys::set_path(&mut doc, path, value)?,
        }
        let text = serde_json::to_string(&doc).map_err(Error::internal)?;
        sqlx::query("UPDATE things SET settings = ?, name = ? WHERE seq = ?")
            .bind(text)
            .bind(settings_name(&doc))
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(doc)
    }
}

/// The statement of a page (?1 the product, ?2 the id prefix, ?3 the lowered name text, ?4 the
/// limit, ?5 the skip). `m` is the product's things matching the search (an id prefix, or a name
/// containing the text, ASCII letters of either case: `lower` is ASCII-only in SQLite); the total
/// is counted from it, and the page's seqs are read from it in the page's order from an index
/// alone (a skipped thing costs an index step, no table read); then the page's things are read,
/// each with the newest datetime of each of its timelines (one primary-key probe per timeline).
/// Without a search `m` is inlined into both (each an index range); with one it is computed
/// once (`MATERIALIZED`: one pass over the covering index `things_product_id`, whose matches are
/// then counted and sorted) rather than once per use. An empty page is one row with the total
/// and no thing (the LEFT JOINs), so the total comes back all the same.
fn page_sql(search: bool, sort: ThingSort, descending: bool) -> String {
    let (m, filter) = if search {
        ("MATERIALIZED", " AND (substr(id, 1, length(?2)) = ?2 OR instr(lower(name), ?3) > 0)")
    } else {
        ("NOT MATERIALIZED", "")
    };
    format!(
        "WITH m AS {m} (SELECT seq, id, name FROM things WHERE product_id = ?1{filter}) \
         SELECT c.total, t.seq, t.id, t.token, t.product_id, t.activation_code, t.created_ms, t.name, \
           (SELECT max((SELECT max(p.ts) FROM points p WHERE p.timeline_id = tl.id)) \
            FROM timelines tl WHERE tl.thing_seq = t.seq) AS last_seen_ms \
         FROM (SELECT count(*) AS total FROM m) c \
         LEFT JOIN (SELECT seq FROM m ORDER BY {inner} LIMIT ?4 OFFSET ?5) page ON true \
         LEFT JOIN things t ON t.seq = page.seq ORDER BY {outer}",
        inner = page_order(sort, descending, ""),
        outer = page_order(sort, descending, "t."),
    )
}

/// The `ORDER BY` of a page on the columns of `things` (`t`: a table alias with its dot, or
/// empty): each is one of its indexes read forwards or backwards, ending with a unique column
/// (the id, or seq), so pages never overlap or skip.
fn page_order(sort: ThingSort, descending: bool, t: &str) -> String {
    let dir = if descending { " DESC" } else { "" };
    match sort {
        ThingSort::Activated => format!("{t}seq{dir}"),
        // Ids are unique: no tiebreak, so that (product_id, id, name) serves the order.
        ThingSort::Id => format!("{t}id{dir}"),
        ThingSort::Name => format!("{t}name IS NULL{dir}, {t}name{dir}, {t}seq{dir}"),
    }
}
