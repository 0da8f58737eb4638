//! Panel accounts and sessions on PostgreSQL. A taken email is refused by the unique constraint
//! (a 409), so two nodes never create the same account.

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::{Error, Result};

use super::{PgStore, db_err, is_unique_violation};
use crate::PanelStore;
use thingline_core::model::PanelUser;

fn user_from(row: &sqlx::postgres::PgRow) -> Result<PanelUser> {
    Ok(PanelUser {
        id: row.try_get("id").map_err(db_err)?,
        email: row.try_get("email").map_err(db_err)?,
        password_hash: row.try_get("password_hash").map_err(db_err)?,
    })
}

#[async_trait]
impl PanelStore for PgStore {
    async fn create_panel_user(&self, email: &str, password_hash: &str) -> Result<PanelUser> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO panel_users (email, password_hash, created_ms) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email)
        .bind(password_hash)
        .bind(thingline_core::time::now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("a panel user with email {email} exists"))
            } else {
                db_err(e)
            }
        })?;
        Ok(PanelUser { id, email: email.to_owned(), password_hash: password_hash.to_owned() })
    }

    async fn panel_user_by_email(&self, email: &str) -> Result<Option<PanelUser>> {
        let row = sqlx::query("SELECT id, email, password_hash FROM panel_users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn create_panel_session(&self, user_id: i64, token_digest: &str, expires_ms: i64) -> Result<()> {
        sqlx::query("INSERT INTO panel_sessions (token_digest, user_id, expires_ms) VALUES ($1, $2, $3)")
            .bind(token_digest)
            .bind(user_id)
            .bind(expires_ms)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn panel_session_user(&self, token_digest: &str, now_ms: i64) -> Result<Option<PanelUser>> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.password_hash FROM panel_sessions s JOIN panel_users u ON u.id = s.user_id \
             WHERE s.token_digest = $1 AND s.expires_ms > $2",
        )
        .bind(token_digest)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn delete_panel_session(&self, token_digest: &str) -> Result<()> {
        sqlx::query("DELETE FROM panel_sessions WHERE token_digest = $1")
            .bind(token_digest)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
