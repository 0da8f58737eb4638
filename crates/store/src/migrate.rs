//! `thingline migrate`: copies an installation from its SQLite store to a PostgreSQL store, table
//! by table in foreign-key order, and checks at the end that every table holds as many rows on
//! both sides. This module owns the copy: opening the source read-only (a plain pool on the file,
//! none of the SQLite store's writers), opening the target through [`PgStore::open`] (which runs
//! the PostgreSQL migrations), the batches, the resume record, the sequence reset, the count
//! check and the progress display.
//!
//! - Every table is read in the order of its SQLite primary key (keyset pagination, `--batch`
//!   rows at a time) and each batch is written with one multi-row `INSERT … SELECT FROM
//!   unnest(…) ON CONFLICT DO NOTHING`, in a transaction that also records in the target's
//!   `thingline_migration` table the last key copied, so an interrupted migrate started again
//!   resumes after it (a table marked done is skipped).
//! - The source is read in one read transaction: a consistent snapshot, even of a store a
//!   server were still writing (it must be stopped: what it writes later is not copied).
//! - The column names are the same on both sides (the PostgreSQL migrations keep them), except
//!   `points.thing_seq`, which PostgreSQL keeps with each value (taken from its timeline), and
//!   SQLite's untyped `object_fields.v`, written as the PostgreSQL backend's `(vt, vn, vs)`
//!   with its own encoder ([`Encoded`]).
//! - A target holding rows but no migration record (another installation) is refused, and so is
//!   one whose record names another source.
//! - After the copy the identity sequences are moved past the largest id copied (and past the
//!   ids SQLite's `AUTOINCREMENT` already gave and never gives again), so new rows never collide.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, Transaction, TypeInfo, ValueRef};
use thingline_core::classes::Scalar;
use tokio::sync::mpsc;

use crate::postgres::{Encoded, PgStore};
use crate::{Store, StoreOptions};

/// Rows per batch when `--batch` is not given.
pub const DEFAULT_BATCH: usize = 5000;

/// How the copy runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per batch (one target transaction each); at least 1.
    pub batch: usize,
    /// How often a progress line is printed when stderr is not a terminal.
    pub progress_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch: DEFAULT_BATCH, progress_every: Duration::from_secs(10) }
    }
}

/// The rows of one table on both sides after the copy.
#[derive(Debug, Clone)]
pub struct TableCount {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

/// What a migrate found at the end.
#[derive(Debug, Clone)]
pub struct Report {
    pub tables: Vec<TableCount>,
}

impl Report {
    /// The tables whose counts differ.
    pub fn mismatches(&self) -> Vec<&TableCount> {
        self.tables.iter().filter(|t| t.source != t.target).collect()
    }

    /// The counts as a text table (one line per table).
    pub fn render(&self) -> String {
        let mut out = format!("{:<20} {:>12} {:>12}  check\n", "table", "sqlite", "postgres");
        for t in &self.tables {
            let check = if t.source == t.target { "ok" } else { "MISMATCH" };
            out.push_str(&format!("{:<20} {:>12} {:>12}  {check}\n", t.table, t.source, t.target));
        }
        out
    }
}

/// The type of a copied column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    OptInt,
    Text,
    OptText,
    /// SQLite's untyped `object_fields.v` → PostgreSQL's `(vt, vn, vs)`.
    Field,
}

/// A copied column: its name (the same on both sides), type, and the SQLite expression that
/// reads it (empty: the quoted name).
struct Col {
    name: &'static str,
    ty: Ty,
    src: &'static str,
}

const fn col(name: &'static str, ty: Ty) -> Col {
    Col { name, ty, src: "" }
}

/// A copied table: the SQLite `FROM` clause, the columns, and which of them (indexes into
/// `cols`) are the SQLite primary key the copy pages by.
struct Table {
    name: &'static str,
    from: &'static str,
    cols: &'static [Col],
    key: &'static [usize],
}

use Ty::{Field, Int, OptInt, OptText, Text};

