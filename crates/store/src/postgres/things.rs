//! Things on PostgreSQL. Activation consumes the code with one conditional
//! `UPDATE activation_codes … WHERE used_ms IS NULL` in the transaction that creates the thing:
//! the row lock it takes orders concurrent activations of one code (on any node), and only the
//! first finds it unused. Deleting a thing locks it and its timelines (waiting for appends in
//! flight, in the writers' lock order) before deleting its values, so no value outlives it.
//! A bulk creation inserts batches with one `INSERT … SELECT FROM unnest(…)` each; the panel's
//! pages of a product's things are index ranges (migration 0004).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::{PgStore, db_err, is_unique_violation};
use crate::things::{CREATE_BATCH, search_of, settings_name, skip_limit};
use crate::{NewThing, ThingPage, ThingPageQuery, ThingRow, ThingSort, ThingStore};
use thingline_core::model::Thing;

macro_rules! thing_select {
    ($rest:literal) => {
        concat!("SELECT seq, id, token, product_id, activation_code, created_ms FROM things ", $rest)
    };
}

/// A `Thing` from a row with its six columns (also used by the app-user queries).
pub(super) fn thing_from(row: &sqlx::postgres::PgRow) -> Result<Thing> {
    Ok(Thing {
        seq: row.try_get("seq").map_err(db_err)?,
        id: row.try_get("id").map_err(db_err)?,
        token: row.try_get("token").map_err(db_err)?,
        product_id: row.try_get("product_id").map_err(db_err)?,
        activation_code: row.try_get("activation_code").map_err(db_err)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
    })
}

fn corrupt(e: serde_json::Error) -> Error {
    Error::internal(format!("corrupt settings: {e}"))
}

#[async_trait]
impl ThingStore for PgStore {
    async fn activate(&self, code: &str, product_id: Option<&str>, new: NewThing) -> Result<Thing> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Consumes the code if it is unused (and of the product asked); waits for a concurrent
        // activation of the same code and then finds it used.
        let consumed: Option<String> = sqlx::query_scalar(
            "UPDATE activation_codes SET thing_id = $2, used_ms = $3 \
             WHERE code = $1 AND used_ms IS NULL AND thing_id IS NULL AND ($4::text IS NULL OR product_id = $4) \
             RETURNING product_id",
        )
        .bind(code)
        .bind(&new.id)
        .bind(new.now_ms)
        .bind(product_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(code_product) = consumed else {
            let row = sqlx::query("SELECT product_id FROM activation_codes WHERE code = $1")
                .bind(code)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            let Some(row) = row else { return Err(Error::not_found("Activation code not found")) };
            let code_product: String = row.try_get("product_id").map_err(db_err)?;
            if product_id.is_some_and(|p| p != code_product) {
                return Err(Error::not_found("Activation code not found for this product"));
            }
            return Err(Error::Conflict("Activation code already used".into()));
        };
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO things (id, token, product_id, activation_code, created_ms) \
             VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(&new.id)
        .bind(&new.token)
        .bind(&code_product)
        .bind(code)
        .bind(new.now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict("a thing with this id or token exists".into())
            } else {
                db_err(e)
            }
        })?;
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
        let row = sqlx::query(thing_select!("WHERE token = $1"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(thing_from).transpose()
    }

    async fn thing_by_id(&self, id: &str) -> Result<Option<Thing>> {
        let row =
            sqlx::query(thing_select!("WHERE id = $1")).bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.as_ref().map(thing_from).transpose()
    }

    async fn things_of_product(&self, product_id: &str) -> Result<Vec<Thing>> {
        let rows = sqlx::query(thing_select!("WHERE product_id = $1 ORDER BY seq"))
            .bind(product_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(thing_from).collect()
    }

    async fn create_things(&self, product_id: &str, things: &[NewThing], now_ms: i64) -> Result<Vec<Thing>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The product's key stays locked until the commit: a concurrent delete_product waits,
        // then finds these things (409).
        let product: Option<i32> = sqlx::query_scalar("SELECT 1 FROM products WHERE id = $1 FOR KEY SHARE")
            .bind(product_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if product.is_none() {
            return Err(Error::not_found(format!("Product {product_id} not found")));
        }
        let mut seqs: HashMap<String, i64> = HashMap::with_capacity(things.len());
        for batch in things.chunks(CREATE_BATCH) {
            let ids: Vec<&str> = batch.iter().map(|t| t.id.as_str()).collect();
            let tokens: Vec<&str> = batch.iter().map(|t| t.token.as_str()).collect();
            // Inserted in the order given (seq follows it); RETURNING is matched by id all the same.
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "INSERT INTO things (id, token, product_id, created_ms) \
                 SELECT u.id, u.token, $3, $4 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(id, token, n) \
                 ORDER BY u.n RETURNING seq, id",
            )
            .bind(&ids)
            .bind(&tokens)
            .bind(product_id)
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict("a thing with this id or token exists".into())
                } else {
                    db_err(e)
                }
            })?;
            seqs.extend(rows.into_iter().map(|(seq, id)| (id, seq)));
        }
        tx.commit().await.map_err(db_err)?;
        crate::things::created_things(product_id, things, &seqs, now_ms)
    }

    async fn things_page(&self, product_id: &str, q: &ThingPageQuery) -> Result<ThingPage> {
        let search = search_of(q);
        let sql = page_sql(search.is_some(), q.sort, q.descending);
        let (skip, limit) = skip_limit(q);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(product_id);
        if let Some(search) = &search {
            query = query.bind(search.prefix).bind(&search.lowered);
        }
        let rows = query.bind(limit).bind(skip).fetch_all(&self.pool).await.map_err(db_err)?;
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The thing first: a writer creating a timeline of it (whose foreign key check shares
        // this row) is waited for, and later ones wait for this transaction and then find no
        // thing. Then its timelines, in the writers' order: appends in flight are waited for.
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM things WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(seq) = seq else { return Ok(false) };
        sqlx::query("SELECT id FROM timelines WHERE thing_seq = $1 ORDER BY thing_seq, id FOR UPDATE")
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM points WHERE thing_seq = $1").bind(seq).execute(&mut *tx).await.map_err(db_err)?;
        // Its timelines, links and grants go with it (ON DELETE CASCADE).
        let n = sqlx::query("DELETE FROM things WHERE seq = $1")
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n > 0)
    }

    async fn thing_settings(&self, seq: i64) -> Result<serde_json::Value> {
        let doc: Option<String> = sqlx::query_scalar("SELECT settings FROM things WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let doc = doc.ok_or_else(|| Error::not_found("Thing not found"))?;
        serde_json::from_str(&doc).map_err(corrupt)
    }

    async fn update_thing_settings(
        &self,
        seq: i64,
        path: Option<&str>,
        value: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Under the row's lock: a concurrent update of another path (any node) is not lost.
        let doc: Option<String> = sqlx::query_scalar("SELECT settings FROM things WHERE seq = $1 FOR NO KEY UPDATE")
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let doc = doc.ok_or_else(|| Error::not_found("Thing not found"))?;
        let mut doc: serde_json::Value = serde_json::from_str(&doc).map_err(corrupt)?;
        match path {
            None => doc = value,
            Some(path) => thingline_core::keys::set_path(&mut doc, path, value)?,
        }
        let text = serde_json::to_string(&doc).map_err(Error::internal)?;
        sqlx::query("UPDATE things SET settings = $1, name = $3 WHERE seq = $2")
            .bind(text)
            .bind(seq)
            .bind(settings_name(&doc))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(doc)
    }
}

