//! The scale-out figures of issue #13: Thingline on PostgreSQL (`THINGLINE_STORE_URL`) and NATS
//! (`THINGLINE_BUS_URL`, `THINGLINE_BUS_PREFIX`), several `thingline serve` processes on one
//! database and one bus.
//!
//! - `pg-write` (module `pg_write`): two nodes receiving batched HTTPS writes, committed values/s
//!   against PostgreSQL's own `COPY` into the same `points` table in the same run; then every
//!   acknowledged value checked stored exactly once (SQL);
//! - `cross-node-latency` (module `cross_node`): Socket.IO subscribers on node B, paced writes to
//!   node A, commit→receipt against the same with the writes to node B;
//! - `pg-vs-sqlite` (module `pg_vs_sqlite`): one node on PostgreSQL against one on SQLite, the
//!   `run write --batch 1` and `run app-read` workloads.
//!
//! Every run makes its own scratch schema `tl_bench_<random>` on `--pg-url` ([`Scratch`]; the
//! nodes get `options=-c search_path=<schema>` in their store URL, so the migrations create
//! every table there) and its own NATS subject prefix, and drops the schema at the end (unless
//! `--keep-schema`). The nodes are spawned one after the other (the first runs the migrations),
//! each with a data dir of its own (its certificate) under the run's data dir.

pub(crate) mod cross_node;
pub(crate) mod pg_vs_sqlite;
pub(crate) mod pg_write;

use std::path::Path;

use anyhow::{Context, Result, bail};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::app::{AppKind, AppScenario};
use crate::cli::ScaleCommon;
use crate::driver::Workload;
use crate::report::StoreSetup;
use crate::scenarios::{Scenario, Target, WriteScenario};
use crate::server::{ServerProcess, ThinglineSpec, spawn_healthy};

/// A run's scratch schema on PostgreSQL and its NATS prefix.
pub struct Scratch {
    /// `--pg-url`, where the schema is made and dropped.
    admin_url: String,
    pub schema: String,
    /// The nodes' THINGLINE_STORE_URL: `--pg-url` with the schema as search_path.
    pub store_url: String,
    pub nats_url: String,
    /// The nodes' THINGLINE_BUS_PREFIX.
    pub bus_prefix: String,
    keep: bool,
}

impl Scratch {
    /// `CREATE SCHEMA tl_bench_<random>` on `--pg-url`.
    pub async fn create(common: &ScaleCommon) -> Result<Self> {
        let tag = random_tag();
        let schema = format!("tl_bench_{tag}");
        let mut conn = PgConnection::connect(&common.pg_url)
            .await
            .with_context(|| format!("connecting to {} (--pg-url)", common.pg_url))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating the schema {schema}"))?;
        let _ = conn.close().await;
        let separator = if common.pg_url.contains('?') { '&' } else { '?' };
        let store_url = format!("{}{separator}options=-c%20search_path%3D{schema}", common.pg_url);
        eprintln!("scratch schema {schema} on {}, NATS prefix tl-bench-{tag}", common.pg_url);
        Ok(Self {
            admin_url: common.pg_url.clone(),
            schema,
            store_url,
            nats_url: common.nats_url.clone(),
            bus_prefix: format!("tl-bench-{tag}"),
            keep: common.keep_schema,
        })
    }

    /// A connection to the scratch schema (its search_path).
    pub async fn connect(&self) -> Result<PgConnection> {
        PgConnection::connect(&self.store_url).await.with_context(|| format!("connecting to {}", self.store_url))
    }

    /// `DROP SCHEMA … CASCADE`, unless `--keep-schema`.
    pub async fn drop_schema(self) {
        if self.keep {
            eprintln!("scratch schema kept: {}", self.schema);
            return;
        }
        let dropped = async {
            let mut conn = PgConnection::connect(&self.admin_url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)))
                .execute(&mut conn)
                .await?;
            let _ = conn.close().await;
            anyhow::Ok(())
        }
        .await;
        if let Err(err) = dropped {
            eprintln!("note: could not drop the scratch schema {}: {err:#}", self.schema);
        }
    }
}

/// Twelve hex digits from the clock and the pid: a schema name and a NATS prefix of one run.
fn random_tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mixed = crate::driver::WorkerRng::new((nanos as u64) ^ (u64::from(std::process::id()) << 40)).next_u64();
    format!("{:012x}", mixed & 0xffff_ffff_ffff)
}

/// Where a node keeps its data: on PostgreSQL (`scratch`, with or without the bus) or SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// The scratch schema and the NATS bus: a node of a cluster.
    Cluster,
    /// The scratch schema, no bus: one node on PostgreSQL.
    Postgres,
    /// SQLite in the node's data dir.
    Sqlite,
}

/// A spawned, healthy node.
pub struct Node {
    pub label: &'static str,
    pub process: ServerProcess,
    pub store: StoreSetup,
    /// Its data dir (its certificate is `tls/cert.pem` there).
    pub data_dir: std::path::PathBuf,
}

impl Node {
    /// `thingline serve` in `<run data dir>/<label>` with `backing`, waited for until healthy.
    pub async fn start(
        common: &ScaleCommon,
        scratch: &Scratch,
        run_dir: &Path,
        label: &'static str,
        backing: Backing,
        extra_args: Vec<String>,
    ) -> Result<Self> {
        let data_dir = run_dir.join(label);
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let mut spec = ThinglineSpec::new(&common.server, &data_dir)?;
        spec.extra_args = extra_args;
        match backing {
            Backing::Cluster | Backing::Postgres => spec.store_url = Some(scratch.store_url.clone()),
            Backing::Sqlite => spec.store_url = None,
        }
        if backing == Backing::Cluster {
            spec.bus_url = Some(scratch.nats_url.clone());
            spec.bus_prefix = Some(scratch.bus_prefix.clone());
        } else {
            spec.bus_url = None;
            spec.bus_prefix = None;
        }
        let (process, ready) = spawn_healthy(&spec, label).await?;
        eprintln!(
            "{label}: {} ready in {} ms (pid {}, store {}, bus {}, durability {})",
            process.base_url,
            ready.as_millis(),
            process.pid,
            spec.store_url.as_deref().unwrap_or("sqlite in the data dir"),
            spec.bus_url.as_deref().unwrap_or("none"),
            spec.durability.as_str()
        );
        Ok(Self { label, process, store: spec.store_setup(), data_dir })
    }

