//! Command line: `reference`, `run <scenario>`, `seed`, `realtime-latency`, `realtime-memory`,
//! `floor-server`, `mqtt-publish`, `mqtt-relay`, `mqtt-memory`, `coap-write`, `coap-observe`,
//! `udp-echo`, the scale-out commands `pg-write`, `cross-node-latency` and `pg-vs-sqlite`, and
//! `panel` (the web panel in a browser), and the dispatch to each.
//!
//! Flags shared by every command that spawns Thingline live in [`ServerArgs`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{coap, floor, mqtt, realtime, reference, scale, scenarios, seed, startup};

/// Load generator for Thingline, measured against a bare axum + rustls reference.
#[derive(Debug, Parser)]
#[command(name = "thingline-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the reference endpoint: HTTPS, every request answered 201 {"status":"created"}.
    Reference(ReferenceArgs),
    /// Run a scenario against the reference and against Thingline, and compare them.
    Run(RunArgs),
    /// Fill a data dir with values through the write API (kept for `run read-latest`).
    Seed(SeedArgs),
    /// Socket.IO commit→delivery latency: N subscribers of one thing, paced writes, against
    /// Thingline, the Node socket.io reference (realtime/realtime-bench.js refserver) and the
    /// floor server (`floor-server`).
    RealtimeLatency(RealtimeArgs),
    /// Socket.IO resident memory per idle connection (authenticated and subscribed), against
    /// Thingline, the Node reference and the floor server.
    RealtimeMemory(RealtimeMemoryArgs),
    /// Serve the realtime floor: the least a Socket.IO server over rustls can do per delivery
    /// (the `floor` target of realtime-latency/realtime-memory); prints `listening addr=…`.
    FloorServer(FloorArgs),
    /// MQTT QoS 1 publish throughput: N clients each publishing to its own thing with up to
    /// --inflight unacknowledged PUBLISHes, PUBACKs per second and publish→PUBACK latency;
    /// Thingline against the machine's Mosquitto.
    MqttPublish(MqttPublishArgs),
    /// MQTT relay: --pairs publisher/subscriber pairs on distinct connections, one thing each;
    /// deliveries per second at the subscribers, delivery latency and losses.
    MqttRelay(MqttRelayArgs),
    /// MQTT resident memory per idle connection (connected, then subscribed), Thingline and
    /// Mosquitto.
    MqttMemory(MqttMemoryArgs),
    /// CoAP confirmable single-value writes: N clients, each on its own UDP socket and thing,
    /// one write outstanding; 2.01s per second and latency, against a bare tokio UDP echo of the
    /// same datagrams (`udp-echo`); then every thing's values checked through the HTTPS API.
    CoapWrite(CoapWriteArgs),
    /// CoAP Observe notification latency from commit: N observers of one thing, paced HTTPS
    /// writes; and in the same run the same with N Socket.IO subscribers.
    CoapObserve(CoapObserveArgs),
    /// Serve the reference of `coap-write`: a tokio UDP echo (every datagram sent back);
    /// prints `listening addr=…`.
    UdpEcho(UdpEchoArgs),
    /// Issue #13: two Thingline nodes on one PostgreSQL schema and one NATS prefix receiving
    /// batched HTTPS writes (committed values/s), against PostgreSQL's own `COPY` into the same
    /// `points` table in the same run; then every acknowledged value checked stored once.
    PgWrite(PgWriteArgs),
    /// Issue #13: Socket.IO commit→receipt latency across nodes (subscribers on node B, paced
    /// writes to node A) against the same on one node (writes to B), in the same run.
    CrossNodeLatency(CrossNodeArgs),
    /// Issue #13: one node on PostgreSQL against one node on SQLite, same run: single-value
    /// writes and app reads.
    PgVsSqlite(PgVsSqliteArgs),
    /// Issue #14: the web panel in headless Chromium (chromedriver): time to the things table of
    /// a product with 100,000 things and to the chart of a thing with 100,000 values, and the
    /// bytes transferred, beside the same panel API calls made directly in the same run.
    Panel(crate::panel::PanelArgs),
    /// Issue #15: the cost of the Prometheus metrics: single-value writes and app reads against
    /// nodes with the metrics listener off and on (and, optionally, without the access log),
    /// rounds alternating in the same run.
    MetricsCost(crate::metrics_cost::MetricsCostArgs),
}

