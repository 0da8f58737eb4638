//! `pg-vs-sqlite`: one Thingline node on PostgreSQL (the run's scratch schema, no bus) against
//! one on SQLite (in its data dir), both spawned and measured in the same run with the `run`
//! scenarios' setup and load loop (`scenarios`, `driver`):
//!
//! - `write`: `POST /v2/things/{token}` with one value, over `--things` things (`run write
//!   --batch 1`);
//! - `app-read`: `GET /v2/me/resources/temperature/{thingId}?limit=1` with `--users` app users'
//!   sessions, 10 things each (`run app-read`).
//!
//! With `--clustered` the PostgreSQL node is also on the run's NATS prefix (a cluster of one,
//! which asks the store for sessions and latest values as every clustered node does).
//!
//! Each scenario is set up on both nodes, then measured round by round, alternating which store
//! goes first; the ratios are PostgreSQL / SQLite of the medians.

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::json;

use super::{
    Backing, CpuSample, CpuUse, Node, Scratch, check_rounds, finish, ratio, set_up_on_each, single_writes_and_app_reads,
};
use crate::api::Api;
use crate::cli::{PgVsSqliteArgs, secs};
use crate::driver::{DriverConfig, RunStats, https_client, median, run_load};
use crate::report::{Measurement, StoreSetup};
use crate::scenarios::{Target, TargetKind};
use crate::server::DataDir;

/// Per-request timeout of the load loops.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two measurements.
const SETTLE: Duration = Duration::from_secs(1);

/// One measurement and the CPU over it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreMeasurement {
    #[serde(flatten)]
    pub measurement: Measurement,
    pub cpu: CpuUse,
}

/// A scenario on both stores.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    pub scenario: String,
    pub params: serde_json::Value,
    pub measurements: Vec<StoreMeasurement>,
    /// PostgreSQL / SQLite of the median requests/s.
    pub requests_per_s_pg_over_sqlite: f64,
    pub p50_pg_over_sqlite: f64,
    pub p99_pg_over_sqlite: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PgVsSqliteReport {
    pub scenario: String,
    pub params: serde_json::Value,
    pub generated_at: String,
    pub schema: String,
    pub stores: Vec<StoreSetup>,
    pub scenarios: Vec<ScenarioResult>,
}

/// `thingline-bench pg-vs-sqlite`.
pub async fn run(args: &PgVsSqliteArgs) -> Result<()> {
    check_rounds(&args.common)?;
    if args.concurrency == 0 || args.things == 0 || args.users == 0 || args.seconds <= 0.0 {
        bail!("--concurrency, --things and --users must be at least 1, --seconds positive");
    }
    let scratch = Scratch::create(&args.common).await?;
    let data_dir = match DataDir::from_args(&args.common.server) {
        Ok(dir) => dir,
        Err(err) => {
            scratch.drop_schema().await;
            return Err(err);
        }
    };
    let mut nodes = Vec::new();
    let outcome = measure_all(args, &scratch, &data_dir.path, &mut nodes).await;
    let schema = scratch.schema.clone();
    let stores = nodes.iter().map(|n| n.store.clone()).collect();
    finish(nodes, scratch, data_dir).await;
    let scenarios = outcome?;
    let report = PgVsSqliteReport {
        scenario: "pg-vs-sqlite".into(),
        params: json!({
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rounds": args.common.rounds,
            "durability": args.common.server.durability.as_str(),
            "postgresNodeOnTheBus": args.clustered,
        }),
        generated_at: crate::report::now(),
        schema,
        stores,
        scenarios,
    };
    print(&report);
    if let Some(path) = &args.common.json {
        crate::report::write_json(path, &report)?;
    }
    let all: Vec<Measurement> =
        report.scenarios.iter().flat_map(|s| s.measurements.iter().map(|m| m.measurement.clone())).collect();
    crate::report::check_errors(&all)
}

