//! Several nodes, one installation: two Thingline servers on one PostgreSQL schema and one NATS
//! subject prefix. Writes through node A over HTTP, MQTT, CoAP and the App API reach subscribers
//! of node B (HTTP streams, Socket.IO, MQTT, CoAP Observe) in order; `limit=1` reads on B see what A acknowledged;
//! a logout on A is a 401 on B at once and ends B's live subscriptions of that session; a node
//! killed with SIGKILL mid-load loses no acknowledged write; NATS restarted mid-load: writes keep
//! being acknowledged after commit, readiness reports the bus, subscribers resume.
//!
//! These run wherever PostgreSQL and NATS are reachable, always under `CI=true` (their absence
//! is a failure there), and elsewhere skip with a loud notice.

mod coap_support;
mod common;
mod mqtt_support;
mod realtime_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::backend::{self, Cluster};
use common::{JsonStream, TestServer, TestThing, coap_on, eventually, json_of, mqtt_on};
use realtime_support::*;

/// Two in-process nodes of `cluster`, each on a data dir of its own (kept by the caller).
async fn two_nodes(cluster: &Cluster, dirs: &[tempfile::TempDir; 2]) -> (TestServer, TestServer) {
    let mut nodes = Vec::new();
    for dir in dirs {
        backend::share(cluster, dir.path());
        nodes.push(
            TestServer::start_in(dir.path().to_path_buf(), |a| {
                mqtt_on(a);
                coap_on(a);
            })
            .await,
        );
    }
    let b = nodes.pop().expect("b");
    let a = nodes.pop().expect("a");
    (a, b)
}

fn dirs() -> [tempfile::TempDir; 2] {
    [tempfile::tempdir().expect("dir a"), tempfile::tempdir().expect("dir b")]
}

/// The value of every item of a thing stream or app subscription document (none in a `{}`
/// keep-alive).
fn values(doc: &Value) -> Vec<Value> {
    if *doc == json!({}) {
        return Vec::new();
    }
    doc.as_array().unwrap_or_else(|| panic!("an array: {doc}")).iter().map(|it| it["value"].clone()).collect()
}

