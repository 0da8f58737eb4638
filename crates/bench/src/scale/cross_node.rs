//! `cross-node-latency`: Socket.IO commit→receipt across two nodes on one PostgreSQL schema and
//! one NATS prefix, against the same on one node, in the same run.
//!
//! Two nodes (`node-a`, `node-b`) are spawned on the run's scratch schema and NATS prefix; the
//! realtime bench's fixture (one thing, ceil(N/50) app users with a session each) is set up
//! through node A. Each round measures, alternating which goes first, with the realtime bench's
//! clients, paced writer and statistics (`realtime::latency`):
//!
//! - cross-node: `--subs` subscribers of the thing on node B, the paced HTTPS writes to node A
//!   (each delivery went A → NATS → B);
//! - same-node: as many subscribers on node B, the writes to node B too (the one-node figure,
//!   on the same cluster: B still publishes each value on NATS for the other nodes).
//!
//! Latency is from the write's 201 (its commit: an acknowledged value is committed) to the
//! receipt, and from the write's send; the ratio is p99(cross) / p99(same) of 201→receipt
//! (medians over rounds).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;

use super::{Backing, Node, Scratch, check_rounds, finish, ratio};
use crate::api::Api;
use crate::cli::{CrossNodeArgs, RealtimeArgs, RealtimeCommon, RealtimeTarget};
use crate::driver::{https_client, median};
use crate::realtime::fixture::{Fixture, setup};
use crate::realtime::latency::{Opening, WritePlan, measure, measure_subscribed};
use crate::realtime::report::TargetReport;
use crate::realtime::sockets::{client_runtime, close_sockets, open_sockets};
use crate::realtime::targets::TargetSpec;
use crate::report::StoreSetup;
use crate::server::DataDir;

/// Pause between two measurements.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrossRound {
    pub round: usize,
    pub first: String,
    pub cross_node: TargetReport,
    pub same_node: TargetReport,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrossNodeReport {
    pub scenario: String,
    pub params: serde_json::Value,
    pub generated_at: String,
    pub schema: String,
    pub bus_prefix: String,
    pub store: Option<StoreSetup>,
    pub rounds: Vec<CrossRound>,
    /// Medians over rounds of 201→receipt, in ms.
    pub cross_p50_ms: f64,
    pub cross_p99_ms: f64,
    pub same_p50_ms: f64,
    pub same_p99_ms: f64,
    /// cross p99 / same p99 (201→receipt, medians).
    pub p99_cross_over_same: f64,
}

/// `thingline-bench cross-node-latency`.
pub async fn run(args: &CrossNodeArgs) -> Result<()> {
    check_rounds(&args.common)?;
    if args.subs == 0 || args.client_threads == 0 || args.connect_concurrency == 0 {
        bail!("--subs, --client-threads and --connect-concurrency must be at least 1");
    }
    if !(args.rate > 0.0 && args.rate <= 100_000.0) || args.seconds <= 0.0 {
        bail!("--rate must be in (0, 100000] and --seconds positive");
    }
    let realtime = realtime_args(args);
    let clients = client_runtime(&realtime.common)?;
    let scratch = Scratch::create(&args.common).await?;
    let data_dir = match DataDir::from_args(&args.common.server) {
        Ok(dir) => dir,
        Err(err) => {
            scratch.drop_schema().await;
            return Err(err);
        }
    };
    let mut nodes = Vec::new();
    let outcome = measure_all(args, &realtime, &scratch, &data_dir.path, &mut nodes, clients.handle()).await;
    clients.shutdown_background();
    let (schema, prefix) = (scratch.schema.clone(), scratch.bus_prefix.clone());
    let store = nodes.first().map(|n: &Node| n.store.clone());
    finish(nodes, scratch, data_dir).await;
    let rounds = outcome?;
    let pick = |f: fn(&CrossRound) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let cross_p99 = pick(|r| r.cross_node.latency_from_201.p99_ms);
    let same_p99 = pick(|r| r.same_node.latency_from_201.p99_ms);
    let report = CrossNodeReport {
        scenario: "cross-node-latency".into(),
        params: json!({
            "nodes": 2,
            "subs": args.subs,
            "rate": args.rate,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rounds": args.common.rounds,
            "clientThreads": args.client_threads,
            "subscribers": "all on node B",
        }),
        generated_at: crate::report::now(),
        schema,
        bus_prefix: prefix,
        store,
        cross_p50_ms: pick(|r| r.cross_node.latency_from_201.p50_ms),
        cross_p99_ms: cross_p99,
        same_p50_ms: pick(|r| r.same_node.latency_from_201.p50_ms),
        same_p99_ms: same_p99,
        p99_cross_over_same: ratio(cross_p99, same_p99),
        rounds,
    };
    print(&report);
    if let Some(path) = &args.common.json {
        crate::report::write_json(path, &report)?;
    }
    check(&report)
}

/// The realtime bench's arguments for the same measurement.
fn realtime_args(args: &CrossNodeArgs) -> RealtimeArgs {
    RealtimeArgs {
        subs: args.subs,
        rate: args.rate,
        seconds: args.seconds,
        warmup: args.warmup,
        common: RealtimeCommon {
            targets: vec![RealtimeTarget::Thingline],
            client_threads: args.client_threads,
            connect_concurrency: args.connect_concurrency,
            open_timeout: args.open_timeout,
            no_reference: true,
            node: "node".into(),
            refserver_script: None,
            floor_broadcast_threads: 2,
            json: None,
            server: args.common.server.clone(),
        },
    }
}

