//! MQTT with the mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`; Debian's
//! `mosquitto-clients`), the tools operators test a broker with: publishes at QoS 0 and 1 (MQTT
//! 3.1, 3.1.1 and 5) read back over HTTPS, subscriptions receiving HTTPS writes, a persistent
//! session receiving what was written while it was away, TLS on the MQTTS listener with the
//! generated certificate, and the refusals: wildcards, `$SYS` and unknown tokens get denied
//! SUBACKs, and a publish to an unknown token stores nothing.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use common::{TestServer, TestThing};

/// Bounds every wait for a client.
const WAIT: Duration = Duration::from_secs(15);

/// Whether the mosquitto clients are installed. Outside CI their absence skips the test loudly;
/// in CI (`CI=true`) it fails the test.
fn mosquitto_ready() -> bool {
    let found = |program: &str| {
        std::process::Command::new(program).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    };
    if found("mosquitto_pub") && found("mosquitto_sub") && found("stdbuf") {
        return true;
    }
    let msg = "mosquitto_pub/mosquitto_sub are not installed: `apt-get install mosquitto-clients`";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = write!(std::io::stderr().lock(), "\n!!!!!!!!!!\n!!! SKIPPED: {msg}\n!!!!!!!!!!\n");
    false
}

/// Where and how a client connects: `-h`, `-p`, `-V` and, for TLS, `--cafile`.
fn target(server: &TestServer, version: &str, tls: bool) -> Vec<String> {
    let addr = if tls { server.mqtts.expect("the MQTTS listener") } else { server.mqtt.expect("the MQTT listener") };
    let mut args: Vec<String> =
        ["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-V", version].iter().map(|s| s.to_string()).collect();
    if tls {
        args.push("--cafile".into());
        args.push(server.data_dir.join("tls/cert.pem").display().to_string());
    }
    args
}

/// Runs a mosquitto client to its end (within [`WAIT`]).
async fn run(program: &str, args: &[String]) -> Output {
    let child = Command::new(program).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
    tokio::time::timeout(WAIT, child)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not end within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// `mosquitto_pub` of `payload` to `topic`; asserts that it succeeded and returns its stderr.
async fn publish(server: &TestServer, version: &str, tls: bool, qos: u8, topic: &str, payload: &str) -> String {
    let mut args = target(server, version, tls);
    args.extend(["-q", &qos.to_string(), "-t", topic, "-m", payload].map(String::from));
    let out = run("mosquitto_pub", &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mosquitto_pub {args:?}: {} {stderr}", out.status);
    stderr
}

/// A running `mosquitto_sub -d -v` (line-buffered, so that its debug lines arrive as they happen).
struct Sub {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Sub {
    /// Starts `mosquitto_sub` with `args` after the target's and waits for its SUBACK; returns
    /// the subscriber and the granted QoS or reason codes.
    async fn start(server: &TestServer, version: &str, tls: bool, args: &[&str]) -> (Sub, Vec<u8>) {
        let mut all = vec!["-oL".to_owned(), "mosquitto_sub".to_owned(), "-d".to_owned(), "-v".to_owned()];
        all.extend(target(server, version, tls));
        all.extend(args.iter().map(|s| s.to_string()));
        let mut child = Command::new("stdbuf")
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto_sub runs");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut sub = Sub { child, lines };
        loop {
            let line = sub.line().await.unwrap_or_else(|| panic!("mosquitto_sub {all:?} ended before its SUBACK"));
            if let Some(codes) = line.strip_prefix("Subscribed (mid: 1): ") {
                let codes = codes.split(", ").map(|c| c.trim().parse().expect("a code")).collect();
                return (sub, codes);
            }
        }
    }

    /// The next stdout line, None at the end.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("mosquitto_sub: nothing within {WAIT:?}"))
            .expect("read mosquitto_sub")
    }

    /// The next message `-v` printed: (topic, payload). Debug lines are skipped.
    async fn message(&mut self) -> (String, String) {
        loop {
            let line = self.line().await.expect("mosquitto_sub ended before a message");
            if line.starts_with("Client ") || line.starts_with("Subscribed ") {
                continue;
            }
            let (topic, payload) = line.split_once(' ').unwrap_or_else(|| panic!("`topic payload`: {line}"));
            return (topic.to_owned(), payload.to_owned());
        }
    }

    /// Waits for the process to end; (success, everything else it printed on stdout, stderr).
    async fn end(mut self) -> (bool, Vec<String>, String) {
        let mut rest = Vec::new();
        while let Some(line) = self.line().await {
            rest.push(line);
        }
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("mosquitto_sub exits").expect("wait");
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut stderr).await;
        }
        (status.success(), rest, stderr)
    }
}

fn topic_of(thing: &TestThing) -> String {
    format!("v2/things/{}", thing.token)
}

