//! App users, sessions, links, grants, settings and outbox on SQLite. Writes use the
//! single-connection write pool; reads the read pool.

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::things::thing_from;
use super::{SqliteStore, db_err, is_unique_violation, returned};
use crate::{AppSessionRecord, AppUserStore, AppUserSummary, GrantRecord};
use thingline_core::model::{AppUser, GrantEntry, OutboxMail, Thing};

fn user_from(row: &sqlx::sqlite::SqliteRow) -> Result<AppUser> {
    Ok(AppUser {
        id: row.try_get("id").map_err(db_err)?,
        app_id: row.try_get("app_id").map_err(db_err)?,
        email: row.try_get("email").map_err(db_err)?,
        password_hash: row.try_get("password_hash").map_err(db_err)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
    })
}

#[async_trait]
impl AppUserStore for SqliteStore {
    async fn create_app_user(&self, app_id: &str, email: &str, password_hash: &str, now_ms: i64) -> Result<AppUser> {
        let id: sqlx::Result<Vec<i64>> = sqlx::query_scalar(
            "INSERT INTO app_users (app_id, email, password_hash, created_ms) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(app_id)
        .bind(email)
        .bind(password_hash)
        .bind(now_ms)
        .fetch_all(&self.write)
        .await;
        let id = returned(id).map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("A user with email {email} already exists in this app"))
            } else if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
                Error::not_found(format!("App {app_id} not found"))
            } else {
                db_err(e)
            }
        })?;
        Ok(AppUser {
            id,
            app_id: app_id.to_owned(),
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            created_ms: now_ms,
        })
    }

    async fn app_user_by_email(&self, app_id: &str, email: &str) -> Result<Option<AppUser>> {
        let sql = "SELECT id, app_id, email, password_hash, created_ms FROM app_users WHERE app_id = ? AND email = ?";
        let row = sqlx::query(sql).bind(app_id).bind(email).fetch_optional(&self.read).await.map_err(db_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn app_user(&self, id: i64) -> Result<Option<AppUser>> {
        let sql = "SELECT id, app_id, email, password_hash, created_ms FROM app_users WHERE id = ?";
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.read).await.map_err(db_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn app_users_of(&self, app_id: &str) -> Result<Vec<AppUser>> {
        let sql = "SELECT id, app_id, email, password_hash, created_ms FROM app_users WHERE app_id = ? ORDER BY id";
        let rows = sqlx::query(sql).bind(app_id).fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(user_from).collect()
    }

    async fn app_user_summaries(&self, app_id: &str) -> Result<Vec<AppUserSummary>> {
        let sql = "SELECT id, app_id, email, password_hash, created_ms, last_login_ms FROM app_users \
                   WHERE app_id = ? ORDER BY id";
        let users = sqlx::query(sql).bind(app_id).fetch_all(&self.read).await.map_err(db_err)?;
        let links: Vec<(i64, String)> = sqlx::query_as(
            "SELECT l.user_id, l.thing_id FROM app_links l JOIN app_users u ON u.id = l.user_id \
             WHERE u.app_id = ? ORDER BY l.user_id",
        )
        .bind(app_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        let rows = users
            .iter()
            .map(|row| Ok((user_from(row)?, row.try_get("last_login_ms").map_err(db_err)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::app_users::summaries(rows, links))
    }

    async fn delete_app_user(&self, id: i64) -> Result<bool> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        // The user's private (`/classes/me`) collections, with their objects and index rows.
        sqlx::query(
            "DELETE FROM object_collections WHERE owner = ?1 \
             AND app_id = (SELECT app_id FROM app_users WHERE id = ?1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let n = sqlx::query("DELETE FROM app_users WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n > 0)
    }

    async fn set_app_user_password(&self, user_id: i64, password_hash: &str, keep: Option<&str>) -> Result<()> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let n = sqlx::query("UPDATE app_users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        if n == 0 {
            return Err(Error::not_found("User not found"));
        }
        sqlx::query("DELETE FROM app_sessions WHERE user_id = ? AND token_digest <> ?")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn create_app_session(&self, user_id: i64, token_digest: &str, expires_ms: i64, now_ms: i64) -> Result<()> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        sqlx::query("INSERT INTO app_sessions (token_digest, user_id, expires_ms, created_ms) VALUES (?, ?, ?, ?)")
            .bind(token_digest)
            .bind(user_id)
            .bind(expires_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("UPDATE app_users SET last_login_ms = ? WHERE id = ?")
            .bind(now_ms)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn app_session(&self, token_digest: &str, now_ms: i64) -> Result<Option<AppSessionRecord>> {
        let row = sqlx::query(
            "SELECT u.id, u.app_id, u.email, s.expires_ms FROM app_sessions s JOIN app_users u ON u.id = s.user_id \
             WHERE s.token_digest = ? AND s.expires_ms > ?",
        )
        .bind(token_digest)
        .bind(now_ms)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AppSessionRecord {
            user_id: row.try_get("id").map_err(db_err)?,
            app_id: row.try_get("app_id").map_err(db_err)?,
            email: row.try_get("email").map_err(db_err)?,
            expires_ms: row.try_get("expires_ms").map_err(db_err)?,
        }))
    }

    async fn delete_app_session(&self, token_digest: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM app_sessions WHERE token_digest = ?")
            .bind(token_digest)
            .execute(&self.write)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn link_thing(&self, user_id: i64, thing_id: &str, exclusive: bool, now_ms: i64) -> Result<bool> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let own: Option<i64> = sqlx::query_scalar("SELECT 1 FROM app_links WHERE user_id = ? AND thing_id = ?")
            .bind(user_id)
            .bind(thing_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if own.is_some() {
            return Ok(true);
        }
        if exclusive {
            let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM app_links WHERE thing_id = ? LIMIT 1")
                .bind(thing_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if any.is_some() {
                return Ok(false);
            }
        }
        sqlx::query("INSERT INTO app_links (user_id, thing_id, created_ms) VALUES (?, ?, ?)")
            .bind(user_id)
            .bind(thing_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
                    Error::not_found("Thing not found")
                } else {
                    db_err(e)
                }
            })?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn unlink_thing(&self, user_id: i64, thing_id: &str) -> Result<Option<Vec<i64>>> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let n = sqlx::query("DELETE FROM app_links WHERE user_id = ? AND thing_id = ?")
            .bind(user_id)
            .bind(thing_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        let grantees: Vec<i64> =
            sqlx::query_scalar("DELETE FROM app_grants WHERE granted_by = ? AND thing_id = ? RETURNING user_id")
                .bind(user_id)
                .bind(thing_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let mut grantees = grantees;
        grantees.sort_unstable();
        grantees.dedup();
        Ok(Some(grantees))
    }

    async fn linked_things(&self, user_id: i64) -> Result<Vec<Thing>> {
        let rows = sqlx::query(
            "SELECT t.seq, t.id, t.token, t.product_id, t.activation_code, t.created_ms FROM app_links l \
             JOIN things t ON t.id = l.thing_id WHERE l.user_id = ? ORDER BY l.created_ms, t.seq",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(thing_from).collect()
    }

    async fn set_grants(&self, user_id: i64, granted_by: i64, entries: &[GrantEntry], now_ms: i64) -> Result<()> {
        // One transaction: one commit (one sync) for the whole request, and an entry that fails
        // rolls back the ones before it (the transaction is dropped uncommitted).
        let mut tx = self.begin_write().await.map_err(db_err)?;
        for entry in entries {
            if entry.perms == 0 {
                sqlx::query("DELETE FROM app_grants WHERE user_id = ? AND thing_id = ? AND key = ?")
                    .bind(user_id)
                    .bind(&entry.thing_id)
                    .bind(&entry.key)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                continue;
            }
            sqlx::query(
                "INSERT INTO app_grants (user_id, thing_id, key, perms, granted_by, created_ms) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, thing_id, key) DO UPDATE SET \
                 perms = excluded.perms, granted_by = excluded.granted_by, created_ms = excluded.created_ms",
            )
            .bind(user_id)
            .bind(&entry.thing_id)
            .bind(&entry.key)
            .bind(i64::from(entry.perms))
            .bind(granted_by)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
                    Error::not_found("Thing or user not found")
                } else {
                    db_err(e)
                }
            })?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn grants_of(&self, user_id: i64) -> Result<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT t.seq, t.id, t.token, t.product_id, t.activation_code, t.created_ms, g.key, g.perms, g.granted_by \
             FROM app_grants g JOIN things t ON t.id = g.thing_id WHERE g.user_id = ? ORDER BY g.created_ms, t.seq, g.key",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let perms: i64 = row.try_get("perms").map_err(db_err)?;
                Ok(GrantRecord {
                    thing: thing_from(row)?,
                    key: row.try_get("key").map_err(db_err)?,
                    perms: u8::try_from(perms & 0xff).unwrap_or(0),
                    granted_by: row.try_get("granted_by").map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn app_user_settings(&self, user_id: i64) -> Result<serde_json::Value> {
        let doc: Option<String> = sqlx::query_scalar("SELECT settings FROM app_users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        crate::app_users::parse_settings(doc)
    }

    async fn merge_app_user_settings(
        &self,
        user_id: i64,
        patch: serde_json::Map<String, serde_json::Value>,
        max_bytes: usize,
    ) -> Result<serde_json::Value> {
        let mut tx = self.begin_write().await.map_err(db_err)?;
        let doc: Option<String> = sqlx::query_scalar("SELECT settings FROM app_users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let (doc, text) = crate::app_users::merge_settings(doc, patch, max_bytes)?;
        sqlx::query("UPDATE app_users SET settings = ? WHERE id = ?")
            .bind(text)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(doc)
    }

    async fn add_outbox_mail(&self, app_id: &str, to: &str, subject: &str, body: &str, now_ms: i64) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO app_outbox (app_id, to_email, subject, body, created_ms) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(app_id)
        .bind(to)
        .bind(subject)
        .bind(body)
        .bind(now_ms)
        .fetch_all(&self.write)
        .await;
        returned(id).map_err(db_err)
    }

    async fn outbox_of_app(&self, app_id: &str, limit: u32) -> Result<Vec<OutboxMail>> {
        let rows = sqlx::query(
            "SELECT id, app_id, to_email, subject, body, created_ms FROM app_outbox WHERE app_id = ? \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(app_id)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(OutboxMail {
                    id: row.try_get("id").map_err(db_err)?,
                    app_id: row.try_get("app_id").map_err(db_err)?,
                    to: row.try_get("to_email").map_err(db_err)?,
                    subject: row.try_get("subject").map_err(db_err)?,
                    body: row.try_get("body").map_err(db_err)?,
                    created_ms: row.try_get("created_ms").map_err(db_err)?,
                })
            })
            .collect()
    }
}