/// Every table of a store, parents before children.
const TABLES: &[Table] = &[
    Table {
        name: "panel_users",
        from: "panel_users",
        cols: &[col("id", Int), col("email", Text), col("password_hash", Text), col("created_ms", Int)],
        key: &[0],
    },
    Table {
        name: "panel_sessions",
        from: "panel_sessions",
        cols: &[col("token_digest", Text), col("user_id", Int), col("expires_ms", Int)],
        key: &[0],
    },
    Table {
        name: "products",
        from: "products",
        cols: &[
            col("id", Text),
            col("owner_id", Int),
            col("name", Text),
            col("resources", Text),
            col("created_ms", Int),
        ],
        key: &[0],
    },
    Table {
        name: "activation_codes",
        from: "activation_codes",
        cols: &[
            col("code", Text),
            col("product_id", Text),
            col("thing_id", OptText),
            col("created_ms", Int),
            col("used_ms", OptInt),
        ],
        key: &[0],
    },
    Table {
        name: "apps",
        from: "apps",
        cols: &[
            col("id", Text),
            col("owner_id", Int),
            col("name", Text),
            col("resources", Text),
            col("created_ms", Int),
            col("indexes", Text),
        ],
        key: &[0],
    },
    Table {
        name: "things",
        from: "things",
        cols: &[
            col("seq", Int),
            col("id", Text),
            col("token", Text),
            col("product_id", Text),
            col("activation_code", OptText),
            col("settings", Text),
            col("created_ms", Int),
            col("name", OptText),
        ],
        key: &[0],
    },
    Table {
        name: "timelines",
        from: "timelines",
        cols: &[col("id", Int), col("thing_seq", Int), col("key", Text)],
        key: &[0],
    },
    Table {
        name: "points",
        from: "points p JOIN timelines t ON t.id = p.timeline_id",
        cols: &[
            Col { name: "thing_seq", ty: Int, src: "t.thing_seq" },
            Col { name: "timeline_id", ty: Int, src: "p.timeline_id" },
            Col { name: "ts", ty: Int, src: "p.ts" },
            Col { name: "value", ty: Text, src: "p.value" },
        ],
        key: &[1, 2],
    },
    Table {
        name: "app_users",
        from: "app_users",
        cols: &[
            col("id", Int),
            col("app_id", Text),
            col("email", Text),
            col("password_hash", Text),
            col("settings", Text),
            col("created_ms", Int),
            col("last_login_ms", OptInt),
        ],
        key: &[0],
    },
    Table {
        name: "app_sessions",
        from: "app_sessions",
        cols: &[col("token_digest", Text), col("user_id", Int), col("expires_ms", Int), col("created_ms", Int)],
        key: &[0],
    },
    Table {
        name: "app_links",
        from: "app_links",
        cols: &[col("user_id", Int), col("thing_id", Text), col("created_ms", Int)],
        key: &[0, 1],
    },
    Table {
        name: "app_grants",
        from: "app_grants",
        cols: &[
            col("user_id", Int),
            col("thing_id", Text),
            col("key", Text),
            col("perms", Int),
            col("granted_by", Int),
            col("created_ms", Int),
        ],
        key: &[0, 1, 2],
    },
    Table {
        name: "app_outbox",
        from: "app_outbox",
        cols: &[
            col("id", Int),
            col("app_id", Text),
            col("to_email", Text),
            col("subject", Text),
            col("body", Text),
            col("created_ms", Int),
        ],
        key: &[0],
    },
    Table {
        name: "object_collections",
        from: "object_collections",
        cols: &[col("id", Int), col("app_id", Text), col("owner", Int), col("path", Text)],
        key: &[0],
    },
    Table {
        name: "objects",
        from: "objects",
        cols: &[col("cid", Int), col("k", Text), col("body", Text)],
        key: &[0, 1],
    },
    Table { name: "object_indexes", from: "object_indexes", cols: &[col("cid", Int), col("name", Text)], key: &[0, 1] },
    Table {
        name: "object_fields",
        from: "object_fields",
        cols: &[col("cid", Int), col("name", Text), col("v", Field), col("k", Text)],
        key: &[0, 1, 2, 3],
    },
];

/// The record of the copy in the target: one row per table, plus [`SOURCE_ROW`].
const RECORD_TABLE: &str = "CREATE TABLE IF NOT EXISTS thingline_migration (\
     tbl TEXT PRIMARY KEY, last_key TEXT, copied BIGINT NOT NULL DEFAULT 0, done BOOLEAN NOT NULL DEFAULT false)";

