//! `metrics-cost` (issue #15): what the Prometheus metrics cost. Thingline nodes that differ only
//! in their observability settings, spawned side by side (each with its own SQLite data dir, same
//! durability), measured with the `run` scenarios' setup and load loop (`scenarios`, `driver`):
//!
//! - `write`: `POST /v2/things/{token}` with one value, over `--things` things (`run write
//!   --batch 1`);
//! - `app-read`: `GET /v2/me/resources/temperature/{thingId}?limit=1` with `--users` app users'
//!   sessions, 10 things each (`run app-read`).
//!
//! Variants (`--variants`, default `off,on`): `off` is Thingline as shipped (no metrics
//! listener: no recorder); `on` adds `--metrics-addr 127.0.0.1:0`, and the bench scrapes its
//! `/metrics` every `--scrape-every` seconds during the measurements, as Prometheus would;
//! `off-quiet` and `on-quiet` are the same with the access log filtered out
//! (`THINGLINE_LOG=info,thingline::access=warn`), which tells what the access log costs.
//!
//! Each scenario is set up on every node, then measured round by round, rotating which variant
//! goes first. Reported: per measurement req/s, p50/p99 and the node's CPU time per request;
//! per pair the ratios of the medians: `on/off` is the metrics' cost (target: within 5 %).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::api::Api;
use crate::cli::{ServerArgs, secs};
use crate::driver::{DriverConfig, RunStats, https_client, median, run_load};
use crate::report::{Measurement, StoreSetup};
use crate::scale::{CpuSample, CpuUse, ratio, set_up_on_each, single_writes_and_app_reads};
use crate::scenarios::{Target, TargetKind};
use crate::server::{DataDir, ServerProcess, ThinglineSpec, spawn_healthy};

/// Per-request timeout of the load loops.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two measurements.
const SETTLE: Duration = Duration::from_secs(1);
/// The log filter of the `-quiet` variants: everything the bench's nodes log but the access log.
const QUIET_LOG: &str = "info,thingline::access=warn";

#[derive(Debug, Args)]
pub struct MetricsCostArgs {
    /// Concurrent keep-alive connections (one client loop each).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured seconds per variant, scenario and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Measure each variant this many times, rotating which goes first.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Things of the write scenario (single values, `run write --batch 1`).
    #[arg(long, default_value_t = 100)]
    pub things: usize,
    /// App users of the app-read scenario (`run app-read`), each linking 10 things.
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Comma-separated variants: `off` (as shipped), `on` (metrics listener on and scraped),
    /// `off-quiet`, `on-quiet` (the same without the access log).
    #[arg(long, default_value = "off,on")]
    pub variants: String,
    /// Seconds between two scrapes of `/metrics` of the `on` variants during a measurement (0:
    /// never scraped).
    #[arg(long, default_value_t = 5.0)]
    pub scrape_every: f64,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What one node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Variant {
    Off,
    On,
    OffQuiet,
    OnQuiet,
}

impl Variant {
    fn parse(name: &str) -> Result<Variant> {
        Ok(match name.trim() {
            "off" => Variant::Off,
            "on" => Variant::On,
            "off-quiet" => Variant::OffQuiet,
            "on-quiet" => Variant::OnQuiet,
            other => bail!("--variants: unknown variant {other:?} (off, on, off-quiet, on-quiet)"),
        })
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Off => "off",
            Variant::On => "on",
            Variant::OffQuiet => "off-quiet",
            Variant::OnQuiet => "on-quiet",
        }
    }

    fn metrics(self) -> bool {
        matches!(self, Variant::On | Variant::OnQuiet)
    }

    fn quiet(self) -> bool {
        matches!(self, Variant::OffQuiet | Variant::OnQuiet)
    }
}

/// A spawned node of one variant.
struct Node {
    variant: Variant,
    process: ServerProcess,
    store: StoreSetup,
    data_dir: std::path::PathBuf,
    /// `http://ADDR/metrics` of the `on` variants.
    metrics_url: Option<String>,
}

