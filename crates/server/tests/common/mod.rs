//! Test support: a real server started in-process on port 0 (HTTPS with its generated
//! certificate trusted by the client, plus the plain device listener), and helpers that set up
//! a panel account, products, codes, things, apps and app users through the real API, and a
//! reader of chunked subscription streams.
#![allow(dead_code)]

pub mod backend;
pub mod browser;
pub mod spawned;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use thingline::config::ConfigArgs;
use thingline::{Config, RunningServer};

pub const PANEL_EMAIL: &str = "ops@example.com";
pub const PANEL_PASSWORD: &str = "operator-password";
/// The password of every app user the helpers register.
pub const APP_USER_PASSWORD: &str = "a hard to guess password";

pub struct TestServer {
    /// `https://127.0.0.1:PORT`
    pub https: String,
    /// `http://127.0.0.1:PORT` (devices only)
    pub http: String,
    pub client: Client,
    pub data_dir: PathBuf,
    /// The MQTT listeners, when started ([`TestServer::start_mqtt`], or a spawn with
    /// `--mqtt-addr`/`--mqtts-addr`).
    pub mqtt: Option<std::net::SocketAddr>,
    pub mqtts: Option<std::net::SocketAddr>,
    /// The CoAP (UDP) listener, when started with [`coap_on`] or spawned with `--coap-addr`.
    pub coap: Option<std::net::SocketAddr>,
    running: Option<RunningServer>,
    /// The `thingline` binary, when the server was spawned as a process ([`TestServer::spawn`]).
    process: Option<spawned::Proc>,
    _dir: Option<tempfile::TempDir>,
}

/// A thing activated through the API.
#[derive(Debug, Clone)]
pub struct TestThing {
    pub token: String,
    pub id: String,
    pub product_id: String,
}

/// The test defaults: port-0 listeners, the panel account, and the suite's backend
/// ([`backend::for_data_dir`]: SQLite in the data dir, or PostgreSQL and NATS).
pub fn config_args(data_dir: &std::path::Path) -> ConfigArgs {
    let cluster = backend::for_data_dir(data_dir);
    ConfigArgs {
        store_url: cluster.as_ref().map(|c| c.store_url.clone()),
        bus_url: cluster.as_ref().map(|c| c.bus_url.clone()),
        bus_prefix: cluster.map(|c| c.bus_prefix),
        data_dir: Some(data_dir.to_path_buf()),
        https_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        mqtt_addr: Some("off".into()),
        mqtts_addr: Some("off".into()),
        coap_addr: Some("off".into()),
        panel_email: Some(PANEL_EMAIL.into()),
        panel_password: Some(PANEL_PASSWORD.into()),
        log: Some(std::env::var("THINGLINE_LOG").unwrap_or_else(|_| "warn".into())),
        // Tests create many short-lived stores; power-loss durability is the default elsewhere.
        durability: Some("normal".into()),
        ..ConfigArgs::default()
    }
}

/// Turns the MQTT and MQTTS listeners on, on port 0.
pub fn mqtt_on(args: &mut ConfigArgs) {
    args.mqtt_addr = Some("127.0.0.1:0".into());
    args.mqtts_addr = Some("127.0.0.1:0".into());
}

/// Turns the CoAP listener on, on UDP port 0.
pub fn coap_on(args: &mut ConfigArgs) {
    args.coap_addr = Some("127.0.0.1:0".into());
}

