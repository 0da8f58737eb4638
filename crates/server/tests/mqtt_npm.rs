//! MQTT with the real npm client the official thethings.iO mqtt-node examples use (`mqtt` 4.x, run
//! by Node from `tests/node/mqtt-client.js`): a device writing over plain TCP with mqtt.js's own
//! defaults (client id `mqttjs_` + 8 hex, keepalive 60, clean session) and reading back over
//! HTTPS; subscribers receiving writes as a JSON array of `key`/`value` items; the activation
//! topic; MQTT over WebSocket (`wss://…/mqtt`) and over TLS; MQTT 5 refusals; the Last Will of a
//! device that dies.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use common::{TestServer, TestThing, eventually};

/// Bounds every wait for the client.
const WAIT: Duration = Duration::from_secs(15);

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Whether mqtt.js is installed. Outside CI a missing install skips the test loudly; in CI
/// (`CI=true`) it fails the test.
fn mqttjs_ready() -> bool {
    let node = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if node && node_dir().join("node_modules/mqtt4").is_dir() {
        return true;
    }
    let msg = format!(
        "the npm mqtt client is not installed: run `npm ci --prefix {}` (needs node and npm)",
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

/// How an mqtt.js client connects.
#[derive(Default)]
struct Opts {
    version: Option<u8>,
    client_id: Option<String>,
    will: Option<Value>,
}

/// One mqtt.js client process, driven over stdin/stdout JSON lines.
struct MqttJs {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
    /// What the client printed on connecting.
    connack: Value,
}

impl MqttJs {
    /// Starts a client on `url` and waits for its CONNACK.
    async fn connect(server: &TestServer, url: &str, opts: Opts) -> MqttJs {
        let mut cmd = Command::new("node");
        cmd.arg(node_dir().join("mqtt-client.js"))
            .current_dir(node_dir())
            .env("MQTT_URL", url)
            .env("MQTT_CA", server.data_dir.join("tls/cert.pem"))
            .env("MQTT_VERSION", opts.version.unwrap_or(4).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(id) = &opts.client_id {
            cmd.env("MQTT_CLIENT_ID", id);
        }
        if let Some(will) = &opts.will {
            cmd.env("MQTT_WILL", will.to_string());
        }
        let mut child = cmd.spawn().expect("node runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("mqtt-client.js: {line}"),
                }
            }
        });
        let mut c = MqttJs { child, stdin, lines, next_id: 0, connack: Value::Null };
        let first = c.next_line().await;
        assert_eq!(first["type"], "connect", "mqtt.js connects to {url}: {first}");
        c.connack = first;
        c
    }

    async fn send(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.expect("client stdin");
        self.stdin.flush().await.expect("flush");
    }

    /// The next line the client printed.
    async fn next_line(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("mqtt.js: nothing within {WAIT:?}"))
            .unwrap_or_else(|| panic!("mqtt.js exited"))
    }

    /// The answer to command `id`; fails on the connection's end or an error on the way.
    async fn answer(&mut self, ty: &str, id: u64) -> Value {
        loop {
            let l = self.next_line().await;
            if l["type"] == ty && l["id"] == id {
                return l;
            }
            assert!(
                l["type"] == "message",
                "mqtt.js: {l} while waiting for the {ty} of command {id} (messages are not expected here)"
            );
        }
    }

    /// Subscribes; returns the granted QoS (or reason codes) of the SUBACK.
    async fn subscribe(&mut self, topic: &str, qos: u8) -> Vec<Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"op": "subscribe", "id": id, "topic": topic, "qos": qos})).await;
        let a = self.answer("suback", id).await;
        assert_eq!(a["error"], Value::Null, "subscribe {topic}: {a}");
        a["granted"].as_array().cloned().unwrap_or_default().iter().map(|g| g["qos"].clone()).collect()
    }

    /// Publishes; returns when mqtt.js has sent it (QoS 0) or received its PUBACK (QoS 1).
    async fn publish(&mut self, topic: &str, payload: &str, qos: u8) {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"op": "publish", "id": id, "topic": topic, "payload": payload, "qos": qos})).await;
        let a = self.answer("published", id).await;
        assert_eq!(a["error"], Value::Null, "publish to {topic}: {a}");
    }

    /// The next message received, skipping nothing: any other line fails the test.
    async fn message(&mut self) -> Value {
        let l = self.next_line().await;
        assert_eq!(l["type"], "message", "mqtt.js: a message expected: {l}");
        l
    }

    /// Sends DISCONNECT and waits for the process to exit.
    async fn end(mut self) {
        self.send(json!({"op": "end"})).await;
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("mqtt.js exits").expect("wait");
        assert!(status.success(), "mqtt.js exit status {status}");
    }

    /// Kills the process: its TCP connection ends with no DISCONNECT.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill mqtt.js");
    }
}

