//! Spawning the servers under test as child processes, and stopping them.
//!
//! Thingline, the reference, the realtime floor and the UDP echo (this executable's `reference`,
//! `floor-server` and `udp-echo` commands) and the Node socket.io reference are started on port
//! 0; their real address is read from their output (`listener=https addr=…` for Thingline,
//! `listening addr=…` for the bench's own three, `listening port=…` for the Node one).
//! Thingline's other listeners (`listener=mqtt addr=…`, `listener=coap addr=…`, when on) are
//! kept by name, see
//! [`ServerProcess::listener`]. Both pipes are drained for the
//! whole life of the child so it never blocks on a full pipe; the last lines are kept to explain
//! a failed start. Children are stopped with SIGTERM, then killed after a grace period
//! (and killed on drop if the bench itself bails out early).
//!
//! Thingline runs with the bench's `--durability` (default `full`) on a data dir that must be
//! on a disk: one on tmpfs or ramfs is refused unless `--allow-tmpfs` is given. `--store-url`,
//! `--bus-url` and `--bus-prefix` (or the scale-out commands) put its store on PostgreSQL and
//! its bus on NATS; the data dir then keeps its certificate only.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::cli::{Durability, ServerArgs};
use crate::filesystem::Mount;
use crate::report::StoreSetup;

/// Lines of child output kept for error messages.
const LOG_TAIL: usize = 60;
/// Grace period between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// How to recognise the line that carries the listening address.
#[derive(Debug, Clone, Copy)]
enum AddrMarker {
    /// Thingline: a log line with `listener=https` and `addr=<ip:port>`.
    ThinglineHttps,
    /// The reference and the floor server: `listening addr=<ip:port>`.
    Reference,
    /// The Node socket.io reference: `listening port=<port>` (on 127.0.0.1).
    NodePort,
}

/// A running server child.
pub struct ServerProcess {
    pub label: &'static str,
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub base_url: String,
    /// When the process was spawned (startup timings count from here).
    pub spawned_at: Instant,
    log_tail: Arc<Mutex<VecDeque<String>>>,
    /// Every `listener=<name> addr=<ip:port>` Thingline logged so far.
    listeners: Arc<Mutex<Vec<(String, SocketAddr)>>>,
}

/// What is needed to start Thingline.
#[derive(Debug, Clone)]
pub struct ThinglineSpec {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub panel_email: String,
    pub panel_password: String,
    pub echo_log: bool,
    pub start_timeout: Duration,
    pub durability: Durability,
    /// The filesystem the data dir is on.
    pub mount: Mount,
    /// `--allow-tmpfs` was given.
    pub allow_tmpfs: bool,
    /// More `thingline serve` flags (e.g. `--max-connections`).
    pub extra_args: Vec<String>,
    /// `--mqtt-addr`: `None` turns the MQTT listener off (the HTTP benchmarks), `127.0.0.1:0`
    /// for the MQTT ones.
    pub mqtt_addr: Option<String>,
    /// `--coap-addr`: `None` turns the CoAP listener off, `127.0.0.1:0` for the CoAP commands
    /// (its address is logged as `listener=coap addr=…`).
    pub coap_addr: Option<String>,
    /// Environment settings on top of the bench's own (e.g. `THINGLINE_MQTT_MAX_INFLIGHT`).
    pub env: Vec<(String, String)>,
    /// THINGLINE_STORE_URL (`--store-url`); `None`: SQLite in the data dir.
    pub store_url: Option<String>,
    /// THINGLINE_BUS_URL (`--bus-url`); `None`: no bus (one process).
    pub bus_url: Option<String>,
    /// THINGLINE_BUS_PREFIX (`--bus-prefix`).
    pub bus_prefix: Option<String>,
}

impl ThinglineSpec {
    /// Refuses a data dir (which must exist) on tmpfs or ramfs without `--allow-tmpfs`.
    pub fn new(args: &ServerArgs, data_dir: &Path) -> Result<Self> {
        let mount = Mount::of(data_dir)?;
        if mount.in_memory() && !args.allow_tmpfs {
            bail!(
                "the data dir {} is on {} (mounted at {}): figures from memory are not those of a disk. \
                 Pass --data-dir on a disk (or set TMPDIR to a directory on one), or --allow-tmpfs to measure \
                 it anyway (the report says so)",
                data_dir.display(),
                mount.fs_type,
                mount.mount_point.display()
            );
        }
        Ok(Self {
            bin: locate_thingline_bin(args.thingline_bin.as_deref())?,
            data_dir: data_dir.to_path_buf(),
            panel_email: args.panel_email.clone(),
            panel_password: args.panel_password.clone(),
            echo_log: args.server_log,
            start_timeout: args.start_timeout(),
            durability: args.durability,
            mount,
            allow_tmpfs: args.allow_tmpfs,
            extra_args: Vec::new(),
            mqtt_addr: None,
            coap_addr: None,
            env: Vec::new(),
            store_url: args.store_url.clone(),
            bus_url: args.bus_url.clone(),
            bus_prefix: args.bus_prefix.clone(),
        })
    }