/// Flags shared by the scale-out commands: where PostgreSQL and NATS are. Each run makes a
/// scratch schema `tl_bench_<random>` (dropped at the end) and a NATS prefix of its own.
#[derive(Debug, Clone, Args)]
pub struct ScaleCommon {
    /// PostgreSQL URL the scratch schema is made in (the nodes get it with
    /// `options=-c search_path=<schema>`).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// NATS URL of the nodes' bus.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Keep the scratch schema at the end (its name is printed).
    #[arg(long)]
    pub keep_schema: bool,
    /// Measure each side this many times, alternating which goes first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct PgWriteArgs {
    /// HTTPS clients, each with one keep-alive connection and its own thing; client i writes to
    /// node A when i is even, node B when odd.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Values per write request (and rows per thing in a row of the COPY stream).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Measured seconds per side and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of writing before the measured window (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Concurrent `COPY` connections of the reference.
    #[arg(long, default_value_t = 2)]
    pub copy_streams: usize,
    /// Rows per `COPY` statement (each its own transaction, committed).
    #[arg(long, default_value_t = 10_000)]
    pub copy_rows: usize,
    #[command(flatten)]
    pub common: ScaleCommon,
}

#[derive(Debug, Args)]
pub struct CrossNodeArgs {
    /// Socket.IO subscribers of the one thing, all on node B.
    #[arg(long, default_value_t = 1000)]
    pub subs: usize,
    /// Writes per second (one value each, the value a sequence number).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Measured seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds of writes before the measured window (not recorded).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Tokio worker threads of the Socket.IO clients' runtime (the writer has its own).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Sockets being set up at once.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Seconds one attempt to open a socket may take (one retry on failure).
    #[arg(long, default_value_t = 20.0)]
    pub open_timeout: f64,
    #[command(flatten)]
    pub common: ScaleCommon,
}

#[derive(Debug, Args)]
pub struct PgVsSqliteArgs {
    /// Concurrent keep-alive connections (one client loop each).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured seconds per store, scenario and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Things of the write scenario (single values, `run write --batch 1`).
    #[arg(long, default_value_t = 100)]
    pub things: usize,
    /// App users of the app-read scenario (`run app-read`), each linking 10 things.
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Put the PostgreSQL node on the NATS bus too (a cluster of one: it then asks the store for
    /// sessions and latest values, as every clustered node does).
    #[arg(long)]
    pub clustered: bool,
    #[command(flatten)]
    pub common: ScaleCommon,
}

#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Address to bind; port 0 picks a free port (printed as `listening addr=…`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// PEM certificate chain (realtime-latency passes Thingline's).
    #[arg(long)]
    pub cert: PathBuf,
    /// PEM private key.
    #[arg(long)]
    pub key: PathBuf,
    /// OS threads that write the deliveries, each owning a share of the subscribers.
    #[arg(long, default_value_t = 2)]
    pub broadcast_threads: usize,
}

#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// Address to bind; port 0 picks a free port (printed as `listening addr=…`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
}

/// The scenarios `run` knows. Add a variant here and a [`scenarios::Scenario`] impl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// POST /v2/things/{token} with --batch values per request over --things things.
    Write,
    /// GET /v2/things/{token}/resources/temperature?limit=… on a seeded store.
    ReadLatest,
    /// Time from spawn to a healthy server, and resident memory when idle.
    Startup,
    /// App API: GET /v2/me/resources/temperature/{thingId}?limit=1 with session tokens.
    AppRead,
    /// App API: POST /v2/me/resources/temperature/{thingId} {"values":[{"value":N}]}.
    AppWrite,
    /// App API: GET /v2/me/resources, random user (default 10,000 users x 10 things).
    MeResources,
    /// Objects API: POST /v2/classes/me/BenchCreate with a small object.
    ObjCreate,
    /// Objects API: GET /v2/classes/app/BenchGet/{id} (--objects stored in all).
    ObjGet,
    /// Objects API: GET /v2/classes/app/BenchList?limit=--list-limit (--list-objects objects).
    ObjList,
}

