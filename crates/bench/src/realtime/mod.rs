//! `realtime-latency` and `realtime-memory`: the Socket.IO figures of issue #5, with Rust clients.
//!
//! Both commands set up a fixture through Thingline's API (module `fixture`, as
//! `realtime/realtime-bench.js main` does), open N bare Engine.IO v4 / Socket.IO v5 clients
//! (`client`: one socket; `sockets`: the N of a target, on their own runtime of
//! `--client-threads` workers), and measure each target (`--targets`) in turn (`targets`):
//! Thingline, the Node socket.io reference (`realtime-bench.js refserver`) and the floor server
//! (`floor-server`, module `crate::floor`), the last two with Thingline's certificate, one after
//! the other in the same run. `realtime-latency` measures a target with paced writes (`latency`,
//! `writer`, `cpu`), `realtime-memory` with idle sockets (`memory`); `report` prints and checks.
//!
//! Clock: every time is nanoseconds since one `Instant` taken at the start of a target's
//! measurement (CLOCK_MONOTONIC, shared by the writer and every client task). The written value
//! is a sequence number; the writer keeps the time just before sending and at the 201; each
//! client keeps (value, receipt time) of every data frame. Warm-up writes are not counted.
//!
//! Memory: the server's VmRSS once settled before the sockets are opened and once settled with
//! all of them open and idle; the difference per opened socket.
//!
//! Every wait has a deadline: socket setup (`--open-timeout` per attempt, one retry; the target
//! is measured if 99 % opened, failures reported), writes (30 s), the drain of the last
//! deliveries, the stop of the client tasks, the reference's start, the settling of VmRSS.

pub(crate) mod client;
pub(crate) mod cpu;
pub(crate) mod fixture;
pub(crate) mod latency;
pub(crate) mod memory;
pub(crate) mod report;
pub(crate) mod sockets;
pub(crate) mod targets;
mod writer;

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::runtime::Handle;

use self::fixture::Fixture;
use self::report::{MemoryReport, RealtimeReport};
use self::targets::TargetSpec;
use crate::cli::{RealtimeArgs, RealtimeCommon, RealtimeMemoryArgs, RealtimeTarget};
use crate::report::StoreSetup;
use crate::server::DataDir;

/// The server allows at most this many realtime connections per app user.
const SOCKETS_PER_USER: usize = 50;
/// Socket.IO namespace of the API.
const NSP: &str = "/v2";

/// `thingline-bench realtime-latency`.
pub async fn run(args: &RealtimeArgs) -> Result<()> {
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be in (0, 100000]");
    }
    if args.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let common = &args.common;
    let (targets, store) = run_command(common, args.subs, async |target, fixture, clients| {
        latency::measure(args, target, fixture, clients).await
    })
    .await?;
    let params = json!({"subs": args.subs, "rate": args.rate, "seconds": args.seconds, "warmup": args.warmup});
    let report = RealtimeReport::new(with_common(params, common), store, targets);
    report::print_report(&report);
    if let Some(path) = &common.json {
        crate::report::write_json(path, &report)?;
    }
    report::check_loss(&report.targets)
}

/// `thingline-bench realtime-memory`.
pub async fn run_memory(args: &RealtimeMemoryArgs) -> Result<()> {
    let common = &args.common;
    let (targets, store) = run_command(common, args.conns, async |target, fixture, clients| {
        memory::measure_memory(args, target, fixture, clients).await
    })
    .await?;
    let params = json!({"conns": args.conns, "settleSecs": args.settle_secs, "settleTimeout": args.settle_timeout});
    let report = MemoryReport::new(with_common(params, common), store, targets);
    report::print_memory_report(&report);
    if let Some(path) = &common.json {
        crate::report::write_json(path, &report)?;
    }
    Ok(())
}

