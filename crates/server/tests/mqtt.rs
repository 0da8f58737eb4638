//! The MQTT side as the official thethings.iO firmware uses it, with real rumqttc clients (3.1.1)
//! against the real server on port 0: writes and reads across MQTT and HTTP, the activation
//! topic, Last Will, QoS 1 acknowledged only after the commit (kill -9), persistent sessions,
//! refusals, TLS, keep-alive, limits, and a thing's deletion ending its live session.

mod common;
mod mqtt_support;
mod realtime_support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rumqttc::{Packet, QoS, SubscribeReasonCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use common::{TestServer, TestThing, mqtt_on};
use mqtt_support::*;

const LED_ON: &str = r#"{"values":[{"key":"LED","value":"ON"}]}"#;

async fn values(server: &TestServer, thing: &TestThing, key: &str) -> Vec<Value> {
    let (status, v) = server.read(thing, key, "?limit=1000").await;
    if status == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "read {key}: {v}");
    v.as_array().expect("items").iter().map(|i| i["value"].clone()).collect()
}

/// Reads `key` until `pred` holds on its values, within [`WAIT`].
async fn eventually(server: &TestServer, thing: &TestThing, key: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = values(server, thing, key).await;
        if pred(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{key} never matched; last {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn writes_cross_between_mqtt_and_http_in_the_shapes_firmware_reads() {
    let server = TestServer::start_mqtt().await;
    let mqtt = server.mqtt.expect("mqtt listener");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);

    // The ESP8266 sketch: client id "ESP8266Client", keepalive 15 s, clean, QoS 0 subscribe.
    let mut opts = Opts::new("ESP8266Client");
    opts.keep_alive = Duration::from_secs(15);
    let (mut device, ack) = Client::connect(mqtt, opts).await;
    assert!(!ack.session_present);
    assert_eq!(device.subscribe(&topic, QoS::AtMostOnce).await, vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]);

    // An HTTP write reaches the subscriber as a JSON array of items with `key` and `value`.
    assert_eq!(server.write(&thing, json!([{"key": "LED", "value": "ON"}])).await, StatusCode::CREATED);
    let (t, msg) = device.next_json().await;
    assert_eq!(t, topic);
    let items = msg.as_array().expect("an array of value items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["key"], "LED");
    assert_eq!(items[0]["value"], "ON");
    assert!(items[0]["datetime"].is_string());
    let text = msg.to_string().to_uppercase().replace(' ', "");
    assert!(text.contains(r#""KEY":"LED""#) && text.contains(r#""VALUE":"ON""#), "what the sketches search: {text}");

    // An MQTT write (the mqtt-node example's payload, a string value) is read over HTTP at once,
    // and reaches the subscriber too.
    let (mut writer, _) = Client::connect(mqtt, Opts::new("mqttjs_1a2b3c4d")).await;
    writer.publish_acked(&topic, r#"{ "values" : [ { "key" : "fun", "value" : "9000" } ] }"#).await;
    assert_eq!(values(&server, &thing, "fun").await, vec![json!("9000")]);
    let (_, msg) = device.next_json().await;
    assert_eq!(msg[0]["key"], "fun");
    assert_eq!(msg[0]["value"], "9000");

    // QoS 0 publishes arrive in order.
    for i in 0..20 {
        writer
            .client
            .publish(&topic, QoS::AtMostOnce, false, format!(r#"{{"values":[{{"key":"n","value":{i}}}]}}"#))
            .await
            .expect("publish");
    }
    for i in 0..20 {
        let (_, msg) = device.next_json().await;
        assert_eq!(msg[0]["value"], json!(i), "in order");
    }
    assert_eq!(values(&server, &thing, "n").await.len(), 20);

    // store=false on the topic (the HTTP write's flag): delivered, not stored.
    writer.publish_acked(&format!("{topic}?store=false"), r#"{"values":[{"key":"blink","value":1}]}"#).await;
    let (_, msg) = device.next_json().await;
    assert_eq!(msg[0]["key"], "blink");
    assert!(values(&server, &thing, "blink").await.is_empty(), "store=false stores nothing");

    // $settings and $geo behave as over HTTP.
    writer
        .publish_acked(&topic, r#"{"values":[{"key":"$settings","value":{"interval":30}},{"key":"$geo","value":{"type":"Point","coordinates":[2.17,41.4]}}]}"#)
        .await;
    let (status, v) = server.read(&thing, "$settings", "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v[0]["value"]["interval"], 30);
    let geo = values(&server, &thing, "$geo").await;
    assert_eq!(geo.len(), 1, "{geo:?}");
    server.stop().await;
}

#[tokio::test]
async fn mqtt_writes_reach_app_subscriptions_and_app_writes_reach_mqtt() {
    let server = TestServer::start_mqtt().await;
    let (_app, thing, user) = realtime_support::world(&server, "ana@example.com").await;
    let topic = thing_topic(&thing.token);
    let mut app_stream = realtime_support::open_stream(
        &server,
        &format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id),
        Some(&user.token),
    )
    .await;
    let (mut device, _) = Client::connect(server.mqtt.expect("mqtt"), Opts::new("arduinoclient")).await;
    device.subscribe(&topic, QoS::AtLeastOnce).await;

    device.publish_acked(&topic, r#"{"values":[{"key":"temperature","value":21.5}]}"#).await;
    let got = app_stream.next_data().await.expect("the app subscription gets the MQTT write");
    assert_eq!(got[0]["value"], 21.5, "{got}");

    realtime_support::app_write(&server, &user, &thing, "temperature", json!(22), "").await;
    // The device sees its own write first, then the app's.
    let (_, first) = device.next_json().await;
    assert_eq!(first[0]["value"], 21.5);
    let (_, second) = device.next_json().await;
    assert_eq!(second[0]["key"], "temperature");
    assert_eq!(second[0]["value"], 22);
    server.stop().await;
}

#[tokio::test]
async fn activation_topic_answers_with_a_token_or_the_error_envelope() {
    let server = TestServer::start_mqtt().await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let product = server.product(&panel, &[]).await;
    let code = server.codes(&panel, &product, 1).await.remove(0);

    let (mut device, _) = Client::connect(mqtt, Opts::new("arduinoclient")).await;
    let topic = format!("v2/activations/{code}/8412");
    assert_eq!(device.subscribe(&topic, QoS::AtMostOnce).await, vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]);
    let (t, answer) = device.next_json().await;
    assert_eq!(t, topic);
    assert_eq!(answer["status"], "created", "{answer}");
    let token = answer["thingToken"].as_str().expect("thingToken").to_owned();

    // The token works at once, over MQTT and HTTP.
    device.publish_acked(&thing_topic(&token), r#"{"values":[{"key":"boot","value":1}]}"#).await;
    let r = server.client.get(server.url(&format!("/v2/things/{token}/resources/boot"))).send().await.expect("read");
    assert_eq!(r.status(), StatusCode::OK);

    // The code is single-use: the second activation gets the error envelope.
    let topic = format!("v2/activations/{code}/99");
    device.subscribe(&topic, QoS::AtMostOnce).await;
    let (_, answer) = device.next_json().await;
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(answer["code"].is_number() && answer["message"].is_string(), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn last_will_is_written_when_a_client_dies_and_not_after_a_disconnect() {
    let server = TestServer::start_mqtt().await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let will = |value: &str| Some((topic.clone(), format!(r#"{{"values":[{{"key":"LWT","value":"{value}"}}]}}"#)));

    let mut polite = Opts::new("polite");
    polite.will = will("polite died");
    let (polite, _) = Client::connect(mqtt, polite).await;
    polite.disconnect().await;

    let mut dying = Opts::new("dying");
    dying.will = will("Device Last Will Testament");
    let (mut dying, _) = Client::connect(mqtt, dying).await;
    dying.publish_acked(&topic, r#"{"values":[{"key":"up","value":1}]}"#).await;
    dying.kill();

    // The killed client's will arrives; the polite one's (earlier) never did.
    let lwt = eventually(&server, &thing, "LWT", |v| !v.is_empty()).await;
    assert_eq!(lwt, vec![json!("Device Last Will Testament")]);
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_expiry_closes_the_connection_and_publishes_the_will() {
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let mut raw = Raw::connect(server.mqtt.expect("mqtt")).await;
    let started = tokio::time::Instant::now();
    raw.send(&connect_packet("silent", 1, Some((&topic, r#"{"values":[{"key":"LWT","value":"gone"}]}"#)))).await;
    assert_eq!(raw.read_exact(4).await, vec![0x20, 2, 0, 0], "CONNACK accepted");
    // Silent after a 1 s keep-alive: closed after 1.5 s, not before 1 s.
    raw.until_closed(WAIT).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "closed too early: {:?}", started.elapsed());
    assert_eq!(eventually(&server, &thing, "LWT", |v| !v.is_empty()).await, vec![json!("gone")]);
    server.stop().await;
}

#[tokio::test]
async fn a_qos1_puback_means_committed_even_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The binary as operators run it, with the default durability.
    let mut server = TestServer::spawn_in(dir.path(), &["--mqtt-addr", "127.0.0.1:0"], &[]);
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let (mut device, _) = Client::connect(server.mqtt.expect("mqtt"), Opts::new("esp8266Client")).await;
    for i in 0..50 {
        device.publish_acked(&topic, format!(r#"{{"values":[{{"key":"seq","value":{i}}}]}}"#)).await;
    }
    // Every PUBACK is in: kill -9 at once.
    server.kill_9();
    device.kill();

    let restarted = TestServer::spawn_in(dir.path(), &[], &[]);
    let mut got = values(&restarted, &thing, "seq").await;
    got.reverse();
    assert_eq!(got, (0..50).map(|i| json!(i)).collect::<Vec<_>>(), "every acknowledged value survived, in order");
    restarted.stop().await;
}

#[tokio::test]
async fn persistent_sessions_get_what_was_written_while_away() {
    let server = TestServer::start_with(|a| {
        mqtt_on(a);
        a.mqtt_session_queue = Some(3);
    })
    .await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);

    let mut opts = Opts::new("lua-node-7");
    opts.clean = false;
    let (mut device, ack) = Client::connect(mqtt, opts).await;
    assert!(!ack.session_present, "a new session");
    device.subscribe(&topic, QoS::AtLeastOnce).await;
    device.disconnect().await;

    // Written while the device is away: 5 values, the session keeps 3 (THINGLINE_MQTT_SESSION_QUEUE).
    for i in 0..5 {
        assert_eq!(server.write(&thing, json!([{"key": "cmd", "value": i}])).await, StatusCode::CREATED);
    }
    let mut opts = Opts::new("lua-node-7");
    opts.clean = false;
    let (mut device, ack) = Client::connect(mqtt, opts).await;
    assert!(ack.session_present, "the session was kept");
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = device.expect(|p| matches!(p, Packet::Publish(_))).await;
        let Packet::Publish(p) = p else { unreachable!() };
        assert_eq!(p.qos, QoS::AtLeastOnce);
        let v: Value = serde_json::from_slice(&p.payload).expect("json");
        got.push(v[0]["value"].clone());
    }
    assert_eq!(got, vec![json!(0), json!(1), json!(2)], "the first three, in order");
    // Still subscribed without subscribing again: a new write arrives.
    assert_eq!(server.write(&thing, json!([{"key": "cmd", "value": 9}])).await, StatusCode::CREATED);
    let (_, v) = device.next_json().await;
    assert_eq!(v[0]["value"], 9);

    // A clean connection with the same client id is another session: it neither evicts the
    // persistent one nor sees its messages.
    let (mut other, ack) = Client::connect(mqtt, Opts::new("lua-node-7")).await;
    assert!(!ack.session_present);
    other.publish_acked(&topic, r#"{"values":[{"key":"cmd","value":10}]}"#).await;
    let (_, v) = device.next_json().await;
    assert_eq!(v[0]["value"], 10, "the persistent connection is still live");

    // A second persistent connection with the id takes the session over: the first is closed.
    let mut opts = Opts::new("lua-node-7");
    opts.clean = false;
    let (_taker, ack) = Client::connect(mqtt, opts).await;
    assert!(ack.session_present);
    device.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn two_clean_sessions_with_the_same_client_id_do_not_evict_each_other() {
    let server = TestServer::start_mqtt().await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let (a, b) = (server.thing(&panel, &[]).await, server.thing(&panel, &[]).await);
    let (mut one, _) = Client::connect(mqtt, Opts::new("arduinoclient")).await;
    one.subscribe(&thing_topic(&a.token), QoS::AtMostOnce).await;
    let (mut two, _) = Client::connect(mqtt, Opts::new("arduinoclient")).await;
    two.subscribe(&thing_topic(&b.token), QoS::AtMostOnce).await;
    server.write(&a, json!([{"key": "x", "value": "a"}])).await;
    server.write(&b, json!([{"key": "x", "value": "b"}])).await;
    assert_eq!(one.next_json().await.1[0]["value"], "a");
    assert_eq!(two.next_json().await.1[0]["value"], "b");
    server.stop().await;
}

#[tokio::test]
async fn foreign_topics_wildcards_and_unknown_tokens_reach_nothing() {
    let server = TestServer::start_mqtt().await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let (mut hostile, _) = Client::connect(mqtt, Opts::new("hostile")).await;
    for filter in [
        "#",
        "v2/things/#",
        "v2/things/+",
        "+/things/x",
        "$SYS/#",
        "$share/g/v2/things/x",
        "v2/things/not-a-token",
        "other/topic",
    ] {
        assert_eq!(hostile.subscribe(filter, QoS::AtMostOnce).await, vec![SubscribeReasonCode::Failure], "{filter}");
    }
    // A publish to an unknown token or a foreign topic is acknowledged (3.1.1 has no refusal)
    // and stores nothing; the connection stays usable.
    hostile.publish_acked("v2/things/not-a-token", LED_ON).await;
    hostile.publish_acked("v2/activations/x/y", LED_ON).await;
    hostile.publish_acked("devices/1", LED_ON).await;
    hostile.publish_acked(&thing_topic(&thing.token), "not json").await;
    hostile.publish_acked(&thing_topic(&thing.token), LED_ON).await;
    assert_eq!(values(&server, &thing, "LED").await, vec![json!("ON")], "only the valid write landed");

    // Nobody received anything through the refused filters.
    server.write(&thing, json!([{"key": "k", "value": 1}])).await;
    hostile.client.publish(thing_topic(&thing.token), QoS::AtMostOnce, false, LED_ON).await.expect("publish");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(seen)) = tokio::time::timeout_at(deadline, hostile.events.recv()).await {
        assert!(!matches!(seen, Seen::Packet(Packet::Publish(_))), "a refused subscription delivered: {seen:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_packets_close_only_that_connection() {
    let server = TestServer::start_with(|a| {
        mqtt_on(a);
        a.mqtt_max_packet = Some(2048);
    })
    .await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let (mut good, _) = Client::connect(mqtt, Opts::new("good")).await;

    // Garbage instead of CONNECT.
    let mut raw = Raw::connect(mqtt).await;
    raw.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(raw.until_closed(WAIT).await.is_empty());
    // A reserved packet type after a valid CONNECT.
    let mut raw = Raw::connect(mqtt).await;
    raw.send(&connect_packet("bad", 60, None)).await;
    raw.read_exact(4).await;
    raw.send(&[0xf0, 0]).await;
    raw.until_closed(WAIT).await;
    // An announced 200 MB packet is refused from its header.
    let mut raw = Raw::connect(mqtt).await;
    raw.send(&connect_packet("big", 60, None)).await;
    raw.read_exact(4).await;
    raw.send(&[0x30, 0x80, 0x80, 0x80, 0x60]).await;
    raw.until_closed(WAIT).await;
    // A real publish over the limit.
    let mut raw = Raw::connect(mqtt).await;
    raw.send(&connect_packet("big2", 60, None)).await;
    raw.read_exact(4).await;
    let huge = format!(r#"{{"values":[{{"key":"big","value":"{}"}}]}}"#, "x".repeat(4000));
    raw.send(&publish_packet(&topic, huge.as_bytes())).await;
    raw.until_closed(WAIT).await;
    assert!(values(&server, &thing, "big").await.is_empty());

    // The well-behaved client never noticed.
    good.publish_acked(&topic, LED_ON).await;
    assert_eq!(values(&server, &thing, "LED").await, vec![json!("ON")]);
    server.stop().await;
}

#[tokio::test]
async fn mqtts_uses_the_https_certificate() {
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let mut opts = Opts::new("secure");
    opts.tls = Some(tls_trusting(&server.data_dir));
    let addr = server.mqtts.expect("mqtts");
    // The certificate names localhost; connect by name as a device would.
    let addr = std::net::SocketAddr::new(addr.ip(), addr.port());
    let (mut device, _) = Client::connect(addr, opts).await;
    device.subscribe(&thing_topic(&thing.token), QoS::AtLeastOnce).await;
    device.publish_acked(&thing_topic(&thing.token), LED_ON).await;
    assert_eq!(device.next_json().await.1[0]["value"], "ON");
    assert_eq!(values(&server, &thing, "LED").await, vec![json!("ON")]);
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_thing_ends_its_live_mqtt_session() {
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let (mut device, _) = Client::connect(server.mqtt.expect("mqtt"), Opts::new("doomed")).await;
    device.subscribe(&thing_topic(&thing.token), QoS::AtMostOnce).await;
    let r = server.req(Method::DELETE, &format!("/v2/panel/things/{}", thing.id), &panel).send().await.expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    device.expect_closed().await;
    // And the token reaches nothing any more.
    let (mut again, _) = Client::connect(server.mqtt.expect("mqtt"), Opts::new("doomed")).await;
    assert_eq!(again.subscribe(&thing_topic(&thing.token), QoS::AtMostOnce).await, vec![SubscribeReasonCode::Failure]);
    server.stop().await;
}

#[tokio::test]
async fn connection_and_subscription_limits_hold() {
    let server = TestServer::start_with(|a| {
        mqtt_on(a);
        a.mqtt_max_connections = Some(2);
        a.realtime_subscriptions_per_connection = Some(1);
    })
    .await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let (a, b) = (server.thing(&panel, &[]).await, server.thing(&panel, &[]).await);
    let (mut one, _) = Client::connect(mqtt, Opts::new("one")).await;
    let (_two, _) = Client::connect(mqtt, Opts::new("two")).await;
    // The third connection is closed at once.
    let mut third = Raw::connect(mqtt).await;
    third.send(&connect_packet("three", 60, None)).await;
    assert!(third.until_closed(WAIT).await.is_empty(), "no CONNACK past the connection limit");
    // One subscription per connection here.
    assert_eq!(
        one.subscribe(&thing_topic(&a.token), QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    assert_eq!(one.subscribe(&thing_topic(&b.token), QoS::AtMostOnce).await, vec![SubscribeReasonCode::Failure]);
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped_without_slowing_writers() {
    let server = TestServer::start_with(|a| {
        mqtt_on(a);
        a.realtime_queue = Some(8);
        a.body_timeout = Some(2);
    })
    .await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let mut stalled = Raw::connect_small(server.mqtt.expect("mqtt")).await;
    stalled.send(&connect_packet("stalled", 0, None)).await;
    stalled.read_exact(4).await;
    stalled.send(&subscribe_packet(1, &thing_topic(&thing.token))).await;
    assert_eq!(stalled.read_exact(5).await, vec![0x90, 3, 0, 1, 0], "SUBACK");
    // 300 writes of 32 KB each: far more than the socket buffers and the queue hold.
    let big = "v".repeat(32 * 1024);
    for i in 0..300 {
        let status = server.write(&thing, json!([{"key": "blob", "value": format!("{i}{big}")}])).await;
        assert_eq!(status, StatusCode::CREATED, "write {i} acknowledged while a subscriber stalls");
    }
    // The stalled subscriber was dropped: what it can still read ends with the close.
    let got = stalled.until_closed(WAIT).await;
    assert!(got.len() < 300 * big.len(), "not everything was queued for it ({} bytes)", got.len());
    server.stop().await;
}

#[tokio::test]
async fn qos2_publishes_complete_their_exchange_and_are_stored_once() {
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let (mut device, _) = Client::connect(server.mqtt.expect("mqtt"), Opts::new("qos2")).await;
    // Subscribing at QoS 2 is granted QoS 1 (this broker sends at most QoS 1).
    assert_eq!(device.subscribe(&topic, QoS::ExactlyOnce).await, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    for i in 0..3 {
        let payload = format!(r#"{{"values":[{{"key":"q2","value":{i}}}]}}"#);
        device.client.publish(&topic, QoS::ExactlyOnce, false, payload).await.expect("publish");
        device.expect(|p| matches!(p, Packet::PubRec(_))).await;
        device.expect(|p| matches!(p, Packet::PubComp(_))).await;
    }
    assert_eq!(values(&server, &thing, "q2").await, vec![json!(2), json!(1), json!(0)]);
    server.stop().await;
}

#[tokio::test]
async fn a_qos2_publish_sent_again_before_its_pubrel_is_stored_once() {
    let server = TestServer::start_mqtt().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let mut raw = Raw::connect(server.mqtt.expect("mqtt")).await;
    raw.send(&connect_packet("qos2-raw", 60, None)).await;
    raw.read_exact(4).await;
    let payload = br#"{"values":[{"key":"once","value":1}]}"#;
    let mut twice = publish_qos2_packet(&topic, 7, false, payload);
    twice.extend(publish_qos2_packet(&topic, 7, true, payload));
    raw.send(&twice).await;
    assert_eq!(raw.read_exact(8).await, vec![0x50, 2, 0, 7, 0x50, 2, 0, 7], "a PUBREC for each");
    raw.send(&pubrel_packet(7)).await;
    assert_eq!(raw.read_exact(4).await, vec![0x70, 2, 0, 7], "PUBCOMP");
    assert_eq!(values(&server, &thing, "once").await, vec![json!(1)], "stored once");
    server.stop().await;
}

#[tokio::test]
async fn publishes_sent_with_the_disconnect_are_all_written_and_the_will_is_not() {
    // A small in-flight limit: most of the burst is still unread when the client closes.
    let server = TestServer::start_with(|a| {
        mqtt_on(a);
        a.mqtt_max_inflight = Some(4);
    })
    .await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let mut raw = Raw::connect(mqtt).await;
    let will = r#"{"values":[{"key":"LWT","value":"burst"}]}"#;
    let mut burst = connect_packet("burst", 60, Some((&topic, will)));
    for i in 0..100 {
        burst.extend(publish_packet(&topic, format!(r#"{{"values":[{{"key":"n","value":{i}}}]}}"#).as_bytes()));
    }
    burst.extend([0xe0, 0]); // DISCONNECT
    raw.send(&burst).await;
    raw.stream.shutdown().await.expect("close our side");
    raw.until_closed(WAIT).await;
    let mut got = eventually(&server, &thing, "n", |v| v.len() == 100).await;
    got.reverse();
    assert_eq!(got, (0..100).map(|i| json!(i)).collect::<Vec<_>>(), "all of them, in order");

    // The same burst without DISCONNECT: all written too, and then the will.
    let mut raw = Raw::connect(mqtt).await;
    let mut burst = connect_packet("burst2", 60, Some((&topic, r#"{"values":[{"key":"LWT","value":"broken"}]}"#)));
    for i in 100..200 {
        burst.extend(publish_packet(&topic, format!(r#"{{"values":[{{"key":"n","value":{i}}}]}}"#).as_bytes()));
    }
    raw.send(&burst).await;
    raw.stream.shutdown().await.expect("close our side");
    raw.until_closed(WAIT).await;
    assert_eq!(
        eventually(&server, &thing, "LWT", |v| !v.is_empty()).await,
        vec![json!("broken")],
        "only the second will"
    );
    assert_eq!(values(&server, &thing, "n").await.len(), 200);
    server.stop().await;
}
