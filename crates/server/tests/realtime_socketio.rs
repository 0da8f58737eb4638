//! Socket.IO with the real npm clients (socket.io-client 4.x and 2.x, run by Node): the
//! authenticate / subscribe / data / unsubscribe flow of thing-api.md on namespace `/v2`, every
//! write path reaching it (thing write, app write, store=false) and broadcast=false reaching
//! none, refusals, access removal, limits, and a slow consumer dropped while a fast one keeps
//! receiving.

mod common;
mod realtime_support;

use std::time::Duration;

use serde_json::{Value, json};

use common::TestServer;
use realtime_support::*;

/// The values of a data event's single argument (an array of items), checking the item shape.
fn values_of(args: &[Value], shape_id: Option<&str>) -> Vec<Value> {
    assert_eq!(args.len(), 1, "one argument: {args:?}");
    let items = args[0].as_array().unwrap_or_else(|| panic!("an array of items: {args:?}"));
    items
        .iter()
        .map(|it| {
            assert_eq!(it["key"], "temperature", "{it}");
            assert!(it["datetime"].as_str().is_some_and(|d| d.ends_with('Z')), "{it}");
            match shape_id {
                Some(id) => assert_eq!(it["id"], id, "{it}"),
                None => assert!(it.get("id").is_none(), "{it}"),
            }
            it["value"].clone()
        })
        .collect()
}

async fn every_write_path_reaches_socketio(version: u8) {
    let server = TestServer::start().await;
    let (_app, thing, user) = world(&server, &format!("v{version}@example.com")).await;
    let mut c = SioClient::connect(&server, version, "polling,websocket").await;

    // Nothing before authenticate; a bad token is refused with the envelope.
    let r = c.subscribe("/me/resources/temperature").await;
    assert_eq!((r["status"].clone(), r["code"].clone()), (json!("error"), json!(401)), "{r}");
    c.emit("authenticate", json!({"sessionToken": "not-a-token"})).await;
    let a = c.event("authenticate").await;
    assert_eq!((a[0]["status"].clone(), a[0]["code"].clone()), (json!("error"), json!(401)), "{a:?}");
    c.authenticate(&user.token).await;

    let me = "/me/resources/temperature";
    let things = format!("/things/{}", thing.token);
    assert_eq!(c.subscribe(me).await, json!({"status": "success", "resource": me}));
    assert_eq!(c.subscribe(&things).await, json!({"status": "success", "resource": things}));

    // A thing write, an app write and store=false writes reach both topics; broadcast=false
    // writes reach neither: each topic's events are exactly the other writes, in order.
    write_on_every_path(&server, &user, &thing).await;
    let (mut on_me, mut on_thing) = (Vec::new(), Vec::new());
    while on_me.len() < 5 || on_thing.len() < 5 {
        let l = c.next_line().await;
        assert_eq!(l["type"], "event", "{l}");
        let args = l["args"].as_array().cloned().unwrap_or_default();
        if l["event"] == me {
            on_me.extend(values_of(&args, Some(&thing.id)));
        } else if l["event"] == things.as_str() {
            on_thing.extend(values_of(&args, None));
        } else {
            panic!("unexpected event {l}");
        }
    }
    let want = vec![json!(1), json!(2), json!(3), json!("4"), json!(5)];
    assert_eq!(on_me, want);
    assert_eq!(on_thing, want);

    // Unsubscribe: the topic goes quiet (its fan-out group is gone), the other keeps receiving.
    c.emit("unsubscribe", json!({"resource": things})).await;
    assert_eq!(c.event("unsubscribe").await[0]["status"], "success");
    // Left: the `/me/resources/temperature` group and the user's access-change group.
    assert_eq!(server.platform().realtime_snapshot().groups, 2);
    for v in [6, 7] {
        thing_write(&server, &thing, json!([{"key": "temperature", "value": v}]), "").await;
        let l = c.next_line().await;
        assert_eq!(l["event"], me, "only the subscribed topic delivers: {l}");
        assert_eq!(values_of(l["args"].as_array().expect("args"), Some(&thing.id)), vec![json!(v)]);
    }
    c.close().await;
    server.stop().await;
}

#[tokio::test]
async fn every_write_path_reaches_socketio_client_v4() {
    if !node_clients_ready() {
        return;
    }
    every_write_path_reaches_socketio(4).await;
}

#[tokio::test]
async fn every_write_path_reaches_socketio_client_v2() {
    if !node_clients_ready() {
        return;
    }
    every_write_path_reaches_socketio(2).await;
}