/// The statement of a page ($1 the product; with a search $2 the id prefix and $3 the lowered
/// name text; then the limit and the skip). `m` is the product's things matching the search (an
/// id prefix, or a name containing the text, ASCII letters of either case: `lower` of the "C"
/// collated name column lowers ASCII letters only); the total is counted from it, and the page's
/// seqs are read from it in the page's order from an index alone (an index-only scan: a skipped
/// thing costs an index entry, no table read); then the page's things are read, each with the
/// newest datetime of each of its timelines (`newest_ts`, or where it is not known, a copied
/// store, the points' primary key). Without a search `m` is inlined into both (each an index
/// range); with one it is computed once (`MATERIALIZED`: one pass over the covering index
/// `things_product_name`, whose matches are then counted and sorted) rather than once per use.
/// An empty page is one row with the total and no thing (the LEFT JOINs), so the total comes
/// back all the same.
fn page_sql(search: bool, sort: ThingSort, descending: bool) -> String {
    let (m, filter, limit, skip) = if search {
        ("MATERIALIZED", " AND (left(id, char_length($2)) = $2 OR strpos(lower(name), $3) > 0)", "$4", "$5")
    } else {
        ("NOT MATERIALIZED", "", "$2", "$3")
    };
    format!(
        "WITH m AS {m} (SELECT seq, id, name FROM things WHERE product_id = $1{filter}) \
         SELECT c.total, t.seq, t.id, t.token, t.product_id, t.activation_code, t.created_ms, t.name, \
           (SELECT max(coalesce(tl.newest_ts, (SELECT max(p.ts) FROM points p \
               WHERE p.thing_seq = tl.thing_seq AND p.timeline_id = tl.id))) \
            FROM timelines tl WHERE tl.thing_seq = t.seq) AS last_seen_ms \
         FROM (SELECT count(*) AS total FROM m) c \
         LEFT JOIN (SELECT seq FROM m ORDER BY {inner} LIMIT {limit} OFFSET {skip}) page ON true \
         LEFT JOIN things t ON t.seq = page.seq ORDER BY {outer}",
        inner = page_order(sort, descending, ""),
        outer = page_order(sort, descending, "t."),
    )
}

/// The `ORDER BY` of a page on the columns of `things` (`t`: a table alias with its dot, or
/// empty): each is one of the indexes of migration 0004 read forwards or backwards, ending with
/// a unique column (the id, or seq), so pages never overlap or skip. Ids compare by bytes (`COLLATE "C"`, as the index);
/// `name` is a "C" column, NULL last ascending and first descending (PostgreSQL's defaults).
fn page_order(sort: ThingSort, descending: bool, t: &str) -> String {
    let dir = if descending { " DESC" } else { "" };
    match sort {
        ThingSort::Activated => format!("{t}seq{dir}"),
        // Ids are unique: no tiebreak needed.
        ThingSort::Id => format!("{t}id COLLATE \"C\"{dir}"),
        ThingSort::Name => format!("{t}name{dir}, {t}seq{dir}"),
    }
}
