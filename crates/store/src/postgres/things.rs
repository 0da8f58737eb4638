//! Things on PostgreSQL. Activation consumes the code with one conditional
//! `UPDATE activation_codes … WHERE used_ms IS NULL` in the transaction that creates the thing:
//! the row lock it takes orders concurrent activations of one code (on any node), and only the
//! first finds it unused. Deleting a thing locks it and its timelines (waiting for appends in
//! flight, in the writers' lock order) before deleting its values, so no value outlives it.

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::{PgStore, db_err, is_unique_violation};
use crate::{NewThing, ThingStore};
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
        sqlx::query("UPDATE things SET settings = $1 WHERE seq = $2")
            .bind(text)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(doc)
    }
}