/// The record row naming the source (`last_key`: its path), so that a resume reads the same one.
const SOURCE_ROW: &str = "@source";

/// The advisory lock (with the schema's hash as second key) one migrate into a schema holds.
const MIGRATE_LOCK: i32 = 0x746c_6d67; // "tlmg"

/// One SQLite value, as read (and as a resume key, serialized into `thingline_migration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Val {
    Null,
    Int(i64),
    /// A float's bits (exact through JSON, infinities included).
    Real(u64),
    Text(String),
    Blob(Vec<u8>),
}

impl Val {
    fn describe(&self) -> &'static str {
        match self {
            Val::Null => "NULL",
            Val::Int(_) => "an integer",
            Val::Real(_) => "a real",
            Val::Text(_) => "text",
            Val::Blob(_) => "a blob",
        }
    }
}

/// A batch of rows of table `table` (index into [`TABLES`]), the key of its last row, and
/// whether it is the table's last.
struct Batch {
    table: usize,
    rows: Vec<Vec<Val>>,
    last: Option<Vec<Val>>,
    end: bool,
}

/// The resume state of one table.
#[derive(Debug, Default, Clone)]
struct State {
    last: Option<Vec<Val>>,
    copied: i64,
    done: bool,
}

/// Copies the SQLite store at `from` (`sqlite://PATH`) into the PostgreSQL store at `to`
/// (`postgres://…`), resuming a copy an earlier run left unfinished, and returns the row counts
/// of both sides (compare them with [`Report::mismatches`]).
pub async fn migrate(from: &str, to: &str, options: &Options) -> anyhow::Result<Report> {
    let Some(path) = from.strip_prefix("sqlite://") else {
        bail!("--from {from:?}: expected sqlite://PATH (the SQLite store to copy from)");
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to: expected a postgres://… URL (the PostgreSQL store to copy into)");
    }
    let batch = options.batch.max(1);
    let path = Path::new(path);
    if !path.is_file() {
        bail!("--from: no SQLite store at {}", path.display());
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let source = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path).read_only(true).create_if_missing(false))
        .await
        .with_context(|| format!("opening {} read-only", path.display()))?;
    check_source_schema(&source).await?;
    check_source_tables(&source).await?;

    let target = PgStore::open(to, &StoreOptions::default()).await.context("opening the PostgreSQL store")?;
    let result = copy(&source, &target.pool, &canonical, batch, options.progress_every).await;
    target.close().await;
    source.close().await;
    result
}

/// Refuses a file that is not a Thingline store, or one of another schema version.
async fn check_source_schema(source: &sqlx::SqlitePool) -> anyhow::Result<()> {
    let known = crate::sqlite::MIGRATIONS.last().map_or(0, |m| m.0);
    let has_schema: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'thingline_schema'")
            .fetch_one(source)
            .await
            .context("reading the source (is it a SQLite database?)")?;
    if has_schema == 0 {
        bail!("the source is not a Thingline store (it has no thingline_schema table)");
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM thingline_schema").fetch_one(source).await?;
    let version = version.unwrap_or(0);
    if version > known {
        bail!(
            "the source's schema version {version} is newer than this thingline knows ({known}): \
             migrate with the version that last ran on it"
        );
    }
    if version < known {
        bail!(
            "the source's schema version {version} is older than this thingline's ({known}): start \
             `thingline serve` on it once with this version (which upgrades it), stop it, then migrate"
        );
    }
    Ok(())
}

/// Refuses a source with a table or column this copy does not know (a schema change that
/// forgot `migrate`), rather than leaving its data behind.
async fn check_source_tables(source: &sqlx::SqlitePool) -> anyhow::Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND name <> 'thingline_schema' ORDER BY name",
    )
    .fetch_all(source)
    .await?;
    for table in tables {
        let Some(t) = TABLES.iter().find(|t| t.name == table) else {
            bail!("the source has a table {table} this migrate does not copy");
        };
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?)").bind(&table).fetch_all(source).await?;
        for column in columns {
            if !t.cols.iter().any(|c| c.name == column) {
                bail!("the source has a column {table}.{column} this migrate does not copy");
            }
        }
    }
    Ok(())
}

