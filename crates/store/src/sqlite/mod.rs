//! The embedded backend: SQLite in WAL mode through sqlx. Readers share a pool; appends to
//! timelines go through one writer task that commits them in groups ([`timeline_writer`]), and
//! object writes through another ([`objects`]); the few other writes (panel, catalog, activation,
//! settings) use a single-connection pool so they never fight each other. A background task
//! checkpoints the WAL and keeps it bounded ([`checkpoint`]). Failures map to platform errors in
//! one place ([`errors`]: a full disk is a 507), and a connection a failed transaction left
//! unusable is replaced ([`recovery`]), so that every kind of write recovers by itself once the
//! cause (a full disk) is gone.

mod app_users;
mod catalog;
mod checkpoint;
mod errors;
mod objects;
mod panel;
mod recovery;
mod things;
mod timeline_writer;
mod timelines;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

pub(crate) use errors::{db_err, is_unique_violation};
use recovery::OwnedConnection;

use crate::StoreOptions;

/// Schema migrations, applied in order at start; `thingline_schema` records the applied versions.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_foundation.sql")),
    (2, include_str!("../../migrations/sqlite/0002_app_users.sql")),
    (3, include_str!("../../migrations/sqlite/0003_objects.sql")),
    (4, include_str!("../../migrations/sqlite/0004_object_indexes.sql")),
    (5, include_str!("../../migrations/sqlite/0005_app_object_indexes.sql")),
    (6, include_str!("../../migrations/sqlite/0006_panel.sql")),
];

/// Options only the SQLite backend reads.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Bound on the write-ahead log, in bytes (default [`DEFAULT_WAL_LIMIT_BYTES`]): once the WAL
    /// holds this many bytes of frames (or, with nothing being written, its file is still
    /// larger), the background checkpoint forces it to restart from its beginning
    /// (`wal_checkpoint(RESTART)`, `TRUNCATE` when idle), and `journal_size_limit` truncates a
    /// restarted WAL file back to this size. See `docs/architecture.md` (WAL checkpoints).
    pub wal_limit_bytes: u64,
}

/// The default [`SqliteOptions::wal_limit_bytes`]: 64 MiB (16,384 frames of 4 KiB pages). Large
/// enough that even saturated appends force a restart (which holds the writers for a moment) at
/// most about once a second (measured), and quiet ingest never; small enough that a burst leaves
/// no big file behind and that readers, which look pages up in the WAL index first, stay fast.
pub const DEFAULT_WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { wal_limit_bytes: DEFAULT_WAL_LIMIT_BYTES }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    /// Read-only connections for every query.
    read: SqlitePool,
    /// One connection for transactional writes other than timeline appends.
    write: SqlitePool,
    /// The group-commit writer for timeline appends.
    writer: timeline_writer::WriterHandle,
    /// The group-commit writer for app objects (creates, updates, deletes).
    objects: objects::ObjectWriter,
    /// Stops the WAL checkpointer (dropping the sender stops it too), and its task to wait for.
    checkpointer: parking_lot::Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
    /// The database's directory, whose free space tells whether an I/O error means a full disk.
    _dir: errors::RegisteredDir,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and runs migrations.
    pub async fn open(path: &Path, options: &StoreOptions) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let base = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.sync_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-4096")
            // Statement journals (every statement inside a transaction keeps one for its own
            // rollback) and sort spills stay in memory instead of temp files.
            .pragma("temp_store", "memory")
            // No checkpoint inside a commit: the writers' commits stay short, and a background
            // task checkpoints the WAL instead (see `checkpoint`).
            .pragma("wal_autocheckpoint", "0")
            // A WAL file that restarts from its beginning is truncated back to this size at the
            // next commit, so a burst does not leave a big file behind.
            .pragma("journal_size_limit", options.sqlite.wal_limit_bytes.min(i64::MAX as u64).to_string())
            .log_statements(tracing::log::LevelFilter::Trace);

        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir.to_path_buf(),
            None => std::path::PathBuf::from("."),
        };
        let registered = errors::DatabaseDirs::register(dir);

        // A pooled connection left inside a transaction is discarded when released (see
        // `recovery`); the read pool never begins one, the rule holds there all the same.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_release(recovery::discard_if_left_in_transaction)
            .connect_with(base.clone())
            .await?;
        migrate(&write).await?;

        let read = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(60)))
            .after_release(recovery::discard_if_left_in_transaction)
            .connect_with(base.clone().read_only(true))
            .await?;

        let gate = checkpoint::CommitGate::default();
        let writer_conn = OwnedConnection::connect(base.clone(), "timeline writer").await?;
        let writer = timeline_writer::spawn(writer_conn, gate.clone());
        let objects =
            objects::spawn_writer(OwnedConnection::connect(base.clone(), "objects writer").await?, gate.clone());
        let checkpoint_conn = base.clone().busy_timeout(checkpoint::ESCALATION_BUSY_TIMEOUT).connect().await?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(checkpoint::run(
            checkpoint_conn,
            gate,
            stopped,
            wal_path.into(),
            options.sqlite.wal_limit_bytes,
        ));
        let checkpointer = parking_lot::Mutex::new(Some((stop, task)));
        Ok(SqliteStore { read, write, writer, objects, checkpointer, _dir: registered })
    }

    /// A transaction on the single `write` connection that takes SQLite's write lock at once
    /// (`BEGIN IMMEDIATE`), waiting for it with the busy timeout. A deferred transaction that read
    /// first would get `SQLITE_BUSY` without waiting when it tries to write while a group writer
    /// or a forced WAL checkpoint holds the lock.
    pub(crate) async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.write.begin_with("BEGIN IMMEDIATE").await
    }
}

/// The one row a writing statement with `RETURNING` gives, from `fetch_all`: the statement must
/// be read to its end. In autocommit mode it commits when it ends; a `fetch_one` stops at its
/// first row and leaves the commit to a later reset whose failure (a full disk) nobody sees, so
/// the write would be acknowledged without being stored.
pub(crate) fn returned<T>(rows: sqlx::Result<Vec<T>>) -> sqlx::Result<T> {
    rows?.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

async fn migrate(pool: &SqlitePool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS thingline_schema (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, sql) in MIGRATIONS {
        let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM thingline_schema WHERE version = ?")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO thingline_schema (version, applied_ms) VALUES (?, ?)")
            .bind(version)
            .bind(thingline_core::time::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

#[async_trait::async_trait]
impl crate::Store for SqliteStore {
    async fn close(&self) {
        self.writer.close().await;
        self.objects.close().await;
        // The checkpointer ends its round (a forced checkpoint waits at most its busy timeout)
        // and closes its connection before the store reports closed.
        let checkpointer = self.checkpointer.lock().take();
        if let Some((stop, task)) = checkpointer {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.read.close().await;
        self.write.close().await;
    }

    /// One node: its own memory counts the attempts.
    fn attempts(&self) -> Option<&dyn crate::AttemptStore> {
        None
    }

    async fn ping(&self) -> thingline_core::Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.map(|_| ()).map_err(db_err)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
