//! A peer that vanishes without FIN or RST (power loss, a cut network) is detected and its
//! connection closed within about `--tcp-user-timeout`, not after the kernel's ~15 minutes of
//! retransmissions (or never, for an idle connection).
//!
//! The real `thingline` binary runs in a network namespace of its own, the client in another,
//! joined by a veth pair. The peer "vanishes" by a `pfifo limit 0` qdisc on the client's side of
//! the pair: everything the client sends (its ACKs, keepalive answers, FIN, RST) is dropped before
//! it leaves, while the server's packets still leave normally and are never acknowledged; for the
//! server this is exactly a half-open connection (a qdisc rather than `netem loss 100%`, which not
//! every kernel has, and on the client's side so that the server's own sends succeed locally).
//! The server logs each closed connection with the peer's address at debug level; with `--max-connections 1`, a new connection is served again
//! once the drop is lifted, so the dead one no longer holds the listener's only permit.
//!
//! Needs root, `ip` (iproute2) and `tc`. Otherwise the tests skip with a notice on stderr, and fail
//! when `CI=true`.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_thingline");
/// `--tcp-user-timeout` of the server under test.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest accepted time from the cut to the close: the timeout, the stream's 1 s keep-alive
/// write (the first unacknowledged data), and slack for a loaded machine. Without the socket
/// options neither connection closes within it (the stream would after the kernel's ~15 min).
const DEADLINE: Duration = Duration::from_secs(12);
const SERVER_IP: &str = "10.203.0.1";
const CLIENT_IP: &str = "10.203.0.2";

#[test]
fn a_vanished_subscriber_is_closed_within_the_peer_timeout() {
    let Some(mut net) = Netns::create_or_skip() else { return };
    let server = net.spawn_server();
    let mut stream = {
        let http = server.http;
        net.in_client_ns(move || connect(http))
    };
    let addrs = server.clone();
    let token = net.in_client_ns(move || provision_thing(&addrs));
    write!(stream, "GET /v2/things/{token}?keepAlive=1000 HTTP/1.1\r\nHost: thing\r\n\r\n").expect("send");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200"), "subscription: {head}");
    // The stream is live: its `{}` keep-alive writes are acknowledged.
    let mut buf = [0u8; 64];
    assert!(stream.read(&mut buf).expect("keep-alive chunk") > 0);

    let elapsed = net.cut_and_wait_for_close(stream.local_addr().expect("local addr"));
    assert!(
        elapsed >= PEER_TIMEOUT - Duration::from_secs(1),
        "closed after {elapsed:?}, before the peer timeout: not by the timeout"
    );
    net.assert_listener_serves_again(server.http);
    drop(stream);
}

