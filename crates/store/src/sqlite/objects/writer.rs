//! Group commit for object writes. One task owns one connection, takes every pending create,
//! update and delete from a channel, applies them in one `BEGIN IMMEDIATE` transaction and commits
//! once: a caller is answered only after the commit (an acknowledged write is durable), and
//! concurrent writers share one fsync.
//!
//! No savepoint per operation (two statements each): every client error (409, 404, a merged
//! object over the limits) is detected before the operation writes anything, or by the failing
//! statement itself, which SQLite rolls back alone. Only a database failure leaves an operation
//! half applied; then the whole group is rolled back and every operation in it reports the
//! failure.
//!
//! The writer also owns which fields of each collection are indexed ([`IndexedFields`]): it keeps
//! the index rows of exactly those fields, and changes the set in its own transaction between two
//! groups. A private (`/classes/me`) collection gets a field indexed (objects already stored
//! included) when a read first asks for it, up to [`MAX_INDEXED_FIELDS`]. A shared (`/classes/app`)
//! collection has exactly the fields its app declares for its name ([`IndexDeclarations`], the
//! `apps.indexes` column): from its creation, and again whenever the declaration changes
//! ([`ObjectWriter::sync_shared_indexes`]: declared fields are indexed, others dropped); a read
//! naming another field of it is a 400.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value};
use sqlx::sqlite::SqliteConnection;

use sqlx::Connection;
use thingline_core::classes::{
    Collection, IndexDeclarations, MAX_INDEXED_FIELDS, Owner, PreparedObject, merge_object, sort_key, undeclared,
};
use thingline_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use super::super::checkpoint::CommitGate;
use super::super::db_err;
use super::super::recovery::OwnedConnection;
use super::sql;

/// Most operations committed in one transaction.
const MAX_OPS_PER_COMMIT: usize = 256;
/// Queue depth in front of the writer; callers wait (back-pressure) when it is full.
const QUEUE: usize = 4096;
/// Collection ids remembered by the writer before the cache is emptied.
const MAX_CACHED_COLLECTIONS: usize = 100_000;
/// Apps whose index declarations the writer remembers before that cache is emptied.
const MAX_CACHED_APPS: usize = 10_000;

/// What the writer remembers between groups; emptied whenever a transaction does not commit.
struct Caches {
    /// Collection → id, for collections known to exist in the committed database (or in the
    /// transaction being built).
    cids: HashMap<Collection, i64>,
    /// The indexed fields of each collection (shared with the readers).
    indexed: Arc<IndexedFields>,
    /// App → its index declarations (`apps.indexes`), for the shared collections it creates and
    /// indexes; refreshed from the database by every [`Op::SyncShared`].
    declared: HashMap<String, Arc<IndexDeclarations>>,
}

/// Which top-level fields of each collection are indexed (`object_indexes`): the writer keeps
/// the rows of exactly these fields, and alone changes the set, after its transaction commits;
/// readers ask the writer for a field they need and do not see here. A collection absent here is
/// unknown (loaded from the database on first use), not one without indexes.
#[derive(Default)]
pub(crate) struct IndexedFields {
    by_cid: RwLock<HashMap<i64, Arc<HashSet<String>>>>,
}

impl IndexedFields {
    fn get(&self, cid: i64) -> Option<Arc<HashSet<String>>> {
        self.by_cid.read().get(&cid).cloned()
    }

    fn covers(&self, cid: i64, name: &str) -> bool {
        self.by_cid.read().get(&cid).is_some_and(|s| s.contains(name))
    }

    fn set(&self, cid: i64, names: Arc<HashSet<String>>) {
        let mut map = self.by_cid.write();
        if map.len() >= MAX_CACHED_COLLECTIONS {
            map.clear();
        }
        map.insert(cid, names);
    }

    /// Forgets everything (reloaded from the database on use): after a transaction that set the
    /// fields of a collection it created did not commit.
    fn clear(&self) {
        self.by_cid.write().clear();
    }
}

