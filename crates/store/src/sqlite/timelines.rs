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
        // One statement and one row whatever the limit: the page is packed by SQLite as
        // `ts US value RS ts US value …` (US = 0x1F, RS = 0x1E; neither can occur in JSON text,
        // where control characters must be escaped), newest first. Fetching 1,000 rows one by
        // one through the driver costs several times more than splitting one string.
        let row = sqlx::query(
            "SELECT t.id AS tl, (SELECT group_concat(p.ts || char(31) || p.value, char(30) ORDER BY p.ts DESC) \
               FROM (SELECT ts, value FROM points WHERE timeline_id = t.id AND ts >= ? AND ts < ? \
                     ORDER BY ts DESC LIMIT ?) p) AS packed \
             FROM timelines t WHERE t.thing_seq = ? AND t.key = ?",
        )
        .bind(q.start.unwrap_or(i64::MIN))
        .bind(q.end.unwrap_or(i64::MAX))
        .bind(i64::from(q.limit))
        .bind(thing_seq)
        .bind(key)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let tl: i64 = row.try_get("tl").map_err(db_err)?;
        let packed: Option<String> = row.try_get("packed").map_err(db_err)?;
        let Some(packed) = packed else {
            // Nothing in range. A timeline row can exist without values only if its append
            // failed; it reads as never written unless some value exists outside the range.
            let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM points WHERE timeline_id = ? LIMIT 1")
                .bind(tl)
                .fetch_optional(&self.read)
                .await
                .map_err(db_err)?;
            return Ok(any.map(|_| Vec::new()));
        };
        let mut out = Vec::with_capacity(q.limit as usize);
        for item in packed.split('\u{1e}') {
            let (ts, value) =
                item.split_once('\u{1f}').ok_or_else(|| thingline_core::Error::internal("corrupt timeline page"))?;
            let ts = ts.parse().map_err(|_| thingline_core::Error::internal("corrupt timeline datetime"))?;
            out.push(StoredPoint { key: key.to_owned(), ts, value: value.to_owned() });
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
