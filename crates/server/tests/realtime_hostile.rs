//! What hangs on a session, a user or a thing ends when it ends, on every realtime path, and the
//! realtime paths are bounded — against the spawned `thingline` binary, with real clients (reqwest
//! streams and the npm socket.io-client): a logout, an expired session, a deleted app user and a
//! deleted thing end live HTTP streams (401/404 envelope) and Socket.IO subscriptions (the error on
//! the topic, later `subscribe`s refused); an unauthenticated Socket.IO connection is closed after
//! the auth timeout; thing streams per thing are capped; `all_resources` answers in pages. Also
//! the two SDK compatibility cases: a thingToken where the App API takes a thingId, and a write's
//! `geo` attribute streamed on its item.

mod common;
mod realtime_support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{JsonStream, TestServer, TestThing};
use realtime_support::*;

/// The end of a stream: the envelope with `code`, then nothing.
async fn ends_with(stream: &mut JsonStream, code: u16) {
    let end = stream.next_data().await.expect("an envelope");
    assert_eq!((end["status"].clone(), end["code"].clone()), (json!("error"), json!(code)), "{end}");
    assert_eq!(stream.next().await, None, "the stream ends after the envelope");
}

/// After a write to `thing`, a fresh `subscribe` on the socket is answered with `code`, and no data
/// event came before that answer.
async fn nothing_more_and_subscribe_refused(server: &TestServer, c: &mut SioClient, thing: &TestThing, code: u16) {
    thing_write(server, thing, json!([{"key": "temperature", "value": "after"}]), "").await;
    c.emit("subscribe", json!({"resource": "/me/resources/temperature"})).await;
    let next = c.next_line().await;
    assert_eq!(next["event"], "subscribe", "no data after the end: {next}");
    assert_eq!(next["args"][0]["code"], code, "{next}");
}

/// Opens, for `user`: a one-thing and an every-thing app subscription, a collection subscription,
/// and a Socket.IO connection subscribed to the key and the whole thing; checks each is live.
async fn subscribe_everywhere(
    server: &TestServer,
    thing: &TestThing,
    token: &str,
) -> (Vec<JsonStream>, JsonStream, SioClient) {
    let tok = Some(token);
    let one = open_stream(server, &format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id), tok).await;
    let every = open_stream(server, "/v2/me/resources/temperature?subscribe=true", tok).await;
    let r = server
        .client
        .get(server.url("/v2/classes/me/Notes?subscribe=true&keepAlive=60000"))
        .header("Authorization", token)
        .send()
        .await
        .expect("collection subscription");
    assert_eq!(r.status(), StatusCode::OK);
    let collection = JsonStream::new(r, WAIT);
    let mut c = SioClient::connect(server, 4, "websocket").await;
    c.authenticate(token).await;
    let things = format!("/things/{}", thing.token);
    assert_eq!(c.subscribe("/me/resources/temperature").await["status"], "success");
    assert_eq!(c.subscribe(&things).await["status"], "success");
    thing_write(server, thing, json!([{"key": "temperature", "value": 1}]), "").await;
    let mut streams = vec![one, every];
    for s in &mut streams {
        assert_eq!(s.next_data().await.expect("a value")[0]["value"], 1);
    }
    for _ in 0..2 {
        let l = c.next_line().await;
        assert_eq!(l["type"], "event", "{l}");
        assert_eq!(l["args"][0][0]["value"], 1, "{l}");
    }
    (streams, collection, c)
}

/// Every subscription of a user whose session ended: 401 everywhere, and no new subscription.
async fn all_end_with_401(server: &TestServer, thing: &TestThing, subs: (Vec<JsonStream>, JsonStream, SioClient)) {
    let (mut streams, mut collection, mut c) = subs;
    for s in &mut streams {
        ends_with(s, 401).await;
    }
    ends_with(&mut collection, 401).await;
    let mut ended = Vec::new();
    for _ in 0..2 {
        let l = c.next_line().await;
        assert_eq!(l["type"], "event", "{l}");
        assert_eq!(l["args"][0]["code"], 401, "{l}");
        ended.push(l["event"].as_str().expect("topic").to_owned());
    }
    ended.sort();
    assert_eq!(ended, vec!["/me/resources/temperature".to_owned(), format!("/things/{}", thing.token)]);
    nothing_more_and_subscribe_refused(server, &mut c, thing, 401).await;
    c.close().await;
}