fn mqtt_url(server: &TestServer) -> String {
    format!("mqtt://{}", server.mqtt.expect("the MQTT listener"))
}

fn thing_topic(thing: &TestThing) -> String {
    format!("v2/things/{}", thing.token)
}

/// The values of `key` the thing has stored, newest first.
async fn stored(server: &TestServer, thing: &TestThing, key: &str) -> Vec<Value> {
    let (status, body) = server.read(thing, key, "?limit=100").await;
    if status == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "read {key}: {body}");
    body.as_array().expect("an array").iter().map(|it| it["value"].clone()).collect()
}

/// The items of a received message: a JSON array of `{"key","value","datetime"}` items, nothing
/// else in them (the official sketches match `"KEY":"…"` and `"VALUE":"…"` in the text).
fn items_of(message: &Value) -> Vec<Value> {
    let payload = message["payload"].as_str().expect("a text payload");
    let v: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("payload is JSON ({e}): {payload}"));
    let items = v.as_array().unwrap_or_else(|| panic!("payload is an array of items: {payload}")).clone();
    for it in &items {
        let mut fields: Vec<&str> = it.as_object().expect("an item object").keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["datetime", "key", "value"], "item fields: {it}");
        assert!(it["datetime"].as_str().is_some_and(|d| d.ends_with('Z')), "{it}");
    }
    items
}