async fn measure_all(
    args: &CrossNodeArgs,
    realtime: &RealtimeArgs,
    scratch: &Scratch,
    run_dir: &std::path::Path,
    nodes: &mut Vec<Node>,
    clients: &tokio::runtime::Handle,
) -> Result<Vec<CrossRound>> {
    let common = &args.common;
    let extra = vec!["--max-connections".to_string(), (args.subs + 1_000).max(10_000).to_string()];
    nodes.push(Node::start(common, scratch, run_dir, "node-a", Backing::Cluster, extra.clone()).await?);
    nodes.push(Node::start(common, scratch, run_dir, "node-b", Backing::Cluster, extra).await?);
    let api = Api::new(https_client(16, Duration::from_secs(120))?, &nodes[0].process.base_url);
    let fixture = setup(&api, &common.server, args.subs).await.context("setting up through node A's API")?;
    let cert = nodes[1].cert();
    let node_b = TargetSpec { label: "same-node", addr: nodes[1].process.addr, pid: nodes[1].process.pid, cert: &cert };
    let a_write_url = format!("{}/v2/things/{}", nodes[0].process.base_url, fixture.thing_token);
    let mut rounds = Vec::new();
    for round in 1..=common.rounds {
        let cross_first = round % 2 == 1;
        let (cross_node, same_node) = if cross_first {
            let cross = measure_cross(realtime, &node_b, &a_write_url, &fixture, clients).await?;
            tokio::time::sleep(SETTLE).await;
            let same = measure(realtime, &node_b, &fixture, clients).await?;
            (cross, same)
        } else {
            let same = measure(realtime, &node_b, &fixture, clients).await?;
            tokio::time::sleep(SETTLE).await;
            let cross = measure_cross(realtime, &node_b, &a_write_url, &fixture, clients).await?;
            (cross, same)
        };
        tokio::time::sleep(SETTLE).await;
        rounds.push(CrossRound {
            round,
            first: if cross_first { "cross-node" } else { "same-node" }.into(),
            cross_node,
            same_node,
        });
    }
    Ok(rounds)
}

/// The subscribers on node B, the writes to node A.
async fn measure_cross(
    realtime: &RealtimeArgs,
    node_b: &TargetSpec<'_>,
    write_url: &str,
    fixture: &Fixture,
    clients: &tokio::runtime::Handle,
) -> Result<TargetReport> {
    let label = "cross-node";
    let target = TargetSpec { label, addr: node_b.addr, pid: node_b.pid, cert: node_b.cert };
    let plan = WritePlan::of(realtime);
    let sockets =
        open_sockets(&realtime.common, &target, fixture, clients, realtime.subs, plan.total as usize + 16).await?;
    let shared = sockets.shared.clone();
    let opening = Opening {
        opened: sockets.opened,
        retries: sockets.retries.clone(),
        failures: sockets.failures.clone(),
        open_seconds: sockets.open_seconds,
    };
    measure_subscribed(realtime, label, write_url, node_b.pid, shared, opening, close_sockets(sockets, label)).await
}

fn print(report: &CrossNodeReport) {
    println!();
    println!("scenario cross-node-latency  {}", report.params);
    println!("{}", crate::report::store_line(report.store.as_ref()));
    println!("schema {}, NATS prefix {}", report.schema, report.bus_prefix);
    println!(
        "{:<11} {:>5} {:>7} {:>17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "measure", "round", "opened", "deliveries", "201 p50", "201 p99", "send p50", "send p99", "rtt p50", "B cpu/s"
    );
    for round in &report.rounds {
        for m in [&round.cross_node, &round.same_node] {
            println!(
                "{:<11} {:>5} {:>7} {:>17} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8}",
                m.target,
                round.round,
                m.opened,
                format!("{}/{}", m.received_deliveries, m.expected_deliveries),
                m.latency_from_201.p50_ms,
                m.latency_from_201.p99_ms,
                m.latency_from_send.p50_ms,
                m.latency_from_send.p99_ms,
                m.write_rtt.p50_ms,
                m.server_cpu_seconds
                    .map_or_else(|| "-".to_string(), |s| format!("{:.2}", s / m.window_seconds.max(1e-9)))
            );
        }
    }
    println!(
        "201→receipt (medians, ms): cross-node p50 {:.2} p99 {:.2}; same-node p50 {:.2} p99 {:.2}; p99 cross/same {:.2}",
        report.cross_p50_ms, report.cross_p99_ms, report.same_p50_ms, report.same_p99_ms, report.p99_cross_over_same
    );
    for round in &report.rounds {
        for m in [&round.cross_node, &round.same_node] {
            for sample in m.write_error_samples.iter().chain(&m.topic_error_samples) {
                println!("  {} round {}: {sample}", m.target, round.round);
            }
        }
    }
}

/// Fails when a measurement lost deliveries or had write errors.
fn check(report: &CrossNodeReport) -> Result<()> {
    let bad: Vec<String> = report
        .rounds
        .iter()
        .flat_map(|r| [(&r.cross_node, r.round), (&r.same_node, r.round)])
        .filter(|(m, _)| m.missing > 0 || m.write_errors > 0)
        .map(|(m, round)| {
            format!("{} round {round}: {} deliveries missing, {} write errors", m.target, m.missing, m.write_errors)
        })
        .collect();
    if bad.is_empty() { Ok(()) } else { bail!("{}", bad.join("; ")) }
}
