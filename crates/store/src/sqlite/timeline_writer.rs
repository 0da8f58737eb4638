//! Group commit for timeline appends. SQLite has one writer, so one task owns one connection and
//! takes every pending append from a channel, commits them in one transaction and only then
//! answers each caller: an acknowledged value is durable, and many small writes share one fsync.
//!
//! The writer also keeps the datetimes of each timeline distinct: a value stamped by the server gets
//! `max(now, last + 1 ms)`, and an explicit datetime that is already taken moves forward to the next
//! free millisecond. That is what makes paging by `endDate` exact. No datetime is ever assigned
//! past [`MAX_MS`] (9999-12-31T23:59:59.999Z, the last instant the wire format writes with four
//! digits and the parsers accept): a request that would need one is a 400 saying why, and none of
//! it is stored; the other requests of its group are answered on their own.

use std::collections::{HashMap, HashSet};

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use thingline_core::time::{MAX_MS, MIN_MS, format_datetime};
use thingline_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::CommitGate;
use super::recovery::OwnedConnection;
use super::{db_err, returned};
use crate::{NewPoint, StoredPoint};

/// thing seq → key → timeline id.
type Timelines = HashMap<i64, HashMap<String, i64>>;

/// Most appends committed in one transaction.
const MAX_OPS_PER_COMMIT: usize = 512;
/// Most values committed in one transaction (a single larger request still commits alone).
const MAX_POINTS_PER_COMMIT: usize = 20_000;
/// Queue depth in front of the writer; callers wait (back-pressure) when it is full.
const QUEUE: usize = 4096;
/// Forget cached per-timeline state beyond this many timelines (it reloads on demand).
const MAX_CACHED_TIMELINES: usize = 1_000_000;

enum Op {
    Append { thing_seq: i64, points: Vec<NewPoint>, reply: oneshot::Sender<Result<Vec<StoredPoint>>> },
    DeleteThing { seq: i64, reply: oneshot::Sender<Result<bool>> },
    Close { reply: oneshot::Sender<()> },
}

/// The handle the store uses to talk to the writer task.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Op>,
}

impl WriterHandle {
    pub(crate) async fn append(&self, thing_seq: i64, points: Vec<NewPoint>) -> Result<Vec<StoredPoint>> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Append { thing_seq, points, reply }).await?;
        rx.await.map_err(|_| closed())?
    }

    pub(crate) async fn delete_thing(&self, seq: i64) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::DeleteThing { seq, reply }).await?;
        rx.await.map_err(|_| closed())?
    }

    /// Commits what is queued, then stops the writer.
    pub(crate) async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Op::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, op: Op) -> Result<()> {
        self.tx.send(op).await.map_err(|_| closed())
    }
}

fn closed() -> Error {
    Error::Unavailable("the store is shutting down".into())
}

pub(crate) fn spawn(conn: OwnedConnection, gate: CommitGate) -> WriterHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(Writer { conn, gate, timelines: HashMap::new(), last_ts: HashMap::new() }.run(rx));
    WriterHandle { tx }
}

struct Writer {
    /// Replaced before the next write when a failed transaction left it unusable.
    conn: OwnedConnection,
    /// Passed before each commit: a forced WAL checkpoint holds the writer here.
    gate: CommitGate,
    /// thing seq → key → timeline id.
    timelines: Timelines,
    /// timeline id → (oldest, newest) datetime stored.
    last_ts: HashMap<i64, (i64, i64)>,
}

