//! Things on SQLite: activation consumes a code and creates the thing in one transaction.

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::{SqliteStore, db_err, returned};
use crate::{NewThing, ThingStore};
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
        sqlx::query("UPDATE things SET settings = ? WHERE seq = ?")
            .bind(text)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(doc)
    }
}