async fn copy(
    source: &sqlx::SqlitePool,
    target: &PgPool,
    source_path: &Path,
    batch: usize,
    progress_every: Duration,
) -> anyhow::Result<Report> {
    // One migrate per target schema at a time, held for the whole copy.
    let mut lock = target.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
        .bind(MIGRATE_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        bail!("another thingline migrate is copying into this target");
    }
    let mut states = claim_target(target, source_path).await?;

    // The source in one read transaction: counts, AUTOINCREMENT high marks and rows of the same
    // snapshot.
    let mut snapshot = source.begin().await?;
    let mut counts = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let sql = format!("SELECT count(*) FROM {}", t.name);
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *snapshot).await?;
        counts.push(n);
    }
    let autoincrement: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, seq FROM sqlite_sequence").fetch_all(&mut *snapshot).await.unwrap_or_default();

    let plan: Vec<(usize, State)> =
        TABLES.iter().enumerate().map(|(i, t)| (i, states.remove(t.name).unwrap_or_default())).collect();
    let (tx, mut rx) = mpsc::channel::<Batch>(2);
    let reader_plan: Vec<(usize, Option<Vec<Val>>)> =
        plan.iter().filter(|(_, s)| !s.done).map(|(i, s)| (*i, s.last.clone())).collect();
    let reader = tokio::spawn(read_all(snapshot, reader_plan, batch, tx));

    let mut progress = Progress::new(progress_every);
    let inserts: Vec<String> = TABLES.iter().map(insert_sql).collect();
    let mut current: Option<(usize, TableProgress)> = None;
    for (i, state) in &plan {
        if state.done {
            progress.skipped(TABLES[*i].name, state.copied);
        }
    }
    let mut copied: HashMap<usize, i64> = plan.iter().map(|(i, s)| (*i, s.copied)).collect();
    let written: anyhow::Result<()> = async {
        while let Some(b) = rx.recv().await {
            let t = &TABLES[b.table];
            if current.as_ref().is_none_or(|(i, _)| *i != b.table) {
                let before = copied.get(&b.table).copied().unwrap_or(0);
                current = Some((b.table, progress.start(t.name, counts[b.table], before)));
            }
            let n = b.rows.len();
            write_batch(target, t, &inserts[b.table], b.rows, b.last, b.end).await?;
            let total = copied.entry(b.table).or_insert(0);
            *total += i64::try_from(n).unwrap_or(i64::MAX);
            if let Some((_, p)) = current.as_mut() {
                p.advance(n as u64, *total);
                if b.end {
                    p.finish(*total);
                }
            }
        }
        Ok(())
    }
    .await;
    // The reader's error, if it stopped first, explains more than the closed channel.
    drop(rx);
    let read = reader.await.context("the source reader panicked")?;
    written?;
    read?;

    reset_sequences(target, &autoincrement).await?;
    sqlx::query("UPDATE thingline_migration SET done = true WHERE tbl = $1").bind(SOURCE_ROW).execute(target).await?;
    let mut tables = Vec::with_capacity(TABLES.len());
    for (i, t) in TABLES.iter().enumerate() {
        let sql = format!("SELECT count(*) FROM {}", t.name);
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(target).await?;
        tables.push(TableCount { table: t.name, source: counts[i], target: n });
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1, hashtext(current_schema()))")
        .bind(MIGRATE_LOCK)
        .execute(&mut *lock)
        .await;
    Ok(Report { tables })
}