struct PendingAppend {
    thing_seq: i64,
    points: Vec<NewPoint>,
    reply: oneshot::Sender<Result<Vec<StoredPoint>>>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut close_reply = None;
        while let Some(first) = rx.recv().await {
            let mut group = Vec::new();
            let mut count = 0usize;
            let mut next = Some(first);
            while let Some(op) = next.take() {
                match op {
                    Op::Append { thing_seq, points, reply } => {
                        count += points.len();
                        group.push(PendingAppend { thing_seq, points, reply });
                    }
                    Op::DeleteThing { seq, reply } => {
                        // Keep order: commit what came before, then delete.
                        self.commit_group(std::mem::take(&mut group)).await;
                        count = 0;
                        let _ = reply.send(self.delete_thing(seq).await);
                    }
                    Op::Close { reply } => {
                        close_reply = Some(reply);
                        break;
                    }
                }
                if group.len() >= MAX_OPS_PER_COMMIT || count >= MAX_POINTS_PER_COMMIT {
                    break;
                }
                next = rx.try_recv().ok();
            }
            self.commit_group(group).await;
            if close_reply.is_some() {
                break;
            }
        }
        // Drain anything still queued so no caller is left waiting without an answer.
        rx.close();
        let mut rest = Vec::new();
        while let Ok(op) = rx.try_recv() {
            match op {
                Op::Append { thing_seq, points, reply } => rest.push(PendingAppend { thing_seq, points, reply }),
                Op::DeleteThing { seq, reply } => {
                    let _ = reply.send(self.delete_thing(seq).await);
                }
                Op::Close { reply } => {
                    let _ = reply.send(());
                }
            }
        }
        self.commit_group(rest).await;
        self.conn.close().await;
        if let Some(reply) = close_reply {
            let _ = reply.send(());
        }
        tracing::debug!("timeline writer stopped");
    }

    /// Commits a group in one transaction. If the transaction fails as a whole, each append is
    /// retried alone so that one bad request cannot fail the others.
    async fn commit_group(&mut self, group: Vec<PendingAppend>) {
        if group.is_empty() {
            return;
        }
        let _open = self.gate.open().await;
        let started = std::time::Instant::now();
        let appends = group.len();
        let mut committed = 0;
        self.conn.ready().await;
        if group.len() == 1 {
            for p in group {
                let r = self.commit_one(p.thing_seq, &p.points).await;
                committed += r.as_ref().map_or(0, Vec::len);
                let _ = p.reply.send(r);
            }
            crate::metrics::group_commit("sqlite", appends, committed, started.elapsed());
            return;
        }
        match self.try_commit(&group).await {
            Ok(results) => {
                committed = crate::metrics::committed_of(&results);
                for (p, r) in group.into_iter().zip(results) {
                    let _ = p.reply.send(r);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "group commit failed; committing appends one by one");
                self.forget_cache();
                for p in group {
                    let r = self.commit_one(p.thing_seq, &p.points).await;
                    committed += r.as_ref().map_or(0, Vec::len);
                    let _ = p.reply.send(r);
                }
            }
        }
        crate::metrics::group_commit("sqlite", appends, committed, started.elapsed());
    }

    async fn commit_one(&mut self, thing_seq: i64, points: &[NewPoint]) -> Result<Vec<StoredPoint>> {
        let result = async {
            let mut assigner = Assigner::new(&mut self.timelines, &mut self.last_ts);
            let stored = assigner.assign(self.conn.get(), thing_seq, points).await?;
            insert_rows(self.conn.get(), &assigner.rows).await?;
            Ok(stored)
        }
        .await;
        if result.as_ref().is_err_and(|e| !is_refusal(e)) {
            self.forget_cache();
        }
        result
    }

    /// Commits a whole group with ONE statement: a single `INSERT … SELECT … FROM json_each(?)`
    /// in autocommit mode is atomic and durable on return, so the group costs one round trip to
    /// SQLite and one WAL sync. (Resolving a new timeline or its newest datetime may take a query
    /// first; a timeline row without values is harmless: it reads as never written.) A request
    /// refused while its datetimes are assigned ([`is_refusal`]) gets its own error and leaves
    /// nothing in the group. If anything else fails, nothing of the group was inserted and the
    /// caller commits each append alone, so each gets its own answer.
    async fn try_commit(&mut self, group: &[PendingAppend]) -> Result<Vec<Result<Vec<StoredPoint>>>> {
        let mut assigner = Assigner::new(&mut self.timelines, &mut self.last_ts);
        let mut results = Vec::with_capacity(group.len());
        for p in group {
            match assigner.assign(self.conn.get(), p.thing_seq, &p.points).await {
                Err(e) if is_refusal(&e) => results.push(Err(e)),
                other => results.push(Ok(other?)),
            }
        }
        insert_rows(self.conn.get(), &assigner.rows).await?;
        Ok(results)
    }

    async fn delete_thing(&mut self, seq: i64) -> Result<bool> {
        let _open = self.gate.open().await;
        let result = async {
            let (conn, _) = self.conn.ready().await;
            let mut tx = conn.begin().await.map_err(db_err)?;
            sqlx::query("DELETE FROM points WHERE timeline_id IN (SELECT id FROM timelines WHERE thing_seq = ?)")
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("DELETE FROM timelines WHERE thing_seq = ?")
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let gone = sqlx::query("DELETE FROM things WHERE seq = ?")
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected()
                > 0;
            tx.commit().await.map_err(db_err)?;
            Ok(gone)
        }
        .await;
        self.forget_cache();
        result
    }

    fn forget_cache(&mut self) {
        self.timelines.clear();
        self.last_ts.clear();
    }
}