    pub fn cert(&self) -> std::path::PathBuf {
        self.data_dir.join("tls/cert.pem")
    }

    pub async fn stop(self) {
        if let Err(err) = self.process.stop().await {
            eprintln!("note: stopping {}: {err:#}", self.label);
        }
    }
}

/// The nodes of a run, stopped (and the schema dropped, the data dir removed) whatever happens.
pub async fn finish(nodes: Vec<Node>, scratch: Scratch, data_dir: crate::server::DataDir) {
    for node in nodes {
        node.stop().await;
    }
    scratch.drop_schema().await;
    data_dir.finish();
}

/// `--rounds` and the like must be at least 1.
pub fn check_rounds(common: &ScaleCommon) -> Result<()> {
    if common.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(())
}

/// `a / b`, NaN when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// CPU seconds used so far by the nodes, by every `postgres` and `nats-server` process of the
/// machine (the shared database and bus serve other users too: a few of theirs may be in it),
/// by this process, and by the whole machine.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    pub nodes: Vec<Option<f64>>,
    pub postgres: f64,
    pub nats: f64,
    pub bench: Option<f64>,
    pub machine: Option<f64>,
}

/// CPU seconds over a window, from two [`CpuSample`]s.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuUse {
    /// Per node, in the order of the nodes.
    pub nodes: Vec<Option<f64>>,
    /// Every `postgres` process (backends that exited in the window are not counted).
    pub postgres: f64,
    pub nats: f64,
    pub bench: Option<f64>,
    /// Busy time of all cores (2 cores: at most 2 s per second).
    pub machine: Option<f64>,
    /// The window in seconds.
    pub seconds: f64,
}

impl CpuSample {
    pub fn take(node_pids: &[u32]) -> Self {
        let snapshot = crate::realtime::cpu::CpuSnapshot::of(None, "-");
        let (postgres, nats) = named_cpu_seconds();
        Self {
            nodes: node_pids
                .iter()
                .map(|pid| crate::realtime::cpu::stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat"))).ok())
                .collect(),
            postgres,
            nats,
            bench: crate::realtime::cpu::own_cpu_seconds(),
            machine: snapshot.machine,
        }
    }

    pub fn since(&self, start: &CpuSample, seconds: f64) -> CpuUse {
        let minus = |end: Option<f64>, start: Option<f64>| end.zip(start).map(|(e, s)| e - s);
        CpuUse {
            nodes: self.nodes.iter().zip(&start.nodes).map(|(e, s)| minus(*e, *s)).collect(),
            postgres: self.postgres - start.postgres,
            nats: self.nats - start.nats,
            bench: minus(self.bench, start.bench),
            machine: minus(self.machine, start.machine),
            seconds,
        }
    }
}

impl CpuUse {
    /// `nodes a+b 1.10 s, postgres 0.62 s, nats 0.01 s, bench 0.20 s, machine 1.95 s of 2.00 s`
    /// per second of the window.
    pub fn per_second(&self) -> String {
        let per = |v: f64| if self.seconds > 0.0 { v / self.seconds } else { f64::NAN };
        let nodes: Vec<String> =
            self.nodes.iter().map(|n| n.map_or_else(|| "-".to_string(), |v| format!("{:.2}", per(v)))).collect();
        format!(
            "CPU s/s: nodes {}, postgres {:.2}, nats {:.2}, bench {}, machine {}",
            nodes.join("+"),
            per(self.postgres),
            per(self.nats),
            self.bench.map_or_else(|| "-".to_string(), |v| format!("{:.2}", per(v))),
            self.machine.map_or_else(|| "-".to_string(), |v| format!("{:.2}", per(v))),
        )
    }
}

/// utime+stime of every process named `postgres`, and of every one named `nats-server`.
fn named_cpu_seconds() -> (f64, f64) {
    let mut postgres = 0.0;
    let mut nats = 0.0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0.0, 0.0);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        let slot = match comm.trim() {
            "postgres" => &mut postgres,
            "nats-server" => &mut nats,
            _ => continue,
        };
        if let Ok(seconds) = crate::realtime::cpu::stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat"))) {
            *slot += seconds;
        }
    }
    (postgres, nats)
}

/// The two request-bound scenarios the A/B commands compare: single-value writes
/// (`run write --batch 1`) over `things` things, and app reads by `users` users of 10 things each.
pub fn single_writes_and_app_reads(things: usize, users: usize) -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(WriteScenario { batch: 1, things }),
        Box::new(AppScenario { kind: AppKind::Read, users, things_per_user: 10, things: (users * 10).clamp(1, 1000) }),
    ]
}

/// Sets `scenario` up on every target, in order.
pub async fn set_up_on_each(scenario: &dyn Scenario, targets: &[Target]) -> Result<Vec<Workload>> {
    let mut workloads = Vec::new();
    for target in targets {
        eprintln!("{}: setting up {}", target.label, scenario.name());
        workloads.push(
            scenario
                .setup(target)
                .await
                .with_context(|| format!("setting up {} on {}", scenario.name(), target.label))?,
        );
    }
    Ok(workloads)
}