/// Which targets a `run` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    Both,
    Reference,
    Thingline,
}

/// How to find, start and log in to the Thingline server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The `thingline` binary. Default: next to this executable, else
    /// <workspace>/target/release/thingline, else <workspace>/target/debug/thingline.
    #[arg(long)]
    pub thingline_bin: Option<PathBuf>,
    /// Data dir for Thingline (reuse a seeded store); it must be on a disk (see --allow-tmpfs).
    /// Default: a fresh dir in the system temp dir ($TMPDIR, else /tmp).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the temp data dir instead of deleting it at the end.
    #[arg(long)]
    pub keep_data: bool,
    /// Panel account created at start (THINGLINE_PANEL_EMAIL) and used for setup.
    #[arg(long, default_value = "bench@example.com")]
    pub panel_email: String,
    /// Panel password (THINGLINE_PANEL_PASSWORD).
    #[arg(long, default_value = "bench-password-123")]
    pub panel_password: String,
    /// Seconds to wait for a spawned server to log its address and answer /v2/health.
    #[arg(long, default_value_t = 60.0)]
    pub start_timeout: f64,
    /// Echo the spawned servers' log lines to stderr.
    #[arg(long)]
    pub server_log: bool,
    /// Thingline's `--durability`: `full` (its default: an acknowledged write survives power
    /// loss) or `normal`. Recorded in every report.
    #[arg(long, value_enum, default_value = "full")]
    pub durability: Durability,
    /// Let Thingline's data dir be on tmpfs or ramfs (refused otherwise: figures from memory are
    /// not those of a disk). Recorded in the report.
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Thingline's THINGLINE_STORE_URL (`postgres://…`, `sqlite://…`); default: SQLite in the
    /// data dir. The scale-out commands (`pg-write`, `cross-node-latency`, `pg-vs-sqlite`) make
    /// their own scratch schema instead (see `--pg-url`).
    #[arg(long)]
    pub store_url: Option<String>,
    /// Thingline's THINGLINE_BUS_URL (`nats://…`); default: none (one process).
    #[arg(long)]
    pub bus_url: Option<String>,
    /// Thingline's THINGLINE_BUS_PREFIX (the NATS subject prefix).
    #[arg(long)]
    pub bus_prefix: Option<String>,
}

/// Thingline's `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    Full,
    Normal,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Normal => "normal",
        }
    }
}