#[tokio::test]
async fn a_logout_ends_every_live_subscription_of_that_session() {
    if !node_clients_ready() {
        return;
    }
    let server = TestServer::spawn(&[], &[]);
    let (_app, thing, user) = world(&server, "logout@example.com").await;
    let subs = subscribe_everywhere(&server, &thing, &user.token).await;
    let r = server.req(Method::POST, "/v2/logout", &user.token).send().await.expect("logout");
    assert_eq!(r.status(), StatusCode::OK);
    all_end_with_401(&server, &thing, subs).await;
    server.stop().await;
}

#[tokio::test]
async fn an_expired_session_ends_every_live_subscription_on_time() {
    if !node_clients_ready() {
        return;
    }
    let server = TestServer::spawn(&[], &[]);
    let (app, thing, _user) = world(&server, "expiry@example.com").await;
    let r = server
        .client
        .post(server.url("/v2/login"))
        .json(&json!({"email": "expiry@example.com", "password": common::APP_USER_PASSWORD, "app": app, "expirationDate": 4}))
        .send()
        .await
        .expect("login");
    let (status, v) = common::json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let token = v["token"].as_str().expect("token").to_owned();
    let started = std::time::Instant::now();
    let subs = subscribe_everywhere(&server, &thing, &token).await;
    // keepAlive is 60 s on every stream: the end comes from the expiry itself, not an idle tick.
    all_end_with_401(&server, &thing, subs).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "not before the expiry: {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_app_user_loses_every_live_subscription() {
    if !node_clients_ready() {
        return;
    }
    let server = TestServer::spawn(&[], &[]);
    let (app, thing, user) = world(&server, "deleted@example.com").await;
    let subs = subscribe_everywhere(&server, &thing, &user.token).await;
    let panel = server.panel_token().await;
    let r = server.req(Method::GET, &format!("/v2/panel/apps/{app}/users"), &panel).send().await.expect("users");
    let users: Value = r.json().await.expect("json");
    let id = users["users"][0]["userId"].as_i64().expect("userId");
    let r = server.req(Method::DELETE, &format!("/v2/panel/apps/{app}/users/{id}"), &panel).send().await.expect("del");
    assert_eq!(r.status(), StatusCode::OK);
    all_end_with_401(&server, &thing, subs).await;
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_thing_ends_the_subscriptions_that_depend_on_it() {
    if !node_clients_ready() {
        return;
    }
    let server = TestServer::spawn(&[], &[]);
    let (_app, thing, user) = world(&server, "thinggone@example.com").await;
    let tok = Some(user.token.as_str());
    let mut device = open_stream(&server, &format!("/v2/things/{}?keepAlive=60000", thing.token), None).await;
    let mut one = open_stream(&server, &format!("/v2/me/resources/temperature/{}?subscribe=true", thing.id), tok).await;
    let mut c = SioClient::connect(&server, 4, "websocket").await;
    c.authenticate(&user.token).await;
    let things = format!("/things/{}", thing.token);
    assert_eq!(c.subscribe(&things).await["status"], "success");
    assert_eq!(c.subscribe("/me/resources/temperature").await["status"], "success");
    let panel = server.panel_token().await;
    let r = server.req(Method::DELETE, &format!("/v2/panel/things/{}", thing.id), &panel).send().await.expect("del");
    assert_eq!(r.status(), StatusCode::OK);
    ends_with(&mut device, 404).await;
    ends_with(&mut one, 404).await;
    // The thing topic: 404; the key on every thing: its only thing is gone, 403.
    let mut codes = Vec::new();
    for _ in 0..2 {
        let l = c.next_line().await;
        assert_eq!(l["type"], "event", "{l}");
        codes.push((l["event"].as_str().expect("topic").to_owned(), l["args"][0]["code"].as_i64().expect("code")));
    }
    codes.sort();
    assert_eq!(codes, vec![("/me/resources/temperature".to_owned(), 403), (things.clone(), 404)]);
    let r = c.subscribe(&things).await;
    assert_eq!(r["code"], 404, "{r}");
    c.close().await;
    server.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_socketio_connection_is_closed_after_the_auth_timeout() {
    if !node_clients_ready() {
        return;
    }
    // Set through the environment (an older binary ignores it and fails on behaviour, not on a flag).
    let server = TestServer::spawn(&[], &[("THINGLINE_REALTIME_AUTH_TIMEOUT", "1")]);
    let (_app, thing, user) = world(&server, "authtimeout@example.com").await;
    let mut idle = SioClient::connect(&server, 4, "websocket").await;
    let mut old = SioClient::connect(&server, 2, "websocket").await;
    let mut good = SioClient::connect(&server, 4, "websocket").await;
    good.authenticate(&user.token).await;
    let started = std::time::Instant::now();
    for c in [&mut idle, &mut old] {
        let notice = c.event("authenticate").await;
        assert_eq!(notice[0]["code"], 401, "{notice:?}");
        c.until("disconnect").await;
    }
    assert!(started.elapsed() < Duration::from_secs(5), "closed soon after the timeout: {:?}", started.elapsed());
    // The authenticated connection stays and keeps working past the timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(good.subscribe("/me/resources/temperature").await["status"], "success");
    thing_write(&server, &thing, json!([{"key": "temperature", "value": 7}]), "").await;
    assert_eq!(good.event("/me/resources/temperature").await[0][0]["value"], 7);
    good.close().await;
    server.stop().await;
}

#[tokio::test]
async fn thing_streams_per_thing_are_capped() {
    let server = TestServer::spawn(&[], &[("THINGLINE_REALTIME_STREAMS_PER_THING", "3")]);
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("temperature", true)]).await;
    let other = server.thing(&panel, &[("temperature", true)]).await;
    let path = format!("/v2/things/{}?keepAlive=60000", thing.token);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(open_stream(&server, &path, None).await);
    }
    let r = server.client.get(server.url(&path)).send().await.expect("fourth");
    common::assert_envelope(r, 429).await;
    // Over plain HTTP too (the same cap), and another thing is not affected.
    let r = server.client.get(format!("{}{path}", server.http)).send().await.expect("plain");
    common::assert_envelope(r, 429).await;
    let _other = open_stream(&server, &format!("/v2/things/{}", other.token), None).await;
    // A closed stream frees its place.
    open.pop();
    common::eventually(Duration::from_secs(10), || async {
        let r = server.client.get(server.url(&path)).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn all_resources_answers_a_thing_with_many_keys_in_pages() {
    let server = TestServer::spawn(&[], &[]);
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let values: Vec<Value> = (0..250).map(|i| json!({"key": format!("k{i:03}"), "value": i})).collect();
    assert_eq!(server.write(&thing, Value::Array(values)).await, StatusCode::CREATED);
    let mut url = server.url(&format!("/v2/things/{}/all_resources?limit=1", thing.token));
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = server.client.get(&url).send().await.expect("all_resources");
        assert_eq!(r.status(), StatusCode::OK);
        let next = r.headers().get("link").map(|v| v.to_str().expect("ascii").to_owned());
        let page: Value = r.json().await.expect("json");
        let page = page.as_array().expect("an array, as firmware reads it");
        assert!(page.len() <= 100, "at most 100 keys per answer: {}", page.len());
        seen.extend(page.iter().map(|e| e["key"].as_str().expect("key").to_owned()));
        pages += 1;
        let Some(link) = next else { break };
        let target = link.trim_start_matches('<').split('>').next().expect("<url>");
        assert!(link.ends_with("rel=\"next\""), "{link}");
        url = server.url(target);
        assert!(pages < 10, "pages end");
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..250).map(|i| format!("k{i:03}")).collect();
    assert_eq!(seen, want, "every key once, in order");
    // With 20 values per key, a page stops at 1,000 values.
    let busy = server.thing(&panel, &[]).await;
    for round in 0..20 {
        let values: Vec<Value> = (0..60).map(|i| json!({"key": format!("b{i:02}"), "value": round})).collect();
        assert_eq!(server.write(&busy, Value::Array(values)).await, StatusCode::CREATED);
    }
    let r = server.client.get(server.url(&format!("/v2/things/{}/all_resources?limit=20", busy.token))).send().await;
    let r = r.expect("all_resources");
    assert!(r.headers().get("link").is_some(), "a next page");
    let page: Value = r.json().await.expect("json");
    let n: usize = page.as_array().expect("array").iter().map(|e| e["values"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(n, 1000, "1,000 values: 50 keys of 20");
    server.stop().await;
}

#[tokio::test]
async fn the_app_api_takes_a_things_token_where_it_takes_its_id() {
    let server = TestServer::spawn(&[], &[]);
    let (app, thing, user) = world(&server, "android@example.com").await;
    let by_token = format!("/v2/me/resources/temperature/{}", thing.token);
    // The official Android demo's write.
    let (status, v) = server.post_values(&by_token, &user.token, json!([{"value": 23}])).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let r = server.req(Method::GET, &by_token, &user.token).send().await.expect("read");
    let (status, v) = common::json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v[0]["value"], 23);
    let mut sub = open_stream(&server, &format!("{by_token}?subscribe=true"), Some(&user.token)).await;
    thing_write(&server, &thing, json!([{"key": "temperature", "value": 24}]), "").await;
    let d = sub.next_data().await.expect("a value");
    assert_eq!((d[0]["value"].clone(), d[0]["id"].clone()), (json!(24), json!(thing.id)), "items carry the thingId");
    // Grants name it by token too, and are stored by its thingId.
    let friend = register(&server, &app, "friend@example.com").await;
    let r = server
        .req(Method::PUT, "/v2/me/grant", &user.token)
        .json(&json!({"email": "friend@example.com", "permissions": {"temperature": {thing.token.clone(): {"get": true}}}}))
        .send()
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::OK);
    let r = server.req(Method::GET, "/v2/me", &friend.token).send().await.expect("me");
    let me: Value = r.json().await.expect("json");
    assert_eq!(me["roles"]["RSRC_temperature"][&thing.id]["get"], true, "{me}");
    // The same checks as by id: a stranger's token of the thing reaches nothing.
    let stranger = register(&server, &app, "stranger@example.com").await;
    let r = server.req(Method::GET, &by_token, &stranger.token).send().await.expect("read");
    common::assert_envelope(r, 404).await;
    let (status, _) = server.post_values(&by_token, &stranger.token, json!([{"value": 1}])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Unlink by token.
    let r = server.req(Method::DELETE, &format!("/v2/me/things/{}", thing.token), &user.token).send().await;
    assert_eq!(r.expect("unlink").status(), StatusCode::OK);
    let r = server.req(Method::GET, "/v2/me/things", &user.token).send().await.expect("things");
    assert_eq!(r.json::<Value>().await.expect("json"), json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_geo_attribute_is_streamed_on_its_item() {
    let server = TestServer::spawn(&[], &[]);
    let (_app, thing, user) = world(&server, "geo@example.com").await;
    let resp = server.client.get(server.url(&format!("/v2/things/{}", thing.token))).send().await.expect("stream");
    let mut device = JsonStream::one_per_chunk(resp, WAIT);
    assert_eq!(device.next().await.expect("subscribed")["message"], "subscribed");
    let mut app = open_stream(&server, "/v2/me/resources/temperature?subscribe=true", Some(&user.token)).await;
    let body = json!({"values": [{"key": "temperature", "value": 21, "geo": {"lat": 41.39, "long": 2.15}}]});
    let r = server.client.post(server.url(&format!("/v2/things/{}", thing.token))).json(&body).send().await;
    assert_eq!(r.expect("write").status(), StatusCode::CREATED);
    let chunk = device.next().await.expect("the write");
    // The official Python library reads a chunk up to its first `]`: that must be the whole write.
    let text = chunk.to_string();
    assert_eq!(text.find(']'), Some(text.len() - 1), "no nested array in {text}");
    let items = chunk.as_array().expect("an array");
    assert_eq!(items.len(), 1, "the item as written, no extra $geo item: {chunk}");
    assert_eq!(items[0]["key"], "temperature");
    assert_eq!(items[0]["geo"], json!({"lat": 41.39, "long": 2.15}));
    let a = app.next_data().await.expect("app item");
    assert_eq!((a[0]["value"].clone(), a[0]["geo"]["lat"].clone()), (json!(21), json!(41.39)), "{a}");
    // `$geo` was recorded all the same.
    let (status, geo) = server.read(&thing, "$geo", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(geo[0]["value"], json!({"type": "Point", "coordinates": [2.15, 41.39]}));
    server.stop().await;
}
