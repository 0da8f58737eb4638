//! HTTP app subscriptions (`GET /v2/me/resources/{key}[/{thingId}]?subscribe=true&keepAlive=ms`)
//! next to the thing stream: every write path reaches all of them, broadcast=false none;
//! refusals; an unlink and a revoked grant ending subscriptions; keepAlive `{}`; a slow HTTP subscriber (app
//! subscription or thing stream) dropped while a fast one keeps receiving.

mod common;
mod realtime_support;

use serde_json::{Value, json};

use common::{TestServer, TestThing};
use realtime_support::*;

fn app_values(doc: &Value, thing_id: &str) -> Vec<Value> {
    doc.as_array()
        .unwrap_or_else(|| panic!("an array: {doc}"))
        .iter()
        .map(|it| {
            assert_eq!(it["id"], thing_id, "{it}");
            assert_eq!(it["key"], "temperature", "{it}");
            assert!(it["datetime"].as_str().is_some_and(|d| d.ends_with('Z')), "{it}");
            it["value"].clone()
        })
        .collect()
}

#[tokio::test]
async fn every_write_path_reaches_every_http_subscription() {
    let server = TestServer::start().await;
    let (_app, thing, user) = world(&server, "http@example.com").await;
    let tok = Some(user.token.as_str());
    let mut one = open_stream(&server, &format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id), tok).await;
    let mut every = open_stream(&server, "/v2/me/resources/temperature?subscribe=true&keepAlive=60000", tok).await;
    let mut device = open_stream(&server, &format!("/v2/things/{}", thing.token), None).await;

    write_on_every_path(&server, &user, &thing).await;
    let want = [json!(1), json!(2), json!(3), json!("4"), json!(5)];
    for w in &want {
        assert_eq!(app_values(&one.next_data().await.expect("one"), &thing.id), vec![w.clone()]);
        assert_eq!(app_values(&every.next_data().await.expect("every"), &thing.id), vec![w.clone()]);
        let d = device.next_data().await.expect("device");
        assert_eq!(d[0]["value"], *w, "{d}");
    }
    // Another key of the same thing is not part of a temperature subscription.
    thing_write(&server, &thing, json!([{"key": "humidity", "value": 1}, {"key": "temperature", "value": 6}]), "")
        .await;
    assert_eq!(app_values(&one.next_data().await.expect("one"), &thing.id), vec![json!(6)]);
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_is_an_empty_object() {
    let server = TestServer::start().await;
    let (_app, thing, user) = world(&server, "ka@example.com").await;
    let path = format!("/v2/me/resources/temperature/{}?subscribe=true&keepAlive=1000", thing.id);
    let mut s = open_stream(&server, &path, Some(&user.token)).await;
    assert_eq!(s.next().await, Some(json!({})));
    server.stop().await;
}

#[tokio::test]
async fn unauthorized_subscriptions_are_refused() {
    let server = TestServer::start().await;
    let (app, thing, _owner) = world(&server, "owner@example.com").await;
    let stranger = register(&server, &app, "stranger@example.com").await;
    let get = |path: String, token: Option<String>| {
        let mut r = server.client.get(server.url(&path));
        if let Some(t) = token {
            r = r.header("Authorization", t);
        }
        r.send()
    };
    let one = format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id);
    let r = get(one.clone(), None).await.expect("get");
    common::assert_envelope(r, 401).await;
    let r = get(one, Some(stranger.token.clone())).await.expect("get");
    common::assert_envelope(r, 404).await;
    let r = get("/v2/me/resources/temperature?subscribe=true".into(), Some(stranger.token.clone())).await.expect("get");
    common::assert_envelope(r, 404).await;
    let r =
        get(format!("/v2/me/resources/temperature/{}?subscribe=true&keepAlive=abc", thing.id), Some(stranger.token))
            .await
            .expect("get");
    common::assert_envelope(r, 400).await;
    server.stop().await;
}