/// Whether an append's error refuses that request alone (the database did not fail): a datetime
/// that cannot be assigned (400), a thing deleted meanwhile (404).
fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::BadRequest(_) | Error::NotFound(_))
}

/// Resolves timelines and assigns distinct datetimes for the appends of one transaction,
/// collecting the rows to insert.
struct Assigner<'c, 'p> {
    timelines: &'c mut Timelines,
    last_ts: &'c mut HashMap<i64, (i64, i64)>,
    /// Datetimes taken in this group but not inserted yet (every one lies within its timeline's
    /// cached (oldest, newest) range, so a datetime outside it is free without looking).
    taken: HashSet<(i64, i64)>,
    rows: Vec<(i64, i64, &'p str)>,
    /// What the request being assigned changed: (timeline, datetime taken, the timeline's range
    /// before), taken back if the request is refused.
    undo: Vec<(i64, i64, (i64, i64))>,
    now: i64,
}

impl<'c, 'p> Assigner<'c, 'p> {
    fn new(timelines: &'c mut Timelines, last_ts: &'c mut HashMap<i64, (i64, i64)>) -> Self {
        if last_ts.len() > MAX_CACHED_TIMELINES {
            timelines.clear();
            last_ts.clear();
        }
        let now = thingline_core::time::now_ms();
        Assigner { timelines, last_ts, taken: HashSet::new(), rows: Vec::new(), undo: Vec::new(), now }
    }

    /// Assigns the datetimes of one request's points and queues their rows: all of them, or none
    /// (an error leaves the group as it was before this request).
    async fn assign(
        &mut self,
        conn: &mut SqliteConnection,
        thing_seq: i64,
        points: &'p [NewPoint],
    ) -> Result<Vec<StoredPoint>> {
        let rows = self.rows.len();
        self.undo.clear();
        let result = self.assign_all(conn, thing_seq, points).await;
        if result.is_err() {
            self.rows.truncate(rows);
            for (tl, ts, before) in self.undo.drain(..).rev() {
                self.taken.remove(&(tl, ts));
                self.last_ts.insert(tl, before);
            }
        }
        result
    }

