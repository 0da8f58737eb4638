//! The real `thingline` binary as operators run it, spawned on port-0 listeners: its listener
//! lines are read to find the addresses, its remaining log lines stay readable, and it is
//! stopped with SIGTERM (or killed) at the end.
//!
//! `THINGLINE_TEST_BIN` runs the tests against another build of the binary (e.g. an older
//! commit's, to check that a test fails without its fix); by default the one cargo built.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("THINGLINE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_thingline")))
}

/// A running `thingline serve`.
pub struct Proc {
    pub child: Child,
    /// `https://127.0.0.1:PORT`
    pub https: String,
    /// `http://127.0.0.1:PORT` (the plain device listener)
    pub http: String,
    /// The MQTT listeners, when `extra` turned them on.
    pub mqtt: Option<std::net::SocketAddr>,
    pub mqtts: Option<std::net::SocketAddr>,
    pub coap: Option<std::net::SocketAddr>,
    /// Log lines not read yet (stderr).
    pub lines: mpsc::Receiver<String>,
}

/// Spawns `thingline serve` on `dir` with port-0 HTTPS and plain listeners (MQTT and CoAP off,
/// unless `extra` names `--mqtt-addr`/`--mqtts-addr`/`--coap-addr`), the test panel account, `extra` arguments
/// and `env` variables; waits for its listening lines.
pub fn spawn_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .args(["--data-dir", dir.to_str().expect("utf8 path")])
        .args(["--https-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(extra)
        .env("THINGLINE_PANEL_EMAIL", super::PANEL_EMAIL)
        .env("THINGLINE_PANEL_PASSWORD", super::PANEL_PASSWORD)
        .env("THINGLINE_LOG", "info")
        .env_remove("THINGLINE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let want_mqtt = extra.contains(&"--mqtt-addr");
    let want_mqtts = extra.contains(&"--mqtts-addr");
    let want_coap = extra.contains(&"--coap-addr");
    if !want_coap {
        cmd.args(["--coap-addr", "off"]);
    }
    if !want_mqtt {
        cmd.args(["--mqtt-addr", "off"]);
    }
    if !want_mqtts {
        cmd.args(["--mqtts-addr", "off"]);
    }
    if let Some(cluster) = super::backend::for_data_dir(dir) {
        for (k, v) in cluster.env() {
            cmd.env(k, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn thingline");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut https, mut http, mut mqtt, mut mqtts, mut coap) = (None, None, None, None, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while https.is_none()
        || http.is_none()
        || (want_mqtt && mqtt.is_none())
        || (want_mqtts && mqtts.is_none())
        || (want_coap && coap.is_none())
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("listening lines within 30 s");
        if let Some(addr) = line.split("listener=https addr=").nth(1) {
            https = Some(format!("https://{}", addr.split_whitespace().next().expect("addr")));
        }
        if let Some(addr) = line.split("listener=http addr=").nth(1) {
            http = Some(format!("http://{}", addr.split_whitespace().next().expect("addr")));
        }
        let addr_of = |l: &str| l.split_whitespace().next().and_then(|a| a.parse().ok());
        if let Some(addr) = line.split("listener=mqtt addr=").nth(1) {
            mqtt = addr_of(addr);
        }
        if let Some(addr) = line.split("listener=mqtts addr=").nth(1) {
            mqtts = addr_of(addr);
        }
        if let Some(addr) = line.split("listener=coap addr=").nth(1) {
            coap = addr_of(addr);
        }
    }
    Proc { child, https: https.expect("https"), http: http.expect("http"), mqtt, mqtts, coap, lines: rx }
}

/// [`spawn_with`] without extra environment.
pub fn spawn(dir: &Path, extra: &[&str]) -> Proc {
    spawn_with(dir, extra, &[])
}

impl Proc {
    /// SIGTERM, then waits (up to 20 s) for the exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        wait_exit(&mut self.child, Duration::from_secs(20))
    }

    /// The log lines printed so far (without waiting).
    pub fn drain_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for the process to exit; kills it and panics past `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
