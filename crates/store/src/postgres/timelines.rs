//! Timelines on PostgreSQL: the group-commit writers of appends, and reads.
//!
//! Appends queue for [`WRITERS`] writer tasks, each with its own connection. A free writer takes
//! what is queued (up to [`MAX_OPS_PER_COMMIT`] requests) and commits it as ONE transaction:
//! create the missing timeline rows (`INSERT … ON CONFLICT DO NOTHING`), lock the group's
//! timeline rows (`SELECT … FOR NO KEY UPDATE`, in `(thing_seq, id)` order, so writers of any
//! node never deadlock on them), assign the datetimes, insert every value with one
//! `INSERT … SELECT FROM unnest(…)`, record each timeline's newest datetime, commit, and only
//! then answer each request (an acknowledged value is durable).
//!
//! Datetimes follow the SQLite writer exactly (`sqlite/timeline_writer.rs`): a value without a
//! datetime gets `max(now, newest + 1 ms)`; an explicit one later than the newest, or free, is
//! kept; one already taken moves forward to the next free millisecond; none is ever assigned
//! past [`MAX_MS`] (such a request is a 400 and none of it is stored; the other requests of its
//! group are answered on their own). What makes them distinct across nodes is the database: the
//! timeline row lock serialises every transaction writing a timeline, and each reads the newest
//! datetime (`timelines.newest_ts`) and the stored ones after it holds the lock; the points'
//! primary key `(thing_seq, timeline_id, ts)` is the last word. A deadlock, serialization
//! failure or key conflict retries the group; a group that fails answers each of its requests
//! with the error (503 when the database is away) and stores nothing.
//!
//! Reads are one statement: the newest `limit` values of the window, one index range scanned
//! backwards over the partitions (see [`super::partitions`]), newest partition first. A chart's
//! series is classified and bucketed by the database over the window's range ([`NUMERIC`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};
use thingline_core::query::TimelineQuery;
use thingline_core::time::{MAX_MS, MIN_MS, format_datetime};
use thingline_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use super::{PgStore, db_err};
use crate::series::{Buckets, Window, empty};
use crate::{NewPoint, Series, StoredPoint, TimelineStore};

/// Writer tasks, each with its own connection. PostgreSQL runs their transactions concurrently,
/// so while one group commits (waits for its WAL flush) the next is being written; appends to
/// one timeline still serialise on its row lock. Four keeps a few commits in flight without
/// taking many of the database's connections per node.
pub(crate) const WRITERS: usize = 4;
/// Most appends committed in one transaction.
const MAX_OPS_PER_COMMIT: usize = 512;
/// Most values committed in one transaction (a single larger request still commits alone).
const MAX_POINTS_PER_COMMIT: usize = 20_000;
/// Queue depth in front of the writers; callers wait (back-pressure) when it is full.
const QUEUE: usize = 4096;
/// Tries of a group that hits a deadlock, a serialization failure or a key conflict.
const MAX_ATTEMPTS: u32 = 5;
/// Stored datetimes read per query while looking for a free one.
const FREE_SCAN: i64 = 256;