/// One measurement, the node's CPU over it, and the scrapes made meanwhile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantMeasurement {
    pub variant: String,
    #[serde(flatten)]
    pub measurement: Measurement,
    pub cpu: CpuUse,
    /// The node's CPU time per request of the window, µs.
    pub node_cpu_us_per_request: Option<f64>,
    /// Scrapes of `/metrics` during the measurement: count, largest body (bytes), slowest (ms).
    pub scrapes: usize,
    pub scrape_bytes: usize,
    pub scrape_ms: f64,
}

/// A ratio of two variants' medians.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pair {
    pub what: String,
    pub numerator: String,
    pub denominator: String,
    pub requests_per_s: f64,
    pub p50: f64,
    pub p99: f64,
    pub node_cpu_per_request: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    pub scenario: String,
    pub params: serde_json::Value,
    pub measurements: Vec<VariantMeasurement>,
    pub pairs: Vec<Pair>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsCostReport {
    pub scenario: String,
    pub params: serde_json::Value,
    pub generated_at: String,
    pub stores: Vec<StoreSetup>,
    pub scenarios: Vec<ScenarioResult>,
}

/// `thingline-bench metrics-cost`.
pub async fn run(args: &MetricsCostArgs) -> Result<()> {
    if args.concurrency == 0 || args.things == 0 || args.users == 0 || args.rounds == 0 || args.seconds <= 0.0 {
        bail!("--concurrency, --things, --users and --rounds must be at least 1, --seconds positive");
    }
    let variants: Vec<Variant> = args.variants.split(',').map(Variant::parse).collect::<Result<_>>()?;
    if variants.is_empty() {
        bail!("--variants: name at least one");
    }
    let data_dir = DataDir::from_args(&args.server)?;
    let mut nodes = Vec::new();
    let outcome = measure_all(args, &variants, &data_dir.path, &mut nodes).await;
    let stores = nodes.iter().map(|n| n.store.clone()).collect();
    for node in nodes {
        if let Err(err) = node.process.stop().await {
            eprintln!("note: stopping {}: {err:#}", node.variant.label());
        }
    }
    data_dir.finish();
    let scenarios = outcome?;
    let report = MetricsCostReport {
        scenario: "metrics-cost".into(),
        params: json!({
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "variants": variants.iter().map(|v| v.label()).collect::<Vec<_>>(),
            "scrapeEverySeconds": args.scrape_every,
            "durability": args.server.durability.as_str(),
        }),
        generated_at: crate::report::now(),
        stores,
        scenarios,
    };
    print(&report);
    if let Some(path) = &args.json {
        crate::report::write_json(path, &report)?;
    }
    let all: Vec<Measurement> =
        report.scenarios.iter().flat_map(|s| s.measurements.iter().map(|m| m.measurement.clone())).collect();
    crate::report::check_errors(&all)
}

async fn start_node(args: &MetricsCostArgs, run_dir: &std::path::Path, variant: Variant) -> Result<Node> {
    let data_dir = run_dir.join(variant.label());
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut spec = ThinglineSpec::new(&args.server, &data_dir)?;
    // SQLite in each node's own data dir: the nodes must not share a store.
    spec.store_url = None;
    spec.bus_url = None;
    spec.bus_prefix = None;
    if variant.metrics() {
        spec.extra_args = vec!["--metrics-addr".into(), "127.0.0.1:0".into()];
    }
    if variant.quiet() {
        spec.env.push(("THINGLINE_LOG".into(), QUIET_LOG.into()));
    }
    let (mut process, ready) = spawn_healthy(&spec, variant.label()).await?;
    let metrics_url = if variant.metrics() {
        let addr = process.listener("metrics", spec.start_timeout).await?;
        Some(format!("http://{addr}/metrics"))
    } else {
        None
    };
    eprintln!(
        "{}: {} ready in {} ms (pid {}, metrics {}, log {}, durability {})",
        variant.label(),
        process.base_url,
        ready.as_millis(),
        process.pid,
        metrics_url.as_deref().unwrap_or("off"),
        if variant.quiet() { QUIET_LOG } else { "info" },
        spec.durability.as_str()
    );
    Ok(Node { variant, process, store: spec.store_setup(), data_dir, metrics_url })
}

