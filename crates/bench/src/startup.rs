//! The `startup` scenario: spawn a server N times and measure the time from spawn until
//! `/v2/health` answers 200 (polled every 5 ms), then, after some idle seconds, its
//! resident memory (VmRSS). Thingline runs on the given `--data-dir` (a seeded store shows
//! what a big store costs at start); the reference is measured the same way.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Only, RunArgs, ServerArgs, secs};
use crate::driver::{https_client, median};
use crate::report::{self, StoreSetup};
use crate::server::{DataDir, ServerProcess, ThinglineSpec, spawn_reference, spawn_thingline};

const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartupSample {
    pub ready_ms: f64,
    pub rss_mb: f64,
    pub stop_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartupTarget {
    pub target: String,
    pub samples: Vec<StartupSample>,
    pub median_ready_ms: f64,
    pub median_rss_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartupReport {
    pub scenario: &'static str,
    pub runs: usize,
    pub idle_secs: f64,
    /// Thingline's store (None when only the reference was measured).
    pub store: Option<StoreSetup>,
    pub targets: Vec<StartupTarget>,
}

pub async fn run(args: &RunArgs) -> Result<()> {
    let runs = args.runs.max(1);
    let idle = secs(args.idle_secs);
    let mut targets = Vec::new();
    let mut store = None;

    if args.only != Only::Thingline {
        let server = args.server.clone();
        let target =
            measure("reference", runs, idle, &server, || spawn_reference(server.server_log, server.start_timeout()))
                .await?;
        targets.push(target);
    }
    if args.only != Only::Reference {
        if args.server.data_dir.is_none() {
            eprintln!("note: no --data-dir: measuring on an empty store (the first start also creates it)");
        }
        let dir = DataDir::from_args(&args.server)?;
        let outcome = async {
            let spec = ThinglineSpec::new(&args.server, &dir.path)?;
            store = Some(spec.store_setup());
            measure("thingline", runs, idle, &args.server, || spawn_thingline(&spec)).await
        }
        .await;
        dir.finish();
        targets.push(outcome?);
    }

    let report = StartupReport { scenario: "startup", runs, idle_secs: args.idle_secs, store, targets };
    println!();
    println!("scenario startup  runs={} idle={}s", report.runs, report.idle_secs);
    if args.only != Only::Reference {
        println!("{}", report::store_line(report.store.as_ref()));
    }
    println!("{:<10} {:>16} {:>14} {:>30}", "target", "median ready ms", "median RSS MB", "ready ms per run");
    for t in &report.targets {
        let each: Vec<String> = t.samples.iter().map(|s| format!("{:.0}", s.ready_ms)).collect();
        println!("{:<10} {:>16.1} {:>14.1} {:>30}", t.target, t.median_ready_ms, t.median_rss_mb, each.join(" "));
    }
    if let [reference, thingline] = report.targets.as_slice() {
        println!(
            "thingline/reference: ready {:.2}x  RSS {:.2}x",
            thingline.median_ready_ms / reference.median_ready_ms.max(1e-9),
            thingline.median_rss_mb / reference.median_rss_mb.max(1e-9)
        );
    }
    if let Some(path) = &args.json {
        report::write_json(path, &report)?;
    }
    Ok(())
}

/// Spawn `runs` times with `spawn`; each time wait for health, idle, read RSS, stop.
async fn measure<F, Fut>(
    label: &str,
    runs: usize,
    idle: Duration,
    server: &ServerArgs,
    spawn: F,
) -> Result<StartupTarget>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<ServerProcess>>,
{
    let client = https_client(1, Duration::from_secs(5))?;
    let mut samples = Vec::with_capacity(runs);
    for run in 1..=runs {
        let mut process = spawn().await?;
        let ready = match process.wait_healthy(&client, server.start_timeout(), POLL).await {
            Ok(ready) => ready,
            Err(err) => {
                let _ = process.stop().await;
                return Err(err);
            }
        };
        tokio::time::sleep(idle).await;
        let rss = process.rss_bytes();
        let stopped = process.stop().await?;
        let sample = StartupSample {
            ready_ms: ready.as_secs_f64() * 1e3,
            rss_mb: rss? as f64 / (1024.0 * 1024.0),
            stop_ms: stopped.as_secs_f64() * 1e3,
        };
        eprintln!(
            "{label} run {run}: ready in {:.1} ms, RSS {:.1} MB, stopped in {:.0} ms",
            sample.ready_ms, sample.rss_mb, sample.stop_ms
        );
        samples.push(sample);
    }
    let ready: Vec<f64> = samples.iter().map(|s| s.ready_ms).collect();
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_mb).collect();
    Ok(StartupTarget {
        target: label.to_string(),
        median_ready_ms: median(&ready),
        median_rss_mb: median(&rss),
        samples,
    })
}
