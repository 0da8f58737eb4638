//! Products, activation codes and apps on SQLite. Resource lists and an app's index declarations
//! are stored as JSON text. Writing an app whose index declaration changed brings its shared
//! collections' indexes in line (through the objects writer) before the call returns.

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::{SqliteStore, db_err, is_unique_violation};
use crate::CatalogStore;
use thingline_core::classes::IndexDeclarations;
use thingline_core::model::{ActivationCode, App, Product, ResourceDecl};

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::internal(format!("corrupt JSON column: {e}")))
}

fn product_from(row: &sqlx::sqlite::SqliteRow) -> Result<Product> {
    let resources: String = row.try_get("resources").map_err(db_err)?;
    Ok(Product {
        id: row.try_get("id").map_err(db_err)?,
        owner_id: row.try_get("owner_id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        resources: from_json::<Vec<ResourceDecl>>(&resources)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
    })
}

fn app_from(row: &sqlx::sqlite::SqliteRow) -> Result<App> {
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

fn code_from(row: &sqlx::sqlite::SqliteRow) -> Result<ActivationCode> {
    Ok(ActivationCode {
        code: row.try_get("code").map_err(db_err)?,
        product_id: row.try_get("product_id").map_err(db_err)?,
        thing_id: row.try_get("thing_id").map_err(db_err)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
        used_ms: row.try_get("used_ms").map_err(db_err)?,
    })
}

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn create_product(&self, p: &Product) -> Result<()> {
        sqlx::query("INSERT INTO products (id, owner_id, name, resources, created_ms) VALUES (?, ?, ?, ?, ?)")
            .bind(&p.id)
            .bind(p.owner_id)
            .bind(&p.name)
            .bind(to_json(&p.resources)?)
            .bind(p.created_ms)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn product(&self, id: &str) -> Result<Option<Product>> {
        let row = sqlx::query("SELECT id, owner_id, name, resources, created_ms FROM products WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(product_from).transpose()
    }

    async fn products_of(&self, owner_id: i64) -> Result<Vec<Product>> {
        let rows = sqlx::query(
            "SELECT id, owner_id, name, resources, created_ms FROM products WHERE owner_id = ? ORDER BY created_ms, id",
        )
        .bind(owner_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(product_from).collect()
    }

    async fn update_product(&self, p: &Product) -> Result<bool> {
        let n = sqlx::query("UPDATE products SET name = ?, resources = ? WHERE id = ?")
            .bind(&p.name)
            .bind(to_json(&p.resources)?)
            .bind(&p.id)
            .execute(&self.write)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn delete_product(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let things: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM things WHERE product_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if things > 0 {
            return Err(Error::Conflict(format!("the product has {things} things; delete them first")));
        }
        sqlx::query("DELETE FROM activation_codes WHERE product_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let n = sqlx::query("DELETE FROM products WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n > 0)
    }

    async fn create_activation_codes(&self, product_id: &str, codes: &[String], now_ms: i64) -> Result<()> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        for code in codes {
            sqlx::query("INSERT INTO activation_codes (code, product_id, created_ms) VALUES (?, ?, ?)")
                .bind(code)
                .bind(product_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::Conflict(format!("activation code {code} exists"))
                    } else {
                        db_err(e)
                    }
                })?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn activation_codes(&self, product_id: &str) -> Result<Vec<ActivationCode>> {
        let rows = sqlx::query(
            "SELECT code, product_id, thing_id, created_ms, used_ms FROM activation_codes \
             WHERE product_id = ? ORDER BY created_ms, code",
        )
        .bind(product_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(code_from).collect()
    }

    async fn unused_activation_codes(&self, product_id: &str) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM activation_codes WHERE product_id = ? AND thing_id IS NULL")
                .bind(product_id)
                .fetch_one(&self.read)
                .await
                .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_app(&self, a: &App) -> Result<()> {
        sqlx::query("INSERT INTO apps (id, owner_id, name, resources, indexes, created_ms) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&a.id)
            .bind(a.owner_id)
            .bind(&a.name)
            .bind(to_json(&a.resources)?)
            .bind(to_json(&a.indexes)?)
            .bind(a.created_ms)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        if !a.indexes.is_empty() {
            self.objects.sync_shared_indexes(&a.id).await?;
        }
        Ok(())
    }

    async fn app(&self, id: &str) -> Result<Option<App>> {
        let row = sqlx::query("SELECT id, owner_id, name, resources, indexes, created_ms FROM apps WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(app_from).transpose()
    }

    async fn apps_of(&self, owner_id: i64) -> Result<Vec<App>> {
        let rows = sqlx::query(concat!(
            "SELECT id, owner_id, name, resources, indexes, created_ms FROM apps ",
            "WHERE owner_id = ? ORDER BY created_ms, id"
        ))
        .bind(owner_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(app_from).collect()
    }

    async fn update_app(&self, a: &App) -> Result<bool> {
        let indexes = to_json(&a.indexes)?;
        // The declaration before and after, in one write transaction: concurrent updates are
        // ordered, so the last one to change it also brings the collections in line.
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let before: Option<String> = sqlx::query_scalar("SELECT indexes FROM apps WHERE id = ?")
            .bind(&a.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(before) = before else { return Ok(false) };
        sqlx::query("UPDATE apps SET name = ?, resources = ?, indexes = ? WHERE id = ?")
            .bind(&a.name)
            .bind(to_json(&a.resources)?)
            .bind(&indexes)
            .bind(&a.id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        if before != indexes {
            self.objects.sync_shared_indexes(&a.id).await?;
        }
        Ok(true)
    }

    async fn delete_app(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM apps WHERE id = ?")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n > 0)
    }
}