/// Makes sure the target is this migration's: an empty store (then recorded as a copy of
/// `source_path`), or one an earlier run of the same copy left. Returns the resume state.
async fn claim_target(target: &PgPool, source_path: &Path) -> anyhow::Result<HashMap<&'static str, State>> {
    sqlx::query(RECORD_TABLE).execute(target).await?;
    let source_name = source_path.display().to_string();
    let recorded: Option<Option<String>> =
        sqlx::query_scalar("SELECT last_key FROM thingline_migration WHERE tbl = $1")
            .bind(SOURCE_ROW)
            .fetch_optional(target)
            .await?;
    match recorded {
        Some(Some(recorded)) if recorded == source_name => {}
        Some(recorded) => bail!(
            "the target holds a migration from another source ({}); copy {} into a new, empty \
             database or schema",
            recorded.unwrap_or_default(),
            source_name
        ),
        None => {
            for t in TABLES {
                let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", t.name);
                let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(target).await?;
                if any {
                    bail!(
                        "the target is not empty (table {} has rows) and holds no record of a \
                         migration: migrate into a new, empty database or schema",
                        t.name
                    );
                }
            }
            let mut tx = target.begin().await?;
            sqlx::query("INSERT INTO thingline_migration (tbl, last_key, copied, done) VALUES ($1, $2, 0, false)")
                .bind(SOURCE_ROW)
                .bind(&source_name)
                .execute(&mut *tx)
                .await?;
            let names: Vec<String> = TABLES.iter().map(|t| t.name.to_owned()).collect();
            sqlx::query(
                "INSERT INTO thingline_migration (tbl, last_key, copied, done) \
                 SELECT n, NULL, 0, false FROM unnest($1::text[]) AS n ON CONFLICT (tbl) DO NOTHING",
            )
            .bind(names)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
    }
    let rows: Vec<(String, Option<String>, i64, bool)> =
        sqlx::query_as("SELECT tbl, last_key, copied, done FROM thingline_migration").fetch_all(target).await?;
    let mut states = HashMap::new();
    for (tbl, last_key, copied, done) in rows {
        let Some(t) = TABLES.iter().find(|t| t.name == tbl) else { continue };
        let last = match last_key {
            Some(k) => Some(
                serde_json::from_str(&k).with_context(|| format!("thingline_migration: unreadable key of {tbl}"))?,
            ),
            None => None,
        };
        states.insert(t.name, State { last, copied, done });
    }
    Ok(states)
}

/// Reads the tables of `plan` (index, key to resume after) in batches and sends them.
async fn read_all(
    mut snapshot: Transaction<'static, Sqlite>,
    plan: Vec<(usize, Option<Vec<Val>>)>,
    batch: usize,
    tx: mpsc::Sender<Batch>,
) -> anyhow::Result<()> {
    for (index, mut last) in plan {
        let t = &TABLES[index];
        let select: Vec<String> = t.cols.iter().map(source_expr).collect();
        let key: Vec<String> = t.key.iter().map(|&i| source_expr(&t.cols[i])).collect();
        let (select, key) = (select.join(", "), key.join(", "));
        let first = format!("SELECT {select} FROM {} ORDER BY {key} LIMIT ?", t.from);
        let marks = vec!["?"; t.key.len()].join(", ");
        let next = format!("SELECT {select} FROM {} WHERE ({key}) > ({marks}) ORDER BY {key} LIMIT ?", t.from);
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        loop {
            let rows: Vec<SqliteRow> = match &last {
                None => sqlx::query(sqlx::AssertSqlSafe(first.as_str())).bind(limit).fetch_all(&mut *snapshot).await?,
                Some(after) => {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(next.as_str()));
                    for v in after {
                        q = match v {
                            Val::Null => q.bind(None::<i64>),
                            Val::Int(i) => q.bind(*i),
                            Val::Real(bits) => q.bind(f64::from_bits(*bits)),
                            Val::Text(s) => q.bind(s.clone()),
                            Val::Blob(b) => q.bind(b.clone()),
                        };
                    }
                    q.bind(limit).fetch_all(&mut *snapshot).await?
                }
            };
            let end = rows.len() < batch;
            let mut values = Vec::with_capacity(rows.len());
            for row in &rows {
                values.push(read_row(row, t.cols.len()).with_context(|| format!("reading {}", t.name))?);
            }
            if let Some(row) = values.last() {
                last = Some(t.key.iter().map(|&i| row[i].clone()).collect());
            }
            if tx.send(Batch { table: index, rows: values, last: last.clone(), end }).await.is_err() {
                // The writer stopped; it reports why.
                return Ok(());
            }
            if end {
                break;
            }
        }
    }
    snapshot.rollback().await?;
    Ok(())
}

fn source_expr(c: &Col) -> String {
    if c.src.is_empty() { format!("\"{}\"", c.name) } else { c.src.to_owned() }
}

