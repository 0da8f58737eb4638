//! Group commit for object writes. One task owns one connection, takes every pending create,
//! update and delete from a channel, applies each inside its own savepoint of one `BEGIN
//! IMMEDIATE` transaction and commits once: a caller is answered only after the commit (an
//! acknowledged write is durable), and concurrent writers share one fsync. An operation that fails
//! (409, a merged object over the limits) rolls back to its savepoint and fails alone.

use serde_json::{Map, Value};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Sqlite, Transaction};
use thingline_core::classes::{Collection, PreparedObject, merge_object, sort_key};
use thingline_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use super::super::db_err;
use super::sql;

/// Most operations committed in one transaction.
const MAX_OPS_PER_COMMIT: usize = 256;
/// Queue depth in front of the writer; callers wait (back-pressure) when it is full.
const QUEUE: usize = 4096;

enum Op {
    Work(Work),
    Close { reply: oneshot::Sender<()> },
}

/// One write to apply.
enum Work {
    Create { c: Collection, object: PreparedObject, reply: oneshot::Sender<Result<()>> },
    Update { c: Collection, id: String, patch: Map<String, Value>, reply: oneshot::Sender<Result<Option<String>>> },
    Delete { c: Collection, id: String, reply: oneshot::Sender<Result<bool>> },
}

/// What an applied operation answers once the group is committed.
enum Done {
    Create(oneshot::Sender<Result<()>>, Result<()>),
    Update(oneshot::Sender<Result<Option<String>>>, Result<Option<String>>),
    Delete(oneshot::Sender<Result<bool>>, Result<bool>),
}

impl Done {
    fn send(self) {
        match self {
            Done::Create(tx, r) => drop(tx.send(r)),
            Done::Update(tx, r) => drop(tx.send(r)),
            Done::Delete(tx, r) => drop(tx.send(r)),
        }
    }

    /// The group did not commit: every operation reports that failure instead of its result.
    fn fail(self, e: &Error) {
        let e = || match e {
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
            other => Error::internal(other),
        };
        match self {
            Done::Create(tx, _) => drop(tx.send(Err(e()))),
            Done::Update(tx, _) => drop(tx.send(Err(e()))),
            Done::Delete(tx, _) => drop(tx.send(Err(e()))),
        }
    }
}

/// The store's handle to the objects writer task.
#[derive(Clone)]
pub(crate) struct ObjectWriter {
    tx: mpsc::Sender<Op>,
}

fn closed() -> Error {
    Error::Unavailable("the store is shutting down".into())
}

impl ObjectWriter {
    pub(crate) async fn create(&self, c: Collection, object: PreparedObject) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Work(Work::Create { c, object, reply })).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub(crate) async fn update(&self, c: Collection, id: String, patch: Map<String, Value>) -> Result<Option<String>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Work(Work::Update { c, id, patch, reply })).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub(crate) async fn delete(&self, c: Collection, id: String) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Work(Work::Delete { c, id, reply })).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Commits what is queued, then stops the writer.
    pub(crate) async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Op::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the writer on its own connection.
pub(crate) fn spawn(conn: SqliteConnection) -> ObjectWriter {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(conn, rx));
    ObjectWriter { tx }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>) {
    let mut close_reply = None;
    while let Some(first) = rx.recv().await {
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                Op::Close { reply } => {
                    close_reply = Some(reply);
                    break;
                }
                Op::Work(w) => group.push(w),
            }
            if group.len() >= MAX_OPS_PER_COMMIT {
                break;
            }
            next = rx.try_recv().ok();
        }
        commit_group(&mut conn, group).await;
        if close_reply.is_some() {
            break;
        }
    }
    rx.close();
    let mut rest = Vec::new();
    while let Ok(op) = rx.try_recv() {
        match op {
            Op::Close { reply } => drop(reply.send(())),
            Op::Work(w) => rest.push(w),
        }
    }
    commit_group(&mut conn, rest).await;
    let _ = conn.close().await;
    if let Some(reply) = close_reply {
        let _ = reply.send(());
    }
    tracing::debug!("objects writer stopped");
}