#[test]
fn a_vanished_idle_keep_alive_connection_is_closed_within_the_peer_timeout() {
    let Some(mut net) = Netns::create_or_skip() else { return };
    let server = net.spawn_server();
    let mut conn = {
        let http = server.http;
        net.in_client_ns(move || connect(http))
    };
    // One request on a keep-alive connection, then nothing: no data in flight, so only TCP
    // keepalive probes can find the peer gone.
    write!(conn, "GET /v2/health HTTP/1.1\r\nHost: thing\r\n\r\n").expect("send");
    let head = read_head(&mut conn);
    assert!(head.starts_with("HTTP/1.1 200"), "health: {head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("body");

    let elapsed = net.cut_and_wait_for_close(conn.local_addr().expect("local addr"));
    assert!(elapsed >= PEER_TIMEOUT - Duration::from_secs(1), "closed after {elapsed:?}: not by the keepalive");
    net.assert_listener_serves_again(server.http);
    drop(conn);
}

/// Two fresh network namespaces (server, client) joined by a veth pair, and the server process.
/// Dropping it kills the server and deletes both namespaces (also when a test fails).
struct Netns {
    server_ns: String,
    client_ns: String,
    created: Vec<String>,
    server: Option<Child>,
    lines: Option<mpsc::Receiver<String>>,
    /// Server log lines read so far (shown when a test fails).
    seen: Vec<String>,
    /// The server's data dir; removed after the server is stopped.
    data: Option<tempfile::TempDir>,
}

#[derive(Clone)]
struct ServerAddrs {
    https: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
}

impl Netns {
    fn create_or_skip() -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip("not root");
            return None;
        }
        match Netns::create() {
            Ok(n) => Some(n),
            Err(why) => {
                skip(&why);
                None
            }
        }
    }

    fn create() -> Result<Netns, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!("tlho{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut net = Netns {
            server_ns: format!("{id}s"),
            client_ns: format!("{id}c"),
            created: Vec::new(),
            server: None,
            lines: None,
            seen: Vec::new(),
            data: None,
        };
        let (s, c) = (net.server_ns.clone(), net.client_ns.clone());
        for ns in [&s, &c] {
            run("ip", &["netns", "add", ns])?;
            net.created.push(ns.clone());
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        run("ip", &["-n", &s, "link", "add", "hos", "type", "veth", "peer", "name", "hoc", "netns", &c])?;
        run("ip", &["-n", &s, "addr", "add", &format!("{SERVER_IP}/24"), "dev", "hos"])?;
        run("ip", &["-n", &c, "addr", "add", &format!("{CLIENT_IP}/24"), "dev", "hoc"])?;
        run("ip", &["-n", &s, "link", "set", "hos", "up"])?;
        run("ip", &["-n", &c, "link", "set", "hoc", "up"])?;
        // The drop used to cut the client off must be available (checked here, so that a kernel
        // without it skips rather than fails).
        net.set_cut(true)?;
        net.set_cut(false)?;
        Ok(net)
    }

    /// Drops (or stops dropping) everything the client sends.
    fn set_cut(&self, cut: bool) -> Result<(), String> {
        let c = &self.client_ns;
        if cut {
            run("ip", &["netns", "exec", c, "tc", "qdisc", "add", "dev", "hoc", "root", "pfifo", "limit", "0"])
        } else {
            run("ip", &["netns", "exec", c, "tc", "qdisc", "del", "dev", "hoc", "root"])
        }
    }

    /// Starts `thingline serve` in the server namespace with `--max-connections 1` and the short
    /// peer timeout; waits for its listener lines.
    fn spawn_server(&mut self) -> ServerAddrs {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().to_path_buf();
        self.data = Some(data);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, BIN, "serve"])
            .args(["--data-dir", dir.to_str().expect("utf8 path")])
            .args(["--https-addr", &format!("{SERVER_IP}:0"), "--http-addr", &format!("{SERVER_IP}:0")])
            .args(["--mqtt-addr", "off", "--mqtts-addr", "off", "--coap-addr", "off"])
            .args(["--max-connections", "1", "--tcp-user-timeout", &PEER_TIMEOUT.as_secs().to_string()])
            .args(["--log", "thingline::net=debug,info", "--durability", "normal"])
            .env("THINGLINE_PANEL_EMAIL", common::PANEL_EMAIL)
            .env("THINGLINE_PANEL_PASSWORD", common::PANEL_PASSWORD)
            .env_remove("THINGLINE_CONFIG")
            .env_remove("THINGLINE_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn thingline");
        let stderr = child.stderr.take().expect("stderr");
        self.server = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.lines = Some(rx);
        let (mut https, mut http) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while https.is_none() || http.is_none() {
            let line = self.next_line(deadline).unwrap_or_else(|| self.fail("no listener lines within 30 s"));
            let addr = |l: &str, key: &str| {
                l.split(key).nth(1).and_then(|a| a.split_whitespace().next()).and_then(|a| a.parse().ok())
            };
            https = https.or_else(|| addr(&line, "listener=https addr="));
            http = http.or_else(|| addr(&line, "listener=http addr="));
        }
        let (Some(https), Some(http)) = (https, http) else { unreachable!() };
        ServerAddrs { https, http, data_dir: dir }
    }

    /// The next server log line before `deadline`.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.checked_duration_since(Instant::now())?;
        let line = self.lines.as_ref()?.recv_timeout(left).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Runs `f` on a thread inside the client namespace: sockets it creates belong there.
    fn in_client_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.client_ns);
        let thread = std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: a valid namespace fd; setns changes only this thread's network namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        });
        thread.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Cuts the client off and waits for the server to log the close of the connection from
    /// `client`; returns how long that took.
    fn cut_and_wait_for_close(&mut self, client: SocketAddr) -> Duration {
        while self.lines.as_ref().and_then(|l| l.try_recv().ok()).map(|l| self.seen.push(l)).is_some() {}
        let cut_at = Instant::now();
        self.set_cut(true).unwrap_or_else(|e| self.fail(&e));
        let needle = format!("remote={client}");
        let deadline = cut_at + DEADLINE;
        loop {
            let Some(line) = self.next_line(deadline) else {
                self.fail(&format!("the server did not close the connection from {client} within {DEADLINE:?}"))
            };
            if line.contains(&needle) && line.contains("connection") {
                let elapsed = cut_at.elapsed();
                // Visible with --nocapture; the figure the docs quote.
                println!("closed {elapsed:?} after the cut: {line}");
                return elapsed;
            }
        }
    }

    /// Lifts the cut; a new connection is served (`--max-connections 1`: the dead one is gone).
    fn assert_listener_serves_again(&mut self, http: SocketAddr) {
        self.set_cut(false).unwrap_or_else(|e| self.fail(&e));
        let head = self.in_client_ns(move || {
            let mut s = connect(http);
            write!(s, "GET /v2/health HTTP/1.1\r\nHost: thing\r\nConnection: close\r\n\r\n").expect("send");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        });
        if !head.starts_with("HTTP/1.1 200") {
            self.fail(&format!("a new connection is not served after the dead one closed: {head:?}"));
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        while let Some(l) = self.lines.as_ref().and_then(|l| l.try_recv().ok()) {
            self.seen.push(l);
        }
        let tail = self.seen.len().saturating_sub(30);
        panic!("{what}\nserver log (last lines):\n{}", self.seen[tail..].join("\n"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.created {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                let _ = writeln!(std::io::stderr().lock(), "cleanup: {e}");
            }
        }
    }
}

/// Runs a setup command; its stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
}