/// The values of timeline ($1, $2) with $3 <= ts < $4 as `(ts, x)`, `x` the value as a float8
/// when it is numeric (see [`crate::series::numeric_value`], which this follows), NULL
/// otherwise. No value may make it fail, so nothing is cast before it is known to fit, in this
/// order (only CASE fixes the order of evaluation):
/// - the common case first and cheaply: a JSON number (the text starts with `-` or a digit:
///   stored values are valid JSON) of at most 100 characters without an exponent is below
///   1e100 and, unless zero, above 1e-100: `float8` takes it (trailing whitespace included);
/// - otherwise `s` is the text with JSON whitespace trimmed and a string's quotes removed: at
///   most 100 characters, and a JSON number (every one fits the grammar) or a string fitting the
///   grammar;
/// - without an exponent, `float8` takes it (as above);
/// - an exponent of 1000 or more (at most 100 characters in all) makes it 0 when the exponent
///   is negative or every digit is 0, and infinite (not numeric) otherwise;
/// - a smaller exponent is safe for `numeric` (whose digits and exponents are bounded); at or
///   past the halfway point above the largest f64 (rounding to infinity) it is not numeric, and
///   at or below half the smallest subnormal it is 0 (`float8` refuses both, where Rust gives
///   ±Inf and 0);
/// - otherwise `float8` takes it.
///
/// `OFFSET 0` keeps PostgreSQL from pulling this up into the query that reads it, which would
/// evaluate the CASE once per reference to `x` (four aggregates) instead of once per row.
const NUMERIC: &str = "SELECT ts, CASE \
      WHEN (ascii(value) = 45 OR ascii(value) BETWEEN 48 AND 57) AND length(value) <= 100 \
        AND strpos(value, 'e') = 0 AND strpos(value, 'E') = 0 THEN value::float8 \
      WHEN length(s) > 100 THEN NULL \
      WHEN NOT (ascii(t) = 45 OR ascii(t) BETWEEN 48 AND 57 \
        OR (ascii(t) = 34 AND s ~ '^[+-]?[0-9]+([.][0-9]+)?([eE][+-]?[0-9]+)?$')) THEN NULL \
      WHEN strpos(s, 'e') = 0 AND strpos(s, 'E') = 0 THEN s::float8 \
      WHEN s ~ '[eE][+-]?0*[1-9][0-9]{3}' THEN \
        CASE WHEN s ~ '[eE]-' OR s ~ '^[+-]?[0.]+[eE]' THEN 0::float8 END \
      WHEN abs(s::numeric) >= 1.797693134862315807937289714053e308 THEN NULL \
      WHEN abs(s::numeric) <= 2.4703282292062328e-324 THEN 0::float8 \
      ELSE s::float8 \
    END AS x \
    FROM (SELECT ts, value, t, CASE WHEN ascii(t) = 34 THEN substr(t, 2, length(t) - 2) ELSE t END AS s \
      FROM (SELECT ts, value, btrim(value, E' \\t\\n\\r') AS t FROM points \
            WHERE thing_seq = $1 AND timeline_id = $2 AND ts >= $3 AND ts < $4) r) c \
    OFFSET 0";

// NUMERIC writes the longest numeric text, series::MAX_NUMERIC_CHARS, as 100.
const _: () = assert!(crate::series::MAX_NUMERIC_CHARS == 100);

struct Request {
    thing_seq: i64,
    points: Vec<NewPoint>,
    reply: oneshot::Sender<Result<Vec<StoredPoint>>>,
}

/// The handle the store appends through.
pub(super) struct Writers {
    /// Dropped at close: the writers then commit what is queued and stop.
    tx: parking_lot::Mutex<Option<mpsc::Sender<Request>>>,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pool: PgPool,
}

fn closed() -> Error {
    Error::Unavailable("the store is shutting down".into())
}

impl Writers {
    pub(super) fn spawn(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let tasks = (0..WRITERS).map(|_| tokio::spawn(run(pool.clone(), rx.clone()))).collect();
        Writers { tx: parking_lot::Mutex::new(Some(tx)), tasks: parking_lot::Mutex::new(tasks), pool }
    }

    async fn append(&self, thing_seq: i64, points: Vec<NewPoint>) -> Result<Vec<StoredPoint>> {
        let tx = self.tx.lock().clone().ok_or_else(closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request { thing_seq, points, reply }).await.map_err(|_| closed())?;
        drop(tx);
        rx.await.map_err(|_| closed())?
    }

    /// Commits and answers what is queued, then stops the writers and closes their connections.
    pub(super) async fn close(&self) {
        drop(self.tx.lock().take());
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        self.pool.close().await;
    }
}

async fn run(pool: PgPool, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            let mut count = first.points.len();
            let mut group = vec![first];
            while group.len() < MAX_OPS_PER_COMMIT && count < MAX_POINTS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(r) => {
                        count += r.points.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        commit_group(&pool, group).await;
    }
    tracing::debug!("timeline writer stopped");
}