/// A reqwest client that trusts the server's generated certificate (real TLS verification).
pub fn client_for(data_dir: &std::path::Path) -> Client {
    let pem = std::fs::read(data_dir.join("tls/cert.pem")).expect("generated certificate");
    let cert = reqwest::Certificate::from_pem(&pem).expect("certificate");
    Client::builder().add_root_certificate(cert).timeout(Duration::from_secs(60)).build().expect("client")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with the MQTT and MQTTS listeners on port 0.
    pub async fn start_mqtt() -> TestServer {
        Self::start_with(mqtt_on).await
    }

    /// Starts with the CoAP listener on UDP port 0.
    pub async fn start_coap() -> TestServer {
        Self::start_with(coap_on).await
    }

    /// Starts with the test defaults, adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ConfigArgs)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_in(dir.path().to_path_buf(), adjust).await;
        server._dir = Some(dir);
        server
    }

    /// Starts on an existing data dir (to restart a server on the same store).
    pub async fn start_in(data_dir: PathBuf, adjust: impl FnOnce(&mut ConfigArgs)) -> TestServer {
        thingline::install_crypto_provider();
        let mut args = config_args(&data_dir);
        adjust(&mut args);
        let log = args.log.clone().unwrap_or_else(|| "warn".into());
        thingline::logging::init(&log, false);
        let config = Config::resolve(args).expect("config");
        let running = thingline::start(config).await.expect("server starts");
        let https = format!("https://{}", running.https_addr);
        let http = running.http_addr.map(|a| format!("http://{a}")).unwrap_or_default();
        TestServer {
            https,
            http,
            client: client_for(&data_dir),
            mqtt: running.mqtt_addr,
            mqtts: running.mqtts_addr,
            coap: running.coap_addr,
            data_dir,
            running: Some(running),
            process: None,
            _dir: None,
        }
    }

    /// The real `thingline` binary spawned on a fresh data dir with port-0 listeners (see
    /// [`spawned::spawn_with`]), `extra` command-line arguments and `env` variables: what an
    /// operator runs. [`Self::platform`] is not available.
    pub fn spawn(extra: &[&str], env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::spawn_in(dir.path(), extra, env);
        server._dir = Some(dir);
        server
    }

    /// [`Self::spawn`] on an existing data dir (the caller keeps it: to restart on the same store).
    pub fn spawn_in(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> TestServer {
        thingline::install_crypto_provider();
        let process = spawned::spawn_with(dir, extra, env);
        TestServer {
            https: process.https.clone(),
            http: process.http.clone(),
            client: client_for(dir),
            mqtt: process.mqtt,
            mqtts: process.mqtts,
            coap: process.coap,
            data_dir: dir.to_path_buf(),
            running: None,
            process: Some(process),
            _dir: None,
        }
    }

    /// SIGKILL to the spawned process, and wait for it: a crash.
    pub fn kill_9(&mut self) {
        let p = self.process.as_mut().expect("a spawned server");
        p.child.kill().expect("kill -9");
        p.child.wait().expect("reaped");
    }

    /// The metrics listener of an in-process server started with `metrics_addr` set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_addr)
    }

    pub fn platform(&self) -> &std::sync::Arc<thingline::platform::Platform> {
        &self.running.as_ref().expect("an in-process server").platform
    }

    /// The spawned process ([`Self::spawn`]).
    pub fn process(&self) -> &spawned::Proc {
        self.process.as_ref().expect("a spawned server")
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        if let Some(p) = self.process.take() {
            let status = tokio::task::spawn_blocking(move || p.stop()).await.expect("stop");
            assert_eq!(status.code(), Some(0), "the server exits 0 after SIGTERM");
        }
    }

    /// Full URL on the HTTPS listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.https, path)
    }

    /// The HTTPS API of this server, for the setup helpers of [`Api`].
    pub fn api(&self) -> Api<'_> {
        Api { client: &self.client, base: &self.https }
    }

    pub async fn panel_token(&self) -> String {
        self.api().panel_token().await
    }

    /// Creates a product; `resources` are (key, public).
    pub async fn product(&self, panel: &str, resources: &[(&str, bool)]) -> String {
        self.api().product(panel, resources).await
    }

    pub async fn codes(&self, panel: &str, product: &str, count: usize) -> Vec<String> {
        self.api().codes(panel, product, count).await
    }

    pub async fn activate(&self, code: &str) -> Response {
        self.api().activate(code).await
    }

    /// A product with these resources and one activated thing of it.
    pub async fn thing(&self, panel: &str, resources: &[(&str, bool)]) -> TestThing {
        self.api().thing(panel, resources).await
    }

    /// Creates an app asking for `resources`; returns the appId.
    pub async fn app(&self, panel: &str, resources: &[&str]) -> String {
        self.api().app(panel, resources).await
    }

    /// POSTs `{"values": values}` to the thing over HTTPS; returns the status.
    pub async fn write(&self, thing: &TestThing, values: Value) -> StatusCode {
        self.write_query(thing, values, "").await
    }

    /// [`Self::write`] with a query (`?store=false`, `?broadcast=false`).
    pub async fn write_query(&self, thing: &TestThing, values: Value, query: &str) -> StatusCode {
        self.client
            .post(self.url(&format!("/v2/things/{}{query}", thing.token)))
            .json(&json!({ "values": values }))
            .send()
            .await
            .expect("write")
            .status()
    }

    /// GETs a thing read and returns (status, body).
    pub async fn read(&self, thing: &TestThing, key: &str, query: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(self.url(&format!("/v2/things/{}/resources/{}{}", thing.token, urlencode(key), query)))
            .send()
            .await
            .expect("read");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An authenticated request (app session or panel token) to the HTTPS listener.
    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).header("Authorization", token)
    }

    /// Registers a user of `app` with [`APP_USER_PASSWORD`]; returns (status, body).
    pub async fn register(&self, app: &str, email: &str) -> (StatusCode, Value) {
        self.account_call("/v2/register", app, email, APP_USER_PASSWORD).await
    }

    /// Logs a user of `app` in; returns (status, body).
    pub async fn login(&self, app: &str, email: &str, password: &str) -> (StatusCode, Value) {
        self.account_call("/v2/login", app, email, password).await
    }

    async fn account_call(&self, path: &str, app: &str, email: &str, password: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(&json!({"email": email, "password": password, "app": app}))
            .send()
            .await
            .expect(path);
        json_of(r).await
    }

    /// Registers a user of `app` (201) and returns its session token.
    pub async fn app_user(&self, app: &str, email: &str) -> String {
        let (status, v) = self.register(app, email).await;
        assert_eq!(status, StatusCode::CREATED, "register: {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// Links a thing to the session's user by thing token (201); returns the thingId.
    pub async fn link(&self, token: &str, thing_token: &str) -> String {
        let r = self
            .req(Method::POST, "/v2/me/things", token)
            .json(&json!({"thingToken": thing_token}))
            .send()
            .await
            .expect("link");
        let (status, v) = json_of(r).await;
        assert_eq!(status, StatusCode::CREATED, "link: {v}");
        v["thingId"].as_str().expect("thingId").to_owned()
    }

    /// POSTs `{"values": values}` to an App API `path` with the session; returns (status, body).
    pub async fn post_values(&self, path: &str, token: &str, values: Value) -> (StatusCode, Value) {
        let r = self.req(Method::POST, path, token).json(&json!({ "values": values })).send().await.expect("post");
        json_of(r).await
    }
}

/// A client's view of a server's HTTPS API: the base URL (`https://127.0.0.1:PORT`) and a client
/// trusting its certificate. [`TestServer::api`] hands one out; a test of a spawned `thingline`
/// process builds one for it.
pub struct Api<'a> {
    pub client: &'a Client,
    pub base: &'a str,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Logs in the panel account the test config sets up; returns its token.
    pub async fn panel_token(&self) -> String {
        let r = self
            .client
            .post(self.url("/v2/panel/login"))
            .json(&json!({"email": PANEL_EMAIL, "password": PANEL_PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    /// A panel `POST` that must answer 201; returns the body.
    async fn panel_create(&self, panel: &str, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(self.url(path))
            .header("Authorization", panel)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_else(|e| panic!("POST {path}: not JSON: {e}"));
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {v}");
        v
    }

    /// Creates a product; `resources` are (key, public).
    pub async fn product(&self, panel: &str, resources: &[(&str, bool)]) -> String {
        let resources: Vec<Value> = resources.iter().map(|(k, p)| json!({"key": k, "public": p})).collect();
        let v = self
            .panel_create(panel, "/v2/panel/products", json!({"name": "test product", "resources": resources}))
            .await;
        v["productId"].as_str().expect("productId").to_owned()
    }

    pub async fn codes(&self, panel: &str, product: &str, count: usize) -> Vec<String> {
        let path = format!("/v2/panel/products/{product}/activation-codes");
        let v = self.panel_create(panel, &path, json!({"count": count})).await;
        v["codes"].as_array().expect("codes").iter().map(|c| c.as_str().expect("code").to_owned()).collect()
    }

    /// Creates an app asking for `resources`; returns the appId.
    pub async fn app(&self, panel: &str, resources: &[&str]) -> String {
        let v = self.panel_create(panel, "/v2/panel/apps", json!({"name": "test app", "resources": resources})).await;
        v["appId"].as_str().expect("appId").to_owned()
    }

    /// Creates an app asking for no resources that declares `indexes` for its shared
    /// collections (`{"Tracks":["genre"]}`); returns the appId.
    pub async fn app_with_indexes(&self, panel: &str, indexes: Value) -> String {
        let body = json!({"name": "test app", "resources": [], "indexes": indexes});
        let v = self.panel_create(panel, "/v2/panel/apps", body).await;
        v["appId"].as_str().expect("appId").to_owned()
    }

    /// Registers a user of `app` with [`APP_USER_PASSWORD`] (201); returns its session token.
    pub async fn app_user(&self, app: &str, email: &str) -> String {
        let r = self
            .client
            .post(self.url("/v2/register"))
            .json(&json!({"email": email, "password": APP_USER_PASSWORD, "app": app}))
            .send()
            .await
            .expect("register");
        let (status, v) = json_of(r).await;
        assert_eq!(status, StatusCode::CREATED, "register: {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    pub async fn activate(&self, code: &str) -> Response {
        self.client.post(self.url("/v2/things")).json(&json!({"activationCode": code})).send().await.expect("activate")
    }

    /// A product with these resources and one activated thing of it.
    pub async fn thing(&self, panel: &str, resources: &[(&str, bool)]) -> TestThing {
        let product_id = self.product(panel, resources).await;
        let code = self.codes(panel, &product_id, 1).await.remove(0);
        let r = self.activate(&code).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.expect("json");
        TestThing {
            token: v["thingToken"].as_str().expect("token").to_owned(),
            id: v["thingId"].as_str().expect("id").to_owned(),
            product_id,
        }
    }
}

/// A response's status and body: the body as JSON, or as a JSON string when it is not JSON.
pub async fn json_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A chunked stream of JSON documents (thing, app and collection subscriptions), read one
/// document at a time, each within a deadline.
pub struct JsonStream {
    resp: Response,
    buf: Vec<u8>,
    wait: Duration,
    one_per_chunk: bool,
}

impl JsonStream {
    /// Documents may be split across or share transport chunks: they are parsed from a buffer.
    /// `wait` bounds the wait for each document.
    pub fn new(resp: Response, wait: Duration) -> JsonStream {
        JsonStream { resp, buf: Vec::new(), wait, one_per_chunk: false }
    }

    /// Each chunk must be exactly one JSON document (the thing stream's framing: firmware
    /// parses every chunk on its own).
    pub fn one_per_chunk(resp: Response, wait: Duration) -> JsonStream {
        JsonStream { one_per_chunk: true, ..JsonStream::new(resp, wait) }
    }

    /// The next document, None at the end of the stream. Panics past the stream's `wait`, on
    /// bytes that are not JSON documents, on a stream that ends inside a document, and on a
    /// transport error.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(self.wait).await
    }

    /// [`Self::next`] with its own deadline.
    pub async fn next_within(&mut self, deadline: Duration) -> Option<Value> {
        let until = tokio::time::Instant::now() + deadline;
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
            let chunk = tokio::time::timeout_at(until, self.resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("a document within {deadline:?}"))
                .unwrap_or_else(|e| panic!("stream read: {e}"));
            let Some(chunk) = chunk else {
                let rest = String::from_utf8_lossy(&self.buf);
                assert!(rest.trim().is_empty(), "the stream ended inside a document: {rest:?}");
                return None;
            };
            if self.one_per_chunk {
                let v = serde_json::from_slice(&chunk)
                    .unwrap_or_else(|e| panic!("chunk is one JSON document ({e}): {chunk:?}"));
                return Some(v);
            }
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

/// Percent-encodes a path segment (keys like `$settings.name`).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts the thethings.iO error envelope with this status.
pub async fn assert_envelope(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let v: Value = r.json().await.expect("envelope json");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["code"], status, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

/// Polls `check` until it returns Some, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < until, "condition not met within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
