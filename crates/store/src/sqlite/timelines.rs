//! Timelines on SQLite: appends go to the group-commit writer; reads use the reader pool and the
//! `(timeline_id, ts)` primary key, so the newest N values of one timeline are one index range.
//! A chart's series is classified and bucketed by SQLite over that range ([`NUMERIC`]).

use async_trait::async_trait;
use sqlx::Row;
use thingline_core::Result;
use thingline_core::query::TimelineQuery;

use super::{SqliteStore, db_err};
use crate::series::{Buckets, Window, empty};
use crate::{NewPoint, Series, StoredPoint, TimelineStore};

/// The values of timeline ?1 with ?2 <= ts < ?3 as `(ts, x)`, `x` the value when it is numeric
/// (see [`crate::series::numeric_value`], which this follows), NULL otherwise.
///
/// The common case first and cheaply: a JSON number (the text starts with `-` or a digit:
/// stored values are valid JSON) of at most 100 characters without an exponent is finite, and
/// `CAST` reads it (trailing whitespace included). Otherwise `t` is the text with JSON
/// whitespace trimmed: a JSON number of at most 100 characters is numeric when finite (`CAST`
/// gives ±Inf past the f64 range); a string (`"…"`, at most 100 characters inside) when its
/// content fits the grammar `[+-]? digits ("." digits)? ([eE] [+-]? digits)?`. SQLite has no
/// regular expressions: the GLOB patterns on `t` below together say exactly that (checked
/// against the grammar on every content of up to 7 characters over `0 . e E + - x`): a digit,
/// or a sign and a digit, first; a digit last; only digits, `.`, `e`, `E`, `+`, `-` inside; at
/// most one `.`, never after an `e`; at most one `e`; a digit after `.`; after `e` a digit or a
/// sign and a digit; a sign only first or right after `e`. `CAST` of the content from its first
/// character reads the number and stops at the closing quote.
///
/// `LIMIT -1 OFFSET 0` keeps SQLite from flattening this into the query that reads it, which
/// would evaluate the CASE once per reference to `x` (four aggregates) instead of once per row.
const NUMERIC: &str = "SELECT ts, CASE \
      WHEN (unicode(value) = 45 OR unicode(value) BETWEEN 48 AND 57) AND length(value) <= 100 \
        AND instr(value, 'e') = 0 AND instr(value, 'E') = 0 THEN CAST(value AS REAL) \
      WHEN t GLOB '[-0-9]*' THEN CASE WHEN length(t) <= 100 \
        AND abs(CAST(t AS REAL)) <= 1.7976931348623157e308 THEN CAST(t AS REAL) END \
      WHEN length(t) <= 102 AND (t GLOB '\"[0-9]*' OR t GLOB '\"[-+][0-9]*') AND t GLOB '*[0-9]\"' \
        AND t NOT GLOB '\"*[^0-9.eE+-]*\"' AND t NOT GLOB '*.*.*' AND t NOT GLOB '*[eE]*.*' \
        AND t NOT GLOB '*[eE]*[eE]*' AND t NOT GLOB '*.[^0-9]*' AND t NOT GLOB '*[eE][^-+0-9]*' \
        AND t NOT GLOB '*[eE][-+][^0-9]*' AND t NOT GLOB '?*[^eE][-+]*' \
      THEN CASE WHEN abs(CAST(substr(t, 2) AS REAL)) <= 1.7976931348623157e308 THEN CAST(substr(t, 2) AS REAL) END \
    END AS x \
    FROM (SELECT ts, value, trim(value, ' ' || char(9, 10, 13)) AS t FROM points \
          WHERE timeline_id = ?1 AND ts >= ?2 AND ts < ?3) \
    LIMIT -1 OFFSET 0";

// NUMERIC writes the longest numeric text, series::MAX_NUMERIC_CHARS, as 100.
const _: () = assert!(crate::series::MAX_NUMERIC_CHARS == 100);

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
        //
        // Whether the timeline holds any value at all is asked in the same statement, so in the
        // same snapshot: a timeline row is committed before its first values (see the timeline
        // writer), and asking afterwards could find a value committed in between and answer an
        // empty page for a key that, in the snapshot read, had never been written.
        let row = sqlx::query(
            "SELECT (SELECT group_concat(p.ts || char(31) || p.value, char(30) ORDER BY p.ts DESC) \
               FROM (SELECT ts, value FROM points WHERE timeline_id = t.id AND ts >= ? AND ts < ? \
                     ORDER BY ts DESC LIMIT ?) p) AS packed, \
               EXISTS (SELECT 1 FROM points WHERE timeline_id = t.id) AS any_value \
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
        let packed: Option<String> = row.try_get("packed").map_err(db_err)?;
        let Some(packed) = packed else {
            // Nothing in range. A timeline row without values (its first append not committed
            // yet, or failed) reads as never written unless some value exists outside the range.
            let any: bool = row.try_get("any_value").map_err(db_err)?;
            return Ok(any.then(Vec::new));
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

    async fn series(
        &self,
        thing_seq: i64,
        key: &str,
        start_ms: i64,
        end_ms: i64,
        points: u32,
    ) -> Result<Option<Series>> {
        // One read transaction: the buckets and the values come from one snapshot.
        let mut tx = self.read.begin().await.map_err(db_err)?;
        let tl: Option<i64> = sqlx::query_scalar("SELECT id FROM timelines WHERE thing_seq = ? AND key = ?")
            .bind(thing_seq)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(tl) = tl else {
            tx.commit().await.map_err(db_err)?;
            return Ok(None);
        };
        // One pass over the range: the buckets with their counts (a bucket of non-numeric values
        // only counts them). Bucket k holds [start + k * width, start + (k + 1) * width); the
        // subtraction cannot overflow (the window lies within the supported datetimes).
        let buckets = match Window::new(start_ms, end_ms, points) {
            Some(w) => {
                let sql = format!(
                    "SELECT ?2 + ((ts - ?2) / ?4) * ?4 AS b, count(x), count(*), min(x), max(x), avg(x) \
                     FROM ({NUMERIC}) GROUP BY b ORDER BY b"
                );
                let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(tl)
                    .bind(w.start)
                    .bind(w.end)
                    .bind(w.width)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?;
                Some((w, Buckets::from_rows(rows)))
            }
            None => None,
        };
        let series = match buckets {
            Some((w, b)) if b.count + b.non_numeric > 0 => {
                if b.count > u64::from(w.points) {
                    Some(b.into_series())
                } else {
                    // Few enough to draw each: read them one by one.
                    let sql = format!("SELECT ts, x FROM ({NUMERIC}) WHERE x IS NOT NULL ORDER BY ts");
                    let values: Vec<(i64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(tl)
                        .bind(w.start)
                        .bind(w.end)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    Some(b.with_values(values))
                }
            }
            _ => {
                // Nothing in range: as for `read`, a timeline without any value reads as never
                // written.
                let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM points WHERE timeline_id = ? LIMIT 1")
                    .bind(tl)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                any.map(|_| empty())
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(series)
    }
}
