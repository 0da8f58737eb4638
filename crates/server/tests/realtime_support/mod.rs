//! Support for the realtime tests: app users (register, link, app writes), a reader for chunked
//! subscription streams, and real socket.io clients (npm `socket.io-client` 4.x and 2.x, run by
//! Node from `tests/node/`) driven over stdin/stdout JSON lines.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::common::{TestServer, TestThing};

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

pub async fn register(server: &TestServer, app_id: &str, email: &str) -> AppUser {
    let r = server
        .client
        .post(server.url("/v2/register"))
        .json(&json!({"email": email, "password": "user-password-1", "app": app_id}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::CREATED, "register");
    let v: Value = r.json().await.expect("json");
    AppUser { token: v["token"].as_str().expect("token").to_owned(), email: email.to_owned() }
}

pub async fn link(server: &TestServer, user: &AppUser, thing: &TestThing) {
    let r = server
        .client
        .post(server.url("/v2/me/things"))
        .header("Authorization", &user.token)
        .json(&json!({"thingToken": thing.token}))
        .send()
        .await
        .expect("link");
    assert_eq!(r.status(), StatusCode::CREATED, "link: {:?}", r.text().await);
}

pub async fn unlink(server: &TestServer, user: &AppUser, thing: &TestThing) {
    let r = server
        .client
        .delete(server.url(&format!("/v2/me/things/{}", thing.id)))
        .header("Authorization", &user.token)
        .send()
        .await
        .expect("unlink");
    assert_eq!(r.status(), StatusCode::OK, "unlink");
}

/// Writes `{"values":[{"value":v}]}` through the App API; `query` like `?store=false`.
pub async fn app_write(server: &TestServer, user: &AppUser, thing: &TestThing, key: &str, value: Value, query: &str) {
    let r = server
        .client
        .post(server.url(&format!("/v2/me/resources/{key}/{}{query}", thing.id)))
        .header("Authorization", &user.token)
        .json(&json!({"values": [{"value": value}]}))
        .send()
        .await
        .expect("app write");
    assert!(r.status().is_success(), "app write: {}", r.status());
}

/// Writes to the thing over the Thing API with a query (`?store=false`, `?broadcast=false`).
pub async fn thing_write(server: &TestServer, thing: &TestThing, values: Value, query: &str) {
    let r = server
        .client
        .post(server.url(&format!("/v2/things/{}{query}", thing.token)))
        .json(&json!({ "values": values }))
        .send()
        .await
        .expect("thing write");
    assert_eq!(r.status(), StatusCode::CREATED, "thing write");
}

/// A chunked subscription stream of JSON documents with no separators (documents may be split
/// across or share transport chunks; they are parsed from a buffer).
pub struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Stream {
    /// Opens `path` with the user's session; panics unless 200.
    pub async fn open(server: &TestServer, path: &str, token: Option<&str>) -> Stream {
        let mut req = server.client.get(server.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        let resp = req.send().await.expect("subscribe");
        assert_eq!(resp.status(), StatusCode::OK, "subscribe {path}");
        let mut s = Stream { resp, buf: Vec::new() };
        assert_eq!(s.next().await, Some(json!({"status": "success", "message": "subscribed"})));
        s
    }

    /// The next document (None at the end of the stream).
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.drain(..used);
                    return Some(v);
                }
                Some(Err(e)) if !e.is_eof() => panic!("stream is not JSON documents: {e}"),
                _ => {}
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk()).await.expect("a chunk in time").ok()??;
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next document that is not a keepAlive `{}`.
    pub async fn next_data(&mut self) -> Option<Value> {
        loop {
            let v = self.next().await?;
            if v != json!({}) {
                return Some(v);
            }
        }
    }
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
    link(server, &user, &thing).await;
    (app, thing, user)
}