/// What both commands share: the checks, the clients' runtime, the data dir, and each selected
/// target measured in turn by `measure_one`; also the store of the Thingline it spawned.
async fn run_command<R>(
    common: &RealtimeCommon,
    sockets: usize,
    measure_one: impl AsyncFnMut(&TargetSpec<'_>, &Fixture, &Handle) -> Result<R>,
) -> Result<(Vec<R>, Option<StoreSetup>)> {
    if sockets == 0 || common.client_threads == 0 || common.connect_concurrency == 0 {
        bail!("the socket count, --client-threads and --connect-concurrency must be at least 1");
    }
    let selected = common.selected();
    if selected.is_empty() {
        bail!("no target selected (--targets thingline,reference,floor)");
    }
    let script = match &common.refserver_script {
        Some(path) => path.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("realtime/realtime-bench.js"),
    };
    if selected.contains(&RealtimeTarget::Reference) {
        targets::check_reference_ready(&script)?;
    }
    let clients = sockets::client_runtime(common)?;
    let data_dir = DataDir::from_args(&common.server)?;
    let outcome =
        targets::run_targets(common, sockets, &selected, &script, &data_dir.path, clients.handle(), measure_one).await;
    clients.shutdown_background();
    data_dir.finish();
    outcome
}

/// The command's own parameters followed by those both commands share.
fn with_common(mut params: Value, common: &RealtimeCommon) -> Value {
    let labels: Vec<&str> = common.selected().into_iter().map(label_of).collect();
    if let Some(map) = params.as_object_mut() {
        map.insert("clientThreads".into(), json!(common.client_threads));
        map.insert("connectConcurrency".into(), json!(common.connect_concurrency));
        map.insert("openTimeout".into(), json!(common.open_timeout));
        map.insert("targets".into(), json!(labels));
        map.insert("floorBroadcastThreads".into(), json!(common.floor_broadcast_threads));
    }
    params
}

fn label_of(target: RealtimeTarget) -> &'static str {
    match target {
        RealtimeTarget::Thingline => "thingline",
        RealtimeTarget::Reference => "reference",
        RealtimeTarget::Floor => "floor",
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use clap::Parser;
    use reqwest::StatusCode;

    use super::sockets::{close_sockets, open_sockets};
    use super::targets::ensure_certificate;
    use super::*;
    use crate::driver::https_client;

    fn parse_latency(args: &[&str]) -> RealtimeArgs {
        let argv = ["thingline-bench", "realtime-latency"].into_iter().chain(args.iter().copied());
        match crate::cli::Cli::try_parse_from(argv).expect("parsed").command {
            crate::cli::Command::RealtimeLatency(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn targets_are_measured_in_a_fixed_order() {
        use RealtimeTarget::*;
        assert_eq!(parse_latency(&[]).common.selected(), vec![Thingline, Reference, Floor]);
        assert_eq!(parse_latency(&["--targets", "floor,thingline,floor"]).common.selected(), vec![Thingline, Floor]);
        assert_eq!(parse_latency(&["--no-reference"]).common.selected(), vec![Thingline, Floor]);
        assert!(crate::cli::Cli::try_parse_from(["thingline-bench", "realtime-latency", "--targets", "node"]).is_err());
    }

    #[test]
    fn params_keep_their_order() {
        let args = parse_latency(&["--targets", "floor"]);
        let params = with_common(json!({"subs": 1000}), &args.common);
        let keys: Vec<&str> = params.as_object().expect("an object").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["subs", "clientThreads", "connectConcurrency", "openTimeout", "targets", "floorBroadcastThreads"]
        );
        assert_eq!(params["targets"], json!(["floor"]));
    }

    /// The floor server speaks the wire of the bench's clients and writer: sockets open
    /// (Engine.IO open, connect to /v2, authenticate, subscribe), each write is answered 201
    /// `{"status":"created"}` and reaches every subscriber, in order; other paths get 404.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn floor_serves_the_bench_wire() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("floor-test-{}-{nanos}", std::process::id()));
        let (cert, key) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
        ensure_certificate(&cert, &key).expect("certificate");
        let floor_args = crate::cli::FloorArgs {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert: cert.clone(),
            key,
            broadcast_threads: 2,
        };
        let floor = crate::floor::Floor::bind(&floor_args).await.expect("bound");
        let addr = floor.addr;
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(floor.run(async {
            let _ = stopped.await;
        }));

        let subs = 5;
        let args = parse_latency(&["--subs", "5", "--connect-concurrency", "2", "--open-timeout", "10"]);
        let fixture = fixture::synthetic_fixture(subs);
        let target = TargetSpec { label: "floor", addr, pid: std::process::id(), cert: &cert };
        let sockets = open_sockets(&args.common, &target, &fixture, &tokio::runtime::Handle::current(), subs, 16)
            .await
            .expect("sockets opened");
        assert_eq!(sockets.opened, subs);

        let client = https_client(1, Duration::from_secs(10)).expect("client");
        let url = format!("https://{addr}/v2/things/{}", fixture.thing_token);
        for seq in 1..=3 {
            let body = format!(r#"{{"values":[{{"key":"temperature","value":{seq}}}]}}"#);
            let response = client.post(&url).body(body).send().await.expect("written");
            assert_eq!(response.status(), StatusCode::CREATED);
            assert_eq!(response.text().await.expect("body"), r#"{"status":"created"}"#);
        }
        let other = client.get(format!("https://{addr}/v2/things")).send().await.expect("answered");
        assert_eq!(other.status(), StatusCode::NOT_FOUND);

        let shared = sockets.shared.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.deliveries.load(Ordering::Relaxed) < 3 * subs as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let outputs = close_sockets(sockets, "floor").await;
        assert_eq!(outputs.len(), subs);
        for output in &outputs {
            let seqs: Vec<u64> = output.records.iter().map(|(seq, _)| *seq).collect();
            assert_eq!(seqs, vec![1, 2, 3]);
            assert!(output.topic_error_sample.is_none());
        }
        assert_eq!(shared.disconnects.load(Ordering::Relaxed), 0);

        let _ = stop_server.send(());
        server.await.expect("server stopped");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
