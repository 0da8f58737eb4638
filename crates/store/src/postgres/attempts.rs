//! Failed-attempt counters shared by every node ([`AttemptStore`]): a reservation locks the row
//! of each of its keys (in key order, so two reservations never deadlock), forgets attempts
//! older than the window, counts, and records the attempt on every key only when none is at its
//! limit, all in one transaction. Keys idle for a day are dropped now and then.

use async_trait::async_trait;
use thingline_core::Result;

use super::{PgStore, db_err};
use crate::AttemptStore;

/// A key with no attempt for this long loses its row.
const KEY_IDLE_MS: i64 = 24 * 3600 * 1000;

#[async_trait]
impl AttemptStore for PgStore {
    async fn reserve_attempt(&self, keys: &[(String, u32)], since_ms: i64, now_ms: i64) -> Result<Option<i64>> {
        let mut names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        names.sort_unstable();
        names.dedup();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO limit_keys (key, last_ms) SELECT k, $2 FROM unnest($1::text[]) AS k \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&names)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("SELECT key FROM limit_keys WHERE key = ANY($1) ORDER BY key FOR UPDATE")
            .bind(&names)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM limit_attempts WHERE key = ANY($1) AND at_ms <= $2")
            .bind(&names)
            .bind(since_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT key, count(*) FROM limit_attempts WHERE key = ANY($1) GROUP BY key")
                .bind(&names)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        let full = keys
            .iter()
            .any(|(key, limit)| counts.iter().any(|(k, n)| k == key && *n >= i64::from(*limit)) || *limit == 0);
        if full {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        }
        let id: i64 =
            sqlx::query_scalar("SELECT nextval('limit_attempt_ids')").fetch_one(&mut *tx).await.map_err(db_err)?;
        sqlx::query("INSERT INTO limit_attempts (key, id, at_ms) SELECT k, $2, $3 FROM unnest($1::text[]) AS k")
            .bind(&names)
            .bind(id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("UPDATE limit_keys SET last_ms = $2 WHERE key = ANY($1)")
            .bind(&names)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        // Now and then (about one reservation in 256), keys idle for a day go.
        if id % 256 == 0 {
            let _ = sqlx::query(
                "DELETE FROM limit_keys k WHERE k.last_ms < $1 \
                 AND NOT EXISTS (SELECT 1 FROM limit_attempts a WHERE a.key = k.key)",
            )
            .bind(now_ms - KEY_IDLE_MS)
            .execute(&self.pool)
            .await;
        }
        Ok(Some(id))
    }

    async fn release_attempt(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM limit_attempts WHERE id = $1").bind(id).execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }
}