impl ServerArgs {
    pub fn start_timeout(&self) -> Duration {
        secs(self.start_timeout)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario to run.
    #[arg(value_enum)]
    pub scenario: ScenarioName,
    /// Concurrent keep-alive connections (one client loop each).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured seconds per target and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds before measuring (connections opened, caches warm).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Values per write request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Things to spread requests over (read-latest: things seeded when no seed exists).
    #[arg(long, default_value_t = 100)]
    pub things: usize,
    /// read-latest: values per thing seeded when the data dir has no bench-things.json.
    #[arg(long, default_value_t = 1000)]
    pub values_per_thing: usize,
    /// read-latest: the `limit` query parameter.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// App scenarios: app users (default: 10 for app-read/app-write, 10,000 for me-resources).
    #[arg(long)]
    pub users: Option<usize>,
    /// App scenarios: things linked by each user.
    #[arg(long, default_value_t = 10)]
    pub things_per_user: usize,
    /// App scenarios: things activated (default: users x things-per-user, at most 1000);
    /// user u links things (u * things-per-user + j) mod this.
    #[arg(long)]
    pub app_things: Option<usize>,
    /// obj-get/obj-list: objects stored in all when seeding (BenchGet gets those not in BenchList).
    #[arg(long, default_value_t = 1_000_000)]
    pub objects: usize,
    /// obj-get/obj-list: objects of the listed collection BenchList.
    #[arg(long, default_value_t = 100_000)]
    pub list_objects: usize,
    /// obj-list: the `limit` query parameter.
    #[arg(long, default_value_t = 100)]
    pub list_limit: u32,
    /// Measure each target this many times, alternating which goes first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// startup: number of spawns per target.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// startup: idle seconds after ready before reading VmRSS.
    #[arg(long, default_value_t = 3.0)]
    pub idle_secs: f64,
    /// Measure only one side.
    #[arg(long, value_enum, default_value = "both")]
    pub only: Only,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Upper bound on requests per target and phase (warm-up, measure).
    #[arg(long, default_value_t = 5_000_000)]
    pub max_requests: u64,
    /// Drive this base URL as a raw target (no setup, synthetic tokens), nothing spawned.
    #[arg(long, hide = true)]
    pub target_url: Option<String>,
    /// Use an already running Thingline at this base URL instead of spawning one.
    #[arg(long, hide = true)]
    pub thingline_url: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Things to create.
    #[arg(long, default_value_t = 1000)]
    pub things: usize,
    /// Values written per thing (1 s apart, going back in time from now).
    #[arg(long, default_value_t = 10_000)]
    pub values_per_thing: usize,
    /// Values per write request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seed an already running Thingline at this base URL instead of spawning one.
    #[arg(long, hide = true)]
    pub thingline_url: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The servers the realtime commands can measure, always in this order (Thingline first: its
/// API sets up the fixture and it generates the certificate the others use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum RealtimeTarget {
    Thingline,
    /// The Node socket.io server of realtime/realtime-bench.js (`refserver`).
    Reference,
    /// This executable's `floor-server`.
    Floor,
}

/// Flags shared by `realtime-latency` and `realtime-memory`.
#[derive(Debug, Args)]
pub struct RealtimeCommon {
    /// Targets to measure (comma-separated); measured in the order thingline, reference, floor.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "thingline,reference,floor")]
    pub targets: Vec<RealtimeTarget>,
    /// Tokio worker threads of the Socket.IO clients' runtime (the writer has its own).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Sockets being set up (TLS, WebSocket, connect, authenticate, subscribe) at once.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Seconds one attempt to open a socket may take (one retry on failure).
    #[arg(long, default_value_t = 20.0)]
    pub open_timeout: f64,
    /// Leave the Node reference out (same as omitting it from --targets).
    #[arg(long)]
    pub no_reference: bool,
    /// The Node executable for the reference.
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// realtime-bench.js (its `refserver` role is the reference). Default: the one in this crate.
    #[arg(long)]
    pub refserver_script: Option<PathBuf>,
    /// Broadcast threads of the floor server.
    #[arg(long, default_value_t = 2)]
    pub floor_broadcast_threads: usize,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl RealtimeCommon {
    /// The selected targets, deduplicated, in measuring order.
    pub fn selected(&self) -> Vec<RealtimeTarget> {
        let mut targets = self.targets.clone();
        if self.no_reference {
            targets.retain(|t| *t != RealtimeTarget::Reference);
        }
        targets.sort();
        targets.dedup();
        targets
    }
}

#[derive(Debug, Args)]
pub struct RealtimeArgs {
    /// Socket.IO subscribers of the one thing (users registered: ceil(N/50)).
    #[arg(long, default_value_t = 1000)]
    pub subs: usize,
    /// Writes per second (one value each, the value is a sequence number).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds of writes before the measured window (not recorded).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    #[command(flatten)]
    pub common: RealtimeCommon,
}

#[derive(Debug, Args)]
pub struct RealtimeMemoryArgs {
    /// Idle Socket.IO connections, each authenticated and subscribed to the one thing.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Seconds to wait before the first VmRSS sample of a settle (before and after opening).
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
    /// Most seconds to wait for VmRSS to settle (then the last sample is taken, and flagged).
    #[arg(long, default_value_t = 60.0)]
    pub settle_timeout: f64,
    #[command(flatten)]
    pub common: RealtimeCommon,
}

/// The brokers the MQTT commands can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum MqttTarget {
    /// Thingline, spawned with its MQTT listener on 127.0.0.1:0.
    Thingline,
    /// The machine's running Mosquitto (--mosquitto-addr), never started nor stopped.
    Mosquitto,
}

/// Flags shared by the MQTT commands.
#[derive(Debug, Args)]
pub struct MqttCommon {
    /// Targets (comma-separated); each round measures them in turn, alternating which goes first.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "thingline,mosquitto")]
    pub targets: Vec<MqttTarget>,
    /// The running Mosquitto (anonymous MQTT on plain TCP).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mosquitto_addr: SocketAddr,
    /// Mosquitto's pid, for its CPU and memory. Default: `pidof mosquitto`.
    #[arg(long)]
    pub mosquitto_pid: Option<u32>,
    /// Tokio worker threads of the MQTT clients' runtime (they share the cores with the server).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Connections in their handshake (TCP, CONNECT, SUBSCRIBE) at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Seconds one attempt to open a connection may take (one retry on failure).
    #[arg(long, default_value_t = 20.0)]
    pub open_timeout: f64,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl MqttCommon {
    /// The selected targets, deduplicated, thingline first.
    pub fn selected(&self) -> Vec<MqttTarget> {
        let mut targets = self.targets.clone();
        targets.sort();
        targets.dedup();
        targets
    }
}

#[derive(Debug, Args)]
pub struct MqttPublishArgs {
    /// Connected clients, each publishing to its own thing (`v2/things/{token}`).
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Unacknowledged QoS 1 PUBLISHes per client (comma-separated: each is measured in turn).
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    pub inflight: Vec<usize>,
    /// Measured seconds per target, window and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of publishing before the measured window (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Measure each target this many times per --inflight, alternating which goes first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    #[command(flatten)]
    pub common: MqttCommon,
}

#[derive(Debug, Args)]
pub struct MqttRelayArgs {
    /// Things, each with one publisher and one subscriber (QoS 0) on distinct connections.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Unacknowledged QoS 1 PUBLISHes per publisher (the default mode: the broker paces them).
    #[arg(long, default_value_t = 10)]
    pub inflight: usize,
    /// Publish QoS 0 at this many messages per second per publisher instead (open loop: the
    /// same offered load for every target).
    #[arg(long)]
    pub qos0_rate: Option<f64>,
    /// Measured seconds per target and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of publishing before the measured window (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Measure each target this many times, alternating which goes first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    #[command(flatten)]
    pub common: MqttCommon,
}

#[derive(Debug, Args)]
pub struct MqttMemoryArgs {
    /// Idle connections (CONNECT, keepalive 60 s, PINGREQ every 30 s), later each SUBSCRIBEd.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Things the subscriptions are spread over (Thingline's THINGLINE_REALTIME_STREAMS_PER_THING
    /// is raised to conns/things when that passes its default of 10).
    #[arg(long, default_value_t = 1000)]
    pub things: usize,
    /// Seconds to wait before the first VmRSS sample of a settle.
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
    /// Most seconds to wait for VmRSS to settle (then the last sample is taken, and flagged).
    #[arg(long, default_value_t = 60.0)]
    pub settle_timeout: f64,
    #[command(flatten)]
    pub common: MqttCommon,
}

/// What `coap-write` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum CoapWriteTarget {
    /// Thingline, spawned with its CoAP listener on 127.0.0.1:0.
    Thingline,
    /// This executable's `udp-echo`, spawned.
    Echo,
}

#[derive(Debug, Args)]
pub struct CoapWriteArgs {
    /// Clients, each with its own UDP socket and its own thing, one confirmable write outstanding.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Measured seconds per target and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of writing before the measured window (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Measure each target this many times, alternating which goes first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Targets (comma-separated); each round measures them in turn.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "thingline,echo")]
    pub targets: Vec<CoapWriteTarget>,
    /// Tokio worker threads of the clients' runtime (they share the cores with the server).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Seconds before a client retransmits an unanswered request (RFC 7252's ACK_TIMEOUT),
    /// doubled at each retransmission.
    #[arg(long, default_value_t = 2.0)]
    pub retransmit_after: f64,
    /// Runtime workers of the echo (default: one per core, as Thingline's runtime).
    #[arg(long)]
    pub echo_workers: Option<usize>,
    /// SO_RCVBUF and SO_SNDBUF of the echo's socket (default: 4 MiB, as Thingline asks for
    /// its UDP listeners; 0: the kernel's defaults).
    #[arg(long, default_value_t = 4 << 20)]
    pub echo_socket_buffer: usize,
    /// Thingline's THINGLINE_COAP_MAX_EXCHANGES: the dedup table must hold every exchange of
    /// the last 247 s (at its default of 262,144 a run at 20,000 writes/s fills it in 13 s and
    /// new requests get 5.03).
    #[arg(long, default_value_t = 8_388_608)]
    pub max_exchanges: usize,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl CoapWriteArgs {
    /// The selected targets, deduplicated, thingline first.
    pub fn selected(&self) -> Vec<CoapWriteTarget> {
        let mut targets = self.targets.clone();
        targets.sort();
        targets.dedup();
        targets
    }
}

#[derive(Debug, Args)]
pub struct CoapObserveArgs {
    /// CoAP observers of the one thing (each on its own UDP socket); as many Socket.IO
    /// subscribers in the Socket.IO measurement.
    #[arg(long, default_value_t = 1000)]
    pub observers: usize,
    /// Writes per second through HTTPS (one value each, the value is a sequence number).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Measured seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds of writes before the measured window (not recorded).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Rounds: each measures CoAP and Socket.IO, alternating which goes first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// The observations' keepAlive (ms), in the registration's path as the SDK sends it.
    #[arg(long, default_value_t = 60_000)]
    pub keep_alive: u64,
    /// Tokio worker threads of the clients' runtime (CoAP and Socket.IO; the writer has its own).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Registrations (and Socket.IO setups) in progress at once.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Seconds one attempt to register (or open a socket) may take (one retry on failure).
    #[arg(long, default_value_t = 20.0)]
    pub open_timeout: f64,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct UdpEchoArgs {
    /// Address to bind; port 0 picks a free port (printed as `listening addr=…`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Runtime worker threads (default: one per core, as Thingline's runtime).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Tasks receiving and sending on the one socket (default: one per worker).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// SO_RCVBUF and SO_SNDBUF of the socket in bytes, as Thingline asks for its UDP listeners
    /// (the kernel caps them at net.core.rmem_max / wmem_max); 0 leaves the kernel's defaults.
    #[arg(long, default_value_t = 4 << 20)]
    pub socket_buffer: usize,
}

/// Seconds from a flag, clamped to something a `Duration` can hold.
pub fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.clamp(0.0, 86_400.0))
}

pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Reference(args) => reference::serve(args.addr).await,
        Command::Run(args) => {
            if args.concurrency == 0 || args.things == 0 || args.batch == 0 || args.rounds == 0 {
                bail!("--concurrency, --things, --batch and --rounds must be at least 1");
            }
            match args.scenario {
                ScenarioName::Startup => startup::run(&args).await,
                _ => scenarios::run(&args).await,
            }
        }
        Command::Seed(args) => seed::run_command(&args).await,
        Command::RealtimeLatency(args) => realtime::run(&args).await,
        Command::RealtimeMemory(args) => realtime::run_memory(&args).await,
        Command::FloorServer(args) => floor::serve(&args).await,
        Command::MqttPublish(args) => mqtt::publish::run(&args).await,
        Command::MqttRelay(args) => mqtt::relay::run(&args).await,
        Command::MqttMemory(args) => mqtt::memory::run(&args).await,
        Command::CoapWrite(args) => coap::write::run(&args).await,
        Command::CoapObserve(args) => coap::observe::run(&args).await,
        Command::UdpEcho(args) => coap::echo::serve(&args).await,
        Command::PgWrite(args) => scale::pg_write::run(&args).await,
        Command::CrossNodeLatency(args) => scale::cross_node::run(&args).await,
        Command::PgVsSqlite(args) => scale::pg_vs_sqlite::run(&args).await,
        Command::Panel(args) => crate::panel::run(&args).await,
        Command::MetricsCost(args) => crate::metrics_cost::run(&args).await,
    }
}