#[tokio::test]
async fn writes_reads_subscriptions_and_logouts_cross_nodes() {
    let Some(cluster) = backend::new_cluster() else { return };
    let dirs = dirs();
    let (a, b) = two_nodes(&cluster, &dirs).await;
    let (_app, thing, user) = world(&a, "cross@example.com").await;

    // Subscribers on B: the thing stream, the app subscription, MQTT, and Socket.IO.
    let resp = b.client.get(format!("{}/v2/things/{}?keepAlive=60000", b.http, thing.token)).send().await.expect("s");
    let mut thing_stream = JsonStream::one_per_chunk(resp, WAIT);
    assert_eq!(thing_stream.next().await, Some(json!({"status": "success", "message": "subscribed"})));
    let mut app_stream = open_stream(&b, "/v2/me/resources/temperature?subscribe=true", Some(&user.token)).await;
    let (mut mqtt_b, _) =
        mqtt_support::Client::connect(b.mqtt.expect("mqtt on b"), mqtt_support::Opts::new("node-b-sub")).await;
    mqtt_b.subscribe(&format!("v2/things/{}", thing.token), rumqttc::QoS::AtLeastOnce).await;
    let mut sio = if node_clients_ready() {
        let mut c = SioClient::connect(&b, 4, "websocket").await;
        c.authenticate(&user.token).await;
        assert_eq!(c.subscribe("/me/resources/temperature").await["status"], "success");
        Some(c)
    } else {
        None
    };

    let mut coap_b = coap_support::Peer::new(b.coap.expect("coap on b")).await;
    let (observation, r) = coap_b.observe(&format!("v2/things/{}?keepAlive=60000", thing.token)).await;
    assert_eq!(r.json(), json!({"status": "success", "message": "subscribed"}));

    // Writes through A over HTTP (thing API), MQTT, the App API and CoAP.
    thing_write(&a, &thing, json!([{"key": "temperature", "value": 1}]), "").await;
    let (mut mqtt_a, _) =
        mqtt_support::Client::connect(a.mqtt.expect("mqtt on a"), mqtt_support::Opts::new("node-a-pub")).await;
    mqtt_a
        .publish_acked(&format!("v2/things/{}", thing.token), r#"{"values":[{"key":"temperature","value":2}]}"#)
        .await;
    app_write(&a, &user, &thing, "temperature", json!(3), "").await;
    let mut coap_a = coap_support::Peer::new(a.coap.expect("coap on a")).await;
    let body = json!({"values": [{"key": "temperature", "value": 4}]}).to_string();
    let r = coap_a.request(coap_support::Req::post(&format!("v2/things/{}", thing.token), body)).await;
    assert_eq!(r.code_str(), "2.01", "{}", r.text());

    let want = vec![json!(1), json!(2), json!(3), json!(4)];
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(values(&thing_stream.next_data().await.expect("thing stream")));
    }
    assert_eq!(got, want, "B's thing stream, in order");
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(values(&app_stream.next_data().await.expect("app stream")));
    }
    assert_eq!(got, want, "B's app subscription, in order");
    let mut got = Vec::new();
    while got.len() < 4 {
        let (_, v) = mqtt_b.next_json().await;
        got.extend(values(&v));
    }
    assert_eq!(got, want, "B's MQTT subscriber, in order");
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(values(&coap_b.data_notification(&observation, WAIT).await.json()));
    }
    assert_eq!(got, want, "B's CoAP observer, in order");
    if let Some(c) = sio.as_mut() {
        let mut got = Vec::new();
        while got.len() < 4 {
            let l = c.next_line().await;
            assert_eq!(l["type"], "event", "{l}");
            got.extend(values(&l["args"][0]));
        }
        assert_eq!(got, want, "B's Socket.IO client, in order");
    }

    // A value acknowledged by A is the newest B answers, at once, every time.
    for v in 100..130 {
        thing_write(&a, &thing, json!([{"key": "temperature", "value": v}]), "").await;
        let (status, read) = b.read(&thing, "temperature", "").await;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(read[0]["value"], v, "limit=1 on B after a write acknowledged by A: {read}");
    }

    // A logout on A: the token is refused on B at once, and B's live subscriptions of it end.
    let r = a.req(Method::POST, "/v2/logout", &user.token).send().await.expect("logout");
    assert_eq!(r.status(), StatusCode::OK);
    let r = b.req(Method::GET, "/v2/me/things", &user.token).send().await.expect("after logout");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "logged out on A is a 401 on B at once");
    loop {
        let end = app_stream.next_data().await.expect("an envelope");
        if end["status"] == "error" {
            assert_eq!(end["code"], 401, "{end}");
            break;
        }
    }
    assert_eq!(app_stream.next().await, None, "B's app subscription ends after the envelope");
    if let Some(c) = sio.as_mut() {
        loop {
            let l = c.next_line().await;
            if l["args"][0]["code"] == 401 {
                break;
            }
        }
    }

    // A thing deleted on A: its token stops working on B, and B's thing stream ends (404).
    let panel = a.panel_token().await;
    let r = a.req(Method::DELETE, &format!("/v2/panel/things/{}", thing.id), &panel).send().await.expect("delete");
    assert!(r.status().is_success(), "delete thing: {}", r.status());
    loop {
        match thing_stream.next_data().await {
            Some(doc) if doc["status"] == "error" => {
                assert_eq!(doc["code"], 404, "{doc}");
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    eventually(Duration::from_secs(5), || async {
        (b.write(&thing, json!([{"key": "temperature", "value": 0}])).await == StatusCode::NOT_FOUND).then_some(())
    })
    .await;

    if let Some(c) = sio {
        c.close().await;
    }
    mqtt_a.disconnect().await;
    // B closed its MQTT subscriber of the deleted thing.
    mqtt_b.kill();
    a.stop().await;
    b.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}

/// Readiness names the store and the bus of a clustered node.
#[tokio::test]
async fn readiness_reports_the_store_and_the_bus() {
    let Some(cluster) = backend::new_cluster() else { return };
    let dirs = dirs();
    let (a, b) = two_nodes(&cluster, &dirs).await;
    for node in [&a, &b] {
        let (status, v) = json_of(node.client.get(node.url("/v2/health/ready")).send().await.expect("ready")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["details"]["store"]["backend"], "postgres", "{v}");
        assert_eq!(v["details"]["store"]["ok"], true, "{v}");
        assert_eq!(v["details"]["bus"]["backend"], "nats", "{v}");
        assert_eq!(v["details"]["bus"]["connected"], true, "{v}");
    }
    a.stop().await;
    b.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}

/// Writers on both nodes; node A is killed with SIGKILL mid-load; every write either node
/// acknowledged is stored exactly once.
#[tokio::test]
async fn a_node_killed_mid_load_loses_no_acknowledged_write() {
    let Some(cluster) = backend::new_cluster() else { return };
    let dirs = dirs();
    for d in &dirs {
        backend::share(&cluster, d.path());
    }
    let mut a = TestServer::spawn_in(dirs[0].path(), &[], &[]);
    let b = TestServer::spawn_in(dirs[1].path(), &[], &[]);
    let panel = b.panel_token().await;
    let thing = b.thing(&panel, &[("n", true)]).await;

    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let (acked, stop, thing) = (Arc::clone(&acked), Arc::clone(&stop), thing.clone());
        let (client, url) = if w % 2 == 0 {
            (a.client.clone(), format!("{}/v2/things/{}", a.http, thing.token))
        } else {
            (b.client.clone(), format!("{}/v2/things/{}", b.http, thing.token))
        };
        writers.push(tokio::spawn(async move {
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"values": [{"key": "n", "value": n}]});
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => acked.lock().push(n),
                    Ok(_) | Err(_) => {
                        if w % 2 == 0 {
                            // Node A is gone: this writer is done.
                            return;
                        }
                    }
                }
                n += 4;
            }
        }));
    }
    eventually(Duration::from_secs(60), || async { (acked.lock().len() >= 400).then_some(()) }).await;
    a.kill_9();
    // B keeps acknowledging after A died.
    let before = acked.lock().len();
    eventually(Duration::from_secs(30), || async { (acked.lock().len() >= before + 100).then_some(()) }).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }

    let mut stored = read_all(&b, &thing, "n").await;
    stored.sort_unstable();
    let mut want = acked.lock().clone();
    want.sort_unstable();
    let before_dedup = stored.len();
    stored.dedup();
    assert_eq!(before_dedup, stored.len(), "no value stored twice");
    let missing: Vec<i64> = want.iter().filter(|v| stored.binary_search(v).is_err()).copied().collect();
    assert!(missing.is_empty(), "{} acknowledged writes lost (of {}): {missing:?}", missing.len(), want.len());
    b.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}