enum Op {
    Work(Work),
    /// Make the fields a read names (`where`/`sort`, field) indexed in collection `c` (id `cid`),
    /// or refuse them (its own transaction, after the current group).
    Index {
        c: Collection,
        cid: i64,
        names: Vec<(&'static str, String)>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Bring every shared collection of the app in line with its declaration, read anew.
    SyncShared {
        app_id: String,
        reply: oneshot::Sender<Result<()>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
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
        let e = || group_failure(e);
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
    indexed: Arc<IndexedFields>,
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

    /// Whether every field a read names (`where`/`sort`, field) is known to be indexed in
    /// collection `cid`.
    pub(crate) fn all_indexed(&self, cid: i64, names: &[(&'static str, &str)]) -> bool {
        names.iter().all(|(_, name)| self.indexed.covers(cid, name))
    }

    /// Makes sure every field a read names is indexed in collection `c` (id `cid`): in a private
    /// collection a field named for the first time is indexed now (objects already stored
    /// included); in a shared one a field its app does not declare is a 400.
    pub(crate) async fn ensure_indexed(&self, c: &Collection, cid: i64, names: &[(&'static str, &str)]) -> Result<()> {
        if self.all_indexed(cid, names) {
            return Ok(());
        }
        let names = names.iter().map(|(param, name)| (*param, (*name).to_owned())).collect();
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Index { c: c.clone(), cid, names, reply }).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Brings the indexes of every shared collection of `app_id` in line with the app's
    /// declaration as now stored: declared fields are indexed (objects already stored included),
    /// fields no longer declared are dropped. Returns once done.
    pub(crate) async fn sync_shared_indexes(&self, app_id: &str) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::SyncShared { app_id: app_id.to_owned(), reply }).await.map_err(|_| closed())?;
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
pub(crate) fn spawn(conn: OwnedConnection, gate: CommitGate) -> ObjectWriter {
    let (tx, rx) = mpsc::channel(QUEUE);
    let indexed = Arc::new(IndexedFields::default());
    tokio::spawn(run(conn, gate, rx, Arc::clone(&indexed)));
    ObjectWriter { tx, indexed }
}

/// Sets up the one-statement creates on a (new) connection; false when they are unavailable.
async fn prepare_one_statement(conn: &mut SqliteConnection) -> bool {
    match sql::prepare_batch_insert(conn).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "one-statement object creates unavailable; using transactions");
            false
        }
    }
}

/// `gate` is passed before each transaction: a forced WAL checkpoint holds the writer there.
/// Before each, too, a connection that a failed transaction left unusable is replaced.
async fn run(mut conn: OwnedConnection, gate: CommitGate, mut rx: mpsc::Receiver<Op>, indexed: Arc<IndexedFields>) {
    let mut caches = Caches { cids: HashMap::new(), indexed, declared: HashMap::new() };
    let mut one_statement = prepare_one_statement(conn.get()).await;
    let mut close_reply = None;
    let mut index_ops = Vec::new();
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
                op @ (Op::Index { .. } | Op::SyncShared { .. }) => index_ops.push(op),
            }
            if group.len() + index_ops.len() >= MAX_OPS_PER_COMMIT {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !group.is_empty() {
            let _open = gate.open().await;
            let c = ready(&mut conn, &mut one_statement).await;
            commit_group(c, &mut caches, one_statement, group).await;
        }
        for op in index_ops.drain(..) {
            match op {
                Op::Index { c: collection, cid, names, reply } => {
                    let _open = gate.open().await;
                    let c = ready(&mut conn, &mut one_statement).await;
                    let _ = reply.send(ensure_indexed(c, &mut caches, &collection, cid, &names).await);
                }
                Op::SyncShared { app_id, reply } => {
                    let c = ready(&mut conn, &mut one_statement).await;
                    let _ = reply.send(sync_shared(c, &mut caches, &gate, &app_id).await);
                }
                Op::Work(_) | Op::Close { .. } => {}
            }
        }
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
            Op::Index { reply, .. } | Op::SyncShared { reply, .. } => drop(reply.send(Err(closed()))),
        }
    }
    if !rest.is_empty() {
        let _open = gate.open().await;
        let c = ready(&mut conn, &mut one_statement).await;
        commit_group(c, &mut caches, one_statement, rest).await;
    }
    conn.close().await;
    if let Some(reply) = close_reply {
        let _ = reply.send(());
    }
    tracing::debug!("objects writer stopped");
}

/// The writer's connection, ready for a transaction (see [`OwnedConnection::ready`]); a new
/// connection gets the one-statement creates set up again.
async fn ready<'c>(conn: &'c mut OwnedConnection, one_statement: &mut bool) -> &'c mut SqliteConnection {
    let (c, replaced) = conn.ready().await;
    if replaced {
        *one_statement = prepare_one_statement(c).await;
    }
    c
}