#[tokio::test]
async fn unlinking_ends_the_subscription_with_an_envelope() {
    let server = TestServer::start().await;
    let (_app, thing, user) = world(&server, "unlink@example.com").await;
    let tok = Some(user.token.as_str());
    let mut one = open_stream(&server, &format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id), tok).await;
    let mut every = open_stream(&server, "/v2/me/resources/temperature?subscribe=true", tok).await;
    thing_write(&server, &thing, json!([{"key": "temperature", "value": 1}]), "").await;
    assert!(one.next_data().await.is_some());
    assert!(every.next_data().await.is_some());
    unlink(&server, &user, &thing).await;
    for s in [&mut one, &mut every] {
        let end = s.next_data().await.expect("an envelope");
        assert_eq!((end["status"].clone(), end["code"].clone()), (json!("error"), json!(403)), "{end}");
        assert_eq!(s.next().await, None, "the stream ends");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_grant_ends_the_grantees_subscriptions() {
    let server = TestServer::start().await;
    let (app, thing, owner) = world(&server, "granter@example.com").await;
    let friend = register(&server, &app, "grantee@example.com").await;
    let tok = Some(friend.token.as_str());
    let one_path = format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id);
    let r = server.client.get(server.url(&one_path)).header("Authorization", &friend.token).send().await.expect("get");
    common::assert_envelope(r, 404).await;
    let grant = |get: bool| {
        let permissions = json!({"temperature": {thing.id.clone(): {"get": get}}});
        server
            .req(reqwest::Method::PUT, "/v2/me/grant", &owner.token)
            .json(&json!({"email": "grantee@example.com", "permissions": permissions}))
            .send()
    };
    let r = grant(true).await.expect("grant");
    assert!(r.status().is_success(), "grant: {}", r.status());
    let mut one = open_stream(&server, &one_path, tok).await;
    let mut every = open_stream(&server, "/v2/me/resources/temperature?subscribe=true", tok).await;
    thing_write(&server, &thing, json!([{"key": "temperature", "value": 7}]), "").await;
    assert_eq!(app_values(&one.next_data().await.expect("one"), &thing.id), vec![json!(7)]);
    assert_eq!(app_values(&every.next_data().await.expect("every"), &thing.id), vec![json!(7)]);
    let r = grant(false).await.expect("revoke");
    assert!(r.status().is_success(), "revoke: {}", r.status());
    for s in [&mut one, &mut every] {
        let end = s.next_data().await.expect("an envelope");
        assert_eq!((end["status"].clone(), end["code"].clone()), (json!("error"), json!(403)), "{end}");
        assert_eq!(s.next().await, None, "the stream ends");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_slow_http_subscriber_is_dropped_while_a_fast_one_keeps_receiving() {
    let server = TestServer::start().await;
    let (_app, thing, user) = world(&server, "slowhttp@example.com").await;
    let path = format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id);
    slow_one_dropped_fast_one_served(&server, &thing, &path, Some(&user.token)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_slow_thing_stream_is_dropped_while_a_fast_one_keeps_receiving() {
    let server = TestServer::start().await;
    let (_app, thing, _user) = world(&server, "slowthing@example.com").await;
    slow_one_dropped_fast_one_served(&server, &thing, &format!("/v2/things/{}", thing.token), None).await;
    server.stop().await;
}

/// Two subscribers of `path` with a queue of 4: one never read until the fan-out drops it as
/// slow, while the other receives every write; the slow one then gets what was queued, the 503
/// envelope, and the end of the stream.
async fn slow_one_dropped_fast_one_served(server: &TestServer, thing: &TestThing, path: &str, token: Option<&str>) {
    server.platform().realtime_limits().set_queue_capacity(4);
    let mut fast = open_stream(server, path, token).await;
    let mut slow = open_stream(server, path, token).await; // never read below
    let big = "y".repeat(200_000);
    let platform = server.platform().clone();
    let mut sent = 0;
    while platform.realtime_snapshot().dropped_slow == 0 {
        assert!(sent < 2000, "the slow subscriber was never dropped");
        thing_write(server, thing, json!([{"key": "temperature", "value": big}]), "?store=false").await;
        sent += 1;
        let d = fast.next_data().await.expect("fast");
        assert_eq!(d[0]["value"].as_str().map(str::len), Some(big.len()));
    }
    thing_write(server, thing, json!([{"key": "temperature", "value": "after"}]), "").await;
    assert_eq!(fast.next_data().await.expect("fast")[0]["value"], "after");
    let mut last = Value::Null;
    while let Some(v) = slow.next().await {
        last = v;
    }
    assert_eq!((last["status"].clone(), last["code"].clone()), (json!("error"), json!(503)), "{last}");
}

/// `THINGLINE_REALTIME_CONNECTIONS_PER_USER` (here as the flag) caps a user's subscriptions; a
/// closed one frees its place.
#[tokio::test]
async fn realtime_connections_per_user_is_a_setting() {
    let server = TestServer::start_with(|a| a.realtime_connections_per_user = Some(2)).await;
    let (_app, thing, user) = world(&server, "cap@example.com").await;
    let path = format!("/v2/me/resources/temperature/{}?subscribe=true&keepAlive=100", thing.id);
    let first = open_stream(&server, &path, Some(&user.token)).await;
    let _second = open_stream(&server, &path, Some(&user.token)).await;
    let third = server.client.get(server.url(&path)).header("Authorization", &user.token).send().await;
    let third = third.expect("third subscription answers");
    common::assert_envelope(third, 429).await;
    drop(first);
    common::eventually(std::time::Duration::from_secs(10), || async {
        let r = server.client.get(server.url(&path)).header("Authorization", &user.token).send().await.ok()?;
        (r.status().as_u16() == 200).then_some(())
    })
    .await;
    server.stop().await;
}