#[tokio::test]
async fn a_device_with_mqttjs_defaults_writes_over_tcp_and_the_value_is_read_over_https() {
    if !mqttjs_ready() {
        return;
    }
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("fun", true)]).await;
    let mut c = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    let id = c.connack["clientId"].as_str().expect("clientId").to_owned();
    let hex = id.strip_prefix("mqttjs_").unwrap_or_else(|| panic!("mqtt.js's own client id: {id}"));
    assert!(!hex.is_empty() && hex.len() <= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!((c.connack["returnCode"].clone(), c.connack["sessionPresent"].clone()), (json!(0), json!(false)));

    // QoS 0, the examples' publish: stored exactly as sent (a string stays a string).
    c.publish(&thing_topic(&thing), r#"{"values":[{"key":"fun","value":"9000"}]}"#, 0).await;
    let values = eventually(WAIT, || async {
        let v = stored(&server, &thing, "fun").await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(values, [json!("9000")]);

    // QoS 1 is acknowledged after the commit: readable as soon as the PUBACK is in.
    c.publish(&thing_topic(&thing), r#"{"values":[{"key":"fun","value":9001}]}"#, 1).await;
    assert_eq!(stored(&server, &thing, "fun").await, [json!(9001), json!("9000")]);
    c.end().await;
    server.stop().await;
}

#[tokio::test]
async fn devices_sharing_a_client_id_do_not_evict_each_other() {
    if !mqttjs_ready() {
        return;
    }
    // Firmware hard-codes client ids: two devices of a fleet connect with the same one.
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let (a, b) = (server.thing(&panel, &[("n", true)]).await, server.thing(&panel, &[("n", true)]).await);
    let same = || Opts { client_id: Some("ESP8266Client".into()), ..Opts::default() };
    let mut first = MqttJs::connect(&server, &mqtt_url(&server), same()).await;
    let mut second = MqttJs::connect(&server, &mqtt_url(&server), same()).await;
    // The first connection was not taken over: its QoS 1 publish is still acknowledged (an
    // evicted client would see its connection close instead).
    first.publish(&thing_topic(&a), r#"{"values":[{"key":"n","value":1}]}"#, 1).await;
    second.publish(&thing_topic(&b), r#"{"values":[{"key":"n","value":2}]}"#, 1).await;
    assert_eq!(stored(&server, &a, "n").await, [json!(1)]);
    assert_eq!(stored(&server, &b, "n").await, [json!(2)]);
    first.end().await;
    second.end().await;
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_receives_every_write_as_an_array_of_key_value_items() {
    if !mqttjs_ready() {
        return;
    }
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("led", true), ("fun", true)]).await;
    let topic = thing_topic(&thing);
    let mut sub = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    assert_eq!(sub.subscribe(&topic, 0).await, [json!(0)]);

    // A write over HTTPS (an app or the panel switching the LED on).
    assert_eq!(server.write(&thing, json!([{"key": "led", "value": "ON"}])).await, StatusCode::CREATED);
    let m = sub.message().await;
    assert_eq!((m["topic"].as_str(), m["qos"].as_u64()), (Some(topic.as_str()), Some(0)), "{m}");
    let items = items_of(&m);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!((items[0]["key"].clone(), items[0]["value"].clone()), (json!("led"), json!("ON")));
    // What the official sketches look for in the uppercased, space-free text.
    let text: String = m["payload"].as_str().expect("payload").to_uppercase().split_whitespace().collect();
    assert!(text.contains(r#""KEY":"LED""#) && text.contains(r#""VALUE":"ON""#), "{text}");

    // A write of another device over MQTT reaches it too, in the same shape (not the
    // `{"values":…}` body that was published).
    let mut device = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    device.publish(&topic, r#"{"values":[{"key":"fun","value":"9000"},{"key":"led","value":"OFF"}]}"#, 1).await;
    let items = items_of(&sub.message().await);
    let kv: Vec<(Value, Value)> = items.iter().map(|it| (it["key"].clone(), it["value"].clone())).collect();
    assert_eq!(kv, [(json!("fun"), json!("9000")), (json!("led"), json!("OFF"))]);

    // A QoS 1 subscription is granted QoS 1 and delivered at QoS 1.
    let mut sub1 = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    assert_eq!(sub1.subscribe(&topic, 1).await, [json!(1)]);
    assert_eq!(server.write(&thing, json!([{"key": "fun", "value": 1}])).await, StatusCode::CREATED);
    let m = sub1.message().await;
    assert_eq!(m["qos"], 1, "{m}");
    assert_eq!(items_of(&m)[0]["value"], 1);
    assert_eq!(items_of(&sub.message().await)[0]["value"], 1);

    for c in [sub, sub1, device] {
        c.end().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_device_activates_itself_on_the_activation_topic() {
    if !mqttjs_ready() {
        return;
    }
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let product = server.product(&panel, &[("fun", true)]).await;
    let code = server.codes(&panel, &product, 1).await.remove(0);
    let topic = format!("v2/activations/{code}/{}", 123_456_789u64);

    let mut c = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    assert_eq!(c.subscribe(&topic, 0).await, [json!(0)]);
    let m = c.message().await;
    assert_eq!(m["topic"], topic.as_str(), "{m}");
    let answer: Value = serde_json::from_str(m["payload"].as_str().expect("payload")).expect("JSON answer");
    assert_eq!(answer["status"], "created", "{answer}");
    let token = answer["thingToken"].as_str().unwrap_or_else(|| panic!("thingToken: {answer}")).to_owned();
    assert_eq!(token.len(), 43, "{token}");

    // The token works: the device writes with it over MQTT and the value is read over HTTPS.
    let thing = TestThing { token, id: String::new(), product_id: product };
    c.publish(&thing_topic(&thing), r#"{"values":[{"key":"fun","value":"activated"}]}"#, 1).await;
    assert_eq!(stored(&server, &thing, "fun").await, [json!("activated")]);

    // The code is single-use: a second device is answered with the error envelope.
    let mut other = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    let topic = format!("v2/activations/{code}/987654321");
    assert_eq!(other.subscribe(&topic, 0).await, [json!(0)]);
    let m = other.message().await;
    let answer: Value = serde_json::from_str(m["payload"].as_str().expect("payload")).expect("JSON answer");
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(answer["code"].as_u64().is_some_and(|c| (400..500).contains(&c)), "{answer}");
    assert!(answer.get("thingToken").is_none(), "{answer}");
    c.end().await;
    other.end().await;
    server.stop().await;
}

/// Publish and subscribe over `url`: the own write comes back to the subscriber and is stored.
async fn publish_and_subscribe_over(server: &TestServer, url: &str, version: u8) {
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("fun", true)]).await;
    let topic = thing_topic(&thing);
    let mut c = MqttJs::connect(server, url, Opts { version: Some(version), ..Opts::default() }).await;
    assert_eq!(c.subscribe(&topic, 1).await, [json!(1)], "{url} v{version}");
    c.publish(&topic, r#"{"values":[{"key":"fun","value":"9000"}]}"#, 1).await;
    let m = c.message().await;
    assert_eq!(m["topic"], topic.as_str());
    assert_eq!(items_of(&m)[0]["value"], "9000", "{url} v{version}");
    assert_eq!(stored(server, &thing, "fun").await, [json!("9000")]);
    assert_eq!(server.write(&thing, json!([{"key": "fun", "value": 9001}])).await, StatusCode::CREATED);
    assert_eq!(items_of(&c.message().await)[0]["value"], 9001, "{url} v{version}");
    c.end().await;
}

#[tokio::test]
async fn mqtt_over_websocket_and_tls_publishes_and_subscribes() {
    if !mqttjs_ready() {
        return;
    }
    let server = TestServer::start_mqtt().await;
    let wss = format!("{}/mqtt", server.https.replacen("https://", "wss://", 1));
    let mqtts = format!("mqtts://{}", server.mqtts.expect("the MQTTS listener"));
    for version in [4, 5] {
        publish_and_subscribe_over(&server, &wss, version).await;
        publish_and_subscribe_over(&server, &mqtts, version).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn mqtt5_clients_publish_subscribe_and_read_why_a_filter_is_refused() {
    if !mqttjs_ready() {
        return;
    }
    let server = TestServer::start_mqtt().await;
    publish_and_subscribe_over(&server, &mqtt_url(&server), 5).await;

    let v5 = || Opts { version: Some(5), ..Opts::default() };
    let mut c = MqttJs::connect(&server, &mqtt_url(&server), v5()).await;
    assert_eq!(c.connack["reasonCode"], 0, "{}", c.connack);
    // Wildcards would reach other things (0xA2), $SYS is not a thing's (0x87), nor is an
    // unknown token.
    assert_eq!(c.subscribe("#", 0).await, [json!(0xa2)]);
    assert_eq!(c.subscribe("$SYS/#", 0).await, [json!(0xa2)]);
    assert_eq!(c.subscribe("$SYS/broker/uptime", 0).await, [json!(0x87)]);
    assert_eq!(c.subscribe("v2/things/not-a-token-of-this-server", 0).await, [json!(0x87)]);
    c.end().await;

    // 3.1.1 has one failure code for all of them.
    let mut c = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    for refused in ["#", "$SYS/#", "v2/things/+", "v2/things/not-a-token-of-this-server"] {
        assert_eq!(c.subscribe(refused, 0).await, [json!(0x80)], "{refused}");
    }
    c.end().await;
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_qos0_publishes_then_end_is_stored_entirely() {
    if !mqttjs_ready() {
        return;
    }
    // A script or a waking device: connect, publish a batch at QoS 0, `end()` (DISCONNECT).
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("n", true)]).await;
    let mut c = MqttJs::connect(&server, &mqtt_url(&server), Opts::default()).await;
    let sent: Vec<Value> = (0..20).map(|n| json!(n)).collect();
    for (id, n) in sent.iter().enumerate() {
        let payload = json!({"values": [{"key": "n", "value": n}]}).to_string();
        c.send(json!({"op": "publish", "id": id + 1000, "topic": thing_topic(&thing), "payload": payload, "qos": 0}))
            .await;
    }
    c.end().await;
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let mut values = stored(&server, &thing, "n").await;
        values.reverse();
        if values == sent {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "20 QoS 0 publishes then DISCONNECT: stored {values:?} within {WAIT:?} (all 20 in order expected)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_last_will_of_a_device_that_dies_is_written() {
    if !mqttjs_ready() {
        return;
    }
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("status", true)]).await;
    let will = json!({
        "topic": thing_topic(&thing),
        "payload": r#"{"values":[{"key":"status","value":"offline"}]}"#,
        "qos": 1,
    });
    let mut c = MqttJs::connect(&server, &mqtt_url(&server), Opts { will: Some(will), ..Opts::default() }).await;
    c.publish(&thing_topic(&thing), r#"{"values":[{"key":"status","value":"online"}]}"#, 1).await;
    assert_eq!(stored(&server, &thing, "status").await, [json!("online")]);
    // The process dies: the connection ends without a DISCONNECT.
    c.kill().await;
    let values = eventually(WAIT, || async {
        let v = stored(&server, &thing, "status").await;
        (v.len() == 2).then_some(v)
    })
    .await;
    assert_eq!(values, [json!("offline"), json!("online")]);
    server.stop().await;
}