fn skip(why: &str) {
    let msg = format!("half-open TCP tests need root with `ip netns`, veth and `tc` ({why})");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests.
    let _ = write!(std::io::stderr().lock(), "\n!!!!!!!!!!\n!!! SKIPPED: {msg}\n!!!!!!!!!!\n");
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    s
}

/// Reads a response head (status line and headers) byte by byte, so nothing after it is consumed.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            other => panic!("response head cut short ({other:?}): {}", String::from_utf8_lossy(&head)),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Panel login, a product, an activation code, an activated thing (over HTTPS, with the server's
/// generated certificate trusted); returns the thing token. Runs on its own runtime.
fn provision_thing(server: &ServerAddrs) -> String {
    let pem = std::fs::read(server.data_dir.join("tls/cert.pem")).expect("generated certificate");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("certificate"))
        // The certificate names localhost; the server is at SERVER_IP.
        .resolve("localhost", server.https)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", server.https.port());
    let post = move |path: &str, auth: Option<String>, body: Value| {
        let mut req = client.post(format!("{base}{path}")).json(&body);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        async move {
            let r = req.send().await.expect("request");
            let status = r.status();
            let v: Value = r.json().await.expect("json");
            assert!(status.is_success(), "{status}: {v}");
            v
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let login = json!({"email": common::PANEL_EMAIL, "password": common::PANEL_PASSWORD});
        let panel = post("/v2/panel/login", None, login).await["token"].as_str().expect("token").to_owned();
        let product = json!({"name": "p", "resources": [{"key": "k", "public": true}]});
        let v = post("/v2/panel/products", Some(panel.clone()), product).await;
        let product = v["productId"].as_str().expect("productId").to_owned();
        let path = format!("/v2/panel/products/{product}/activation-codes");
        let v = post(&path, Some(panel), json!({"count": 1})).await;
        let code = v["codes"][0].as_str().expect("code").to_owned();
        let v = post("/v2/things", None, json!({"activationCode": code})).await;
        v["thingToken"].as_str().expect("thingToken").to_owned()
    })
}