async fn commit_group(conn: &mut SqliteConnection, group: Vec<Work>) {
    if group.is_empty() {
        return;
    }
    let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            let e = db_err(e);
            for op in group {
                fail_op(op, &e);
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(group.len());
    for op in group {
        match apply_in_savepoint(&mut tx, op).await {
            Ok(d) => done.push(d),
            Err((d, e)) => {
                // The savepoint itself could not be handled: the transaction is unusable.
                d.fail(&e);
                for d in done {
                    d.fail(&e);
                }
                return;
            }
        }
    }
    match tx.commit().await {
        Ok(()) => done.into_iter().for_each(Done::send),
        Err(e) => {
            let e = db_err(e);
            tracing::warn!(error = %e, "objects group commit failed");
            for d in done {
                d.fail(&e);
            }
        }
    }
}

fn fail_op(op: Work, e: &Error) {
    pending(op).fail(e);
}

/// The answer slot of a work item, before it is applied.
fn pending(op: Work) -> Done {
    match op {
        Work::Create { reply, .. } => Done::Create(reply, Ok(())),
        Work::Update { reply, .. } => Done::Update(reply, Ok(None)),
        Work::Delete { reply, .. } => Done::Delete(reply, Ok(false)),
    }
}

/// Applies one operation in a savepoint: released on success, rolled back on failure (the error
/// becomes the operation's answer). `Err` only when the savepoint itself fails.
async fn apply_in_savepoint(tx: &mut Transaction<'_, Sqlite>, op: Work) -> std::result::Result<Done, (Done, Error)> {
    let mut sp = match tx.begin().await {
        Ok(sp) => sp,
        Err(e) => return Err((pending(op), db_err(e))),
    };
    let (done, ok) = match op {
        Work::Create { c, object, reply } => {
            let r = create(&mut sp, &c, &object).await;
            let ok = r.is_ok();
            (Done::Create(reply, r), ok)
        }
        Work::Update { c, id, patch, reply } => {
            let r = update(&mut sp, &c, &id, patch).await;
            let ok = r.is_ok();
            (Done::Update(reply, r), ok)
        }
        Work::Delete { c, id, reply } => {
            let r = delete(&mut sp, &c, &id).await;
            let ok = r.is_ok();
            (Done::Delete(reply, r), ok)
        }
    };
    let end = if ok { sp.commit().await } else { sp.rollback().await };
    match end {
        Ok(()) => Ok(done),
        Err(e) => Err((done, db_err(e))),
    }
}

async fn create(conn: &mut SqliteConnection, c: &Collection, object: &PreparedObject) -> Result<()> {
    let cid = sql::ensure_collection(conn, c).await?;
    sql::insert_object(conn, cid, object).await
}

async fn update(
    conn: &mut SqliteConnection,
    c: &Collection,
    id: &str,
    patch: Map<String, Value>,
) -> Result<Option<String>> {
    let Some(cid) = sql::collection_id(conn, c).await? else { return Ok(None) };
    let k = sort_key(id);
    let Some(old) = sql::object_body(conn, cid, &k).await? else { return Ok(None) };
    let merged = merge_object(id, &old, patch)?;
    sql::replace_object(conn, cid, &old, &merged).await?;
    Ok(Some(merged.body))
}

async fn delete(conn: &mut SqliteConnection, c: &Collection, id: &str) -> Result<bool> {
    let Some(cid) = sql::collection_id(conn, c).await? else { return Ok(false) };
    let k = sort_key(id);
    let Some(old) = sql::object_body(conn, cid, &k).await? else { return Ok(false) };
    sql::remove_object(conn, cid, &k, &old).await?;
    Ok(true)
}
