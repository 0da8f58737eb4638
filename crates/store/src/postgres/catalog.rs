//! Products, activation codes and apps on PostgreSQL. Resource lists and an app's index
//! declarations are stored as JSON text; writing a declaration brings the app's shared
//! collections' indexes in line in the same transaction (`objects::apply_index_declaration`). Lists are ordered by bytes (`COLLATE "C"`) like
//! SQLite's. A product is deleted only while it has no things: the check and the foreign key of
//! `things.product_id` (a thing activated meanwhile on another node) both answer 409.

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::{PgStore, db_err, is_unique_violation};
use crate::CatalogStore;
use thingline_core::classes::IndexDeclarations;
use thingline_core::model::{ActivationCode, App, Product, ResourceDecl};

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::internal(format!("corrupt JSON column: {e}")))
}

fn product_from(row: &sqlx::postgres::PgRow) -> Result<Product> {
    let resources: String = row.try_get("resources").map_err(db_err)?;
    Ok(Product {
        id: row.try_get("id").map_err(db_err)?,
        owner_id: row.try_get("owner_id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        resources: from_json::<Vec<ResourceDecl>>(&resources)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
    })
}

fn app_from(row: &sqlx::postgres::PgRow) -> Result<App> {
    let resources: String = row.try_get("resources").map_err(db_err)?;
    let indexes: String = row.try_get("indexes").map_err(db_err)?;
    Ok(App {
        id: row.try_get("id").map_err(db_err)?,
        owner_id: row.try_get("owner_id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        resources: from_json::<Vec<String>>(&resources)?,
        indexes: from_json::<IndexDeclarations>(&indexes)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
    })
}

fn code_from(row: &sqlx::postgres::PgRow) -> Result<ActivationCode> {
    Ok(ActivationCode {
        code: row.try_get("code").map_err(db_err)?,
        product_id: row.try_get("product_id").map_err(db_err)?,
        thing_id: row.try_get("thing_id").map_err(db_err)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
        used_ms: row.try_get("used_ms").map_err(db_err)?,
    })
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

#[async_trait]
impl CatalogStore for PgStore {
    async fn create_product(&self, p: &Product) -> Result<()> {
        sqlx::query("INSERT INTO products (id, owner_id, name, resources, created_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&p.id)
            .bind(p.owner_id)
            .bind(&p.name)
            .bind(to_json(&p.resources)?)
            .bind(p.created_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) { Error::Conflict(format!("product {} exists", p.id)) } else { db_err(e) }
            })?;
        Ok(())
    }

    async fn product(&self, id: &str) -> Result<Option<Product>> {
        let row = sqlx::query("SELECT id, owner_id, name, resources, created_ms FROM products WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(product_from).transpose()
    }

    async fn products_of(&self, owner_id: i64) -> Result<Vec<Product>> {
        let rows = sqlx::query(
            "SELECT id, owner_id, name, resources, created_ms FROM products WHERE owner_id = $1 \
             ORDER BY created_ms, id COLLATE \"C\"",
        )
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(product_from).collect()
    }

    async fn update_product(&self, p: &Product) -> Result<bool> {
        let n = sqlx::query("UPDATE products SET name = $1, resources = $2 WHERE id = $3")
            .bind(&p.name)
            .bind(to_json(&p.resources)?)
            .bind(&p.id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn delete_product(&self, id: &str) -> Result<bool> {
        let has_things = |things: i64| Error::Conflict(format!("the product has {things} things; delete them first"));
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let things: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM things WHERE product_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if things > 0 {
            return Err(has_things(things));
        }
        sqlx::query("DELETE FROM activation_codes WHERE product_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let n = sqlx::query("DELETE FROM products WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_foreign_key_violation(&e) { has_things(1) } else { db_err(e) })?
            .rows_affected();
        tx.commit().await.map_err(|e| if is_foreign_key_violation(&e) { has_things(1) } else { db_err(e) })?;
        Ok(n > 0)
    }

    async fn create_activation_codes(&self, product_id: &str, codes: &[String], now_ms: i64) -> Result<()> {
        // One statement: all or nothing. The first taken code is named in the 409.
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT code FROM activation_codes WHERE code = ANY($1::text[]) ORDER BY code COLLATE \"C\" LIMIT 1",
        )
        .bind(codes)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if let Some(code) = taken {
            return Err(Error::Conflict(format!("activation code {code} exists")));
        }
        sqlx::query(
            "INSERT INTO activation_codes (code, product_id, created_ms) \
             SELECT c, $2, $3 FROM unnest($1::text[]) AS u(c)",
        )
        .bind(codes)
        .bind(product_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) { Error::Conflict("an activation code exists".into()) } else { db_err(e) }
        })?;
        Ok(())
    }

    async fn activation_codes(&self, product_id: &str) -> Result<Vec<ActivationCode>> {
        let rows = sqlx::query(
            "SELECT code, product_id, thing_id, created_ms, used_ms FROM activation_codes \
             WHERE product_id = $1 ORDER BY created_ms, code COLLATE \"C\"",
        )
        .bind(product_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(code_from).collect()
    }

    async fn unused_activation_codes(&self, product_id: &str) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM activation_codes WHERE product_id = $1 AND thing_id IS NULL")
                .bind(product_id)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_app(&self, a: &App) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO apps (id, owner_id, name, resources, indexes, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&a.id)
        .bind(a.owner_id)
        .bind(&a.name)
        .bind(to_json(&a.resources)?)
        .bind(to_json(&a.indexes)?)
        .bind(a.created_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) { Error::Conflict(format!("app {} exists", a.id)) } else { db_err(e) }
        })?;
        if !a.indexes.is_empty() {
            // Declaration and indexes change together (see `apply_index_declaration`).
            super::objects::apply_index_declaration(&mut tx, &a.id, &a.indexes).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn app(&self, id: &str) -> Result<Option<App>> {
        let row = sqlx::query("SELECT id, owner_id, name, resources, indexes, created_ms FROM apps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(app_from).transpose()
    }

    async fn apps_of(&self, owner_id: i64) -> Result<Vec<App>> {
        let rows = sqlx::query(
            "SELECT id, owner_id, name, resources, indexes, created_ms FROM apps \
             WHERE owner_id = $1 ORDER BY created_ms, id COLLATE \"C\"",
        )
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(app_from).collect()
    }

    async fn update_app(&self, a: &App) -> Result<bool> {
        let indexes = to_json(&a.indexes)?;
        // The declaration before and after, under the app row's lock: concurrent updates (from
        // any node) are ordered, so the last one to change it also brings the collections in line.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let before: Option<String> = sqlx::query_scalar("SELECT indexes FROM apps WHERE id = $1 FOR UPDATE")
            .bind(&a.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(before) = before else { return Ok(false) };
        sqlx::query("UPDATE apps SET name = $1, resources = $2, indexes = $3 WHERE id = $4")
            .bind(&a.name)
            .bind(to_json(&a.resources)?)
            .bind(&indexes)
            .bind(&a.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if before != indexes {
            // Declaration and indexes change together (see `apply_index_declaration`).
            super::objects::apply_index_declaration(&mut tx, &a.id, &a.indexes).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn delete_app(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM apps WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n > 0)
    }
}