/// Whether an operation's error means the database failed (the transaction may hold part of the
/// operation) rather than the request being refused before anything was written.
fn is_database_failure(e: &Error) -> bool {
    matches!(e, Error::Internal(_) | Error::Unavailable(_) | Error::InsufficientStorage(_))
}

/// What every operation of a group that did not commit reports: a failure the client can act on
/// (the store is busy, the disk is full) as it is, anything else as internal.
fn group_failure(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::InsufficientStorage(m) => Error::InsufficientStorage(m.clone()),
        other => Error::internal(other),
    }
}

async fn commit_group(conn: &mut SqliteConnection, caches: &mut Caches, one_statement: bool, group: Vec<Work>) {
    if group.is_empty() {
        return;
    }
    if caches.cids.len() > MAX_CACHED_COLLECTIONS {
        caches.cids.clear();
    }
    let group = if one_statement {
        match creates_in_one_statement(conn, caches, group).await {
            Ok(()) => return,
            Err(group) => group,
        }
    } else {
        group
    };
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
    let mut failure = None;
    // Index rows of the objects created so far, inserted together with one statement: before
    // any update or delete (which read and change index rows) and at the end of the group.
    let mut fields = sql::PendingFields::default();
    let group = match batch_creates(&mut tx, caches, &mut fields, group, &mut done).await {
        Ok(rest) => rest,
        Err(e) => {
            failure = Some(e);
            Vec::new()
        }
    };
    let mut ops = group.into_iter();
    for op in ops.by_ref() {
        if !matches!(op, Work::Create { .. })
            && let Err(e) = fields.flush(&mut tx).await
        {
            failure = Some(group_failure(&e));
            done.push(pending(op));
            break;
        }
        let (d, err) = apply(&mut tx, caches, &mut fields, op).await;
        done.push(d);
        if let Some(e) = err {
            failure = Some(e);
            break;
        }
    }
    // Not applied because the group failed first: they get that failure, not a dropped reply.
    done.extend(ops.map(pending));
    if failure.is_none()
        && let Err(e) = fields.flush(&mut tx).await
    {
        failure = Some(group_failure(&e));
    }
    let outcome = match failure {
        Some(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
        None => tx.commit().await.map_err(db_err),
    };
    match outcome {
        Ok(()) => done.into_iter().for_each(Done::send),
        Err(e) => {
            // A full disk has its own (rate-limited) line; other failures are rare.
            if matches!(e, Error::InsufficientStorage(_)) {
                tracing::debug!(error = %e, "objects group commit failed");
            } else {
                tracing::warn!(error = %e, "objects group commit failed");
            }
            // A rolled-back group may have cached ids of collections it created, and the
            // declared fields of shared ones among them (their ids may be given again).
            caches.cids.clear();
            caches.indexed.clear();
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

/// The fast path of a group made only of creates without float fields (what a create-heavy load
/// produces): every object and index row in one autocommit statement (see
/// [`sql::prepare_batch_insert`]). Gives the group back when it does not apply or fails (a taken
/// `_id`: nothing was inserted), for the transaction path to answer each operation.
async fn creates_in_one_statement(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    mut group: Vec<Work>,
) -> std::result::Result<(), Vec<Work>> {
    if !group.iter().all(|op| matches!(op, Work::Create { .. })) {
        return Err(group);
    }
    let mut cid_of = Vec::with_capacity(group.len());
    for op in group.iter_mut() {
        let Work::Create { c, object, .. } = op else { break };
        match prepare_create(conn, caches, c, object).await {
            Ok(cid) => cid_of.push(cid),
            Err(_) => break,
        }
    }
    let eligible = |op: &Work| matches!(op, Work::Create { object, .. } if !sql::has_float(object));
    if cid_of.len() < group.len() || !group.iter().all(eligible) {
        return Err(group);
    }
    let batch: Vec<(i64, &PreparedObject)> = group
        .iter()
        .zip(&cid_of)
        .filter_map(|(op, cid)| match op {
            Work::Create { object, .. } => Some((*cid, object)),
            _ => None,
        })
        .collect();
    if sql::insert_batch(conn, &batch).await.is_err() {
        return Err(group);
    }
    for op in group {
        if let Work::Create { reply, .. } = op {
            let _ = reply.send(Ok(()));
        }
    }
    Ok(())
}

/// A group made only of creates (what a create-heavy load produces) inserts all its objects with
/// one statement. Returns the operations still to apply one by one: none when the batch went in,
/// all of them when it could not (an `_id` taken, or twice in the group: SQLite rolled that one
/// statement back alone, and the one-by-one path gives each create its own answer).
async fn batch_creates(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    fields: &mut sql::PendingFields,
    mut group: Vec<Work>,
    done: &mut Vec<Done>,
) -> Result<Vec<Work>> {
    if group.len() < 2 || !group.iter().all(|op| matches!(op, Work::Create { .. })) {
        return Ok(group);
    }
    // On a failure every operation of the group goes into `done`, to get the group's failure.
    let mut cid_of = Vec::with_capacity(group.len());
    for i in 0..group.len() {
        let Work::Create { c, object, .. } = &mut group[i] else { continue };
        match prepare_create(conn, caches, c, object).await {
            Ok(cid) => cid_of.push(cid),
            Err(e) => {
                done.extend(group.into_iter().map(pending));
                return Err(e);
            }
        }
    }
    let rows: Vec<(i64, &str, &str)> = group
        .iter()
        .zip(&cid_of)
        .filter_map(|(op, cid)| match op {
            Work::Create { object, .. } => Some((*cid, object.key.as_str(), object.body.as_str())),
            _ => None,
        })
        .collect();
    match sql::insert_object_rows(conn, &rows).await {
        Ok(true) => {}
        Ok(false) => return Ok(group),
        Err(e) => {
            done.extend(group.into_iter().map(pending));
            return Err(e);
        }
    }
    let mut ops = group.into_iter().zip(cid_of);
    while let Some((op, cid)) = ops.next() {
        if let Work::Create { object, reply, .. } = op {
            let added = fields.add(conn, cid, object).await;
            done.push(Done::Create(reply, Ok(())));
            if let Err(e) = added {
                done.extend(ops.map(|(op, _)| pending(op)));
                return Err(e);
            }
        }
    }
    Ok(Vec::new())
}

/// Applies one operation; the second value is a database failure that dooms the group.
async fn apply(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    fields: &mut sql::PendingFields,
    op: Work,
) -> (Done, Option<Error>) {
    fn check<T>(r: &Result<T>) -> Option<Error> {
        match r {
            Err(e) if is_database_failure(e) => Some(group_failure(e)),
            _ => None,
        }
    }
    match op {
        Work::Create { c, object, reply } => {
            let r = create(conn, caches, fields, &c, object).await;
            let fail = check(&r);
            (Done::Create(reply, r), fail)
        }
        Work::Update { c, id, patch, reply } => {
            let r = update(conn, caches, &c, &id, patch).await;
            let fail = check(&r);
            (Done::Update(reply, r), fail)
        }
        Work::Delete { c, id, reply } => {
            let r = delete(conn, caches, &c, &id).await;
            let fail = check(&r);
            (Done::Delete(reply, r), fail)
        }
    }
}

/// The id of a collection, from the cache or the database.
async fn known_collection(conn: &mut SqliteConnection, caches: &mut Caches, c: &Collection) -> Result<Option<i64>> {
    if let Some(id) = caches.cids.get(c) {
        return Ok(Some(*id));
    }
    let id = sql::collection_id(conn, c).await?;
    if let Some(id) = id {
        caches.cids.insert(c.clone(), id);
    }
    Ok(id)
}

/// The indexed fields of collection `cid`, from the cache or the database.
async fn indexed_of(conn: &mut SqliteConnection, caches: &mut Caches, cid: i64) -> Result<Arc<HashSet<String>>> {
    if let Some(names) = caches.indexed.get(cid) {
        return Ok(names);
    }
    let names = Arc::new(sql::indexed_names(conn, cid).await?);
    caches.indexed.set(cid, Arc::clone(&names));
    Ok(names)
}

/// The id of the collection a create goes to (made on first use), with the object's index rows
/// narrowed to the collection's indexed fields.
async fn prepare_create(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    c: &Collection,
    object: &mut PreparedObject,
) -> Result<i64> {
    let cid = match known_collection(conn, caches, c).await? {
        Some(id) => id,
        None => {
            // A new collection (the writer alone creates them): a shared one is indexed on the
            // fields its app declares for its name from the start, a private one on none.
            let declared = match c.owner {
                Owner::App => declared_of(conn, caches, &c.app_id).await?.fields_of(&c.path).to_vec(),
                Owner::User(_) => Vec::new(),
            };
            let id = sql::ensure_collection(conn, c).await?;
            sql::record_indexes(conn, id, &declared).await?;
            caches.cids.insert(c.clone(), id);
            caches.indexed.set(id, Arc::new(declared.into_iter().collect()));
            id
        }
    };
    let indexed = indexed_of(conn, caches, cid).await?;
    object.fields.retain(|(name, _)| indexed.contains(name));
    Ok(cid)
}

async fn create(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    fields: &mut sql::PendingFields,
    c: &Collection,
    mut object: PreparedObject,
) -> Result<()> {
    let cid = prepare_create(conn, caches, c, &mut object).await?;
    sql::insert_object_row(conn, cid, &object).await?;
    fields.add(conn, cid, object).await
}

async fn update(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    c: &Collection,
    id: &str,
    patch: Map<String, Value>,
) -> Result<Option<String>> {
    let Some(cid) = known_collection(conn, caches, c).await? else { return Ok(None) };
    let k = sort_key(id);
    let Some(old) = sql::object_body(conn, cid, &k).await? else { return Ok(None) };
    let indexed = indexed_of(conn, caches, cid).await?;
    let mut merged = merge_object(id, &old, patch)?;
    merged.fields.retain(|(name, _)| indexed.contains(name));
    sql::replace_object(conn, cid, &indexed, &old, &merged).await?;
    Ok(Some(merged.body))
}

async fn delete(conn: &mut SqliteConnection, caches: &mut Caches, c: &Collection, id: &str) -> Result<bool> {
    let Some(cid) = known_collection(conn, caches, c).await? else { return Ok(false) };
    let k = sort_key(id);
    let Some(old) = sql::object_body(conn, cid, &k).await? else { return Ok(false) };
    let indexed = indexed_of(conn, caches, cid).await?;
    sql::remove_object(conn, cid, &indexed, &k, &old).await?;
    Ok(true)
}

/// The index declarations of an app, from the cache or the database.
async fn declared_of(conn: &mut SqliteConnection, caches: &mut Caches, app_id: &str) -> Result<Arc<IndexDeclarations>> {
    if let Some(d) = caches.declared.get(app_id) {
        return Ok(Arc::clone(d));
    }
    let d = Arc::new(sql::app_indexes(conn, app_id).await?);
    set_declared(caches, app_id, Arc::clone(&d));
    Ok(d)
}

fn set_declared(caches: &mut Caches, app_id: &str, d: Arc<IndexDeclarations>) {
    if caches.declared.len() >= MAX_CACHED_APPS {
        caches.declared.clear();
    }
    caches.declared.insert(app_id.to_owned(), d);
}

/// Makes the fields a read names indexed in collection `c`, or refuses them: a private
/// collection indexes each new one ([`index_field`]); a shared one takes only the fields its app
/// declares (and, should its indexes differ from the declaration, is brought in line first).
async fn ensure_indexed(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    c: &Collection,
    cid: i64,
    names: &[(&'static str, String)],
) -> Result<()> {
    match c.owner {
        Owner::User(_) => {
            for (_, name) in names {
                index_field(conn, caches, cid, name).await?;
            }
            Ok(())
        }
        Owner::App => {
            let declared = declared_of(conn, caches, &c.app_id).await?;
            let wanted = declared.fields_of(&c.path);
            if let Some((param, name)) = names.iter().find(|(_, name)| !wanted.contains(name)) {
                return Err(undeclared(param, &c.path, name));
            }
            reconcile(conn, caches, cid, wanted).await.map(|_changed| ())
        }
    }
}

/// Indexes field `name` of private collection `cid` in its own transaction (objects already
/// stored included), at most [`MAX_INDEXED_FIELDS`] per collection; the set of indexed fields
/// changes only once that commits.
async fn index_field(conn: &mut SqliteConnection, caches: &mut Caches, cid: i64, name: &str) -> Result<()> {
    let indexed = indexed_of(conn, caches, cid).await?;
    if indexed.contains(name) {
        return Ok(());
    }
    if indexed.len() >= MAX_INDEXED_FIELDS {
        return Err(Error::bad_request(format!(
            "This collection already has {MAX_INDEXED_FIELDS} indexed fields (a field is indexed from the first \
             where or sort naming it): {name:?} cannot be filtered or sorted on"
        )));
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    sql::index_fields(&mut tx, cid, &[name.to_owned()]).await?;
    tx.commit().await.map_err(db_err)?;
    let mut names = (*indexed).clone();
    names.insert(name.to_owned());
    caches.indexed.set(cid, Arc::new(names));
    tracing::info!(cid, field = name, "objects: field indexed on first use");
    Ok(())
}

/// Makes the indexed fields of collection `cid` exactly `wanted`, in one transaction: fields no
/// longer wanted are dropped (their index rows go), new ones indexed (objects already stored
/// included). Nothing is written when they already are; true when something changed.
async fn reconcile(conn: &mut SqliteConnection, caches: &mut Caches, cid: i64, wanted: &[String]) -> Result<bool> {
    let indexed = indexed_of(conn, caches, cid).await?;
    let gone: Vec<&String> = indexed.iter().filter(|name| !wanted.contains(name)).collect();
    let added: Vec<String> = wanted.iter().filter(|name| !indexed.contains(*name)).cloned().collect();
    if gone.is_empty() && added.is_empty() {
        return Ok(false);
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    for name in &gone {
        sql::drop_index(&mut tx, cid, name).await?;
    }
    sql::index_fields(&mut tx, cid, &added).await?;
    tx.commit().await.map_err(db_err)?;
    caches.indexed.set(cid, Arc::new(wanted.iter().cloned().collect()));
    tracing::debug!(cid, dropped = ?gone, indexed = ?added, "objects: shared collection indexes follow the declaration");
    Ok(true)
}

/// Reads the app's declaration anew and brings each of its shared collections in line with it,
/// one transaction per collection that changes.
async fn sync_shared(conn: &mut SqliteConnection, caches: &mut Caches, gate: &CommitGate, app_id: &str) -> Result<()> {
    let declared = Arc::new(sql::app_indexes(conn, app_id).await?);
    set_declared(caches, app_id, Arc::clone(&declared));
    let (mut seen, mut changed) = (0, 0);
    for (cid, path) in sql::shared_collections(conn, app_id).await? {
        let _open = gate.open().await;
        seen += 1;
        changed += usize::from(reconcile(conn, caches, cid, declared.fields_of(&path)).await?);
    }
    tracing::info!(app_id, shared_collections = seen, changed, "objects: indexes follow the app's declaration");
    Ok(())
}