/// Scrapes `url` every `every` until `stop`; returns (scrapes, largest body, slowest ms).
async fn scrape_loop(url: String, every: Duration, stop: tokio::sync::watch::Receiver<bool>) -> (usize, usize, f64) {
    let client = reqwest::Client::new();
    let mut stop = stop;
    let (mut count, mut bytes, mut slowest) = (0, 0, 0.0f64);
    loop {
        tokio::select! {
            _ = stop.changed() => return (count, bytes, slowest),
            _ = tokio::time::sleep(every) => {}
        }
        let started = Instant::now();
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
            && let Ok(body) = r.bytes().await
        {
            count += 1;
            bytes = bytes.max(body.len());
            slowest = slowest.max(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
}

async fn measure_all(
    args: &MetricsCostArgs,
    variants: &[Variant],
    run_dir: &std::path::Path,
    nodes: &mut Vec<Node>,
) -> Result<Vec<ScenarioResult>> {
    for variant in variants {
        nodes.push(start_node(args, run_dir, *variant).await?);
    }
    let setup_client = https_client(16, Duration::from_secs(120))?;
    let targets: Vec<Target> = nodes
        .iter()
        .map(|node| Target {
            kind: TargetKind::Thingline,
            label: node.variant.label().to_string(),
            base_url: node.process.base_url.clone(),
            api: Api::new(setup_client.clone(), &node.process.base_url),
            panel_email: args.server.panel_email.clone(),
            panel_password: args.server.panel_password.clone(),
            data_dir: Some(node.data_dir.clone()),
            store_url: None,
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
        for round in 1..=args.rounds {
            // Rotate which variant goes first.
            let mut order: Vec<usize> = (0..targets.len()).collect();
            order.rotate_left((round - 1) % targets.len());
            for index in order {
                let target = &targets[index];
                let node = &nodes[index];
                eprintln!(
                    "round {round}: {} {} (concurrency {}, {:.0}+{:.0} s)",
                    target.label,
                    scenario.name(),
                    args.concurrency,
                    args.warmup,
                    args.seconds
                );
                let pids: Vec<u32> = target.pid.into_iter().collect();
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let scraper = match (&node.metrics_url, args.scrape_every > 0.0) {
                    (Some(url), true) => Some(tokio::spawn(scrape_loop(url.clone(), secs(args.scrape_every), stop_rx))),
                    _ => None,
                };
                let load = run_load(&config, &workloads[index]);
                let sampled = async {
                    tokio::time::sleep(config.warmup).await;
                    (Instant::now(), CpuSample::take(&pids))
                };
                let (stats, (at, start)) = tokio::join!(load, sampled);
                let cpu = CpuSample::take(&pids).since(&start, at.elapsed().as_secs_f64());
                let _ = stop_tx.send(true);
                let (scrapes, scrape_bytes, scrape_ms) = match scraper {
                    Some(task) => task.await.unwrap_or((0, 0, 0.0)),
                    None => (0, 0, 0.0),
                };
                let stats = stats?;
                let node_cpu_us_per_request = cpu
                    .nodes
                    .first()
                    .copied()
                    .flatten()
                    .filter(|_| stats.requests > 0)
                    .map(|s| s * 1e6 / stats.requests as f64);
                let rss_mb =
                    target.pid.and_then(|pid| crate::server::rss_bytes_of(pid).ok()).map(|b| b as f64 / 1048576.0);
                let measurement = Measurement { target: target.label.clone(), round, stats, rss_mb };
                eprintln!(
                    "  {}; node CPU {} µs/request; {}",
                    crate::report::one_line(&measurement),
                    node_cpu_us_per_request.map_or_else(|| "-".into(), |v| format!("{v:.1}")),
                    cpu.per_second()
                );
                measurements.push(VariantMeasurement {
                    variant: target.label.clone(),
                    measurement,
                    cpu,
                    node_cpu_us_per_request,
                    scrapes,
                    scrape_bytes,
                    scrape_ms,
                });
                tokio::time::sleep(SETTLE).await;
            }
        }
        let pick = |label: &str, f: &dyn Fn(&VariantMeasurement) -> Option<f64>| {
            let values: Vec<f64> = measurements.iter().filter(|m| m.variant == label).filter_map(f).collect();
            if values.is_empty() { f64::NAN } else { median(&values) }
        };
        let stat = |f: fn(&RunStats) -> f64| move |m: &VariantMeasurement| Some(f(&m.measurement.stats));
        let pair = |what: &str, a: Variant, b: Variant| {
            let (a, b) = (a.label(), b.label());
            Pair {
                what: what.into(),
                numerator: a.into(),
                denominator: b.into(),
                requests_per_s: ratio(pick(a, &stat(|s| s.requests_per_s)), pick(b, &stat(|s| s.requests_per_s))),
                p50: ratio(pick(a, &stat(|s| s.latency.p50_ms)), pick(b, &stat(|s| s.latency.p50_ms))),
                p99: ratio(pick(a, &stat(|s| s.latency.p99_ms)), pick(b, &stat(|s| s.latency.p99_ms))),
                node_cpu_per_request: ratio(
                    pick(a, &|m: &VariantMeasurement| m.node_cpu_us_per_request),
                    pick(b, &|m: &VariantMeasurement| m.node_cpu_us_per_request),
                ),
            }
        };
        let has = |v: Variant| variants.contains(&v);
        let mut pairs = Vec::new();
        for (what, a, b) in [
            ("metrics (access log on)", Variant::On, Variant::Off),
            ("metrics (access log off)", Variant::OnQuiet, Variant::OffQuiet),
            ("access log (metrics off)", Variant::Off, Variant::OffQuiet),
            ("access log (metrics on)", Variant::On, Variant::OnQuiet),
        ] {
            if has(a) && has(b) {
                pairs.push(pair(what, a, b));
            }
        }
        results.push(ScenarioResult {
            scenario: scenario.name().to_string(),
            params: scenario.params(),
            measurements,
            pairs,
        });
    }
    Ok(results)
}

fn print(report: &MetricsCostReport) {
    println!();
    println!("scenario metrics-cost  {}", report.params);
    for store in &report.stores {
        println!("{}", crate::report::store_line(Some(store)));
    }
    for result in &report.scenarios {
        println!("{}  {}", result.scenario, result.params);
        println!(
            "{:<10} {:>5} {:>10} {:>11} {:>8} {:>8} {:>8} {:>12} {:>8}  cpu",
            "variant", "round", "requests", "req/s", "p50 ms", "p99 ms", "errors", "node µs/req", "scrapes"
        );
        for m in &result.measurements {
            let s = &m.measurement.stats;
            println!(
                "{:<10} {:>5} {:>10} {:>11.0} {:>8.2} {:>8.2} {:>8} {:>12} {:>8}  {}",
                m.variant,
                m.measurement.round,
                s.requests,
                s.requests_per_s,
                s.latency.p50_ms,
                s.latency.p99_ms,
                s.errors(),
                m.node_cpu_us_per_request.map_or_else(|| "-".into(), |v| format!("{v:.1}")),
                if m.scrapes > 0 {
                    format!("{} ({} KB, ≤{:.1} ms)", m.scrapes, m.scrape_bytes / 1024, m.scrape_ms)
                } else {
                    "-".into()
                },
                m.cpu.per_second()
            );
        }
        for p in &result.pairs {
            println!(
                "{}: {} — {}/{} (medians): req/s {:.3}  p50 {:.3}x  p99 {:.3}x  node CPU/request {:.3}x",
                result.scenario,
                p.what,
                p.numerator,
                p.denominator,
                p.requests_per_s,
                p.p50,
                p.p99,
                p.node_cpu_per_request
            );
        }
        for m in &result.measurements {
            for sample in &m.measurement.stats.error_samples {
                println!("  {} round {}: {sample}", m.variant, m.measurement.round);
            }
        }
    }
}