/// The values of `key` stored for the thing, newest first (none when never written).
async fn stored(server: &TestServer, thing: &TestThing, key: &str) -> Vec<Value> {
    let (status, body) = server.read(thing, key, "?limit=100").await;
    if status == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "read {key}: {body}");
    body.as_array().expect("an array").iter().map(|it| it["value"].clone()).collect()
}

/// The single item of a received payload: `[{"key","value","datetime"}]`.
fn single_item(payload: &str) -> Value {
    let v: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("payload is JSON ({e}): {payload}"));
    let items = v.as_array().unwrap_or_else(|| panic!("an array of items: {payload}"));
    assert_eq!(items.len(), 1, "{payload}");
    let mut fields: Vec<&str> = items[0].as_object().expect("an item").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["datetime", "key", "value"], "{payload}");
    items[0].clone()
}

async fn server_and_thing(keys: &[&str]) -> (TestServer, TestThing) {
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let resources: Vec<(&str, bool)> = keys.iter().map(|k| (*k, true)).collect();
    let thing = server.thing(&panel, &resources).await;
    (server, thing)
}

#[tokio::test]
async fn mosquitto_pub_at_qos_1_is_stored_once_acknowledged() {
    if !mosquitto_ready() {
        return;
    }
    let (server, thing) = server_and_thing(&["fun"]).await;
    let topic = topic_of(&thing);
    let mut expected = Vec::new();
    for version in ["mqttv311", "mqttv31", "mqttv5"] {
        let value = format!("{version}-qos1");
        let payload = format!(r#"{{"values":[{{"key":"fun","value":"{value}"}}]}}"#);
        let stderr = publish(&server, version, false, 1, &topic, &payload).await;
        assert_eq!(stderr, "", "{version}");
        // Acknowledged after the commit: mosquitto_pub ends once its PUBACK is in.
        expected.insert(0, json!(value));
        assert_eq!(stored(&server, &thing, "fun").await, expected, "{version}");
    }
    server.stop().await;
}

#[tokio::test]
async fn mosquitto_pub_at_qos_0_is_stored() {
    if !mosquitto_ready() {
        return;
    }
    // `mosquitto_pub -q 0` sends CONNECT, PUBLISH and DISCONNECT back to back and closes: the
    // publish must be stored all the same (cron jobs and shell scripts publish this way).
    let (server, thing) = server_and_thing(&["fun"]).await;
    let mut sent = Vec::new();
    for version in ["mqttv311", "mqttv5"] {
        for n in 0..3 {
            let value = format!("{version}-qos0-{n}");
            let payload = format!(r#"{{"values":[{{"key":"fun","value":"{value}"}}]}}"#);
            publish(&server, version, false, 0, &topic_of(&thing), &payload).await;
            sent.push(json!(value));
        }
    }
    // Each publish came on its own connection: all are stored, in whatever order they committed.
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let values = stored(&server, &thing, "fun").await;
        let missing: Vec<&Value> = sent.iter().filter(|v| !values.contains(v)).collect();
        if missing.is_empty() {
            assert_eq!(values.len(), sent.len(), "each publish stored once: {values:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "QoS 0 PUBLISHes followed at once by DISCONNECT (mosquitto_pub -q 0) were not stored within \
             {WAIT:?}: missing {missing:?}, stored {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn mosquitto_sub_receives_https_writes() {
    if !mosquitto_ready() {
        return;
    }
    let (server, thing) = server_and_thing(&["fun"]).await;
    let topic = topic_of(&thing);
    for (n, (version, qos)) in [("mqttv311", 0), ("mqttv311", 1), ("mqttv5", 0), ("mqttv5", 1)].into_iter().enumerate()
    {
        let (mut sub, granted) =
            Sub::start(&server, version, false, &["-q", &qos.to_string(), "-C", "1", "-t", &topic]).await;
        assert_eq!(granted, [qos], "{version}");
        assert_eq!(server.write(&thing, json!([{"key": "fun", "value": n}])).await, StatusCode::CREATED);
        let (got_topic, payload) = sub.message().await;
        assert_eq!(got_topic, topic);
        let item = single_item(&payload);
        assert_eq!((item["key"].clone(), item["value"].clone()), (json!("fun"), json!(n)), "{version} QoS {qos}");
        let (ok, _, stderr) = sub.end().await;
        assert!(ok, "mosquitto_sub -C 1 ends well after its message: {stderr}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_persistent_session_receives_what_was_written_while_it_was_away() {
    if !mosquitto_ready() {
        return;
    }
    let (server, thing) = server_and_thing(&["fun"]).await;
    let topic = topic_of(&thing);
    for version in ["mqttv311", "mqttv5"] {
        let id = format!("sleepy-{version}");
        // Subscribe at QoS 1 in a persistent session (-c), then leave (-E: exit after the SUBACK).
        let mut args = target(&server, version, false);
        args.extend(["-c", "-i", &id, "-q", "1", "-t", &topic, "-E"].map(String::from));
        let out = run("mosquitto_sub", &args).await;
        assert!(out.status.success(), "{version}: {}", String::from_utf8_lossy(&out.stderr));
        // Written while the device sleeps.
        assert_eq!(server.write(&thing, json!([{"key": "fun", "value": version}])).await, StatusCode::CREATED);
        // Back: the message is delivered on resuming the session (it may come before the SUBACK).
        let mut args = target(&server, version, false);
        args.extend(["-c", "-i", &id, "-q", "1", "-C", "1", "-v", "-t", &topic].map(String::from));
        let out = run("mosquitto_sub", &args).await;
        assert!(out.status.success(), "{version}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (got_topic, payload) = stdout.trim_end().split_once(' ').unwrap_or_else(|| panic!("{stdout}"));
        assert_eq!(got_topic, topic);
        assert_eq!(single_item(payload)["value"], version, "{version}");
    }
    server.stop().await;
}

#[tokio::test]
async fn mosquitto_clients_over_tls_with_the_generated_certificate() {
    if !mosquitto_ready() {
        return;
    }
    let (server, thing) = server_and_thing(&["fun"]).await;
    let topic = topic_of(&thing);
    for version in ["mqttv311", "mqttv5"] {
        publish(
            &server,
            version,
            true,
            1,
            &topic,
            &format!(r#"{{"values":[{{"key":"fun","value":"tls-{version}"}}]}}"#),
        )
        .await;
        assert_eq!(stored(&server, &thing, "fun").await.first(), Some(&json!(format!("tls-{version}"))));

        let (mut sub, granted) = Sub::start(&server, version, true, &["-q", "1", "-C", "1", "-t", &topic]).await;
        assert_eq!(granted, [1]);
        assert_eq!(server.write(&thing, json!([{"key": "fun", "value": 443}])).await, StatusCode::CREATED);
        let (_, payload) = sub.message().await;
        assert_eq!(single_item(&payload)["value"], 443);
        let (ok, _, stderr) = sub.end().await;
        assert!(ok, "{stderr}");
    }
    server.stop().await;
}

#[tokio::test]
async fn wildcards_sys_and_unknown_tokens_get_denied_subacks() {
    if !mosquitto_ready() {
        return;
    }
    let (server, thing) = server_and_thing(&["fun"]).await;
    let unknown = format!("v2/things/{}", other_token(&thing.token));
    // (filter, MQTT 5 reason): 0xA2 wildcards not supported, 0x87 not authorized.
    for (filter, v5_reason) in [("#", 0xa2), ("$SYS/#", 0xa2), ("$SYS/broker/uptime", 0x87), (unknown.as_str(), 0x87)] {
        for (version, reason) in [("mqttv311", 0x80), ("mqttv5", v5_reason)] {
            // No -C, no -W: a client whose every subscription is denied gives up on its own.
            let (sub, granted) = Sub::start(&server, version, false, &["-t", filter]).await;
            assert_eq!(granted, [reason], "{version} {filter}");
            let (_, rest, stderr) = sub.end().await;
            assert!(stderr.contains("All subscription requests were denied."), "{version} {filter}: {stderr}");
            assert!(!rest.iter().any(|l| l.contains("PUBLISH")), "{version} {filter}: nothing delivered: {rest:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_publish_to_an_unknown_token_stores_nothing() {
    if !mosquitto_ready() {
        return;
    }
    let (server, thing) = server_and_thing(&["fun"]).await;
    let unknown =
        TestThing { token: other_token(&thing.token), id: String::new(), product_id: thing.product_id.clone() };
    for version in ["mqttv311", "mqttv5"] {
        for qos in [0, 1] {
            let payload = r#"{"values":[{"key":"fun","value":"lost"}]}"#;
            let stderr = publish(&server, version, false, qos, &topic_of(&unknown), payload).await;
            if version == "mqttv5" && qos == 1 {
                // MQTT 5 says why in the PUBACK (0x87); 3.1.1 cannot.
                assert!(stderr.contains("Publish 1 failed: Not authorized."), "{stderr}");
            }
        }
    }
    // The connection that published to the unknown token was not what failed: a publish to the
    // real thing still works, and is the only value anywhere.
    publish(&server, "mqttv311", false, 1, &topic_of(&thing), r#"{"values":[{"key":"fun","value":"kept"}]}"#).await;
    assert_eq!(stored(&server, &thing, "fun").await, [json!("kept")]);
    let r = server.client.get(server.url(&format!("/v2/things/{}/resources", thing.token))).send().await.expect("list");
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"resources": ["fun"]}));
    // Nothing was created under the unknown token.
    let (status, body) = server.read(&unknown, "fun", "").await;
    assert!(status.is_client_error(), "the unknown token reads nothing: {status} {body}");
    server.stop().await;
}

/// A token of the same shape as `token` that no thing has.
fn other_token(token: &str) -> String {
    let mut t: Vec<char> = token.chars().collect();
    let last = t.last_mut().expect("a token");
    *last = if *last == 'A' { 'B' } else { 'A' };
    t.into_iter().collect()
}
