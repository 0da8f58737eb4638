//! Support for the realtime tests: app users (register, unlink, app writes), writes on every
//! path, opening chunked subscription streams (read with `common::JsonStream`), and real
//! socket.io clients (npm `socket.io-client` 4.x and 2.x, run by Node from `tests/node/`) driven
//! over stdin/stdout JSON lines.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::common::{JsonStream, TestServer, TestThing};

pub const WAIT: Duration = Duration::from_secs(15);

/// `tests/node`, where `npm ci` installs the clients.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Whether the Node clients are installed. Outside CI a missing install skips the test loudly;
/// in CI (`CI=true`) it fails the test.
pub fn node_clients_ready() -> bool {
    let ok = node_dir().join("node_modules/sio4").is_dir() && node_dir().join("node_modules/sio2").is_dir();
    if ok {
        return true;
    }
    let msg = format!(
        "socket.io test clients are not installed: run `npm ci --prefix {}` (needs node and npm)",
        node_dir().display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = write!(std::io::stderr().lock(), "\n!!!!!!!!!!\n!!! SKIPPED: {msg}\n!!!!!!!!!!\n");
    false
}

/// An app user with a session token.
pub struct AppUser {
    pub token: String,
    pub email: String,
}

/// Registers a user of the app.
pub async fn register(server: &TestServer, app_id: &str, email: &str) -> AppUser {
    AppUser { token: server.app_user(app_id, email).await, email: email.to_owned() }
}

pub async fn unlink(server: &TestServer, user: &AppUser, thing: &TestThing) {
    let path = format!("/v2/me/things/{}", thing.id);
    let r = server.req(Method::DELETE, &path, &user.token).send().await.expect("unlink");
    assert_eq!(r.status(), StatusCode::OK, "unlink");
}

/// Writes `{"values":[{"value":v}]}` through the App API; `query` like `?store=false`.
pub async fn app_write(server: &TestServer, user: &AppUser, thing: &TestThing, key: &str, value: Value, query: &str) {
    let path = format!("/v2/me/resources/{key}/{}{query}", thing.id);
    let (status, v) = server.post_values(&path, &user.token, json!([{ "value": value }])).await;
    assert!(status.is_success(), "app write: {status} {v}");
}

/// Writes to the thing over the Thing API with a query (`?store=false`, `?broadcast=false`).
pub async fn thing_write(server: &TestServer, thing: &TestThing, values: Value, query: &str) {
    assert_eq!(server.write_query(thing, values, query).await, StatusCode::CREATED, "thing write");
}

/// Writes on every path, in this order: 1 (thing), 2 (app), 3 (app, store=false), "4" (thing,
/// store=false), 98 (thing, broadcast=false), 99 (app, broadcast=false), 5 (thing).
pub async fn write_on_every_path(server: &TestServer, user: &AppUser, thing: &TestThing) {
    thing_write(server, thing, json!([{"key": "temperature", "value": 1}]), "").await;
    app_write(server, user, thing, "temperature", json!(2), "").await;
    app_write(server, user, thing, "temperature", json!(3), "?store=false").await;
    thing_write(server, thing, json!([{"key": "temperature", "value": "4"}]), "?store=false").await;
    thing_write(server, thing, json!([{"key": "temperature", "value": 98}]), "?broadcast=false").await;
    app_write(server, user, thing, "temperature", json!(99), "?broadcast=false").await;
    thing_write(server, thing, json!([{"key": "temperature", "value": 5}]), "").await;
}

/// Opens the chunked subscription `path` (with the user's session, if any), documents within
/// [`WAIT`] each; panics unless 200 and `subscribed` first.
pub async fn open_stream(server: &TestServer, path: &str, token: Option<&str>) -> JsonStream {
    let mut req = server.client.get(server.url(path));
    if let Some(t) = token {
        req = req.header("Authorization", t);
    }
    let resp = req.send().await.expect("subscribe");
    assert_eq!(resp.status(), StatusCode::OK, "subscribe {path}");
    let mut s = JsonStream::new(resp, WAIT);
    assert_eq!(s.next().await, Some(json!({"status": "success", "message": "subscribed"})));
    s
}

/// A socket.io client process.
pub struct SioClient {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    pub version: u8,
}

impl SioClient {
    /// Starts a client (version 4 or 2) connected to namespace `/v2`, waits for `connect`.
    pub async fn connect(server: &TestServer, version: u8, transports: &str) -> SioClient {
        let mut child = Command::new("node")
            .arg(node_dir().join("client.js"))
            .current_dir(node_dir())
            .env("SIO_VERSION", version.to_string())
            .env("SIO_URL", format!("{}/v2", server.https))
            .env("SIO_CA", server.data_dir.join("tls/cert.pem"))
            .env("SIO_TRANSPORTS", transports)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        let mut c = SioClient { child, stdin, lines, version };
        let mut first = c.next_line().await;
        while first["type"] == "upgrade" {
            first = c.next_line().await;
        }
        assert_eq!(first["type"], "connect", "v{version} client connects: {first}");
        c
    }

    pub async fn send(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.expect("client stdin");
        self.stdin.flush().await.expect("flush");
    }

    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send(json!({"op": "emit", "event": event, "data": data})).await;
    }

    /// The next line the client printed.
    pub async fn next_line(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("v{} client: nothing within {WAIT:?}", self.version))
            .unwrap_or_else(|| panic!("v{} client exited", self.version))
    }

    /// The next received event called `name`, skipping others; returns its arguments.
    pub async fn event(&mut self, name: &str) -> Vec<Value> {
        loop {
            let l = self.next_line().await;
            if l["type"] == "event" && l["event"] == name {
                return l["args"].as_array().cloned().unwrap_or_default();
            }
            assert_ne!(l["type"], "disconnect", "v{} client disconnected while waiting for {name}: {l}", self.version);
        }
    }

    /// The next line of this type (e.g. `disconnect`), skipping events.
    pub async fn until(&mut self, ty: &str) -> Value {
        loop {
            let l = self.next_line().await;
            if l["type"] == ty {
                return l;
            }
        }
    }

    /// Authenticates and asserts success.
    pub async fn authenticate(&mut self, token: &str) {
        self.emit("authenticate", json!({"sessionToken": token})).await;
        let a = self.event("authenticate").await;
        assert_eq!(a.first(), Some(&json!({"status": "success"})), "v{} authenticate", self.version);
    }

    /// Subscribes and returns the `subscribe` answer.
    pub async fn subscribe(&mut self, resource: &str) -> Value {
        self.emit("subscribe", json!({"resource": resource})).await;
        self.event("subscribe").await.into_iter().next().unwrap_or(Value::Null)
    }

    pub async fn close(mut self) {
        self.send(json!({"op": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// A panel, an app asking for `temperature`, a thing with `temperature` public, and a user of
/// the app who linked the thing.
pub async fn world(server: &TestServer, email: &str) -> (String, TestThing, AppUser) {
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("temperature", true)]).await;
    let app = server.app(&panel, &["temperature"]).await;
    let user = register(server, &app, email).await;
    server.link(&user.token, &thing.token).await;
    (app, thing, user)
}