/// Commits a group and answers each request. When the group fails for a reason other than the
/// database being away or full, each request is committed alone, so that one bad request cannot
/// fail the others.
async fn commit_group(pool: &PgPool, group: Vec<Request>) {
    let started = std::time::Instant::now();
    let refs: Vec<(i64, &[NewPoint])> = group.iter().map(|r| (r.thing_seq, r.points.as_slice())).collect();
    let results = match commit_with_retries(pool, &refs).await {
        Ok(results) => results,
        Err(e) => {
            let e = db_err(e);
            if refs.len() > 1 && !matches!(e, Error::Unavailable(_) | Error::InsufficientStorage(_)) {
                tracing::debug!(error = %e, "group commit failed; committing appends one by one");
                let mut results = Vec::with_capacity(refs.len());
                for one in &refs {
                    let r = commit_with_retries(pool, std::slice::from_ref(one)).await;
                    results.push(match r {
                        Ok(mut r) => r.pop().unwrap_or_else(|| Err(Error::internal("no answer for an append"))),
                        Err(e) => Err(db_err(e)),
                    });
                }
                results
            } else {
                refs.iter().map(|_| Err(copy_error(&e))).collect()
            }
        }
    };
    crate::metrics::group_commit("postgres", refs.len(), crate::metrics::committed_of(&results), started.elapsed());
    for (request, result) in group.into_iter().zip(results) {
        let _ = request.reply.send(result);
    }
}

/// The same error again, for each request of a failed group.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::InsufficientStorage(m) => Error::InsufficientStorage(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}

/// Whether the group is worth trying again: a deadlock, a serialization failure, a key conflict
/// (a datetime taken meanwhile: the next try reads it), or a thing deleted while its timeline
/// was being created (the next try answers 404).
fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505" | "23503"))
        }
        _ => false,
    }
}