/// A row's values with their SQLite storage classes.
fn read_row(row: &SqliteRow, n: usize) -> anyhow::Result<Vec<Val>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            out.push(Val::Null);
            continue;
        }
        let class = raw.type_info().name().to_owned();
        out.push(match class.as_str() {
            "INTEGER" => Val::Int(row.try_get_unchecked(i)?),
            "REAL" => Val::Real(row.try_get_unchecked::<f64, _>(i)?.to_bits()),
            "TEXT" => Val::Text(row.try_get_unchecked(i)?),
            "BLOB" => Val::Blob(row.try_get_unchecked(i)?),
            other => bail!("column {i}: unexpected SQLite value of type {other}"),
        });
    }
    Ok(out)
}

/// The target columns of a table (a field value is three).
fn target_columns(t: &Table) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for c in t.cols {
        match c.ty {
            Int | OptInt => out.push((c.name, "bigint")),
            Text | OptText => out.push((c.name, "text")),
            Field => out.extend([("vt", "int2"), ("vn", "text"), ("vs", "bytea")]),
        }
    }
    out
}

/// `INSERT INTO t (…) SELECT … FROM unnest($1::bigint[], …) ON CONFLICT DO NOTHING`.
fn insert_sql(t: &Table) -> String {
    let cols = target_columns(t);
    let names: Vec<String> = cols.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let arrays: Vec<String> = cols.iter().enumerate().map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1)).collect();
    let aliases: Vec<String> = (0..cols.len()).map(|i| format!("c{i}")).collect();
    let exprs: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (n, _))| if *n == "vn" { format!("u.c{i}::numeric") } else { format!("u.c{i}") })
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT DO NOTHING",
        t.name,
        names.join(", "),
        exprs.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    )
}

/// Column arrays of a batch, bound to the insert's `unnest`.
enum Array {
    Int(Vec<i64>),
    OptInt(Vec<Option<i64>>),
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    Int2(Vec<i16>),
    Bytes(Vec<Vec<u8>>),
}

/// The indexed value SQLite's `object_fields.v` holds (see its migration 3): numbers, text, and
/// the blobs x'00' null, x'01' false, x'02' true.
fn field_scalar(v: Val) -> anyhow::Result<Scalar> {
    Ok(match v {
        Val::Int(i) => Scalar::Int(i),
        Val::Real(bits) => Scalar::Float(f64::from_bits(bits)),
        Val::Text(s) => Scalar::Text(s),
        Val::Blob(b) if b == [0] => Scalar::Null,
        Val::Blob(b) if b == [1] => Scalar::Bool(false),
        Val::Blob(b) if b == [2] => Scalar::Bool(true),
        other => bail!("object_fields.v holds {}, not an indexed value", other.describe()),
    })
}

fn columns_of(t: &Table, rows: Vec<Vec<Val>>) -> anyhow::Result<Vec<Array>> {
    let n = rows.len();
    let mut arrays: Vec<Array> = Vec::new();
    for c in t.cols {
        match c.ty {
            Int => arrays.push(Array::Int(Vec::with_capacity(n))),
            OptInt => arrays.push(Array::OptInt(Vec::with_capacity(n))),
            Text => arrays.push(Array::Text(Vec::with_capacity(n))),
            OptText => arrays.push(Array::OptText(Vec::with_capacity(n))),
            Field => arrays.extend([
                Array::Int2(Vec::with_capacity(n)),
                Array::Text(Vec::with_capacity(n)),
                Array::Bytes(Vec::with_capacity(n)),
            ]),
        }
    }
    for row in rows {
        let mut a = 0;
        for (c, v) in t.cols.iter().zip(row) {
            let bad = |v: &Val| anyhow::anyhow!("{}.{} holds {}, expected {:?}", t.name, c.name, v.describe(), c.ty);
            match (&mut arrays[a], c.ty, v) {
                (Array::Int(out), Int, Val::Int(i)) => out.push(i),
                (Array::OptInt(out), OptInt, Val::Int(i)) => out.push(Some(i)),
                (Array::OptInt(out), OptInt, Val::Null) => out.push(None),
                (Array::Text(out), Text, Val::Text(s)) => out.push(s),
                (Array::OptText(out), OptText, Val::Text(s)) => out.push(Some(s)),
                (Array::OptText(out), OptText, Val::Null) => out.push(None),
                (_, Field, v) => {
                    let e = Encoded::of(&field_scalar(v)?);
                    if let [Array::Int2(vt), Array::Text(vn), Array::Bytes(vs)] = &mut arrays[a..a + 3] {
                        vt.push(e.vt);
                        vn.push(e.vn);
                        vs.push(e.vs);
                    }
                    a += 2;
                }
                (_, _, v) => return Err(bad(&v)),
            }
            a += 1;
        }
    }
    Ok(arrays)
}

