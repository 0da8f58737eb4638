//! `realtime-latency` and `realtime-memory`: the Socket.IO figures of issue #5, with Rust clients.
//!
//! This module owns both commands: the fixture through the API (panel login, a product with
//! public `temperature`, one activated thing, an app, ceil(N/50) users via `POST /v2/register`,
//! as `realtime/realtime-bench.js main` does), N bare Engine.IO v4 / Socket.IO v5 clients written
//! on tokio-tungstenite over tokio-rustls (one task each, on their own runtime of
//! `--client-threads` workers), the paced writer, the statistics, and the run over the targets
//! (`--targets`): Thingline, the Node socket.io reference (`realtime-bench.js refserver`) and the
//! floor server (`floor-server`, module `floor`), the last two with Thingline's certificate, one
//! after the other in the same run.
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::api::{Api, string_field};
use crate::cli::{RealtimeArgs, RealtimeCommon, RealtimeMemoryArgs, RealtimeTarget, ServerArgs, secs};
use crate::driver::{LatencySummary, https_client, summarize};
use crate::report;
use crate::server::{DataDir, ThinglineSpec, rss_bytes_of, spawn_floor, spawn_thingline};

/// The server allows at most this many realtime connections per app user.
const SOCKETS_PER_USER: usize = 50;
/// Socket.IO namespace of the API.
const NSP: &str = "/v2";
/// Name of the client runtime's threads (their CPU time is read from /proc/self/task).
const CLIENT_THREAD: &str = "rt-client";
/// Below this fraction of sockets opened (after one retry each) the target is not measured.
const MIN_OPENED: f64 = 0.99;
/// Per-write timeout (the reqwest client's).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Writes in flight at most; the writer waits (and counts late ticks) beyond.
const MAX_INFLIGHT: usize = 64;
/// After the last write's 201: how long to wait for the expected deliveries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client tasks get to close and hand back their records.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The reference exits by itself after this long (realtime-bench.js `--max-seconds`).
const REFERENCE_MAX_SECONDS: u64 = 1800;
/// Registrations in flight during setup (each costs the server one Argon2id hash).
const REGISTER_CONCURRENCY: usize = 4;
const USER_PASSWORD: &str = "rt-bench-password";

/// What the clients need from the setup: the thing and one session token per 50 sockets.
struct Fixture {
    thing_token: String,
    sessions: Vec<String>,
}

/// One target to measure: where its Socket.IO and write endpoints are.
struct TargetSpec<'a> {
    label: &'static str,
    addr: SocketAddr,
    pid: u32,
    cert: &'a Path,
}

/// Results of one target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    pub target: String,
    pub subs: usize,
    pub opened: usize,
    /// Socket opens that failed once and succeeded on the retry.
    pub open_retries: usize,
    /// Why the first attempts failed (a few).
    pub open_retry_samples: Vec<String>,
    /// Sockets that could not be opened in two attempts (not counted in `expected_deliveries`).
    pub open_failures: usize,
    pub open_failure_samples: Vec<String>,
    pub open_seconds: f64,
    pub rate: f64,
    pub warmup_writes: u64,
    pub measured_writes: u64,
    pub write_errors: u64,
    pub write_error_samples: Vec<String>,
    /// Writes per second from the first to the last send (warm-up included).
    pub achieved_write_rate: f64,
    /// Writes sent more than one period after their tick was due.
    pub late_writes: u64,
    pub max_inflight: usize,
    pub expected_deliveries: u64,
    pub received_deliveries: u64,
    pub missing: u64,
    /// Data frames on the topic that were not an array of values (error envelopes).
    pub topic_errors: u64,
    pub topic_error_samples: Vec<String>,
    /// Sockets closed by the server before the end.
    pub disconnects: u64,
    /// Deliveries that arrived before the write's 201 (counted as 0 in `latency_from_201`).
    pub delivered_before_201: u64,
    /// Writer's send → client's receipt.
    pub latency_from_send: LatencySummary,
    /// Writer's 201 → client's receipt.
    pub latency_from_201: LatencySummary,
    /// Writer's send → 201, measured writes only.
    pub write_rtt: LatencySummary,
    /// First measured send → last expected delivery in (or the drain deadline).
    pub window_seconds: f64,
    /// utime+stime of the server process over the window.
    pub server_cpu_seconds: Option<f64>,
    /// getrusage(RUSAGE_SELF) of this process over the window (clients, writer, everything).
    pub bench_cpu_seconds: Option<f64>,
    /// The client runtime's threads alone over the window.
    pub client_threads_cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    pub targets: Vec<TargetReport>,
    /// thingline p99 / reference p99 (send→receipt), when both were measured.
    pub p99_thingline_over_reference: Option<f64>,
    /// thingline p99 / floor p99, when both were measured.
    pub p99_thingline_over_floor: Option<f64>,
    /// reference p99 / floor p99, when both were measured.
    pub p99_reference_over_floor: Option<f64>,
}

/// Idle memory of one target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryTargetReport {
    pub target: String,
    pub conns: usize,
    pub opened: usize,
    pub open_retries: usize,
    pub open_failures: usize,
    pub open_failure_samples: Vec<String>,
    pub open_seconds: f64,
    /// Server VmRSS once settled after setup, before any socket was opened.
    pub rss_before_kb: u64,
    /// Server VmRSS once settled with every socket open, authenticated and subscribed.
    pub rss_after_kb: u64,
    /// (after − before) / opened.
    pub kb_per_connection: f64,
    /// Whether VmRSS stopped moving (within [`SETTLE_BAND`] over [`SETTLE_WINDOW`]) before the
    /// settle timeout, before and after opening.
    pub settled_before: bool,
    pub settled_after: bool,
    /// Sockets closed by the server while idle.
    pub disconnects: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    pub targets: Vec<MemoryTargetReport>,
    pub kb_thingline_over_reference: Option<f64>,
    pub kb_thingline_over_floor: Option<f64>,
    pub kb_reference_over_floor: Option<f64>,
}