async fn refusals_and_access_removal(version: u8) {
    let server = TestServer::start().await;
    let (app, thing, owner) = world(&server, &format!("owner{version}@example.com")).await;
    let stranger = register(&server, &app, &format!("stranger{version}@example.com")).await;
    let mut c = SioClient::connect(&server, version, "websocket").await;
    c.authenticate(&stranger.token).await;
    // A user who reaches no thing with that key, an unknown key, an unknown token, a bad topic.
    for (topic, code) in [
        ("/me/resources/temperature", 404),
        ("/me/resources/humidity", 404),
        ("/things/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 404),
        ("/nothing/here", 400),
    ] {
        let r = c.subscribe(topic).await;
        assert_eq!((r["status"].clone(), r["code"].clone()), (json!("error"), json!(code)), "{topic}: {r}");
    }
    c.close().await;

    // The owner subscribes, then unlinks: the subscription ends with a 403 envelope.
    let mut o = SioClient::connect(&server, version, "websocket").await;
    o.authenticate(&owner.token).await;
    let me = "/me/resources/temperature";
    assert_eq!(o.subscribe(me).await["status"], "success");
    thing_write(&server, &thing, json!([{"key": "temperature", "value": 1}]), "").await;
    assert_eq!(o.event(me).await[0][0]["value"], 1);
    unlink(&server, &owner, &thing).await;
    let end = o.event(me).await;
    assert_eq!((end[0]["status"].clone(), end[0]["code"].clone()), (json!("error"), json!(403)), "{end:?}");
    // Nothing more arrives: after a write the next line is the answer to a fresh subscribe.
    thing_write(&server, &thing, json!([{"key": "temperature", "value": 2}]), "").await;
    o.emit("subscribe", json!({"resource": me})).await;
    let next = o.next_line().await;
    assert_eq!(next["event"], "subscribe", "no data after the access was removed: {next}");
    assert_eq!(next["args"][0]["code"], 404);
    o.close().await;
    server.stop().await;
}

#[tokio::test]
async fn refusals_and_access_removal_client_v4() {
    if !node_clients_ready() {
        return;
    }
    refusals_and_access_removal(4).await;
}

#[tokio::test]
async fn refusals_and_access_removal_client_v2() {
    if !node_clients_ready() {
        return;
    }
    refusals_and_access_removal(2).await;
}

#[tokio::test]
async fn limits_on_subscriptions_and_connections() {
    if !node_clients_ready() {
        return;
    }
    let server = TestServer::start().await;
    let (_app, thing, user) = world(&server, "limits@example.com").await;
    let limits = server.platform().realtime_limits();
    limits.set_max_subscriptions_per_connection(1);
    limits.set_max_connections_per_user(1);
    let mut a = SioClient::connect(&server, 4, "websocket").await;
    a.authenticate(&user.token).await;
    assert_eq!(a.subscribe("/me/resources/temperature").await["status"], "success");
    let r = a.subscribe(&format!("/things/{}", thing.token)).await;
    assert_eq!(r["code"], 429, "{r}");
    let mut b = SioClient::connect(&server, 2, "websocket").await;
    b.emit("authenticate", json!({"sessionToken": user.token})).await;
    let r = b.event("authenticate").await;
    assert_eq!(r[0]["code"], 429, "{r:?}");
    b.until("disconnect").await; // and the server disconnects it (panics past the deadline)
    // The HTTP subscription counts as a connection of the user too.
    let r = server
        .client
        .get(server.url(&format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id)))
        .header("Authorization", &user.token)
        .send()
        .await
        .expect("subscribe");
    assert_eq!(r.status().as_u16(), 429);
    a.close().await;
    server.stop().await;
}

/// A client may emit the moment its namespace connect arrives (socket.io-client does): the event
/// is handled, for every one of many connections opened at once.
#[tokio::test]
async fn an_event_sent_right_after_connecting_is_handled() {
    if !node_clients_ready() {
        return;
    }
    let server = TestServer::start().await;
    let (_app, _thing, user) = world(&server, "burst@example.com").await;
    server.platform().realtime_limits().set_max_connections_per_user(1000);
    let count = 300;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(node_dir().join("burst.js"))
            .current_dir(node_dir())
            .env("SIO_URL", format!("{}/v2", server.https))
            .env("SIO_CA", server.data_dir.join("tls/cert.pem"))
            .env("SIO_TOKEN", &user.token)
            .env("SIO_COUNT", count.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("burst.js finishes within 60 s")
    .expect("node runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("burst.js report ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["ok"], count, "every authenticate answered: {report}");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_while_a_fast_one_keeps_receiving() {
    if !node_clients_ready() {
        return;
    }
    let server = TestServer::start().await;
    let (_app, thing, user) = world(&server, "slow@example.com").await;
    let topic = format!("/things/{}", thing.token);
    let mut fast = SioClient::connect(&server, 4, "websocket").await;
    let mut slow = SioClient::connect(&server, 4, "websocket").await;
    for c in [&mut fast, &mut slow] {
        c.authenticate(&user.token).await;
        assert_eq!(c.subscribe(&topic).await["status"], "success");
    }
    slow.send(json!({"op": "pause"})).await;
    assert_eq!(slow.next_line().await["type"], "paused");

    // Broadcast-only writes of ~200 KB each: the paused client's kernel buffers and then its
    // server-side queue fill up; the fast one reads every one.
    let big = "x".repeat(200_000);
    let platform = server.platform().clone();
    let mut sent = 0u64;
    while platform.realtime_snapshot().dropped_slow == 0 {
        assert!(sent < 2000, "the paused client was never dropped");
        thing_write(&server, &thing, json!([{"key": "temperature", "value": big}]), "?store=false").await;
        sent += 1;
        let args = fast.event(&topic).await;
        assert_eq!(args[0][0]["value"].as_str().map(str::len), Some(big.len()));
    }
    // The fast one keeps receiving after the drop.
    thing_write(&server, &thing, json!([{"key": "temperature", "value": "after"}]), "").await;
    assert_eq!(fast.event(&topic).await[0][0]["value"], "after");
    let s = platform.realtime_snapshot();
    assert_eq!(s.dropped_slow, 1, "{s:?}");
    assert!(s.delivered > sent, "{s:?}");
    fast.close().await;
    drop(slow);
    server.stop().await;
}