/// Writes one batch and its progress record in one transaction.
async fn write_batch(
    target: &PgPool,
    t: &Table,
    insert: &str,
    rows: Vec<Vec<Val>>,
    last: Option<Vec<Val>>,
    end: bool,
) -> anyhow::Result<()> {
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let mut tx = target.begin().await?;
    if n > 0 {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert));
        for a in columns_of(t, rows)? {
            q = match a {
                Array::Int(v) => q.bind(v),
                Array::OptInt(v) => q.bind(v),
                Array::Text(v) => q.bind(v),
                Array::OptText(v) => q.bind(v),
                Array::Int2(v) => q.bind(v),
                Array::Bytes(v) => q.bind(v),
            };
        }
        q.execute(&mut *tx).await.with_context(|| format!("writing {}", t.name))?;
    }
    let last = last.map(|k| serde_json::to_string(&k)).transpose()?;
    sqlx::query(
        "UPDATE thingline_migration SET last_key = COALESCE($2, last_key), copied = copied + $3, done = $4 \
         WHERE tbl = $1",
    )
    .bind(t.name)
    .bind(last)
    .bind(n)
    .bind(end)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Moves every identity of the target past the largest id it holds and past SQLite's
/// `AUTOINCREMENT` high mark of the table (ids given once and never again).
async fn reset_sequences(target: &PgPool, autoincrement: &[(String, i64)]) -> anyhow::Result<()> {
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name",
    )
    .fetch_all(target)
    .await?;
    for (table, column) in identities {
        let sql = format!("SELECT max(\"{column}\") FROM \"{table}\"");
        let max: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(target).await?;
        let high = autoincrement.iter().filter(|(t, _)| *t == table).map(|(_, s)| *s).max();
        let next_after = max.into_iter().chain(high).max().unwrap_or(0);
        // setval(…, n, true): the next id is n + 1; (1, false): the next id is 1.
        let (value, called) = if next_after >= 1 { (next_after, true) } else { (1, false) };
        sqlx::query("SELECT setval(pg_get_serial_sequence(quote_ident($1), $2), $3, $4)")
            .bind(&table)
            .bind(&column)
            .bind(value)
            .bind(called)
            .execute(target)
            .await
            .with_context(|| format!("moving the identity of {table}.{column}"))?;
    }
    Ok(())
}

/// The progress display: a bar per table on a terminal, else a line per table and every
/// `every`.
struct Progress {
    multi: Option<MultiProgress>,
    every: Duration,
}

struct TableProgress {
    name: &'static str,
    /// Where lines go: above the bars on a terminal, else stderr.
    multi: Option<MultiProgress>,
    bar: Option<ProgressBar>,
    total: i64,
    started: Instant,
    at_start: i64,
    last_line: Instant,
    every: Duration,
}

impl Progress {
    fn new(every: Duration) -> Progress {
        let multi =
            std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi, every }
    }

    fn skipped(&mut self, name: &'static str, copied: i64) {
        say(self.multi.as_ref(), format!("{name}: copied by an earlier run ({copied} rows)"));
    }

    fn start(&mut self, name: &'static str, total: i64, copied: i64) -> TableProgress {
        let multi = self.multi.clone();
        let bar = multi.as_ref().filter(|_| total > 0).map(|m| {
            let bar = m.add(ProgressBar::new(u64::try_from(total).unwrap_or(0)));
            let style = ProgressStyle::with_template(
                "{prefix:>18} [{bar:32}] {human_pos:>11}/{human_len:<11} {msg:>14} {elapsed:>4} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(name);
            bar.set_position(u64::try_from(copied).unwrap_or(0));
            bar.reset_elapsed();
            bar.reset_eta();
            bar
        });
        if total > 0 {
            let resumed = if copied > 0 { format!(" (resuming after {copied})") } else { String::new() };
            say(multi.as_ref(), format!("{name}: copying {total} rows{resumed}"));
        }
        let now = Instant::now();
        TableProgress { name, multi, bar, total, started: now, at_start: copied, last_line: now, every: self.every }
    }
}

