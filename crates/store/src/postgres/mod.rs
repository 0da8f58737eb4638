//! The scale-out backend: PostgreSQL through sqlx, shared by any number of Thingline nodes.
//! Everything that must hold across nodes is enforced by the database: unique emails and
//! `_id`s (unique constraints), single-use activation codes (one `UPDATE … WHERE used_ms IS
//! NULL`), distinct datetimes per timeline (the timeline row's lock and the points' primary key).
//! Timelines live in a range-partitioned table ([`partitions`]) whose values are appended by
//! group-commit writers ([`timelines`]) with one multi-row `INSERT … SELECT FROM unnest(…)` per
//! group. Migrations run under an advisory lock, so nodes starting together apply them once.
//! Failures map to platform errors in one place ([`errors`]): a database that is away is a 503.
//!
//! This module owns the store itself: opening (pools, migrations, the partition layout, the
//! writers and the partition maintenance task) and closing ([`crate::Store`]).

mod app_users;
mod attempts;
mod catalog;
mod errors;
mod objects;
mod panel;
mod partitions;
mod things;
mod timelines;

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::oneshot;

pub(crate) use errors::{db_err, is_unique_violation};
pub(crate) use objects::Encoded;

use crate::StoreOptions;

/// Schema migrations, applied in order at start; `thingline_schema` records the applied versions.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_foundation.sql")),
    (2, include_str!("../../migrations/postgres/0002_objects.sql")),
    (3, include_str!("../../migrations/postgres/0003_attempts.sql")),
    (4, include_str!("../../migrations/postgres/0004_panel.sql")),
];

/// Any constant shared by every node: the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x7468_696e_676c_696e; // "thinglin"

/// The PostgreSQL store.
pub struct PgStore {
    /// Every query and transactional write except timeline appends.
    pub(crate) pool: PgPool,
    /// The group-commit writers of timeline appends (with their own connections).
    writers: timelines::Writers,
    /// Stops the partition maintenance task, and the task to wait for.
    maintenance: parking_lot::Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`; a `?options=-c search_path=…` selects a schema), runs
    /// the migrations this version has not applied yet, makes sure the timeline partitions of
    /// the coming months exist, and starts the append writers and the hourly partition
    /// maintenance.
    pub async fn open(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        let connect = PgConnectOptions::from_str(url)?
            .application_name("thingline")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let pool = PgPoolOptions::new()
            .max_connections(options.read_connections.max(1) + 8)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Some(Duration::from_secs(60)))
            .connect_with(connect.clone())
            .await?;
        migrate(&pool).await?;
        partitions::ensure(&pool, thingline_core::time::now_ms()).await?;
        let write_pool = PgPoolOptions::new()
            .max_connections(timelines::WRITERS as u32)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_lazy_with(connect.application_name("thingline-writer"));
        let writers = timelines::Writers::spawn(write_pool);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(partitions::run_maintenance(pool.clone(), stopped));
        Ok(PgStore { pool, writers, maintenance: parking_lot::Mutex::new(Some((stop, task))) })
    }

    /// Creates the monthly timeline partitions up to three months after the month of `now_ms`
    /// (splitting the future partition), as the hourly maintenance does with the current time.
    /// Safe to run from any number of nodes at once.
    pub async fn maintain_partitions(&self, now_ms: i64) -> anyhow::Result<()> {
        partitions::maintain(&self.pool, now_ms).await
    }
}

async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
    let result = apply_migrations(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await;
    result?;
    unlocked?;
    Ok(())
}

async fn apply_migrations(conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    use sqlx::Connection;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS thingline_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, sql) in MIGRATIONS {
        let applied: Option<i64> = sqlx::query_scalar("SELECT version FROM thingline_schema WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO thingline_schema (version, applied_ms) VALUES ($1, $2)")
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
impl crate::Store for PgStore {
    async fn close(&self) {
        // Appends already queued are committed and answered before the writers stop.
        self.writers.close().await;
        let maintenance = self.maintenance.lock().take();
        if let Some((stop, task)) = maintenance {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.pool.close().await;
    }

    fn attempts(&self) -> Option<&dyn crate::AttemptStore> {
        Some(self)
    }

    async fn ping(&self) -> thingline_core::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(db_err)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
