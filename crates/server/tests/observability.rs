//! Observability (issue #15) against the real server on port 0 with real clients: the Prometheus
//! endpoint on its own listener (`THINGLINE_METRICS_ADDR`, off by default) scraped after HTTP
//! writes and reads, logins and failed logins, refused activations and an MQTT subscriber — its
//! series and labels exist and move, no token or thing path shows in it, `promtool check metrics`
//! accepts it, and every series the Grafana dashboard (docs/grafana/thingline.json) queries is in
//! it; `x-request-id` on every answer (kept when well formed, replaced otherwise); and the JSON
//! access log of the spawned binary (request id, route template, status; never the thing token).
//!
//! `promtool` comes from Debian's `prometheus` package; without it the check is skipped with a
//! notice, except under `CI=true`, where that is a failure.

mod common;
mod mqtt_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::{QoS, SubscribeReasonCode};
use serde_json::{Value, json};

use common::{PANEL_EMAIL, PANEL_PASSWORD, TestServer, mqtt_on};
use mqtt_support::{Client, Opts, thing_topic};

/// One sample of the text exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the text exposition (the subset the exporter writes: no escaped quotes in our labels).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label pair");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), HashMap::new()),
        };
        out.push(Sample { name, labels, value });
    }
    out
}

/// The samples named `name` whose labels include every pair of `want`.
fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v)))
        .collect()
}

fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    find(samples, name, want).iter().map(|s| s.value).sum()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let r = reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape");
    assert_eq!(r.status(), StatusCode::OK);
    let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    r.text().await.expect("body")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `promtool check metrics` on `text`; skipped loudly without promtool (a failure under CI).
