//! The scale-out backend: PostgreSQL through sqlx, shared by any number of Thingline nodes.
//! Everything that must hold across nodes is enforced by the database: unique emails and
//! `_id`s (unique constraints), single-use activation codes (one `UPDATE … WHERE used IS NULL`),
//! distinct datetimes per timeline (the timeline row's lock and the points' primary key).
//! Timelines live in a range-partitioned table ([`partitions`]) whose values are appended by
//! group-commit writers ([`timelines`]) with one multi-row `INSERT … SELECT FROM unnest(…)` per
//! group. Migrations run under an advisory lock, so nodes starting together apply them once.
//! Failures map to platform errors in one place ([`errors`]): a database that is away is a 503.

mod errors;
mod objects;

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub(crate) use errors::{db_err, is_unique_violation};

use crate::StoreOptions;

/// Schema migrations, applied in order at start; `thingline_schema` records the applied versions.
const MIGRATIONS: &[(i64, &str)] = &[
    // (1, include_str!("../../migrations/postgres/0001_foundation.sql")),
    // (2, include_str!("../../migrations/postgres/0002_objects.sql")),
];

/// Any constant shared by every node: the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x7468_696e_676c_696e; // "thinglin"

/// The PostgreSQL store.
pub struct PgStore {
    /// Every query and transactional write.
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`; a `?options=-c search_path=…` selects a schema) and runs
    /// the migrations this version has not applied yet.
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
            .connect_with(connect)
            .await?;
        migrate(&pool).await?;
        Ok(PgStore { pool })
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