async fn measure_all(
    args: &PgVsSqliteArgs,
    scratch: &Scratch,
    run_dir: &std::path::Path,
    nodes: &mut Vec<Node>,
) -> Result<Vec<ScenarioResult>> {
    let common = &args.common;
    let backing = if args.clustered { Backing::Cluster } else { Backing::Postgres };
    nodes.push(Node::start(common, scratch, run_dir, "postgres", backing, Vec::new()).await?);
    nodes.push(Node::start(common, scratch, run_dir, "sqlite", Backing::Sqlite, Vec::new()).await?);
    let setup_client = https_client(16, Duration::from_secs(120))?;
    let targets: Vec<Target> = nodes
        .iter()
        .map(|node| Target {
            kind: TargetKind::Thingline,
            label: node.label.to_string(),
            base_url: node.process.base_url.clone(),
            api: Api::new(setup_client.clone(), &node.process.base_url),
            panel_email: common.server.panel_email.clone(),
            panel_password: common.server.panel_password.clone(),
            data_dir: Some(node.data_dir.clone()),
            store_url: node.store.store_url.clone(),
            pid: Some(node.process.pid),
        })
        .collect();
    let scenarios = single_writes_and_app_reads(args.things, args.users);
    let config = DriverConfig {
        concurrency: args.concurrency,
        warmup: secs(args.warmup),
        duration: secs(args.seconds),
        max_requests: 5_000_000,
        request_timeout: REQUEST_TIMEOUT,
    };
    let mut results = Vec::new();
    for scenario in &scenarios {
        let workloads = set_up_on_each(scenario.as_ref(), &targets).await?;
        let mut measurements = Vec::new();
        for round in 1..=common.rounds {
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if round % 2 == 0 {
                order.reverse();
            }
            for index in order {
                let target = &targets[index];
                eprintln!(
                    "round {round}: {} {} (concurrency {}, {:.0}+{:.0} s)",
                    target.label,
                    scenario.name(),
                    args.concurrency,
                    args.warmup,
                    args.seconds
                );
                let pids: Vec<u32> = target.pid.into_iter().collect();
                let load = run_load(&config, &workloads[index]);
                let sampled = async {
                    tokio::time::sleep(config.warmup).await;
                    (std::time::Instant::now(), CpuSample::take(&pids))
                };
                let (stats, (at, start)) = tokio::join!(load, sampled);
                let stats = stats?;
                let cpu = CpuSample::take(&pids).since(&start, at.elapsed().as_secs_f64());
                let rss_mb =
                    target.pid.and_then(|pid| crate::server::rss_bytes_of(pid).ok()).map(|b| b as f64 / 1048576.0);
                let measurement = Measurement { target: target.label.clone(), round, stats, rss_mb };
                eprintln!("  {}; {}", crate::report::one_line(&measurement), cpu.per_second());
                measurements.push(StoreMeasurement { measurement, cpu });
                tokio::time::sleep(SETTLE).await;
            }
        }
        let pick = |label: &str, f: fn(&RunStats) -> f64| {
            median(
                &measurements
                    .iter()
                    .filter(|m| m.measurement.target == label)
                    .map(|m| f(&m.measurement.stats))
                    .collect::<Vec<_>>(),
            )
        };
        let both = |f: fn(&RunStats) -> f64| ratio(pick("postgres", f), pick("sqlite", f));
        results.push(ScenarioResult {
            scenario: scenario.name().to_string(),
            params: scenario.params(),
            requests_per_s_pg_over_sqlite: both(|s| s.requests_per_s),
            p50_pg_over_sqlite: both(|s| s.latency.p50_ms),
            p99_pg_over_sqlite: both(|s| s.latency.p99_ms),
            measurements,
        });
    }
    Ok(results)
}

fn print(report: &PgVsSqliteReport) {
    println!();
    println!("scenario pg-vs-sqlite  {}", report.params);
    for store in &report.stores {
        println!("{}", crate::report::store_line(Some(store)));
    }
    println!("schema {}", report.schema);
    for result in &report.scenarios {
        println!("{}  {}", result.scenario, result.params);
        println!(
            "{:<10} {:>5} {:>10} {:>11} {:>8} {:>8} {:>8}  cpu",
            "store", "round", "requests", "req/s", "p50 ms", "p99 ms", "errors"
        );
        for m in &result.measurements {
            let s = &m.measurement.stats;
            println!(
                "{:<10} {:>5} {:>10} {:>11.0} {:>8.2} {:>8.2} {:>8}  {}",
                m.measurement.target,
                m.measurement.round,
                s.requests,
                s.requests_per_s,
                s.latency.p50_ms,
                s.latency.p99_ms,
                s.errors(),
                m.cpu.per_second()
            );
        }
        println!(
            "{}: postgres/sqlite (medians): req/s {:.3}  p50 {:.2}x  p99 {:.2}x",
            result.scenario, result.requests_per_s_pg_over_sqlite, result.p50_pg_over_sqlite, result.p99_pg_over_sqlite
        );
        for m in &result.measurements {
            for sample in &m.measurement.stats.error_samples {
                println!("  {} round {}: {sample}", m.measurement.target, m.measurement.round);
            }
        }
    }
}