fn promtool_check(text: &str) {
    if Command::new("promtool").arg("--version").output().is_err() {
        let msg = "promtool is not installed: `apt-get install --no-install-recommends prometheus`";
        assert!(!ci(), "{msg}");
        eprintln!("\n*** SKIPPED promtool check metrics: {msg} ***\n");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `thingline_…` series the Grafana dashboard queries, from its `expr`s.
fn dashboard_metrics() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana/thingline.json");
    let text = std::fs::read_to_string(path).expect("docs/grafana/thingline.json");
    let doc: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(
        doc["__inputs"].as_array().is_some_and(|i| i.iter().any(|x| x["name"] == "DS_PROMETHEUS")),
        "the dashboard asks for its Prometheus data source as the input DS_PROMETHEUS"
    );
    let mut exprs = Vec::new();
    fn walk(v: &Value, exprs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    exprs.push(e.clone());
                }
                m.values().for_each(|x| walk(x, exprs));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, exprs)),
            _ => {}
        }
    }
    walk(&doc, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard has queries: {exprs:?}");
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            let mut found = Vec::new();
            let mut rest = e.as_str();
            while let Some(i) = rest.find("thingline_") {
                let tail = &rest[i..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
                found.push(tail[..end].to_owned());
                rest = &tail[end..];
            }
            found
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn the_metrics_listener_is_off_by_default() {
    let config = thingline::Config::resolve(thingline::config::ConfigArgs::default()).expect("defaults");
    assert_eq!(config.metrics_addr, None, "THINGLINE_METRICS_ADDR is off unless set");
    let server = TestServer::start().await;
    assert_eq!(server.metrics_addr(), None);
    server.stop().await;
}

#[tokio::test]
async fn a_scrape_after_real_traffic_has_every_family_moving_and_no_token() {
    let server = TestServer::start_with(|a| {
        mqtt_on(a);
        a.metrics_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let metrics = server.metrics_addr().expect("metrics listener");
    assert!(metrics.ip().is_loopback());

    // Panel: one good login (the helpers), one failed.
    let panel = server.panel_token().await;
    let r = server
        .client
        .post(server.url("/v2/panel/login"))
        .json(&json!({"email": PANEL_EMAIL, "password": "not the password"}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A thing written to and read over HTTPS, with an MQTT subscriber that gets the writes.
    let thing = server.thing(&panel, &[("temperature", true)]).await;
    let mqtt = server.mqtt.expect("mqtt");
    let (mut device, _) = Client::connect(mqtt, Opts::new("observer")).await;
    assert_eq!(
        device.subscribe(&thing_topic(&thing.token), QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    for i in 0..5 {
        assert_eq!(server.write(&thing, json!([{"key": "temperature", "value": i}])).await, StatusCode::CREATED);
    }
    let (status, _) = server.read(&thing, "temperature", "?limit=5").await;
    assert_eq!(status, StatusCode::OK);

    // An app user: registered, a failed login.
    let app = server.app(&panel, &["temperature"]).await;
    let session = server.app_user(&app, "reader@example.com").await;
    let (status, _) = server.login(&app, "reader@example.com", "wrong password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Refused activations: 30 failures from this address, then the limiter refuses.
    let mut refused = false;
    for _ in 0..32 {
        let r = server.activate("no-such-code").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
    }
    assert!(refused, "the activation limiter refused at last");
    // No route.
    let r = server.client.get(server.url(&format!("/nowhere/{}", thing.token))).send().await.expect("404");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The checkpointer's first round comes within a second or so; the fan-out's counts by now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (text, samples) = loop {
        let text = scrape(metrics).await;
        let samples = parse(&text);
        let ready = !find(&samples, "thingline_sqlite_wal_checkpoints_total", &[("mode", "passive")]).is_empty()
            && sum(&samples, "thingline_fanout_delivered_total", &[]) >= 5.0;
        if ready || tokio::time::Instant::now() > deadline {
            break (text, samples);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Tokens and thing paths never appear.
    for secret in [&thing.token, &panel, &session] {
        assert!(!text.contains(secret.as_str()), "a token in the scrape:\n{text}");
    }
    assert!(!text.contains("/nowhere"), "a raw path in the scrape");

    // Build info.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(sum(&samples, "thingline_build_info", &[("version", version)]), 1.0, "{text}");

    // HTTP by route template, method and status; latency histogram by route and method.
    let requests: Vec<&Sample> =
        find(&samples, "thingline_http_requests_total", &[("method", "POST"), ("status", "201")])
            .into_iter()
            .filter(|s| s.labels["route"].starts_with("/v2/things/{"))
            .collect();
    assert!(requests.iter().map(|s| s.value).sum::<f64>() >= 5.0, "thing writes counted by template: {requests:?}");
    assert!(sum(&samples, "thingline_http_requests_total", &[("route", "unmatched"), ("status", "404")]) >= 1.0);
    assert!(sum(&samples, "thingline_http_requests_total", &[("status", "401")]) >= 2.0, "failed logins are 401s");
    assert!(sum(&samples, "thingline_http_requests_total", &[("status", "429")]) >= 1.0);
    let routes: Vec<&str> =
        find(&samples, "thingline_http_requests_total", &[]).iter().map(|s| s.labels["route"].as_str()).collect();
    assert!(
        routes.iter().all(|r| *r == "unmatched" || *r == "/socket.io" || r.starts_with('/')),
        "route labels are templates: {routes:?}"
    );
    let buckets = find(&samples, "thingline_http_request_duration_seconds_bucket", &[("method", "POST")]);
    assert!(buckets.iter().any(|s| s.labels.get("le").is_some_and(|le| le == "+Inf") && s.value >= 5.0));
    assert!(sum(&samples, "thingline_http_request_duration_seconds_count", &[]) >= 10.0);

    // Commits: values, group sizes and durations.
    let backend = server.platform().store().backend();
    assert!(sum(&samples, "thingline_values_committed_total", &[("backend", backend)]) >= 5.0, "{text}");
    assert!(sum(&samples, "thingline_group_commit_appends_count", &[("backend", backend)]) >= 1.0);
    assert!(sum(&samples, "thingline_group_commit_values_sum", &[("backend", backend)]) >= 5.0);
    assert!(!find(&samples, "thingline_group_commit_duration_seconds_bucket", &[("backend", backend)]).is_empty());
    assert!(!find(&samples, "thingline_store_errors_total", &[("backend", backend), ("kind", "internal")]).is_empty());
    if backend == "sqlite" {
        assert!(!find(&samples, "thingline_sqlite_wal_size_bytes", &[]).is_empty(), "{text}");
        assert!(sum(&samples, "thingline_sqlite_wal_checkpoints_total", &[("mode", "passive")]) >= 1.0, "{text}");
    }

    // Fan-out and bus: the MQTT subscriber got the five writes.
    assert!(sum(&samples, "thingline_fanout_delivered_total", &[]) >= 5.0, "{text}");
    assert!(sum(&samples, "thingline_bus_published_total", &[]) >= 5.0);
    assert!(!find(&samples, "thingline_fanout_dropped_total", &[("reason", "slow")]).is_empty());

    // Live connections and subscriptions by protocol.
    assert!(sum(&samples, "thingline_connections", &[("protocol", "mqtt")]) >= 1.0, "{text}");
    assert!(sum(&samples, "thingline_connections", &[("protocol", "http")]) >= 1.0, "{text}");
    assert!(sum(&samples, "thingline_subscriptions", &[("protocol", "mqtt")]) >= 1.0, "{text}");
    for protocol in ["http", "socketio", "mqtt", "coap", "panel"] {
        assert_eq!(find(&samples, "thingline_subscriptions", &[("protocol", protocol)]).len(), 1, "{protocol}");
    }

    // Refusals and failed logins.
    assert!(sum(&samples, "thingline_rate_limited_total", &[("limiter", "activation")]) >= 1.0, "{text}");
    assert!(sum(&samples, "thingline_login_failures_total", &[("kind", "panel")]) >= 1.0, "{text}");
    assert!(sum(&samples, "thingline_login_failures_total", &[("kind", "app")]) >= 1.0, "{text}");

    // Counters move: one more write shows in the next scrape.
    let before = sum(&samples, "thingline_values_committed_total", &[("backend", backend)]);
    assert_eq!(server.write(&thing, json!([{"key": "temperature", "value": 99}])).await, StatusCode::CREATED);
    let after = parse(&scrape(metrics).await);
    assert!(sum(&after, "thingline_values_committed_total", &[("backend", backend)]) > before);

    // Other tools: promtool accepts the exposition, and the dashboard queries only what exists.
    promtool_check(&text);
    let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    for name in dashboard_metrics() {
        if backend != "sqlite" && name.starts_with("thingline_sqlite_") {
            continue; // SQLite's own panels stay empty on PostgreSQL
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| families.contains(b)))
            .unwrap_or(&name);
        assert!(families.contains(&base), "the dashboard queries {name}, which the scrape does not have");
    }

    // Only /metrics is served there.
    let r = reqwest::get(format!("http://{metrics}/v2/health")).await.expect("other path");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    drop(device);
    server.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id_kept_when_well_formed() {
    let server = TestServer::start().await;
    let id_of = |r: &reqwest::Response| {
        r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("x-request-id")
    };
    let generated = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());

    let r = server.client.get(server.url("/v2/health")).send().await.expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    let first = id_of(&r);
    assert!(generated(&first), "{first}");
    let r = server.client.get(server.url("/v2/health")).send().await.expect("health");
    assert_ne!(id_of(&r), first, "a new id per request");

    // Kept: a well-formed id, on a route, an unknown path, an error.
    for path in ["/v2/health", "/v2/nowhere", "/v2/me/things"] {
        let r =
            server.client.get(server.url(path)).header("x-request-id", "trace-abc_123.XYZ").send().await.expect(path);
        assert_eq!(id_of(&r), "trace-abc_123.XYZ", "{path}");
    }
    let longest = "a".repeat(128);
    let r = server.client.get(server.url("/v2/health")).header("x-request-id", &longest).send().await.expect("long");
    assert_eq!(id_of(&r), longest);

    // Replaced: too long, a space, empty.
    for bad in ["a".repeat(129), "has space".to_owned(), String::new()] {
        let r = server.client.get(server.url("/v2/health")).header("x-request-id", &bad).send().await.expect("bad");
        let id = id_of(&r);
        assert!(generated(&id), "{bad:?} replaced by {id}");
    }

    // Socket.IO's own answers and the plain listener's guard carry one too.
    let r = server.client.get(server.url("/socket.io/?EIO=4&transport=polling")).send().await.expect("engine.io");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(generated(&id_of(&r)));
    let r = reqwest::get(format!("{}/v2/me/things", server.http)).await.expect("plain");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(generated(&id_of(&r)));
    server.stop().await;
}

/// The binary with `THINGLINE_LOG_FORMAT=json`: its access lines carry the request id, the route
/// template, the status and the duration, and no line ever holds the thing token.
#[tokio::test]
async fn the_binary_s_json_access_log_has_ids_and_templates_and_no_token() {
    thingline::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(common::spawned::bin());
    cmd.arg("serve")
        .args(["--data-dir", dir.path().to_str().expect("utf8")])
        .args(["--https-addr", "127.0.0.1:0", "--http-addr", "off", "--mqtt-addr", "off", "--mqtts-addr", "off"])
        .args(["--coap-addr", "off", "--metrics-addr", "127.0.0.1:0"])
        .env("THINGLINE_PANEL_EMAIL", PANEL_EMAIL)
        .env("THINGLINE_PANEL_PASSWORD", PANEL_PASSWORD)
        .env("THINGLINE_LOG", "info")
        .env("THINGLINE_LOG_FORMAT", "json")
        .env_remove("THINGLINE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(cluster) = common::backend::for_data_dir(dir.path()) {
        for (k, v) in cluster.env() {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().expect("spawn thingline");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<Value> = Vec::new();
    let mut raw: Vec<String> = Vec::new();
    let (mut https, mut metrics) = (None, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while https.is_none() || metrics.is_none() {
        let line = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).expect("listening");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        match (v["listener"].as_str(), v["addr"].as_str()) {
            (Some("https"), Some(a)) => https = Some(format!("https://{a}")),
            (Some("metrics"), Some(a)) => metrics = Some(a.to_owned()),
            _ => {}
        }
        raw.push(line);
        lines.push(v);
    }
    let base = https.expect("https");
    let client = common::client_for(dir.path());
    let api = common::Api { client: &client, base: &base };
    let panel = api.panel_token().await;
    let thing = api.thing(&panel, &[("temperature", true)]).await;
    let r = client
        .post(format!("{base}/v2/things/{}", thing.token))
        .json(&json!({"values": [{"key": "temperature", "value": 21.5}]}))
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .get(format!("{base}/v2/things/{}/resources/temperature?limit=1", thing.token))
        .header("x-request-id", "read-trace-1")
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], "read-trace-1");
    let r = client.get(format!("{base}/v2/things/{}/nothing-here/x/y", thing.token)).send().await.expect("404");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let write_id = r.headers()["x-request-id"].to_str().expect("id").to_owned();
    let r = reqwest::get(format!("http://{}/metrics", metrics.expect("metrics"))).await.expect("scrape");
    assert_eq!(r.status(), StatusCode::OK);

    // Stop, then read every line it wrote.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = common::spawned::wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    for line in rx.try_iter() {
        lines.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")));
        raw.push(line);
    }
    for line in &raw {
        assert!(!line.contains(&thing.token), "the thing token in a log line: {line}");
    }
    let access: Vec<&Value> = lines.iter().filter(|v| v["target"] == "thingline::access").collect();
    assert!(access.len() >= 5, "an access line per request: {access:?}");
    for a in &access {
        for field in ["request_id", "method", "route", "status", "duration_ms"] {
            assert!(!a[field].is_null(), "{field} in {a}");
        }
        assert_eq!(a["level"], "INFO");
    }
    let read = access.iter().find(|a| a["request_id"] == "read-trace-1").expect("the read's line");
    assert_eq!(read["method"], "GET");
    assert_eq!(read["status"], 200);
    let route = read["route"].as_str().expect("route");
    assert!(route.starts_with("/v2/things/{") && route.ends_with("/resources/{key}"), "a template: {route}");
    assert!(read["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    let missing = access.iter().find(|a| a["request_id"] == write_id.as_str()).expect("the 404's line");
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["route"], "unmatched");
    assert!(access.iter().any(|a| a["method"] == "POST" && a["status"] == 201), "the write's line: {access:?}");
}