    async fn assign_all(
        &mut self,
        conn: &mut SqliteConnection,
        thing_seq: i64,
        points: &'p [NewPoint],
    ) -> Result<Vec<StoredPoint>> {
        let mut stored = Vec::with_capacity(points.len());
        for p in points {
            if let Some(t) = p.ts
                && !(MIN_MS..=MAX_MS).contains(&t)
            {
                return Err(Error::bad_request(format!(
                    "{}: datetime {t} ms is outside the supported range, {} to {}",
                    p.key,
                    format_datetime(MIN_MS),
                    format_datetime(MAX_MS)
                )));
            }
            let tl = timeline_id(conn, self.timelines, thing_seq, &p.key).await?;
            let (first, last) = match self.last_ts.get(&tl) {
                Some(v) => *v,
                None => {
                    let row: (Option<i64>, Option<i64>) =
                        sqlx::query_as("SELECT MIN(ts), MAX(ts) FROM points WHERE timeline_id = ?")
                            .bind(tl)
                            .fetch_one(&mut *conn)
                            .await
                            .map_err(db_err)?;
                    let v = match row {
                        (Some(a), Some(b)) => (a, b),
                        _ => (i64::MAX, i64::MIN),
                    };
                    self.last_ts.insert(tl, v);
                    v
                }
            };
            let ts = match p.ts {
                None if last >= MAX_MS => {
                    return Err(Error::bad_request(format!(
                        "{}: the newest value of this key is at {}, the latest supported datetime: a value \
                         without datetime cannot be stamped after it; send a datetime",
                        p.key,
                        format_datetime(MAX_MS)
                    )));
                }
                None => self.now.max(last.saturating_add(1)),
                Some(t) if t > last => t,
                // Older than anything stored or taken: free (seeding history backwards).
                Some(t) if t < first => t,
                Some(asked) => {
                    // A backfill inside the stored range: move forward past datetimes taken here
                    // or already stored, never past the supported range.
                    let mut t = asked;
                    while self.taken.contains(&(tl, t)) || (t <= last && exists(conn, tl, t).await?) {
                        if t >= MAX_MS {
                            return Err(Error::bad_request(format!(
                                "{}: datetime {} is taken, and so is every millisecond after it up to {}, the \
                                 latest supported datetime: this value has no free datetime left",
                                p.key,
                                format_datetime(asked),
                                format_datetime(MAX_MS)
                            )));
                        }
                        t += 1;
                    }
                    t
                }
            };
            self.undo.push((tl, ts, (first, last)));
            self.taken.insert((tl, ts));
            self.last_ts.insert(tl, (first.min(ts), last.max(ts)));
            self.rows.push((tl, ts, p.value.as_str()));
            stored.push(StoredPoint { key: p.key.clone(), ts, value: p.value.clone() });
        }
        Ok(stored)
    }
}

async fn exists(conn: &mut SqliteConnection, tl: i64, ts: i64) -> Result<bool> {
    let hit: Option<i64> = sqlx::query_scalar("SELECT 1 FROM points WHERE timeline_id = ? AND ts = ?")
        .bind(tl)
        .bind(ts)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(hit.is_some())
}

async fn timeline_id(conn: &mut SqliteConnection, timelines: &mut Timelines, thing_seq: i64, key: &str) -> Result<i64> {
    if let Some(id) = timelines.get(&thing_seq).and_then(|keys| keys.get(key)) {
        return Ok(*id);
    }
    let id: sqlx::Result<Vec<i64>> = sqlx::query_scalar(
        "INSERT INTO timelines (thing_seq, key) VALUES (?, ?) \
         ON CONFLICT (thing_seq, key) DO UPDATE SET key = excluded.key RETURNING id",
    )
    .bind(thing_seq)
    .bind(key)
    .fetch_all(&mut *conn)
    .await;
    let id = returned(id).map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => Error::not_found("Thing not found"),
        _ => db_err(e),
    })?;
    timelines.entry(thing_seq).or_default().insert(key.to_owned(), id);
    Ok(id)
}

/// Inserts every row with one statement whatever their number: the rows travel as one JSON
/// array parameter (`[[timeline, ts, "value JSON text"], …]`) expanded by `json_each`. One
/// constant SQL text (one prepared statement), one round trip, atomic in autocommit mode.
async fn insert_rows(conn: &mut SqliteConnection, rows: &[(i64, i64, &str)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut param = String::with_capacity(rows.iter().map(|r| r.2.len() + 32).sum());
    param.push('[');
    for (i, (tl, ts, value)) in rows.iter().enumerate() {
        if i > 0 {
            param.push(',');
        }
        param.push('[');
        param.push_str(&tl.to_string());
        param.push(',');
        param.push_str(&ts.to_string());
        param.push(',');
        // The value's JSON text, as a JSON string: `->> 2` gives back the exact text.
        param.push_str(&serde_json::to_string(value).map_err(Error::internal)?);
        param.push(']');
    }
    param.push(']');
    sqlx::query(
        "INSERT INTO points (timeline_id, ts, value) \
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
    )
    .bind(param)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}
