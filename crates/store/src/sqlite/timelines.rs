//! Timelines on SQLite: appends go to the group-commit writer; reads use the reader pool and the
//! `(timeline_id, ts)` primary key, so the newest N values of one timeline are one index range.

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::Result;
use thingline_core::query::TimelineQuery;

use super::{SqliteStore, db_err};
use crate::{NewPoint, StoredPoint, TimelineStore};

#[async_trait]
impl TimelineStore for SqliteStore {
    async fn append(&self, thing_seq: i64, points: Vec<NewPoint>) -> Result<Vec<StoredPoint>> {
        if points.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.append(thing_seq, points).await
    }

    async fn read(&self, thing_seq: i64, key: &str, q: &TimelineQuery) -> Result<Option<Vec<StoredPoint>>> {
        let mut conn = self.read.acquire().await.map_err(db_err)?;
        let tl: Option<i64> = sqlx::query_scalar("SELECT id FROM timelines WHERE thing_seq = ? AND key = ?")
            .bind(thing_seq)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        let Some(tl) = tl else { return Ok(None) };
        let rows = sqlx::query(
            "SELECT ts, value FROM points WHERE timeline_id = ? AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT ?",
        )
        .bind(tl)
        .bind(q.start.unwrap_or(i64::MIN))
        .bind(q.end.unwrap_or(i64::MAX))
        .bind(i64::from(q.limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(StoredPoint {
                key: key.to_owned(),
                ts: row.try_get("ts").map_err(db_err)?,
                value: row.try_get("value").map_err(db_err)?,
            });
        }
        if out.is_empty() {
            // A timeline row can exist without values only if its append was rolled back; treat it
            // as never written unless some value exists outside the range.
            let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM points WHERE timeline_id = ? LIMIT 1")
                .bind(tl)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
            if any.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }

    async fn keys(&self, thing_seq: i64) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT t.key FROM timelines t WHERE t.thing_seq = ? \
             AND EXISTS (SELECT 1 FROM points p WHERE p.timeline_id = t.id) ORDER BY t.key",
        )
        .bind(thing_seq)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)
    }
}