/// `a / b` of two targets' figures (label, figure), when both were measured.
fn ratio(figures: &[(&str, f64)], a: &str, b: &str) -> Option<f64> {
    let find = |label: &str| figures.iter().find(|(l, _)| *l == label).map(|(_, v)| *v);
    match (find(a), find(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    }
}

/// Checks shared by both commands; the reference script when the reference is selected.
fn prepare(common: &RealtimeCommon, sockets: usize) -> Result<(Vec<RealtimeTarget>, PathBuf)> {
    if sockets == 0 || common.client_threads == 0 || common.connect_concurrency == 0 {
        bail!("the socket count, --client-threads and --connect-concurrency must be at least 1");
    }
    let targets = common.selected();
    if targets.is_empty() {
        bail!("no target selected (--targets thingline,reference,floor)");
    }
    let script = match &common.refserver_script {
        Some(path) => path.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("realtime/realtime-bench.js"),
    };
    if targets.contains(&RealtimeTarget::Reference) {
        check_reference_ready(&script)?;
    }
    Ok((targets, script))
}

fn client_runtime(common: &RealtimeCommon) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.client_threads)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .context("building the clients' runtime")
}

fn labels(targets: &[RealtimeTarget]) -> Vec<&'static str> {
    targets.iter().map(|t| label_of(*t)).collect()
}

fn label_of(target: RealtimeTarget) -> &'static str {
    match target {
        RealtimeTarget::Thingline => "thingline",
        RealtimeTarget::Reference => "reference",
        RealtimeTarget::Floor => "floor",
    }
}

/// `thingline-bench realtime-latency`.
pub async fn run(args: &RealtimeArgs) -> Result<()> {
    let common = &args.common;
    let (targets, script) = prepare(common, args.subs)?;
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be in (0, 100000]");
    }
    if args.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let clients = client_runtime(common)?;
    let data_dir = DataDir::from_args(&common.server)?;
    let handle = clients.handle().clone();
    let outcome = run_targets(common, args.subs, &targets, &script, &data_dir.path, async |target, fixture| {
        measure(args, target, fixture, &handle).await
    })
    .await;
    clients.shutdown_background();
    data_dir.finish();
    let targets = outcome?;

    let p99: Vec<(&str, f64)> = targets.iter().map(|t| (t.target.as_str(), t.latency_from_send.p99_ms)).collect();
    let ratios =
        [ratio(&p99, "thingline", "reference"), ratio(&p99, "thingline", "floor"), ratio(&p99, "reference", "floor")];
    let report = RealtimeReport {
        scenario: "realtime-latency".into(),
        params: json!({
            "subs": args.subs, "rate": args.rate, "seconds": args.seconds, "warmup": args.warmup,
            "clientThreads": common.client_threads, "connectConcurrency": common.connect_concurrency,
            "openTimeout": common.open_timeout, "targets": labels(&common.selected()),
            "floorBroadcastThreads": common.floor_broadcast_threads,
        }),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        p99_thingline_over_reference: ratios[0],
        p99_thingline_over_floor: ratios[1],
        p99_reference_over_floor: ratios[2],
        targets,
    };
    print_report(&report);
    if let Some(path) = &common.json {
        report::write_json(path, &report)?;
    }
    check_loss(&report.targets)
}

/// `thingline-bench realtime-memory`.
pub async fn run_memory(args: &RealtimeMemoryArgs) -> Result<()> {
    let common = &args.common;
    let (targets, script) = prepare(common, args.conns)?;
    let clients = client_runtime(common)?;
    let data_dir = DataDir::from_args(&common.server)?;
    let handle = clients.handle().clone();
    let outcome = run_targets(common, args.conns, &targets, &script, &data_dir.path, async |target, fixture| {
        measure_memory(args, target, fixture, &handle).await
    })
    .await;
    clients.shutdown_background();
    data_dir.finish();
    let targets = outcome?;

    let kb: Vec<(&str, f64)> = targets.iter().map(|t| (t.target.as_str(), t.kb_per_connection)).collect();
    let ratios =
        [ratio(&kb, "thingline", "reference"), ratio(&kb, "thingline", "floor"), ratio(&kb, "reference", "floor")];
    let report = MemoryReport {
        scenario: "realtime-memory".into(),
        params: json!({
            "conns": args.conns, "settleSecs": args.settle_secs, "settleTimeout": args.settle_timeout,
            "clientThreads": common.client_threads, "connectConcurrency": common.connect_concurrency,
            "openTimeout": common.open_timeout, "targets": labels(&common.selected()),
            "floorBroadcastThreads": common.floor_broadcast_threads,
        }),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kb_thingline_over_reference: ratios[0],
        kb_thingline_over_floor: ratios[1],
        kb_reference_over_floor: ratios[2],
        targets,
    };
    print_memory_report(&report);
    if let Some(path) = &common.json {
        report::write_json(path, &report)?;
    }
    Ok(())
}

/// Thingline's `--max-connections` for `sockets` clients (the setup and the writer need a few
/// more; the default of 10,000 would refuse the last of 10,000 sockets).
fn max_connections(sockets: usize) -> usize {
    (sockets + 1_000).max(10_000)
}