    /// What the reports say about Thingline's store.
    pub fn store_setup(&self) -> StoreSetup {
        StoreSetup {
            durability: self.durability.as_str().to_string(),
            data_dir: self.data_dir.display().to_string(),
            filesystem: self.mount.fs_type.clone(),
            mount_source: self.mount.source.clone(),
            allow_tmpfs: self.allow_tmpfs,
            store_url: self.store_url.clone(),
            bus_url: self.bus_url.clone(),
        }
    }
}

/// Find the `thingline` binary: the flag, else next to this executable, else the
/// workspace's target/release, else target/debug.
pub fn locate_thingline_bin(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = flag {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--thingline-bin {} does not exist", path.display());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("thingline"));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    candidates.push(root.join("target/release/thingline"));
    candidates.push(root.join("target/debug/thingline"));
    for candidate in &candidates {
        if candidate.is_file() {
            if candidate.components().any(|c| c.as_os_str() == "debug") {
                eprintln!(
                    "note: using the debug build {} (build with --release for real figures)",
                    candidate.display()
                );
            }
            return Ok(candidate.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "no thingline binary found (tried {}); build it with `cargo build --release -p thingline` or pass --thingline-bin",
        tried.join(", ")
    )
}

/// [`spawn_thingline`], then waits until `/v2/health` answers (stopping the process when it does
/// not); returns the process and how long it took to be healthy.
pub async fn spawn_healthy(spec: &ThinglineSpec, label: &str) -> Result<(ServerProcess, std::time::Duration)> {
    let client = crate::driver::https_client(1, std::time::Duration::from_secs(30))?;
    let mut process = spawn_thingline(spec).await?;
    match process.wait_healthy(&client, spec.start_timeout, std::time::Duration::from_millis(10)).await {
        Ok(ready) => Ok((process, ready)),
        Err(err) => {
            let _ = process.stop().await;
            Err(err.context(format!("starting node {label}")))
        }
    }
}

/// Start `thingline serve` on port 0 and wait until it logs its HTTPS address.
/// Does not wait for `/v2/health`: see [`ServerProcess::wait_healthy`].
pub async fn spawn_thingline(spec: &ThinglineSpec) -> Result<ServerProcess> {
    let mut command = Command::new(&spec.bin);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args(["--https-addr", "127.0.0.1:0"])
        .args(["--mqtt-addr", spec.mqtt_addr.as_deref().unwrap_or("off")])
        .args(["--mqtts-addr", "off"])
        .args(["--coap-addr", spec.coap_addr.as_deref().unwrap_or("off")])
        .args(["--durability", spec.durability.as_str()])
        .args(&spec.extra_args)
        .env("THINGLINE_PANEL_EMAIL", &spec.panel_email)
        .env("THINGLINE_PANEL_PASSWORD", &spec.panel_password)
        .env("THINGLINE_LOG", "info")
        .env("NO_COLOR", "1");
    // Settings inherited from the caller's shell would change what is measured.
    for name in [
        "THINGLINE_CONFIG",
        "THINGLINE_LOG_FORMAT",
        "THINGLINE_HTTP_ADDR",
        "THINGLINE_STORE_URL",
        "THINGLINE_BUS_URL",
        "THINGLINE_BUS_PREFIX",
        "THINGLINE_DATA_DIR",
        "THINGLINE_HTTPS_ADDR",
        "THINGLINE_DURABILITY",
        "THINGLINE_MAX_CONNECTIONS",
        "THINGLINE_MQTT_MAX_CONNECTIONS",
        "THINGLINE_MQTT_MAX_INFLIGHT",
        "THINGLINE_REALTIME_STREAMS_PER_THING",
        "THINGLINE_COAP_ADDR",
        "THINGLINE_COAP_RATE",
        "THINGLINE_COAP_OBSERVERS_PER_ADDRESS",
        "THINGLINE_COAP_MAX_OBSERVERS",
        "THINGLINE_COAP_MAX_EXCHANGES",
        "THINGLINE_COAP_SEPARATE_AFTER",
    ] {
        command.env_remove(name);
    }
    for (name, value) in [
        ("THINGLINE_STORE_URL", &spec.store_url),
        ("THINGLINE_BUS_URL", &spec.bus_url),
        ("THINGLINE_BUS_PREFIX", &spec.bus_prefix),
    ] {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    command.envs(spec.env.iter().map(|(name, value)| (name, value)));
    spawn_child("thingline", command, AddrMarker::ThinglineHttps, spec.echo_log, spec.start_timeout)
        .await
        .with_context(|| format!("starting {}", spec.bin.display()))
}

/// Start this executable's `reference` command on port 0.
pub async fn spawn_reference(echo_log: bool, timeout: Duration) -> Result<ServerProcess> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut command = Command::new(exe);
    command.args(["reference", "--addr", "127.0.0.1:0"]);
    spawn_child("reference", command, AddrMarker::Reference, echo_log, timeout)
        .await
        .context("starting the reference server")
}

/// Start this executable's `udp-echo` (the reference of `coap-write`) on 127.0.0.1 port 0 with
/// `workers` runtime workers (`None`: one per core, as Thingline) and socket buffers of
/// `socket_buffer` bytes (0: the kernel's defaults).
pub async fn spawn_udp_echo(
    workers: Option<usize>,
    socket_buffer: usize,
    echo_log: bool,
    timeout: Duration,
) -> Result<ServerProcess> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut command = Command::new(exe);
    command.args(["udp-echo", "--addr", "127.0.0.1:0"]);
    if let Some(workers) = workers {
        command.args(["--workers", &workers.to_string()]);
    }
    command.args(["--socket-buffer", &socket_buffer.to_string()]);
    spawn_child("udp-echo", command, AddrMarker::Reference, echo_log, timeout).await.context("starting the UDP echo")
}

/// Start this executable's `floor-server` on port 0 with the given certificate and key.
pub async fn spawn_floor(
    cert: &Path,
    key: &Path,
    broadcast_threads: usize,
    echo_log: bool,
    timeout: Duration,
) -> Result<ServerProcess> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut command = Command::new(exe);
    command
        .args(["floor-server", "--addr", "127.0.0.1:0", "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["--broadcast-threads", &broadcast_threads.to_string()]);
    spawn_child("floor", command, AddrMarker::Reference, echo_log, timeout).await.context("starting the floor server")
}

/// Start the Node socket.io reference: `node SCRIPT refserver --cert C --key K --max-seconds S`.
pub async fn spawn_node_reference(
    node: &Path,
    script: &Path,
    cert: &Path,
    key: &Path,
    max_seconds: u64,
    echo_log: bool,
    timeout: Duration,
) -> Result<ServerProcess> {
    let mut command = Command::new(node);
    command
        .arg(script)
        .arg("refserver")
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["--max-seconds", &max_seconds.to_string()]);
    spawn_child("reference", command, AddrMarker::NodePort, echo_log, timeout)
        .await
        .with_context(|| format!("starting {} {}", node.display(), script.display()))
}

async fn spawn_child(
    label: &'static str,
    mut command: Command,
    marker: AddrMarker,
    echo_log: bool,
    timeout: Duration,
) -> Result<ServerProcess> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let spawned_at = Instant::now();
    let mut child = command.spawn().context("spawning the process")?;
    let pid = child.id().ok_or_else(|| anyhow!("the child exited immediately"))?;
    let log_tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
    let listeners = Arc::new(Mutex::new(Vec::new()));
    let (addr_tx, mut addr_rx) = mpsc::channel::<SocketAddr>(2);
    let found = Found { addr_tx, listeners: listeners.clone() };
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(drain(stdout, label, marker, echo_log, log_tail.clone(), found.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(drain(stderr, label, marker, echo_log, log_tail.clone(), found.clone()));
    }
    drop(found);

    let mut process = ServerProcess {
        label,
        child,
        pid,
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        base_url: String::new(),
        spawned_at,
        log_tail,
        listeners,
    };
    match tokio::time::timeout(timeout, addr_rx.recv()).await {
        Ok(Some(addr)) => {
            process.addr = addr;
            process.base_url = format!("https://{addr}");
            Ok(process)
        }
        Ok(None) => {
            let status = process.child.wait().await.ok();
            Err(anyhow!(
                "{label} closed its output without logging its address (exit: {}); last lines:\n{}",
                status.map_or_else(|| "unknown".to_string(), |s| s.to_string()),
                process.recent_log()
            ))
        }
        Err(_) => {
            let tail = process.recent_log();
            process.kill_now().await;
            Err(anyhow!("{label} did not log its address within {timeout:?}; last lines:\n{tail}"))
        }
    }
}

/// Where a pipe's reader reports the addresses it finds.
#[derive(Clone)]
struct Found {
    /// The address the spawn waits for (Thingline's HTTPS one).
    addr_tx: mpsc::Sender<SocketAddr>,
    /// Every Thingline listener by name.
    listeners: Arc<Mutex<Vec<(String, SocketAddr)>>>,
}

/// Read one pipe line by line until EOF: keep a tail, echo if asked, report the address.
async fn drain<R: AsyncRead + Unpin>(
    pipe: R,
    label: &'static str,
    marker: AddrMarker,
    echo_log: bool,
    tail: Arc<Mutex<VecDeque<String>>>,
    report: Found,
) {
    let mut reader = BufReader::new(pipe);
    let mut raw = Vec::with_capacity(256);
    let mut found = false;
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = strip_ansi(&String::from_utf8_lossy(&raw));
        let line = line.trim_end().to_string();
        if echo_log {
            eprintln!("[{label}] {line}");
        }
        if let AddrMarker::ThinglineHttps = marker
            && let Some((name, addr)) = parse_listener(&line)
            && let Ok(mut listeners) = report.listeners.lock()
        {
            listeners.push((name, loopback_if_unspecified(addr)));
        }
        if !found {
            let parsed = match marker {
                AddrMarker::ThinglineHttps => parse_https_listener(&line),
                AddrMarker::Reference => line.strip_prefix("listening addr=").and_then(|rest| rest.trim().parse().ok()),
                AddrMarker::NodePort => line
                    .strip_prefix("listening port=")
                    .and_then(|port| port.trim().parse().ok())
                    .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            };
            if let Some(addr) = parsed {
                found = true;
                let _ = report.addr_tx.send(loopback_if_unspecified(addr)).await;
            }
        }
        if let Ok(mut guard) = tail.lock() {
            if guard.len() == LOG_TAIL {
                guard.pop_front();
            }
            guard.push_back(line);
        }
    }
}

/// `0.0.0.0:p` / `[::]:p` cannot be connected to; use loopback with the same port.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip =
            if addr.is_ipv4() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// Find `listener=https` and `addr=<ip:port>` in a text log line (fields may be quoted,
/// in either order). Regex-free on purpose.
pub fn parse_https_listener(line: &str) -> Option<SocketAddr> {
    parse_listener(line).filter(|(name, _)| name == "https").map(|(_, addr)| addr)
}

/// Find `listener=<name>` and `addr=<ip:port>` in a text log line (fields may be quoted, in
/// either order): Thingline logs one such line per listener (`https`, `mqtt`, …).
pub fn parse_listener(line: &str) -> Option<(String, SocketAddr)> {
    let unquote = |s: &str| s.trim_matches(|c: char| c == '"' || c == '\'' || c == ',' || c == ';').to_string();
    let mut name = None;
    let mut addr = None;
    for token in line.split_whitespace() {
        if let Some(value) = token.strip_prefix("listener=") {
            name = Some(unquote(value));
        } else if let Some(value) = token.strip_prefix("addr=") {
            addr = unquote(value).parse::<SocketAddr>().ok().or(addr);
        }
    }
    name.zip(addr)
}

/// Remove ANSI escape sequences (`ESC [ … letter`), in case the child colours its logs.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for inner in chars.by_ref() {
                    if inner.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

impl ServerProcess {
    /// The last lines the child printed.
    pub fn recent_log(&self) -> String {
        self.log_tail.lock().map(|tail| tail.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    /// Poll `GET /v2/health` every `interval` until it answers 2xx; returns the time from
    /// spawn to that answer.
    pub async fn wait_healthy(
        &mut self,
        client: &reqwest::Client,
        timeout: Duration,
        interval: Duration,
    ) -> Result<Duration> {
        let url = format!("{}/v2/health", self.base_url);
        let deadline = Instant::now() + timeout;
        loop {
            let last = match client.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(response) if response.status().is_success() => {
                    let ready = self.spawned_at.elapsed();
                    let _ = response.bytes().await;
                    return Ok(ready);
                }
                Ok(response) => format!("HTTP {}", response.status()),
                Err(err) => format!("{err:#}"),
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited ({status}) before /v2/health answered; last lines:\n{}",
                    self.label,
                    self.recent_log()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer 200 on {url} within {timeout:?} (last: {last}); last lines:\n{}",
                    self.label,
                    self.recent_log()
                );
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The address Thingline logged for its listener `name` (`listener=<name> addr=…`), waiting
    /// up to `timeout` for the line.
    pub async fn listener(&mut self, name: &str, timeout: Duration) -> Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            let logged = self
                .listeners
                .lock()
                .ok()
                .and_then(|listeners| listeners.iter().find(|(n, _)| n == name).map(|(_, addr)| *addr));
            if let Some(addr) = logged {
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited ({status}) before logging listener={name}; last lines:\n{}",
                    self.label,
                    self.recent_log()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log `listener={name} addr=…` within {timeout:?} (does this build serve it?); last lines:\n{}",
                    self.label,
                    self.recent_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Resident memory in bytes (VmRSS).
    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes_of(self.pid)
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL. Returns how long it took.
    pub async fn stop(mut self) -> Result<Duration> {
        let began = Instant::now();
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(began.elapsed());
        }
        let pid = i32::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        if rc != 0 {
            self.kill_now().await;
            return Ok(began.elapsed());
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => {
                if !status.success() {
                    eprintln!("note: {} exited with {status} after SIGTERM (the contract says exit 0)", self.label);
                }
            }
            Ok(Err(err)) => eprintln!("note: waiting for {}: {err}", self.label),
            Err(_) => {
                eprintln!("note: {} still running {STOP_GRACE:?} after SIGTERM; killing it", self.label);
                self.kill_now().await;
            }
        }
        Ok(began.elapsed())
    }

    async fn kill_now(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Resident memory of a process in bytes, from `/proc/<pid>/status` (VmRSS).
pub fn rss_bytes_of(pid: u32) -> Result<u64> {
    status_bytes_of(pid, "VmRSS")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …) in bytes.
pub fn status_bytes_of(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .ok_or_else(|| anyhow!("no {field} line in {path}"))?;
    let kib: u64 =
        line.trim().trim_end_matches("kB").trim().parse().with_context(|| format!("parsing {field}: {line:?}"))?;
    Ok(kib * 1024)
}

/// The Thingline data dir of a run: the user's (kept), or a fresh temp dir (removed at
/// the end unless `--keep-data`).
#[derive(Debug)]
pub struct DataDir {
    pub path: PathBuf,
    remove_at_end: bool,
}

impl DataDir {
    pub fn from_args(args: &ServerArgs) -> Result<Self> {
        match &args.data_dir {
            Some(path) => {
                std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
                Ok(Self { path: path.clone(), remove_at_end: false })
            }
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let name = format!("thingline-bench-{}-{nanos:08x}", std::process::id());
                let path = std::env::temp_dir().join(name);
                std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
                Ok(Self { path, remove_at_end: !args.keep_data })
            }
        }
    }

    /// Remove the temp dir (if it is one and not kept); report where it stays otherwise.
    pub fn finish(self) {
        if self.remove_at_end {
            if let Err(err) = std::fs::remove_dir_all(&self.path) {
                eprintln!("note: could not remove {}: {err}", self.path.display());
            }
        } else {
            eprintln!("data dir kept: {}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_log_line() {
        let line = "2025-01-01T00:00:00.000Z  INFO thingline_server: listening listener=https addr=127.0.0.1:43210";
        assert_eq!(parse_https_listener(line), Some("127.0.0.1:43210".parse().unwrap()));
    }

    #[test]
    fn parses_quoted_and_reordered() {
        let line = r#"INFO listening addr="0.0.0.0:8443" listener="https""#;
        let addr = parse_https_listener(line).map(loopback_if_unspecified);
        assert_eq!(addr, Some("127.0.0.1:8443".parse().unwrap()));
    }

    #[test]
    fn ignores_other_listeners() {
        assert_eq!(parse_https_listener("listening listener=mqtt addr=127.0.0.1:1883"), None);
    }

    #[test]
    fn parses_any_listener_by_name() {
        let line = "2025-01-01T00:00:00.000Z  INFO thingline_server: listening listener=mqtt addr=127.0.0.1:41883";
        assert_eq!(parse_listener(line), Some(("mqtt".to_string(), "127.0.0.1:41883".parse().unwrap())));
        assert_eq!(
            parse_listener(r#"listening addr="[::]:1883" listener="mqtt""#).map(|(n, _)| n),
            Some("mqtt".into())
        );
        assert_eq!(parse_listener("listening addr=127.0.0.1:1"), None);
        assert_eq!(parse_listener("listener=mqtt off"), None);
    }

    #[test]
    fn strips_colours() {
        let coloured = "\u{1b}[2mlistener\u{1b}[0m=https \u{1b}[3maddr\u{1b}[0m=127.0.0.1:1";
        assert_eq!(strip_ansi(coloured), "listener=https addr=127.0.0.1:1");
        assert!(parse_https_listener(&strip_ansi(coloured)).is_some());
    }
}