/// Every value of `key` (integers), newest first pages of 1000 through `endDate`.
async fn read_all(server: &TestServer, thing: &TestThing, key: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut end: Option<String> = None;
    loop {
        let query = match &end {
            Some(e) => format!("?limit=1000&endDate={}", common::urlencode(e)),
            None => "?limit=1000".to_owned(),
        };
        let (status, page) = server.read(thing, key, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page.as_array().expect("array").clone();
        if items.is_empty() {
            return out;
        }
        out.extend(items.iter().map(|it| it["value"].as_i64().expect("integer value")));
        end = Some(items.last().expect("last")["datetime"].as_str().expect("datetime").to_owned());
        if items.len() < 1000 {
            return out;
        }
    }
}

/// A private NATS server on a port of its own, restartable on that port.
struct PrivateNats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateNats {
    /// `None` (loud notice) where `nats-server` is not installed, except under `CI=true`.
    fn start() -> Option<PrivateNats> {
        let bin = ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
        let Some(bin) = bin else {
            assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "nats-server is required under CI=true");
            eprintln!("\n!!! SKIPPED: nats-server is not installed (Debian package nats-server)\n");
            return None;
        };
        let dir = tempfile::tempdir().expect("nats dir");
        let log = dir.path().join("nats.log");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", "-1", "-l"])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let port = wait_for_port(&log);
        Some(PrivateNats { child: Some(child), port, dir })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let log = self.dir.path().join("nats-2.log");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-l"])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_else(|_| {
                Command::new("/usr/sbin/nats-server")
                    .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-l"])
                    .arg(&log)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .expect("nats-server restarts");
        assert_eq!(wait_for_port(&log), self.port);
        self.child = Some(child);
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The client port a nats-server logged ("Listening for client connections on 127.0.0.1:P").
fn wait_for_port(log: &Path) -> u16 {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("Listening for client connections on ").nth(1) {
            let addr = rest.lines().next().unwrap_or_default();
            if let Some(port) = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok()) {
                return port;
            }
        }
        assert!(std::time::Instant::now() < until, "nats-server did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// NATS goes away mid-load and comes back: writes are acknowledged throughout (after commit),
/// readiness says the bus is away meanwhile, and B's subscriber receives A's writes again.
#[tokio::test]
async fn nats_restarted_mid_load_subscribers_resume() {
    let Some(mut cluster) = backend::new_cluster() else { return };
    let Some(mut nats) = PrivateNats::start() else { return };
    cluster.bus_url = nats.url();
    let dirs = dirs();
    let (a, b) = two_nodes(&cluster, &dirs).await;
    let panel = a.panel_token().await;
    let thing = a.thing(&panel, &[("temperature", true)]).await;
    let resp = b.client.get(format!("{}/v2/things/{}?keepAlive=1000", b.http, thing.token)).send().await.expect("s");
    let mut stream = JsonStream::one_per_chunk(resp, WAIT);
    assert_eq!(stream.next().await, Some(json!({"status": "success", "message": "subscribed"})));
    thing_write(&a, &thing, json!([{"key": "temperature", "value": 1}]), "").await;
    assert_eq!(values(&stream.next_data().await.expect("before")), vec![json!(1)]);

    nats.kill();
    // Writes keep being acknowledged (the store has them) while the bus is away.
    for v in 2..=20 {
        thing_write(&a, &thing, json!([{"key": "temperature", "value": v}]), "").await;
    }
    let (status, read) = b.read(&thing, "temperature", "?limit=100").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read.as_array().map(Vec::len), Some(20), "every acknowledged write is stored: {read}");
    eventually(Duration::from_secs(10), || async {
        let r = b.client.get(b.url("/v2/health/ready")).send().await.ok()?;
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;

    nats.restart();
    eventually(Duration::from_secs(30), || async {
        let r = b.client.get(b.url("/v2/health/ready")).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), || async {
        let r = a.client.get(a.url("/v2/health/ready")).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    // B's subscriber (still open: its keep-alives went on) receives A's writes again: what the
    // bus could still send after the restart, then the new writes, in write order, once each.
    let mut seen: Vec<i64> = Vec::new();
    let mut v = 1000;
    while !seen.iter().any(|x| *x >= 1000) {
        thing_write(&a, &thing, json!([{"key": "temperature", "value": v}]), "").await;
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while tokio::time::Instant::now() < until && !seen.contains(&v) {
            let Ok(doc) = tokio::time::timeout_at(until, stream.next_within(WAIT)).await else { break };
            let doc = doc.expect("stream open");
            seen.extend(values(&doc).iter().filter_map(Value::as_i64));
        }
        v += 1;
        assert!(v < 1040, "B's subscriber did not resume: {seen:?}");
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in write order, once each: {seen:?}");
    a.stop().await;
    b.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}

/// The failed-login limit (10 per account per 15 minutes) holds for the installation, not per
/// node: 24 concurrent wrong passwords split over both nodes get exactly 10 answers of 401, and
/// the rest 429 — and then the right password is refused on either node too.
#[tokio::test]
async fn login_limits_hold_across_nodes_under_concurrency() {
    let Some(cluster) = backend::new_cluster() else { return };
    let dirs = dirs();
    let (a, b) = two_nodes(&cluster, &dirs).await;
    let tries = (0..24).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        let (client, url) = (node.client.clone(), node.url("/v2/panel/login"));
        async move {
            let body = json!({"email": common::PANEL_EMAIL, "password": "wrong password"});
            client.post(url).json(&body).send().await.expect("login").status()
        }
    });
    let statuses = futures_util::future::join_all(tries).await;
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((refused, limited), (10, 14), "{statuses:?}");
    for node in [&a, &b] {
        let body = json!({"email": common::PANEL_EMAIL, "password": common::PANEL_PASSWORD});
        let r = node.client.post(node.url("/v2/panel/login")).json(&body).send().await.expect("login");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the account is limited on every node");
    }
    a.stop().await;
    b.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}

/// A rolling restart: each node in turn is stopped with SIGTERM (it drains and exits 0) and
/// started again while writers keep writing, each to whichever node answers; every write
/// acknowledged on the way is stored.
#[tokio::test]
async fn a_rolling_restart_loses_no_acknowledged_write() {
    let Some(cluster) = backend::new_cluster() else { return };
    let dirs = dirs();
    for d in &dirs {
        backend::share(&cluster, d.path());
    }
    let mut nodes =
        vec![TestServer::spawn_in(dirs[0].path(), &[], &[]), TestServer::spawn_in(dirs[1].path(), &[], &[])];
    let panel = nodes[0].panel_token().await;
    let thing = nodes[0].thing(&panel, &[("n", true)]).await;
    // The device listener of each node (plain HTTP: the nodes' generated certificates differ).
    let urls: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(nodes.iter().map(|n| format!("{}/v2/things/{}", n.http, thing.token)).collect()));
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let (urls, acked, stop, client) = (Arc::clone(&urls), Arc::clone(&acked), Arc::clone(&stop), client.clone());
        writers.push(tokio::spawn(async move {
            let mut n = w;
            let mut target = w as usize;
            while !stop.load(Ordering::Relaxed) {
                let url = {
                    let urls = urls.lock();
                    urls[target % urls.len()].clone()
                };
                let body = json!({"values": [{"key": "n", "value": n}]});
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        acked.lock().push(n);
                        n += 4;
                    }
                    // Refused or cut off: the same value to the other node (it may be stored
                    // twice when the first answer was lost; only acknowledgements are checked).
                    _ => target += 1,
                }
            }
        }));
    }
    let wait_for = |more: usize| {
        let acked = Arc::clone(&acked);
        async move {
            let goal = acked.lock().len() + more;
            eventually(Duration::from_secs(60), || async { (acked.lock().len() >= goal).then_some(()) }).await;
        }
    };
    wait_for(200).await;
    for (i, dir) in dirs.iter().enumerate() {
        let node = nodes.remove(i);
        node.stop().await; // SIGTERM: drains, exit code 0 (asserted)
        wait_for(100).await; // the other node takes every write meanwhile
        let again = TestServer::spawn_in(dir.path(), &[], &[]);
        urls.lock()[i] = format!("{}/v2/things/{}", again.http, thing.token);
        nodes.insert(i, again);
        wait_for(200).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let mut stored = read_all(&nodes[1], &thing, "n").await;
    stored.sort_unstable();
    let want = acked.lock().clone();
    let missing: Vec<i64> = want.iter().filter(|v| stored.binary_search(v).is_err()).copied().collect();
    assert!(missing.is_empty(), "{} acknowledged writes lost (of {}): {missing:?}", missing.len(), want.len());
    for node in nodes {
        node.stop().await;
    }
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}

/// Clients that move: an MQTT device and a Socket.IO app client connected to node A go away and
/// come back through node B (same client id, same session token); they subscribe again and
/// receive the writes made through A.
#[tokio::test]
async fn clients_that_reconnect_to_another_node_carry_on() {
    let Some(cluster) = backend::new_cluster() else { return };
    let dirs = dirs();
    let (a, b) = two_nodes(&cluster, &dirs).await;
    let (_app, thing, user) = world(&a, "mover@example.com").await;
    let topic = format!("v2/things/{}", thing.token);

    let (mut device, _) =
        mqtt_support::Client::connect(a.mqtt.expect("mqtt on a"), mqtt_support::Opts::new("mover-device")).await;
    device.subscribe(&topic, rumqttc::QoS::AtLeastOnce).await;
    thing_write(&a, &thing, json!([{"key": "temperature", "value": 1}]), "").await;
    assert_eq!(values(&device.next_json().await.1), vec![json!(1)]);
    device.disconnect().await;
    let (mut device, _) =
        mqtt_support::Client::connect(b.mqtt.expect("mqtt on b"), mqtt_support::Opts::new("mover-device")).await;
    device.subscribe(&topic, rumqttc::QoS::AtLeastOnce).await;

    let sio = if node_clients_ready() {
        let mut c = SioClient::connect(&a, 4, "websocket").await;
        c.authenticate(&user.token).await;
        assert_eq!(c.subscribe("/me/resources/temperature").await["status"], "success");
        c.close().await;
        let mut c = SioClient::connect(&b, 4, "websocket").await;
        c.authenticate(&user.token).await;
        assert_eq!(c.subscribe("/me/resources/temperature").await["status"], "success");
        Some(c)
    } else {
        None
    };

    thing_write(&a, &thing, json!([{"key": "temperature", "value": 2}]), "").await;
    assert_eq!(values(&device.next_json().await.1), vec![json!(2)], "the device, now on B");
    if let Some(mut c) = sio {
        let l = c.next_line().await;
        assert_eq!(l["type"], "event", "{l}");
        assert_eq!(values(&l["args"][0]), vec![json!(2)], "the app client, now on B");
        c.close().await;
    }
    device.disconnect().await;
    a.stop().await;
    b.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}

/// An app deleted through node A: its users' live subscriptions on node B end (401), and their
/// tokens are refused on B.
#[tokio::test]
async fn an_app_deleted_on_one_node_ends_its_subscriptions_on_the_other() {
    let Some(cluster) = backend::new_cluster() else { return };
    let dirs = dirs();
    let (a, b) = two_nodes(&cluster, &dirs).await;
    let (app, thing, user) = world(&a, "gone-app@example.com").await;
    let mut stream = open_stream(&b, "/v2/me/resources/temperature?subscribe=true", Some(&user.token)).await;
    thing_write(&a, &thing, json!([{"key": "temperature", "value": 1}]), "").await;
    assert_eq!(values(&stream.next_data().await.expect("a value")), vec![json!(1)]);
    let panel = a.panel_token().await;
    let r = a.req(Method::DELETE, &format!("/v2/panel/apps/{app}"), &panel).send().await.expect("delete app");
    assert!(r.status().is_success(), "delete app: {}", r.status());
    let end = stream.next_data().await.expect("an envelope");
    assert_eq!((end["status"].clone(), end["code"].clone()), (json!("error"), json!(401)), "{end}");
    assert_eq!(stream.next().await, None, "the subscription ends after the envelope");
    let r = b.req(Method::GET, "/v2/me/things", &user.token).send().await.expect("after");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    a.stop().await;
    b.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}