/// Each selected target in turn, as a child process that is stopped before the next starts:
/// Thingline (with the fixture set up through its API), the Node reference, the floor server.
/// The reference and the floor use Thingline's certificate (generated in the data dir when
/// Thingline is not measured) and ignore the fixture's tokens.
async fn run_targets<R>(
    common: &RealtimeCommon,
    sockets: usize,
    targets: &[RealtimeTarget],
    script: &Path,
    data_dir: &Path,
    mut measure_one: impl AsyncFnMut(&TargetSpec<'_>, &Fixture) -> Result<R>,
) -> Result<Vec<R>> {
    let cert = data_dir.join("tls/cert.pem");
    let key = data_dir.join("tls/key.pem");
    let mut reports = Vec::new();
    let fixture = if targets.contains(&RealtimeTarget::Thingline) {
        let mut spec = ThinglineSpec::new(&common.server, data_dir)?;
        spec.extra_args = vec!["--max-connections".into(), max_connections(sockets).to_string()];
        let setup_client = https_client(16, Duration::from_secs(120))?;
        let mut thingline = spawn_thingline(&spec).await?;
        let measured = async {
            let ready = thingline.wait_healthy(&setup_client, spec.start_timeout, Duration::from_millis(5)).await?;
            eprintln!(
                "thingline: {} ready in {} ms ({}, data {})",
                thingline.base_url,
                ready.as_millis(),
                spec.bin.display(),
                data_dir.display()
            );
            let api = Api::new(setup_client.clone(), &thingline.base_url);
            let fixture = setup(&api, &common.server, sockets).await.context("setting up through Thingline's API")?;
            let target = TargetSpec { label: "thingline", addr: thingline.addr, pid: thingline.pid, cert: &cert };
            let report = measure_one(&target, &fixture).await?;
            anyhow::Ok((report, fixture))
        }
        .await;
        if let Err(err) = thingline.stop().await {
            eprintln!("note: stopping thingline: {err:#}");
        }
        let (report, fixture) = measured?;
        reports.push(report);
        fixture
    } else {
        ensure_certificate(&cert, &key)?;
        synthetic_fixture(sockets)
    };
    for target in targets {
        match target {
            RealtimeTarget::Thingline => {}
            RealtimeTarget::Reference => {
                let reference = NodeReference::spawn(common, script, &cert, &key).await?;
                let spec = TargetSpec { label: "reference", addr: reference.addr, pid: reference.pid, cert: &cert };
                let measured = measure_one(&spec, &fixture).await;
                reference.stop().await;
                reports.push(measured?);
            }
            RealtimeTarget::Floor => {
                let server = &common.server;
                let floor =
                    spawn_floor(&cert, &key, common.floor_broadcast_threads, server.server_log, server.start_timeout())
                        .await?;
                eprintln!(
                    "floor: {} (pid {}, {} broadcast threads)",
                    floor.base_url, floor.pid, common.floor_broadcast_threads
                );
                let spec = TargetSpec { label: "floor", addr: floor.addr, pid: floor.pid, cert: &cert };
                let measured = measure_one(&spec, &fixture).await;
                if let Err(err) = floor.stop().await {
                    eprintln!("note: stopping the floor server: {err:#}");
                }
                reports.push(measured?);
            }
        }
    }
    Ok(reports)
}

/// Without Thingline: a self-signed certificate for 127.0.0.1 where Thingline keeps its own
/// (unless one is there already).
fn ensure_certificate(cert: &Path, key: &Path) -> Result<()> {
    if cert.is_file() && key.is_file() {
        return Ok(());
    }
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .context("generating a self-signed certificate")?;
    std::fs::write(key, generated.signing_key.serialize_pem()).with_context(|| format!("writing {}", key.display()))?;
    std::fs::write(cert, generated.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    Ok(())
}

/// Tokens for targets that check none (the reference and the floor).
fn synthetic_fixture(sockets: usize) -> Fixture {
    Fixture {
        thing_token: format!("bench-thing-{:08x}", std::process::id()),
        sessions: (0..sockets.div_ceil(SOCKETS_PER_USER)).map(|i| format!("bench-session-{i}")).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Setup through the API (as realtime-bench.js `setup`).

async fn setup(api: &Api, server: &ServerArgs, sockets: usize) -> Result<Fixture> {
    let started = Instant::now();
    let email = &server.panel_email;
    let panel = api.login(email, &server.panel_password).await?;
    let product_id = api.create_product(&panel, "realtime-bench", &["temperature"]).await?;
    let codes = api.activation_codes(&panel, &product_id, 1).await?;
    let code = codes.first().ok_or_else(|| anyhow!("no activation code"))?;
    let thing = api.activate(code).await?;
    let app = api
        .post_ok("/v2/panel/apps", Some(&panel), &json!({"name": "realtime-bench", "resources": ["temperature"]}))
        .await
        .context("creating the app")?;
    let app_id = string_field(&app, "appId")?;
    let users = sockets.div_ceil(SOCKETS_PER_USER);
    let sessions: Vec<String> = futures_util::stream::iter(0..users)
        .map(|i| {
            let app_id = app_id.clone();
            async move {
                let body =
                    json!({"email": format!("rt-bench-{i}@example.com"), "password": USER_PASSWORD, "app": app_id});
                let answer = api.post_ok("/v2/register", None, &body).await.context("registering an app user")?;
                string_field(&answer, "token")
            }
        })
        .buffered(REGISTER_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!(
        "setup: product {product_id}, thing {}, app {app_id}, {users} users registered in {:.1} s",
        thing.thing_id,
        started.elapsed().as_secs_f64()
    );
    Ok(Fixture { thing_token: thing.thing_token, sessions })
}

// ---------------------------------------------------------------------------------------------
// One target: open the sockets, write, drain, stop, compute.

/// Counters shared by every client task of one target.
struct Shared {
    base: Instant,
    deliveries: AtomicU64,
    topic_errors: AtomicU64,
    disconnects: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// What every socket of a target has in common.
struct SocketPlan {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    url: String,
    /// `42/v2,["/things/TOKEN",` — the start of a data frame.
    data_prefix: String,
    /// `42/v2,2["subscribe",{"resource":"/things/TOKEN"}]`
    subscribe_frame: String,
    /// Records kept per socket before growing.
    capacity: usize,
    /// One attempt to open a socket (TCP, TLS, WebSocket, connect, authenticate, subscribe).
    open_timeout: Duration,
}

/// How a socket's setup went.
enum Opened {
    Ok { retried: Option<String> },
    Failed(String),
}

/// What a socket task hands back.
#[derive(Default)]
struct SocketOutput {
    /// (sequence number, receipt ns) of every data frame.
    records: Vec<(u64, u64)>,
    topic_error_sample: Option<String>,
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// The sockets of one target, open (or failed) and reading.
struct OpenSockets {
    shared: Arc<Shared>,
    handles: Vec<tokio::task::JoinHandle<SocketOutput>>,
    stop_tx: watch::Sender<bool>,
    opened: usize,
    retries: Vec<String>,
    failures: Vec<String>,
    open_seconds: f64,
}

/// Open `n` sockets against `target` (authenticated and subscribed to the fixture's thing), at
/// most `--connect-concurrency` in setup at once; fails below [`MIN_OPENED`]. Each socket keeps
/// room for `capacity` records.
async fn open_sockets(
    common: &RealtimeCommon,
    target: &TargetSpec<'_>,
    fixture: &Fixture,
    clients: &tokio::runtime::Handle,
    n: usize,
    capacity: usize,
) -> Result<OpenSockets> {
    let label = target.label;
    let resource = format!("/things/{}", fixture.thing_token);
    let open_timeout = secs(common.open_timeout).max(Duration::from_millis(100));
    let plan = Arc::new(SocketPlan {
        addr: target.addr,
        server_name: ServerName::from(target.addr.ip()),
        connector: tls_connector(target.cert)?,
        url: format!("wss://{}/socket.io/?EIO=4&transport=websocket", target.addr),
        data_prefix: format!("42{NSP},[{},", serde_json::to_string(&resource).context("topic")?),
        subscribe_frame: format!(
            "42{NSP},2{}",
            serde_json::to_string(&json!(["subscribe", {"resource": resource}])).context("subscribe frame")?
        ),
        capacity,
        open_timeout,
    });
    let shared = Arc::new(Shared {
        base: Instant::now(),
        deliveries: AtomicU64::new(0),
        topic_errors: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
    });

    eprintln!("{label}: opening {n} Socket.IO clients ({} client threads)", common.client_threads);
    let open_started = Instant::now();
    let gate = Arc::new(Semaphore::new(common.connect_concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Opened>();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let session = fixture
            .sessions
            .get(i / SOCKETS_PER_USER)
            .ok_or_else(|| anyhow!("socket {i} has no session (only {} users)", fixture.sessions.len()))?;
        let auth_frame = format!(
            "42{NSP},1{}",
            serde_json::to_string(&json!(["authenticate", {"sessionToken": session}])).context("authenticate frame")?
        );
        handles.push(clients.spawn(socket_task(
            plan.clone(),
            auth_frame,
            shared.clone(),
            gate.clone(),
            opened_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(opened_tx);
    let mut opened = 0usize;
    let mut retries = Vec::new();
    let mut failures = Vec::new();
    // Each attempt has its own deadline; this one only guards against a task that never reports.
    let all_opened_by = tokio::time::Instant::now()
        + open_timeout * 2 * (n.div_ceil(common.connect_concurrency) as u32).max(1)
        + Duration::from_secs(10);
    while opened + failures.len() < n {
        match tokio::time::timeout_at(all_opened_by, opened_rx.recv()).await {
            Ok(Some(Opened::Ok { retried })) => {
                opened += 1;
                retries.extend(retried);
            }
            Ok(Some(Opened::Failed(err))) => failures.push(err),
            Ok(None) => break,
            Err(_) => {
                failures.push(format!("{} sockets did not report within the deadline", n - opened));
                break;
            }
        }
    }
    let open_seconds = open_started.elapsed().as_secs_f64();
    if !retries.is_empty() {
        eprintln!("{label}: RETRIED {} socket opens: {}", retries.len(), samples(&retries));
    }
    eprintln!("{label}: opened {opened}/{n} sockets in {open_seconds:.1} s");
    if !failures.is_empty() {
        eprintln!("{label}: FAILED to open {} sockets (after a retry): {}", failures.len(), samples(&failures));
    }
    let sockets = OpenSockets { shared, handles, stop_tx, opened, retries, failures, open_seconds };
    if (opened as f64) < n as f64 * MIN_OPENED {
        let failures = samples(&sockets.failures);
        close_sockets(sockets, label).await;
        bail!("{label}: only {opened}/{n} sockets opened: {failures}");
    }
    Ok(sockets)
}

/// Tell every client task to close its socket and collect their records (aborting those that
/// do not stop within [`STOP_TIMEOUT`]).
async fn close_sockets(sockets: OpenSockets, label: &str) -> Vec<SocketOutput> {
    let _ = sockets.stop_tx.send(true);
    let stop_by = tokio::time::Instant::now() + STOP_TIMEOUT;
    let mut outputs = Vec::with_capacity(sockets.handles.len());
    let mut unjoined = 0usize;
    for handle in sockets.handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(stop_by, handle).await {
            Ok(Ok(output)) => outputs.push(output),
            Ok(Err(err)) => eprintln!("note: {label}: a client task failed: {err}"),
            Err(_) => {
                abort.abort();
                unjoined += 1;
            }
        }
    }
    if unjoined > 0 {
        eprintln!("note: {label}: {unjoined} client tasks did not stop within {STOP_TIMEOUT:?} (aborted)");
    }
    outputs
}

async fn measure(
    args: &RealtimeArgs,
    target: &TargetSpec<'_>,
    fixture: &Fixture,
    clients: &tokio::runtime::Handle,
) -> Result<TargetReport> {
    let label = target.label;
    let rate = args.rate;
    let warmup_writes = (args.warmup.max(0.0) * rate).round() as u64;
    let measured_writes = ((args.seconds * rate).round() as u64).max(1);
    let total_writes = warmup_writes + measured_writes;
    let sockets = open_sockets(&args.common, target, fixture, clients, args.subs, total_writes as usize + 16).await?;
    let shared = sockets.shared.clone();
    let opened = sockets.opened;

    // Write, then wait for the last deliveries.
    eprintln!("{label}: writing {rate}/s for {:.0} s warm-up + {:.0} s measured", args.warmup.max(0.0), args.seconds);
    let url = format!("https://{}/v2/things/{}", target.addr, fixture.thing_token);
    let writer = match write_loop(&url, rate, warmup_writes, total_writes, &shared, target.pid).await {
        Ok(writer) => writer,
        Err(err) => {
            close_sockets(sockets, label).await;
            return Err(err);
        }
    };
    let ok_writes = writer.samples.iter().filter(|s| s.ack_ns.is_some()).count() as u64;
    let expected_all = ok_writes * opened as u64;
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    while shared.deliveries.load(Ordering::Relaxed) < expected_all && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let window_end_ns = shared.now_ns();
    let cpu_end = CpuSnapshot::take(target.pid);

    // Stop the clients and collect their records.
    let retries = sockets.retries.clone();
    let failures = sockets.failures.clone();
    let open_seconds = sockets.open_seconds;
    let outputs = close_sockets(sockets, label).await;

    // Statistics.
    let mut send_ns = vec![None; total_writes as usize + 1];
    let mut ack_ns = vec![None; total_writes as usize + 1];
    let mut write_errors = Vec::new();
    for sample in &writer.samples {
        if let Some(slot) = send_ns.get_mut(sample.seq as usize) {
            *slot = Some(sample.send_ns);
        }
        if let Some(slot) = ack_ns.get_mut(sample.seq as usize) {
            *slot = sample.ack_ns;
        }
        if let Some(err) = &sample.error {
            write_errors.push(format!("seq {}: {err}", sample.seq));
        }
    }
    let first_measured = warmup_writes + 1;
    let in_window = |seq: u64| seq >= first_measured && seq <= total_writes;
    let mut from_send = Vec::with_capacity(measured_writes as usize * opened);
    let mut from_201 = Vec::with_capacity(measured_writes as usize * opened);
    let mut before_201 = 0u64;
    let mut topic_samples = Vec::new();
    for output in &outputs {
        for &(seq, t) in &output.records {
            if !in_window(seq) {
                continue;
            }
            if let Some(Some(sent)) = send_ns.get(seq as usize) {
                from_send.push(t.saturating_sub(*sent));
            }
            if let Some(Some(acked)) = ack_ns.get(seq as usize) {
                if t < *acked {
                    before_201 += 1;
                }
                from_201.push(t.saturating_sub(*acked));
            }
        }
        if let Some(sample) = &output.topic_error_sample
            && topic_samples.len() < 3
        {
            topic_samples.push(sample.clone());
        }
    }
    // Distinct values per socket: a duplicate delivery must not hide a missing one.
    let received: u64 = outputs
        .iter()
        .map(|o| {
            let seqs: std::collections::HashSet<u64> =
                o.records.iter().map(|(seq, _)| *seq).filter(|seq| in_window(*seq)).collect();
            seqs.len() as u64
        })
        .sum();
    let mut rtt: Vec<u64> = writer
        .samples
        .iter()
        .filter(|s| in_window(s.seq))
        .filter_map(|s| s.ack_ns.map(|a| a.saturating_sub(s.send_ns)))
        .collect();
    // Only acknowledged writes are committed and delivered: a failed write counts as a write
    // error, not as `opened` missing deliveries too.
    let acked_measured = writer.samples.iter().filter(|s| in_window(s.seq) && s.ack_ns.is_some()).count() as u64;
    let expected = acked_measured * opened as u64;
    let window_start_ns = send_ns.get(first_measured as usize).copied().flatten().unwrap_or(0);
    let cpu = |end: Option<f64>, start: Option<f64>| end.zip(start).map(|(e, s)| e - s);
    let report = TargetReport {
        target: label.to_string(),
        subs: args.subs,
        opened,
        open_retries: retries.len(),
        open_retry_samples: retries.iter().take(3).cloned().collect(),
        open_failures: failures.len(),
        open_failure_samples: failures.iter().take(3).cloned().collect(),
        open_seconds,
        rate,
        warmup_writes,
        measured_writes,
        write_errors: write_errors.len() as u64,
        write_error_samples: write_errors.into_iter().take(3).collect(),
        achieved_write_rate: writer.achieved_rate(),
        late_writes: writer.late,
        max_inflight: writer.max_inflight,
        expected_deliveries: expected,
        received_deliveries: received,
        missing: expected.saturating_sub(received),
        topic_errors: shared.topic_errors.load(Ordering::Relaxed),
        topic_error_samples: topic_samples,
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        delivered_before_201: before_201,
        latency_from_send: summarize(&mut from_send),
        latency_from_201: summarize(&mut from_201),
        write_rtt: summarize(&mut rtt),
        window_seconds: window_end_ns.saturating_sub(window_start_ns) as f64 / 1e9,
        server_cpu_seconds: cpu(cpu_end.server, writer.cpu_start.server),
        bench_cpu_seconds: cpu(cpu_end.process, writer.cpu_start.process),
        client_threads_cpu_seconds: cpu(cpu_end.client_threads, writer.cpu_start.client_threads),
    };
    eprintln!(
        "{label}: p99 {:.2} ms, {}/{} deliveries",
        report.latency_from_send.p99_ms, report.received_deliveries, report.expected_deliveries
    );
    Ok(report)
}

/// VmRSS samples this far apart while waiting for it to settle.
const SETTLE_STEP: Duration = Duration::from_millis(250);
/// VmRSS is settled when the samples of this long a window stay within [`SETTLE_BAND`].
const SETTLE_WINDOW: Duration = Duration::from_secs(2);
const SETTLE_BAND: u64 = 256 * 1024;

/// The server's VmRSS once it stops moving: at least `min_wait`, then until the samples of the
/// last [`SETTLE_WINDOW`] stay within [`SETTLE_BAND`], or `timeout` (then the last sample, and
/// `false`).
async fn settled_rss(pid: u32, min_wait: Duration, timeout: Duration) -> Result<(u64, bool)> {
    let started = Instant::now();
    tokio::time::sleep(min_wait).await;
    let keep = (SETTLE_WINDOW.as_millis() / SETTLE_STEP.as_millis()) as usize + 1;
    let mut window = std::collections::VecDeque::with_capacity(keep);
    loop {
        let rss = rss_bytes_of(pid)?;
        if window.len() == keep {
            window.pop_front();
        }
        window.push_back(rss);
        let spread = window.iter().max().unwrap_or(&0) - window.iter().min().unwrap_or(&0);
        if window.len() == keep && spread <= SETTLE_BAND {
            return Ok((rss, true));
        }
        if started.elapsed() >= timeout {
            return Ok((rss, false));
        }
        tokio::time::sleep(SETTLE_STEP).await;
    }
}

/// Idle memory of one target: settled VmRSS, `--conns` sockets opened (authenticated and
/// subscribed, then idle), settled VmRSS again; (after − before) / opened.
async fn measure_memory(
    args: &RealtimeMemoryArgs,
    target: &TargetSpec<'_>,
    fixture: &Fixture,
    clients: &tokio::runtime::Handle,
) -> Result<MemoryTargetReport> {
    let label = target.label;
    let min_wait = secs(args.settle_secs);
    let timeout = secs(args.settle_timeout).max(min_wait);
    let (before, settled_before) = settled_rss(target.pid, min_wait, timeout).await?;
    eprintln!(
        "{label}: VmRSS {} KB before opening{}",
        before / 1024,
        if settled_before { "" } else { " (not settled)" }
    );
    let sockets = open_sockets(&args.common, target, fixture, clients, args.conns, 0).await?;
    let measured = settled_rss(target.pid, min_wait, timeout).await;
    let disconnects = sockets.shared.disconnects.load(Ordering::Relaxed);
    let (opened, retries, failures, open_seconds) =
        (sockets.opened, sockets.retries.len(), sockets.failures.clone(), sockets.open_seconds);
    close_sockets(sockets, label).await;
    let (after, settled_after) = measured?;
    // Sockets the server closed meanwhile are not in `after`.
    let open_at_the_end = (opened as u64).saturating_sub(disconnects).max(1);
    let kb_per_connection = (after as f64 - before as f64) / 1024.0 / open_at_the_end as f64;
    eprintln!(
        "{label}: VmRSS {} KB with {opened} sockets open{}: {kb_per_connection:.1} KB each",
        after / 1024,
        if settled_after { "" } else { " (not settled)" }
    );
    Ok(MemoryTargetReport {
        target: label.to_string(),
        conns: args.conns,
        opened,
        open_retries: retries,
        open_failures: failures.len(),
        open_failure_samples: failures.into_iter().take(3).collect(),
        open_seconds,
        rss_before_kb: before / 1024,
        rss_after_kb: after / 1024,
        kb_per_connection,
        settled_before,
        settled_after,
        disconnects,
    })
}

/// A rustls client config that trusts exactly the certificate(s) in `cert`.
fn tls_connector(cert: &Path) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(cert).with_context(|| format!("reading {}", cert.display()))?;
    for der in certs {
        let der = der.with_context(|| format!("parsing {}", cert.display()))?;
        roots.add(der).with_context(|| format!("trusting {}", cert.display()))?;
    }
    if roots.is_empty() {
        bail!("no certificate in {}", cert.display());
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn samples(errors: &[String]) -> String {
    errors.iter().take(3).cloned().collect::<Vec<_>>().join(" | ")
}

// ---------------------------------------------------------------------------------------------
// The client task.

async fn socket_task(
    plan: Arc<SocketPlan>,
    auth_frame: String,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    opened: mpsc::UnboundedSender<Opened>,
    mut stop: watch::Receiver<bool>,
) -> SocketOutput {
    let mut output = SocketOutput::default();
    let ws = {
        let Ok(_permit) = gate.acquire().await else {
            let _ = opened.send(Opened::Failed("setup gate closed".into()));
            return output;
        };
        match open_with_deadline(&plan, &auth_frame).await {
            Ok(ws) => {
                let _ = opened.send(Opened::Ok { retried: None });
                ws
            }
            Err(first_err) => match open_with_deadline(&plan, &auth_frame).await {
                Ok(ws) => {
                    let _ = opened.send(Opened::Ok { retried: Some(first_err) });
                    ws
                }
                Err(err) => {
                    let _ = opened.send(Opened::Failed(format!("{err} (first attempt: {first_err})")));
                    return output;
                }
            },
        }
    };
    output.records.reserve(plan.capacity);
    read_loop(ws, &plan, &shared, &mut stop, &mut output).await;
    output
}

/// Where an opening socket is, for the timeout message.
#[derive(Default)]
struct Progress {
    stage: &'static str,
    /// The last few frames received during setup (clipped).
    frames: Vec<String>,
}

/// One attempt of [`open_socket`] within the plan's deadline; a timeout says at which stage.
async fn open_with_deadline(plan: &SocketPlan, auth_frame: &str) -> Result<Ws, String> {
    let mut progress = Progress::default();
    match tokio::time::timeout(plan.open_timeout, open_socket(plan, auth_frame, &mut progress)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timeout after {:?} at {} (frames: {})",
            plan.open_timeout,
            progress.stage,
            progress.frames.join(" ")
        )),
    }
}

/// TCP, TLS, WebSocket upgrade, Engine.IO open, Socket.IO connect to /v2, authenticate,
/// subscribe. Errors are strings (they are only reported).
async fn open_socket(plan: &SocketPlan, auth_frame: &str, progress: &mut Progress) -> Result<Ws, String> {
    progress.stage = "tcp connect";
    let tcp = TcpStream::connect(plan.addr).await.map_err(|e| format!("tcp connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    progress.stage = "tls handshake";
    let tls = plan.connector.connect(plan.server_name.clone(), tcp).await.map_err(|e| format!("tls: {e}"))?;
    progress.stage = "websocket handshake";
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(plan.url.as_str(), tls, Some(config))
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    // Engine.IO open, then connect to the namespace.
    progress.stage = "engine.io open";
    wait_for(&mut ws, progress, |t| t.starts_with('0')).await?;
    send(&mut ws, format!("40{NSP},")).await?;
    let connected = format!("40{NSP},");
    let refused = format!("44{NSP},");
    progress.stage = "namespace connect";
    let frame = wait_for(&mut ws, progress, |t| t.starts_with(&connected) || t.starts_with(&refused)).await?;
    if frame.starts_with(&refused) {
        return Err(format!("namespace connect refused: {}", clip(&frame)));
    }
    // authenticate → ack 1; the server's `authenticate` event is ignored.
    send(&mut ws, auth_frame.to_string()).await?;
    let ack1 = format!("43{NSP},1[");
    progress.stage = "authenticate ack";
    let frame = wait_for(&mut ws, progress, |t| t.starts_with(&ack1)).await?;
    if !frame.contains(r#""status":"success""#) {
        return Err(format!("authenticate: {}", clip(&frame)));
    }
    send(&mut ws, plan.subscribe_frame.clone()).await?;
    let ack2 = format!("43{NSP},2[");
    progress.stage = "subscribe ack";
    let frame = wait_for(&mut ws, progress, |t| t.starts_with(&ack2)).await?;
    if !frame.contains(r#""status":"success""#) {
        return Err(format!("subscribe: {}", clip(&frame)));
    }
    Ok(ws)
}

async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text)).await.map_err(|e| format!("send: {e}"))
}

/// Read text frames until `wanted` matches one (answering Engine.IO pings meanwhile). The
/// caller's timeout bounds the wait.
async fn wait_for(ws: &mut Ws, progress: &mut Progress, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
    let what = progress.stage;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let text = text.as_str();
                if progress.frames.len() == 4 {
                    progress.frames.remove(0);
                }
                progress.frames.push(text.chars().take(60).collect());
                if wanted(text) {
                    return Ok(text.to_string());
                }
                if let Some(probe) = text.strip_prefix('2') {
                    send(ws, format!("3{probe}")).await?;
                } else if text.starts_with('1') {
                    return Err(format!("engine.io close while waiting for {what}"));
                }
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("closed while waiting for {what}: {frame:?}")),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(format!("waiting for {what}: {err}")),
            None => return Err(format!("stream ended while waiting for {what}")),
        }
    }
}

/// Until told to stop: record data frames, answer pings. Per data frame: a prefix check, one
/// search for `"value":` and a number parse.
async fn read_loop(
    mut ws: Ws,
    plan: &SocketPlan,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    output: &mut SocketOutput,
) {
    // One waiter for the whole loop (not one registered and dropped per frame).
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let received = shared.now_ns();
                    let text = text.as_str();
                    match text.as_bytes().first() {
                        Some(b'4') if text.starts_with(plan.data_prefix.as_str()) => {
                            let rest = &text[plan.data_prefix.len()..];
                            match rest.starts_with('[').then(|| first_value(rest)).flatten() {
                                Some(seq) => {
                                    output.records.push((seq, received));
                                    shared.deliveries.fetch_add(1, Ordering::Relaxed);
                                }
                                None => {
                                    shared.topic_errors.fetch_add(1, Ordering::Relaxed);
                                    if output.topic_error_sample.is_none() {
                                        output.topic_error_sample = Some(clip(text));
                                    }
                                }
                            }
                        }
                        Some(b'2') => {
                            // Engine.IO ping: answer pong with the same payload.
                            let pong = ws.send(Message::text(format!("3{}", &text[1..]))).await;
                            if pong.is_err() {
                                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                        Some(b'1') => {
                            shared.disconnects.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
            // A send of `true` or the sender dropped: either way, stop.
            _ = &mut stopped => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return;
            }
        }
    }
}

/// The first `"value":N` of `[{"key":"temperature","value":N,…}]`, as the sequence number.
fn first_value(items: &str) -> Option<u64> {
    const KEY: &str = "\"value\":";
    let at = items.find(KEY)? + KEY.len();
    let rest = &items[at..];
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    let value: f64 = rest[..end].trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

// ---------------------------------------------------------------------------------------------
// The writer.

struct WriteSample {
    seq: u64,
    send_ns: u64,
    /// When the 201 arrived (None: another status or a transport error).
    ack_ns: Option<u64>,
    error: Option<String>,
}

struct WriterOutput {
    samples: Vec<WriteSample>,
    late: u64,
    max_inflight: usize,
    /// Taken just before the first measured write.
    cpu_start: CpuSnapshot,
}

/// `total` writes, one per tick of a `1/rate` interval (Burst: a late tick is caught up, the
/// schedule does not drift), value = sequence number 1..=total; each write is its own task,
/// at most [`MAX_INFLIGHT`] in flight.
async fn write_loop(
    url: &str,
    rate: f64,
    warmup_writes: u64,
    total: u64,
    shared: &Arc<Shared>,
    server_pid: u32,
) -> Result<WriterOutput> {
    let client = https_client(16, WRITE_TIMEOUT)?;
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT));
    let mut tasks = JoinSet::new();
    let mut late = 0u64;
    let mut max_inflight = 0usize;
    let mut cpu_start = CpuSnapshot::default();
    for k in 0..total {
        let due = interval.tick().await;
        if k == warmup_writes {
            cpu_start = CpuSnapshot::take(server_pid);
        }
        let permit = tokio::time::timeout(WRITE_TIMEOUT, inflight.clone().acquire_owned())
            .await
            .map_err(|_| anyhow!("{MAX_INFLIGHT} writes still in flight after {WRITE_TIMEOUT:?}"))?
            .context("writer semaphore closed")?;
        max_inflight = max_inflight.max(MAX_INFLIGHT - inflight.available_permits());
        if due.elapsed() > period {
            late += 1;
        }
        let seq = k + 1;
        let client = client.clone();
        let url = url.to_string();
        let shared = shared.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let body = format!(r#"{{"values":[{{"key":"temperature","value":{seq}}}]}}"#);
            let send_ns = shared.now_ns();
            let sent =
                client.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body).send().await;
            match sent {
                Ok(response) => {
                    let at = shared.now_ns();
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status == StatusCode::CREATED {
                        WriteSample { seq, send_ns, ack_ns: Some(at), error: None }
                    } else {
                        WriteSample { seq, send_ns, ack_ns: None, error: Some(format!("{status}: {}", clip(&text))) }
                    }
                }
                Err(err) => WriteSample { seq, send_ns, ack_ns: None, error: Some(format!("{err}")) },
            }
        });
    }
    let mut samples = Vec::with_capacity(total as usize);
    let join_by = tokio::time::Instant::now() + WRITE_TIMEOUT + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(join_by, tasks.join_next()).await {
            Ok(Some(Ok(sample))) => samples.push(sample),
            Ok(Some(Err(err))) => bail!("a write task failed: {err}"),
            Ok(None) => break,
            Err(_) => bail!("{} writes did not finish within {WRITE_TIMEOUT:?}", tasks.len()),
        }
    }
    Ok(WriterOutput { samples, late, max_inflight, cpu_start })
}

impl WriterOutput {
    /// Sends per second between the first and the last send.
    fn achieved_rate(&self) -> f64 {
        let first = self.samples.iter().map(|s| s.send_ns).min().unwrap_or(0);
        let last = self.samples.iter().map(|s| s.send_ns).max().unwrap_or(0);
        if last > first { (self.samples.len() - 1) as f64 / ((last - first) as f64 / 1e9) } else { 0.0 }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU time.

#[derive(Debug, Clone, Copy, Default)]
struct CpuSnapshot {
    server: Option<f64>,
    process: Option<f64>,
    client_threads: Option<f64>,
}

impl CpuSnapshot {
    fn take(server_pid: u32) -> Self {
        Self {
            server: stat_cpu_seconds(Path::new(&format!("/proc/{server_pid}/stat"))).ok(),
            process: own_cpu_seconds(),
            client_threads: client_threads_cpu_seconds().ok(),
        }
    }
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
fn stat_cpu_seconds(path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_stat_cpu(&text).ok_or_else(|| anyhow!("unexpected format of {}", path.display()))
}

fn parse_stat_cpu(text: &str) -> Option<f64> {
    // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// getrusage(RUSAGE_SELF): user + system time of this whole process.
fn own_cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Sum over this process's threads named [`CLIENT_THREAD`].
fn client_threads_cpu_seconds() -> Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let dir = entry.context("reading /proc/self/task")?.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else { continue };
        if comm.trim_end() == CLIENT_THREAD {
            // A thread may exit between the listing and the read.
            total += stat_cpu_seconds(&dir.join("stat")).unwrap_or(0.0);
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// The Node reference.

fn check_reference_ready(script: &Path) -> Result<()> {
    if !script.is_file() {
        bail!("{} not found (pass --refserver-script, or --no-reference)", script.display());
    }
    let modules = script.parent().map(|dir| dir.join("node_modules/socket.io")).unwrap_or_default();
    if !modules.is_dir() {
        bail!(
            "{} missing: run `npm ci --prefix {}` (or pass --no-reference)",
            modules.display(),
            script.parent().map(|d| d.display().to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

struct NodeReference {
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl NodeReference {
    /// `node realtime-bench.js refserver --cert C --key K`; waits for `listening port=N`.
    async fn spawn(args: &RealtimeCommon, script: &Path, cert: &Path, key: &Path) -> Result<Self> {
        let mut command = Command::new(&args.node);
        command
            .arg(script)
            .arg("refserver")
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["--max-seconds", &REFERENCE_MAX_SECONDS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            command.spawn().with_context(|| format!("spawning {} {}", args.node.display(), script.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("the reference exited immediately"))?;
        let echo = args.server.server_log;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[reference] {line}");
                    }
                }
            });
        }
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout of the reference"))?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = tokio::time::Instant::now() + args.server.start_timeout();
        let port = loop {
            match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    if echo {
                        eprintln!("[reference] {line}");
                    }
                    if let Some(port) = line.trim().strip_prefix("listening port=").and_then(|p| p.parse::<u16>().ok())
                    {
                        break port;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = child.wait().await.ok();
                    bail!("the reference exited without `listening port=` ({status:?}); rerun with --server-log");
                }
                Err(_) => {
                    let _ = child.kill().await;
                    bail!("the reference did not print `listening port=` within {:?}", args.server.start_timeout());
                }
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        eprintln!("reference: node socket.io at https://{addr} (pid {pid})");
        Ok(Self { child, pid, addr })
    }

    /// SIGTERM, 5 s, then SIGKILL.
    async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) on the child we spawned and have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

fn print_report(report: &RealtimeReport) {
    let opt = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:.2}"));
    println!();
    for t in &report.targets {
        let s = &t.latency_from_send;
        println!(
            "{:<10} {} subscribers x {} writes/s, {} measured writes (+{} warm-up), {} cores",
            t.target, t.opened, t.rate, t.measured_writes, t.warmup_writes, report.cpus
        );
        println!(
            "  sockets      {}/{} opened in {:.1} s, {} retried after a failed first attempt, {} failed twice",
            t.opened, t.subs, t.open_seconds, t.open_retries, t.open_failures
        );
        for sample in &t.open_retry_samples {
            println!("    first attempt: {sample}");
        }
        for sample in &t.open_failure_samples {
            println!("    failed: {sample}");
        }
        println!(
            "  deliveries   expected {}  received {}  missing {}  (error envelopes {}, disconnects {})",
            t.expected_deliveries, t.received_deliveries, t.missing, t.topic_errors, t.disconnects
        );
        println!(
            "  send→receipt p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms",
            s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
        );
        println!(
            "  201→receipt  p50 {:.2}  p99 {:.2} ms  ({} deliveries before their 201)",
            t.latency_from_201.p50_ms, t.latency_from_201.p99_ms, t.delivered_before_201
        );
        println!(
            "  write RTT    p50 {:.2}  p99 {:.2} ms  ({} errors, {:.1} writes/s achieved, {} late, max {} in flight)",
            t.write_rtt.p50_ms,
            t.write_rtt.p99_ms,
            t.write_errors,
            t.achieved_write_rate,
            t.late_writes,
            t.max_inflight
        );
        println!(
            "  CPU          server {} s, bench process {} s (client threads {} s) over {:.2} s",
            opt(t.server_cpu_seconds),
            opt(t.bench_cpu_seconds),
            opt(t.client_threads_cpu_seconds),
            t.window_seconds
        );
        for sample in t.write_error_samples.iter().chain(&t.topic_error_samples) {
            println!("  ! {sample}");
        }
    }
    let ratios = [
        ("thingline/reference", report.p99_thingline_over_reference),
        ("thingline/floor", report.p99_thingline_over_floor),
        ("reference/floor", report.p99_reference_over_floor),
    ];
    for (name, ratio) in ratios {
        if let Some(ratio) = ratio {
            println!("{name} send→receipt p99: {ratio:.2}");
        }
    }
}

fn print_memory_report(report: &MemoryReport) {
    println!();
    for t in &report.targets {
        let flag = |settled: bool| if settled { "" } else { " (not settled)" };
        println!(
            "{:<10} {:.1} KB per idle connection ({} opened of {}, VmRSS {} KB{} → {} KB{}, {} disconnects)",
            t.target,
            t.kb_per_connection,
            t.opened,
            t.conns,
            t.rss_before_kb,
            flag(t.settled_before),
            t.rss_after_kb,
            flag(t.settled_after),
            t.disconnects
        );
        for sample in &t.open_failure_samples {
            println!("    failed: {sample}");
        }
    }
    let ratios = [
        ("thingline/reference", report.kb_thingline_over_reference),
        ("thingline/floor", report.kb_thingline_over_floor),
        ("reference/floor", report.kb_reference_over_floor),
    ];
    for (name, ratio) in ratios {
        if let Some(ratio) = ratio {
            println!("{name} KB per connection: {ratio:.2}");
        }
    }
}

/// Fail when a target lost more than 0.1 % of its deliveries or writes.
fn check_loss(targets: &[TargetReport]) -> Result<()> {
    let mut bad = Vec::new();
    for t in targets {
        let missing = t.missing as f64 / t.expected_deliveries.max(1) as f64;
        let failed = t.write_errors as f64 / (t.warmup_writes + t.measured_writes).max(1) as f64;
        if missing > crate::report::MAX_ERROR_RATE
            || failed > crate::report::MAX_ERROR_RATE
            || t.received_deliveries == 0
        {
            bad.push(format!("{}: {} missing deliveries, {} failed writes", t.target, t.missing, t.write_errors));
        }
    }
    if bad.is_empty() { Ok(()) } else { bail!("more than 0.1 % lost: {}", bad.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn reads_the_first_value() {
        let frame = r#"[{"key":"temperature","value":1234,"datetime":"2025-01-01T00:00:00.000Z"}]]"#;
        assert_eq!(first_value(frame), Some(1234));
        assert_eq!(first_value(r#"[{"key":"temperature","value":7}]]"#), Some(7));
        assert_eq!(first_value(r#"[{"key":"temperature","value":7.0}]]"#), Some(7));
        assert_eq!(first_value(r#"[{"key":"temperature","value":"x"}]]"#), None);
        assert_eq!(first_value(r#"{"status":"error"}]"#), None);
    }

    #[test]
    fn parses_proc_stat() {
        let line = "42 (thing line) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0 20 0 1 0 100 0 0";
        let ticks = clock_ticks();
        let cpu = parse_stat_cpu(line).expect("parsed");
        assert!((cpu - 500.0 / ticks).abs() < 1e-9);
    }

    #[test]
    fn own_cpu_is_readable() {
        assert!(own_cpu_seconds().is_some());
    }

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
    fn ratios_need_both_targets() {
        let figures = [("thingline", 20.0), ("floor", 5.0)];
        assert_eq!(ratio(&figures, "thingline", "floor"), Some(4.0));
        assert_eq!(ratio(&figures, "thingline", "reference"), None);
        assert_eq!(ratio(&[("thingline", 1.0), ("floor", 0.0)], "thingline", "floor"), None);
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
        let fixture = synthetic_fixture(subs);
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