async fn commit_with_retries(
    pool: &PgPool,
    group: &[(i64, &[NewPoint])],
) -> std::result::Result<Vec<Result<Vec<StoredPoint>>>, sqlx::Error> {
    let mut attempt = 1;
    loop {
        match try_commit(pool, group).await {
            Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                tracing::debug!(error = %e, attempt, "timeline group commit conflicted; retrying");
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Why one request of a group is not committed.
enum Fail {
    /// That request alone is refused (400, 404); the others go on.
    Refused(Error),
    /// The database failed: the whole group is rolled back.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

/// One transaction for the whole group; per request its stored points or its refusal.
async fn try_commit(
    pool: &PgPool,
    group: &[(i64, &[NewPoint])],
) -> std::result::Result<Vec<Result<Vec<StoredPoint>>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut pairs: Vec<(i64, &str)> =
        group.iter().flat_map(|(seq, points)| points.iter().map(move |p| (*seq, p.key.as_str()))).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let seqs: Vec<i64> = pairs.iter().map(|p| p.0).collect();
    let keys: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    // Timelines of things that exist; a thing deleted meanwhile gets none (its requests: 404).
    sqlx::query(
        "INSERT INTO timelines (thing_seq, key) SELECT u.s, u.k FROM unnest($1::bigint[], $2::text[]) AS u(s, k) \
         WHERE EXISTS (SELECT 1 FROM things WHERE seq = u.s) ON CONFLICT (thing_seq, key) DO NOTHING",
    )
    .bind(&seqs)
    .bind(&keys)
    .execute(&mut *tx)
    .await?;
    let rows = sqlx::query(
        "SELECT t.id, t.thing_seq, t.key, t.newest_ts FROM timelines t \
         WHERE (t.thing_seq, t.key) IN (SELECT * FROM unnest($1::bigint[], $2::text[])) \
         ORDER BY t.thing_seq, t.id FOR NO KEY UPDATE OF t",
    )
    .bind(&seqs)
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    // (thing, key) → timeline id; timeline id → (thing, newest datetime stored, as in the row).
    let mut ids: HashMap<i64, HashMap<String, i64>> = HashMap::new();
    let mut newest: HashMap<i64, (i64, Option<i64>)> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id")?;
        let seq: i64 = row.try_get("thing_seq")?;
        ids.entry(seq).or_default().insert(row.try_get("key")?, id);
        newest.insert(id, (seq, row.try_get("newest_ts")?));
    }
    // Timelines whose newest datetime is not recorded (new ones, or copied from another store).
    let unknown: Vec<(i64, i64)> =
        newest.iter().filter(|(_, (_, n))| n.is_none()).map(|(id, (seq, _))| (*seq, *id)).collect();
    let mut last: HashMap<i64, i64> = newest.iter().filter_map(|(id, (_, n))| n.map(|n| (*id, n))).collect();
    if !unknown.is_empty() {
        let found: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT u.tl, (SELECT max(p.ts) FROM points p WHERE p.thing_seq = u.s AND p.timeline_id = u.tl) \
             FROM unnest($1::bigint[], $2::bigint[]) AS u(s, tl)",
        )
        .bind(unknown.iter().map(|u| u.0).collect::<Vec<_>>())
        .bind(unknown.iter().map(|u| u.1).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for (id, max) in found {
            last.insert(id, max.unwrap_or(i64::MIN));
        }
    }

    let mut assigner = Assigner { ids: &ids, last, taken: HashSet::new(), rows: Vec::new(), now: now_ms() };
    let mut results = Vec::with_capacity(group.len());
    for (seq, points) in group {
        match assigner.assign(&mut tx, *seq, points).await {
            Ok(stored) => results.push(Ok(stored)),
            Err(Fail::Refused(e)) => results.push(Err(e)),
            Err(Fail::Db(e)) => return Err(e),
        }
    }
    if !assigner.rows.is_empty() {
        let rows = &assigner.rows;
        sqlx::query(
            "INSERT INTO points (thing_seq, timeline_id, ts, value) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[])",
        )
        .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    // The newest datetime of every timeline whose record changed.
    let changed: Vec<(i64, i64, i64)> = assigner
        .last
        .iter()
        .filter(|(_, n)| **n != i64::MIN)
        .filter_map(|(id, n)| newest.get(id).filter(|(_, before)| *before != Some(*n)).map(|(seq, _)| (*seq, *id, *n)))
        .collect();
    if !changed.is_empty() {
        sqlx::query(
            "UPDATE timelines t SET newest_ts = u.n FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(s, tl, n) \
             WHERE t.thing_seq = u.s AND t.id = u.tl",
        )
        .bind(changed.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(changed.iter().map(|c| c.1).collect::<Vec<_>>())
        .bind(changed.iter().map(|c| c.2).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(results)
}

fn now_ms() -> i64 {
    thingline_core::time::now_ms()
}

/// Assigns distinct datetimes to the requests of one group, collecting the rows to insert.
struct Assigner<'g> {
    /// thing → key → timeline id (the timelines locked for this group).
    ids: &'g HashMap<i64, HashMap<String, i64>>,
    /// timeline id → newest datetime stored or taken in this group (`i64::MIN`: none).
    last: HashMap<i64, i64>,
    /// Datetimes taken in this group (not inserted yet).
    taken: HashSet<(i64, i64)>,
    /// (thing, timeline, datetime, value) to insert.
    rows: Vec<(i64, i64, i64, &'g str)>,
    now: i64,
}

impl<'g> Assigner<'g> {
    /// All of a request's points, or none (a refusal leaves the group as it was before it).
    async fn assign(
        &mut self,
        conn: &mut PgConnection,
        seq: i64,
        points: &'g [NewPoint],
    ) -> std::result::Result<Vec<StoredPoint>, Fail> {
        let rows = self.rows.len();
        let mut undo: Vec<(i64, i64, i64)> = Vec::new();
        let result = self.assign_all(conn, seq, points, &mut undo).await;
        if result.is_err() {
            self.rows.truncate(rows);
            for (tl, ts, before) in undo.into_iter().rev() {
                self.taken.remove(&(tl, ts));
                self.last.insert(tl, before);
            }
        }
        result
    }

    async fn assign_all(
        &mut self,
        conn: &mut PgConnection,
        seq: i64,
        points: &'g [NewPoint],
        undo: &mut Vec<(i64, i64, i64)>,
    ) -> std::result::Result<Vec<StoredPoint>, Fail> {
        let mut stored = Vec::with_capacity(points.len());
        for p in points {
            if let Some(t) = p.ts
                && !(MIN_MS..=MAX_MS).contains(&t)
            {
                return Err(Fail::Refused(Error::bad_request(format!(
                    "{}: datetime {t} ms is outside the supported range, {} to {}",
                    p.key,
                    format_datetime(MIN_MS),
                    format_datetime(MAX_MS)
                ))));
            }
            let Some(&tl) = self.ids.get(&seq).and_then(|keys| keys.get(p.key.as_str())) else {
                return Err(Fail::Refused(Error::not_found("Thing not found")));
            };
            let last = self.last.get(&tl).copied().unwrap_or(i64::MIN);
            let ts = match p.ts {
                None if last >= MAX_MS => {
                    return Err(Fail::Refused(Error::bad_request(format!(
                        "{}: the newest value of this key is at {}, the latest supported datetime: a value \
                         without datetime cannot be stamped after it; send a datetime",
                        p.key,
                        format_datetime(MAX_MS)
                    ))));
                }
                None => self.now.max(last.saturating_add(1)),
                Some(t) if t > last => t,
                Some(asked) => self.next_free(conn, seq, tl, asked, last, &p.key).await?,
            };
            undo.push((tl, ts, last));
            self.taken.insert((tl, ts));
            self.last.insert(tl, last.max(ts));
            self.rows.push((seq, tl, ts, p.value.as_str()));
            stored.push(StoredPoint { key: p.key.clone(), ts, value: p.value.clone() });
        }
        Ok(stored)
    }

    /// The first datetime from `asked` on that is neither stored (up to `last`, the newest) nor
    /// taken in this group; refused when none is left up to [`MAX_MS`].
    async fn next_free(
        &self,
        conn: &mut PgConnection,
        seq: i64,
        tl: i64,
        asked: i64,
        last: i64,
        key: &str,
    ) -> std::result::Result<i64, Fail> {
        let mut t = asked;
        'fetch: loop {
            let stored: Vec<i64> = if t <= last {
                sqlx::query_scalar(
                    "SELECT ts FROM points WHERE thing_seq = $1 AND timeline_id = $2 AND ts >= $3 AND ts <= $4 \
                     ORDER BY ts LIMIT $5",
                )
                .bind(seq)
                .bind(tl)
                .bind(t)
                .bind(last)
                .bind(FREE_SCAN)
                .fetch_all(&mut *conn)
                .await?
            } else {
                Vec::new()
            };
            let more = stored.len() as i64 == FREE_SCAN;
            let mut i = 0;
            loop {
                while i < stored.len() && stored[i] < t {
                    i += 1;
                }
                if i == stored.len() && more {
                    continue 'fetch;
                }
                let is_stored = stored.get(i) == Some(&t);
                if !is_stored && !self.taken.contains(&(tl, t)) {
                    return Ok(t);
                }
                if t >= MAX_MS {
                    return Err(Fail::Refused(Error::bad_request(format!(
                        "{key}: datetime {} is taken, and so is every millisecond after it up to {}, the \
                         latest supported datetime: this value has no free datetime left",
                        format_datetime(asked),
                        format_datetime(MAX_MS)
                    ))));
                }
                t += 1;
            }
        }
    }
}

#[async_trait]
impl TimelineStore for PgStore {
    async fn append(&self, thing_seq: i64, points: Vec<NewPoint>) -> Result<Vec<StoredPoint>> {
        if points.is_empty() {
            return Ok(Vec::new());
        }
        self.writers.append(thing_seq, points).await
    }

    async fn read(&self, thing_seq: i64, key: &str, q: &TimelineQuery) -> Result<Option<Vec<StoredPoint>>> {
        // The page newest first: in each partition a backwards range of the primary key, the
        // partitions newest first, stopping at `limit` (one index probe for `limit=1`).
        let rows = sqlx::query(
            "SELECT t.id, t.newest_ts, p.ts, p.value FROM timelines t \
             LEFT JOIN LATERAL (SELECT ts, value FROM points WHERE thing_seq = $1 AND timeline_id = t.id \
               AND ts >= $3 AND ts < $4 ORDER BY ts DESC LIMIT $5) p ON true \
             WHERE t.thing_seq = $1 AND t.key = $2 ORDER BY p.ts DESC",
        )
        .bind(thing_seq)
        .bind(key)
        .bind(q.start.unwrap_or(i64::MIN))
        .bind(q.end.unwrap_or(i64::MAX))
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(first) = rows.first() else { return Ok(None) };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let ts: Option<i64> = row.try_get("ts").map_err(db_err)?;
            let value: Option<String> = row.try_get("value").map_err(db_err)?;
            if let (Some(ts), Some(value)) = (ts, value) {
                out.push(StoredPoint { key: key.to_owned(), ts, value });
            }
        }
        if !out.is_empty() {
            return Ok(Some(out));
        }
        // Nothing in range. A timeline row without values (its append failed or was refused)
        // reads as never written unless some value exists outside the range.
        let newest: Option<i64> = first.try_get("newest_ts").map_err(db_err)?;
        if newest.is_some() {
            return Ok(Some(out));
        }
        let tl: i64 = first.try_get("id").map_err(db_err)?;
        let any: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM points WHERE thing_seq = $1 AND timeline_id = $2 LIMIT 1")
                .bind(thing_seq)
                .bind(tl)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(any.map(|_| out))
    }

    async fn keys(&self, thing_seq: i64) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT t.key FROM timelines t WHERE t.thing_seq = $1 AND (t.newest_ts IS NOT NULL \
             OR EXISTS (SELECT 1 FROM points p WHERE p.thing_seq = $1 AND p.timeline_id = t.id)) ORDER BY t.key",
        )
        .bind(thing_seq)
        .fetch_all(&self.pool)
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
        // One snapshot for the buckets and the values.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db_err)?;
        let tl: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT id, newest_ts FROM timelines WHERE thing_seq = $1 AND key = $2")
                .bind(thing_seq)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some((tl, newest)) = tl else {
            tx.commit().await.map_err(db_err)?;
            return Ok(None);
        };
        // One pass over the range: the buckets with their counts (a bucket of non-numeric values
        // only counts them). Bucket k holds [start + k * width, start + (k + 1) * width); the
        // subtraction cannot overflow (the window lies within the supported datetimes).
        let buckets = match Window::new(start_ms, end_ms, points) {
            Some(w) => {
                // The bucket is computed behind its own `OFFSET 0`: PostgreSQL then has no
                // statistics for it and expects few groups (a hash aggregate over the rows as they
                // come), where the statistics of `ts` would have it expect one group per value
                // and sort them all first.
                let sql = format!(
                    "SELECT b, count(x), count(*), min(x), max(x), avg(x) \
                     FROM (SELECT $3 + ((ts - $3) / $5) * $5 AS b, x FROM ({NUMERIC}) v OFFSET 0) w \
                     GROUP BY b ORDER BY b"
                );
                let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(thing_seq)
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
                    let sql = format!("SELECT ts, x FROM ({NUMERIC}) v WHERE x IS NOT NULL ORDER BY ts");
                    let values: Vec<(i64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(thing_seq)
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
                let any = match newest {
                    Some(_) => true,
                    None => sqlx::query_scalar::<_, i32>(
                        "SELECT 1 FROM points WHERE thing_seq = $1 AND timeline_id = $2 LIMIT 1",
                    )
                    .bind(thing_seq)
                    .bind(tl)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .is_some(),
                };
                any.then(empty)
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(series)
    }
}
