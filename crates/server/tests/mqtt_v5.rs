//! MQTT 5 with a real rumqttc v5 client: the same writes and subscriptions as 3.1.1, refusals
//! with their reason codes (3.1.1 can only say 0x80 or nothing), and sessions kept by the
//! Session Expiry Interval.

mod common;
mod mqtt_support;

use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common::TestServer;
use mqtt_support::{WAIT, thing_topic};

struct V5 {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
}

impl V5 {
    async fn connect(addr: std::net::SocketAddr, id: &str, session_expiry: Option<u32>) -> (V5, ConnAck) {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_start(session_expiry.is_none());
        o.set_session_expiry_interval(session_expiry);
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut c = V5 { client, events };
        let Packet::ConnAck(ack) = c.expect(|p| matches!(p, Packet::ConnAck(_))).await else { unreachable!() };
        (c, ack)
    }

    async fn expect(&mut self, pred: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(p))) if pred(&p) => return p,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("connection closed while waiting: {e}"),
                Ok(None) => panic!("event loop gone"),
                Err(_) => panic!("no matching packet within {WAIT:?}"),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe");
        let Packet::SubAck(ack) = self.expect(|p| matches!(p, Packet::SubAck(_))).await else { unreachable!() };
        ack.return_codes[0]
    }

    async fn publish(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.to_owned()).await.expect("publish");
        let Packet::PubAck(ack) = self.expect(|p| matches!(p, Packet::PubAck(_))).await else { unreachable!() };
        ack.reason
    }

    async fn next_json(&mut self) -> Value {
        let Packet::Publish(p) = self.expect(|p| matches!(p, Packet::Publish(_))).await else { unreachable!() };
        serde_json::from_slice(&p.payload).expect("json")
    }
}

#[tokio::test]
async fn v5_writes_subscribes_and_refuses_with_reason_codes() {
    let server = TestServer::start_mqtt().await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);
    let (mut c, ack) = V5::connect(mqtt, "v5-device", None).await;
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.retain_available, Some(0));
    assert_eq!(props.wildcard_subscription_available, Some(0));
    assert_eq!(props.shared_subscription_available, Some(0));
    assert!(props.max_packet_size.is_some() && props.receive_max.is_some());

    assert_eq!(c.subscribe(&topic).await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(c.publish(&topic, r#"{"values":[{"key":"LED","value":"ON"}]}"#).await, PubAckReason::Success);
    assert_eq!(c.next_json().await[0]["value"], "ON");
    let (status, v) = server.read(&thing, "LED", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v[0]["value"], "ON");

    assert_eq!(c.subscribe("#").await, SubscribeReasonCode::WildcardSubscriptionsNotSupported);
    assert_eq!(c.subscribe("v2/things/+").await, SubscribeReasonCode::WildcardSubscriptionsNotSupported);
    assert_eq!(c.subscribe("$SYS/broker/load").await, SubscribeReasonCode::NotAuthorized);
    assert_eq!(c.subscribe("$share/g/v2/things/x").await, SubscribeReasonCode::SharedSubscriptionsNotSupported);
    assert_eq!(c.subscribe("v2/things/unknown-token").await, SubscribeReasonCode::NotAuthorized);

    assert_eq!(
        c.publish("v2/things/unknown-token", r#"{"values":[{"key":"a","value":1}]}"#).await,
        PubAckReason::NotAuthorized
    );
    assert_eq!(c.publish("elsewhere", r#"{"values":[{"key":"a","value":1}]}"#).await, PubAckReason::NotAuthorized);
    assert_eq!(c.publish(&topic, "not json").await, PubAckReason::PayloadFormatInvalid);
    assert_eq!(c.publish(&topic, r#"{"values":[]}"#).await, PubAckReason::PayloadFormatInvalid);
    assert_eq!(
        c.publish(&format!("{topic}?store=sometimes"), r#"{"values":[{"key":"a","value":1}]}"#).await,
        PubAckReason::TopicNameInvalid
    );
    // Nothing of it was stored, and the connection still works.
    assert_eq!(server.read(&thing, "a", "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(c.publish(&topic, r#"{"values":[{"key":"a","value":2}]}"#).await, PubAckReason::Success);
    server.stop().await;
}

#[tokio::test]
async fn v5_sessions_follow_the_session_expiry_interval() {
    let server = TestServer::start_mqtt().await;
    let mqtt = server.mqtt.expect("mqtt");
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let topic = thing_topic(&thing.token);

    // Expiry 0 (the default clean start): nothing is kept.
    let (mut c, _) = V5::connect(mqtt, "v5-transient", None).await;
    c.subscribe(&topic).await;
    c.client.disconnect().await.expect("disconnect");
    server.write(&thing, json!([{"key": "cmd", "value": 1}])).await;
    let (_, ack) = V5::connect(mqtt, "v5-transient", None).await;
    assert!(!ack.session_present);

    // Expiry 1 hour: kept, with what was written while away.
    let (mut c, ack) = V5::connect(mqtt, "v5-kept", Some(3600)).await;
    assert!(!ack.session_present);
    c.subscribe(&topic).await;
    c.client.disconnect().await.expect("disconnect");
    // Wait for the server to see the DISCONNECT: the event loop ends.
    let _ = tokio::time::timeout(WAIT, async { while c.events.recv().await.is_some() {} }).await;
    server.write(&thing, json!([{"key": "cmd", "value": 2}])).await;
    let (mut c, ack) = V5::connect(mqtt, "v5-kept", Some(3600)).await;
    assert!(ack.session_present);
    assert_eq!(c.next_json().await[0]["value"], 2);
    server.stop().await;
}