/// A line above the bars on a terminal, else on stderr.
fn say(multi: Option<&MultiProgress>, line: String) {
    match multi {
        Some(m) => {
            if m.println(&line).is_err() {
                eprintln!("{line}");
            }
        }
        None => eprintln!("{line}"),
    }
}

impl TableProgress {
    fn rate(&self, copied: i64) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 { (copied - self.at_start) as f64 / secs } else { 0.0 }
    }

    fn advance(&mut self, n: u64, copied: i64) {
        match &self.bar {
            Some(bar) => {
                bar.inc(n);
                bar.set_message(format!("{:.0} rows/s", self.rate(copied)));
            }
            None if self.multi.is_none() && self.last_line.elapsed() >= self.every => {
                self.last_line = Instant::now();
                eprintln!("{}: {copied}/{} rows, {:.0} rows/s", self.name, self.total, self.rate(copied));
            }
            None => {}
        }
    }

    fn finish(&mut self, copied: i64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let line = if self.total == 0 && copied == 0 {
            format!("{}: no rows", self.name)
        } else {
            let secs = self.started.elapsed().as_secs_f64();
            format!("{}: done, {copied} rows in {secs:.1} s ({:.0} rows/s)", self.name, self.rate(copied))
        };
        say(self.multi.as_ref(), line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_name_every_column() {
        let fields = TABLES.iter().find(|t| t.name == "object_fields").expect("object_fields");
        assert_eq!(
            insert_sql(fields),
            "INSERT INTO object_fields (\"cid\", \"name\", \"vt\", \"vn\", \"vs\", \"k\") \
             SELECT u.c0, u.c1, u.c2, u.c3::numeric, u.c4, u.c5 \
             FROM unnest($1::bigint[], $2::text[], $3::int2[], $4::text[], $5::bytea[], $6::text[]) \
             AS u(c0, c1, c2, c3, c4, c5) ON CONFLICT DO NOTHING"
        );
        for t in TABLES {
            assert!(t.key.iter().all(|&i| i < t.cols.len()), "{}", t.name);
        }
    }

    #[test]
    fn field_values_map_like_sqlite() {
        assert_eq!(field_scalar(Val::Blob(vec![0])).expect("null"), Scalar::Null);
        assert_eq!(field_scalar(Val::Blob(vec![1])).expect("false"), Scalar::Bool(false));
        assert_eq!(field_scalar(Val::Blob(vec![2])).expect("true"), Scalar::Bool(true));
        assert_eq!(field_scalar(Val::Int(-3)).expect("int"), Scalar::Int(-3));
        assert_eq!(field_scalar(Val::Real(2.5f64.to_bits())).expect("real"), Scalar::Float(2.5));
        assert_eq!(field_scalar(Val::Text("x".into())).expect("text"), Scalar::Text("x".into()));
        assert!(field_scalar(Val::Blob(vec![3])).is_err());
        assert!(field_scalar(Val::Null).is_err());
    }

    #[tokio::test]
    async fn every_table_and_column_of_a_store_is_copied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = crate::sqlite::SqliteStore::open(&path, &StoreOptions::default()).await.expect("store");
        store.close().await;
        let source = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&path).read_only(true))
            .await
            .expect("read-only");
        check_source_schema(&source).await.expect("the current schema");
        check_source_tables(&source).await.expect("every table and column known");
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' \
             AND name <> 'thingline_schema'",
        )
        .fetch_one(&source)
        .await
        .expect("tables");
        assert_eq!(n, i64::try_from(TABLES.len()).expect("small"), "every table of the store is in TABLES");
    }

    #[test]
    fn keys_survive_the_record() {
        let key = vec![Val::Int(7), Val::Text("a\"b".into()), Val::Real(f64::INFINITY.to_bits()), Val::Blob(vec![2])];
        let text = serde_json::to_string(&key).expect("json");
        let back: Vec<Val> = serde_json::from_str(&text).expect("back");
        assert_eq!(back, key);
    }
}
