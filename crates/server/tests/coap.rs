//! The CoAP side (RFC 7252, 7641, 7959) with the tests' own CoAP peer (coap_support, on
//! coap-lite) against the real server on UDP port 0: activation, writes and reads in the shapes
//! of the official thethings.iO CoAP SDK (no Content-Format, the query inside the last Uri-Path
//! segment) and with real Uri-Query options, keys, magic resources, errors as the JSON envelope
//! with the right codes, non-confirmable requests, ping, deduplication of retransmissions,
//! separate responses, Observe (delivery of every write, keep-alives, Reset, deregistration,
//! limits, a deleted thing), block-wise transfers both ways, the body limit, per-address rate
//! limits, bounded answers to unauthenticated peers, garbage datagrams, and kill -9 after a 2.01.

mod coap_support;
mod common;
mod mqtt_support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use coap_support::*;
use common::{TestServer, TestThing, coap_on, mqtt_on};

/// Values of `key` newest first, read over HTTPS (empty for a key never written).
async fn values(server: &TestServer, thing: &TestThing, key: &str) -> Vec<Value> {
    let (status, v) = server.read(thing, key, "?limit=1000").await;
    if status == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "read {key}: {v}");
    v.as_array().expect("items").iter().map(|i| i["value"].clone()).collect()
}

/// A server with CoAP on (adjusted by `adjust`), a thing, and a peer.
async fn setup(adjust: impl FnOnce(&mut thingline::config::ConfigArgs)) -> (TestServer, TestThing, Peer) {
    let server = TestServer::start_with(|a| {
        coap_on(a);
        adjust(a);
    })
    .await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("temperature", true)]).await;
    let peer = Peer::new(server.coap.expect("the CoAP listener")).await;
    (server, thing, peer)
}

fn write_path(thing: &TestThing) -> String {
    format!("v2/things/{}", thing.token)
}

fn read_path(thing: &TestThing, key: &str) -> String {
    format!("v2/things/{}/resources/{key}", thing.token)
}

/// Registers on `path` from `peer` until the server accepts (a slot freed asynchronously), within
/// [`WAIT`]; each refusal must be 4.29. Returns the token.
async fn observe_when_free(peer: &mut Peer, path: &str) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (token, r) = peer.observe(path).await;
        if r.code == code::CONTENT {
            assert_eq!(r.json(), json!({"status": "success", "message": "subscribed"}));
            return token;
        }
        r.assert_error(code::TOO_MANY_REQUESTS, 429);
        assert!(Instant::now() < deadline, "the observer slot was not freed within {WAIT:?}");
        // Nothing to wait on: the slot is freed inside the server. Look again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn activation_answers_2_01_with_the_token_and_refuses_used_and_unknown_codes() {
    let server = TestServer::start_coap().await;
    let panel = server.panel_token().await;
    let product = server.product(&panel, &[]).await;
    let codes = server.codes(&panel, &product, 2).await;
    let mut peer = Peer::new(server.coap.expect("coap")).await;

    // The SDK's activation: confirmable, no Content-Format, Uri-Path v2/things.
    let body = serde_json::to_vec(&json!({"activationCode": codes[0]})).expect("json");
    let r = peer.request(Req::post("v2/things", body.clone())).await;
    let v = r.assert_json(code::CREATED);
    assert_eq!(v["status"], "created", "{v}");
    assert_eq!(v["message"], "thing activated", "{v}");
    let token = v["thingToken"].as_str().expect("thingToken");
    assert_eq!(token.len(), 43, "firmware expects 43 characters: {token}");
    let id = v["thingId"].as_str().expect("thingId");
    assert!(!id.is_empty());
    // The token is the thing's, on every protocol.
    let thing = TestThing { token: token.to_owned(), id: id.to_owned(), product_id: product.clone() };
    assert_eq!(server.write(&thing, json!([{"key": "t", "value": 1}])).await, StatusCode::CREATED);

    // A code is single-use; an unknown code and a body without one are errors.
    peer.request(Req::post("v2/things", body)).await.assert_error(code::CONFLICT, 409);
    let unknown = serde_json::to_vec(&json!({"activationCode": "no-such-code"})).expect("json");
    peer.request(Req::post("v2/things", unknown)).await.assert_error(code::NOT_FOUND, 404);
    peer.request(Req::post("v2/things", b"{}".to_vec())).await.assert_error(code::BAD_REQUEST, 400);

    // A trailing slash (an empty last Uri-Path segment) is the same path; non-confirmable works.
    let body = serde_json::to_vec(&json!({"activationCode": codes[1]})).expect("json");
    let r = peer.request(Req::post("v2/things/", body).non()).await;
    assert_eq!(r.kind, Kind::Non, "a NON request is answered with a NON response");
    assert_eq!(r.assert_json(code::CREATED)["thingToken"].as_str().map(str::len), Some(43));
    server.stop().await;
}

#[tokio::test]
async fn writes_and_reads_in_the_shapes_of_the_official_sdk() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let t = &thing.token;

    // The SDK's write: POST v2/things/{token}? (a trailing `?`), confirmable, no Content-Format.
    let r = peer
        .request(Req::post(&format!("v2/things/{t}?"), values_body(json!([{"key": "voltage", "value": "3.30"}]))))
        .await;
    assert_eq!(r.assert_json(code::CREATED), json!({"status": "created"}));
    // Stored exactly as sent (a number sent as a string stays a string), read over HTTPS.
    assert_eq!(values(&server, &thing, "voltage").await, vec![json!("3.30")]);

    // Five values of 2015, and the SDK's paging with the query inside the last segment.
    let items: Vec<Value> =
        (1..=5).map(|i| json!({"key": "voltage", "value": i, "datetime": format!("2015020{i}120000")})).collect();
    let r = peer.request(Req::post(&write_path(&thing), values_body(json!(items)))).await;
    assert_eq!(r.assert_json(code::CREATED), json!({"status": "created"}));
    let page_path =
        |end: &str| format!("{}?limit=3&endDate={end}&startDate=20150101000000", read_path(&thing, "voltage"));
    let r = peer.request(Req::get(&page_path("20150401000000"))).await;
    assert_eq!(r.kind, Kind::Ack, "a read is piggybacked");
    let page = r.assert_json(code::CONTENT);
    let got: Vec<&Value> = page.as_array().expect("an array").iter().map(|i| &i["value"]).collect();
    assert_eq!(got, [&json!(5), &json!(4), &json!(3)], "newest first: {page}");
    assert_eq!(page[0]["key"], "voltage");
    assert_eq!(page[0]["datetime"], "2015-02-05T12:00:00.000Z");
    // The next page ends at the oldest datetime received.
    let oldest = page[2]["datetime"].as_str().expect("datetime");
    let next = peer.request(Req::get(&page_path(oldest))).await.assert_json(code::CONTENT);
    let got: Vec<&Value> = next.as_array().expect("an array").iter().map(|i| &i["value"]).collect();
    assert_eq!(got, [&json!(2), &json!(1)], "{next}");
    // Real Uri-Query options read the same.
    let r = peer
        .request(
            Req::get(&read_path(&thing, "voltage"))
                .query("limit=3")
                .query("endDate=20150401000000")
                .query("startDate=20150101000000"),
        )
        .await;
    assert_eq!(r.assert_json(code::CONTENT), page);
    // The SDK's `voltage?limit=15` (newest first, the value written now first).
    let all = peer.request(Req::get(&format!("{}?limit=15", read_path(&thing, "voltage")))).await;
    let all = all.assert_json(code::CONTENT);
    let got: Vec<&Value> = all.as_array().expect("an array").iter().map(|i| &i["value"]).collect();
    assert_eq!(got, [&json!("3.30"), &json!(5), &json!(4), &json!(3), &json!(2), &json!(1)]);
    // Without a query: the newest one.
    let one = peer.request(Req::get(&read_path(&thing, "voltage"))).await.assert_json(code::CONTENT);
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one[0]["value"], "3.30");

    // Keys and the latest of all keys.
    let r = peer.request(Req::post(&write_path(&thing), values_body(json!([{"key": "door", "value": "open"}])))).await;
    r.assert_json(code::CREATED);
    let keys = peer.request(Req::get(&format!("v2/things/{t}/resources"))).await.assert_json(code::CONTENT);
    assert_eq!(keys, json!({"resources": ["door", "voltage"]}));
    let latest = peer.request(Req::get(&format!("v2/things/{t}/all_resources?limit=2"))).await;
    let latest = latest.assert_json(code::CONTENT);
    let voltage = latest.as_array().expect("array").iter().find(|e| e["key"] == "voltage").expect("voltage");
    let got: Vec<&Value> = voltage["values"].as_array().expect("values").iter().map(|i| &i["value"]).collect();
    assert_eq!(got, [&json!("3.30"), &json!(5)], "{latest}");

    // The description: PUT a plain object, read back with a normal read.
    let desc = json!({"model": "TL-1", "fw": "1.2.3"});
    let r = peer.request(Req::put(&read_path(&thing, "description"), serde_json::to_vec(&desc).expect("json"))).await;
    assert_eq!(r.assert_json(code::CHANGED), json!({"status": "success"}));
    let back = peer.request(Req::get(&read_path(&thing, "description"))).await.assert_json(code::CONTENT);
    assert_eq!(back[0]["value"], desc);

    // store=false: answered 2.01, nothing stored.
    let r = peer
        .request(Req::post(
            &format!("v2/things/{t}?store=false"),
            values_body(json!([{"key": "transient", "value": 1}])),
        ))
        .await;
    r.assert_json(code::CREATED);
    assert!(values(&server, &thing, "transient").await.is_empty(), "store=false stored the value");
    server.stop().await;
}

#[tokio::test]
async fn content_formats_json_and_text_are_read_as_json_and_others_are_4_15() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let path = write_path(&thing);
    for (cf, value) in [(50u16, "json"), (0, "text")] {
        let r = peer
            .request(Req::post(&path, values_body(json!([{"key": "cf", "value": value}]))).content_format(cf))
            .await;
        assert_eq!(r.assert_json(code::CREATED), json!({"status": "created"}), "Content-Format {cf}");
    }
    assert_eq!(values(&server, &thing, "cf").await, vec![json!("text"), json!("json")]);
    // application/octet-stream and application/cbor are not JSON.
    for cf in [42u16, 60] {
        let r =
            peer.request(Req::post(&path, values_body(json!([{"key": "cf", "value": cf}]))).content_format(cf)).await;
        r.assert_error(code::UNSUPPORTED_CONTENT_FORMAT, 415);
    }
    assert_eq!(values(&server, &thing, "cf").await.len(), 2, "a refused write stored nothing");
    // Answers are JSON: an Accept of JSON or text is served, another is 4.06 Not Acceptable.
    let read = Req::get(&read_path(&thing, "cf"));
    assert_eq!(
        peer.request(read.clone().uint_option(opt::ACCEPT, 50)).await.assert_json(code::CONTENT)[0]["value"],
        "text"
    );
    let r = peer.request(read.uint_option(opt::ACCEPT, 42)).await;
    r.assert_error(code::NOT_ACCEPTABLE, 406);
    server.stop().await;
}

#[tokio::test]
async fn magic_geo_and_settings_as_on_http() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let path = write_path(&thing);
    let point = json!({"type": "Point", "coordinates": [2.154007, 41.390205]});
    for input in [
        json!({"key": "$geo", "value": [2.154007, 41.390205]}),
        json!({"key": "$geo", "value": null, "geo": {"lat": "41.390205", "long": "2.154007"}}),
        json!({"key": "$geo", "value": point}),
    ] {
        let r = peer.request(Req::post(&path, values_body(json!([input])))).await;
        r.assert_json(code::CREATED);
        let back = peer.request(Req::get(&read_path(&thing, "$geo"))).await.assert_json(code::CONTENT);
        assert_eq!(back[0]["key"], "$geo");
        assert_eq!(back[0]["value"], point, "{input} reads back as a GeoJSON Point");
    }
    let r = peer.request(Req::post(&path, values_body(json!([{"key": "$geo", "value": [200.0, 41.0]}])))).await;
    r.assert_error(code::BAD_REQUEST, 400);

    let settings = json!({"name": "My Thing", "foo": "bar"});
    peer.request(Req::post(&path, values_body(json!([{"key": "$settings", "value": settings}])))).await;
    let back = peer.request(Req::get(&read_path(&thing, "$settings"))).await.assert_json(code::CONTENT);
    assert_eq!(back, json!([{"key": "$settings", "value": settings}]));
    let r = peer.request(Req::post(&path, values_body(json!([{"key": "$settings.name", "value": "Renamed"}])))).await;
    r.assert_json(code::CREATED);
    let back = peer.request(Req::get(&read_path(&thing, "$settings.name"))).await.assert_json(code::CONTENT);
    assert_eq!(back, json!([{"key": "$settings.name", "value": "Renamed"}]));
    // What HTTPS reads is what CoAP wrote.
    let (_, body) = server.read(&thing, "$settings", "").await;
    assert_eq!(body[0]["value"], json!({"name": "Renamed", "foo": "bar"}));
    peer.request(Req::get(&read_path(&thing, "$settings.missing"))).await.assert_error(code::NOT_FOUND, 404);
    server.stop().await;
}

#[tokio::test]
async fn errors_are_the_json_envelope_with_the_matching_code() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let t = &thing.token;
    let unknown = "A".repeat(43);
    let value = values_body(json!([{"key": "temperature", "value": 1}]));

    // Unknown thing, never-written key, unknown path: 4.04.
    peer.request(Req::post(&format!("v2/things/{unknown}"), value.clone())).await.assert_error(code::NOT_FOUND, 404);
    peer.request(Req::get(&format!("v2/things/{unknown}/resources/temperature")))
        .await
        .assert_error(code::NOT_FOUND, 404);
    peer.request(Req::get(&read_path(&thing, "never"))).await.assert_error(code::NOT_FOUND, 404);
    peer.request(Req::get("v2/nothing/here")).await.assert_error(code::NOT_FOUND, 404);
    peer.request(Req::get("")).await.assert_error(code::NOT_FOUND, 404);

    // Bad input: 4.00, with a message.
    let path = write_path(&thing);
    let v = peer.request(Req::post(&path, b"{\"values\":[".to_vec())).await.assert_error(code::BAD_REQUEST, 400);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("line") || m.contains("column")), "where: {v}");
    peer.request(Req::post(&path, b"{\"values\":3}".to_vec())).await.assert_error(code::BAD_REQUEST, 400);
    peer.request(Req::post(&path, Vec::new())).await.assert_error(code::BAD_REQUEST, 400);
    let magic = values_body(json!([{"key": "$unknown", "value": 1}]));
    peer.request(Req::post(&path, magic)).await.assert_error(code::BAD_REQUEST, 400);
    peer.request(Req::post(&path, value.clone())).await.assert_json(code::CREATED);
    for bad in ["limit=0", "limit=abc", "limit=-3", "startDate=20150230000000", "endDate=yesterday"] {
        let r = peer.request(Req::get(&format!("{}?{bad}", read_path(&thing, "temperature")))).await;
        r.assert_error(code::BAD_REQUEST, 400);
        let r = peer.request(Req::get(&read_path(&thing, "temperature")).query(bad)).await;
        r.assert_error(code::BAD_REQUEST, 400);
    }
    let r = peer.request(Req::get(&format!("v2/things/{t}?keepAlive=soon")).observe(0)).await;
    r.assert_error(code::BAD_REQUEST, 400);
    assert!(r.observe().is_none(), "a refused registration carries no Observe option");

    // A wrong method on a known path: 4.05.
    peer.request(Req::new(code::DELETE, &path)).await.assert_error(code::METHOD_NOT_ALLOWED, 405);
    peer.request(Req::get("v2/things")).await.assert_error(code::METHOD_NOT_ALLOWED, 405);
    peer.request(Req::put(&read_path(&thing, "temperature"), value.clone()))
        .await
        .assert_error(code::METHOD_NOT_ALLOWED, 405);

    // An unknown critical option (odd number): 4.02 Bad Option; an unknown elective one is ignored.
    let r = peer.request(Req::post(&path, value.clone()).option(2053, b"x".to_vec())).await;
    assert_eq!(r.code_str(), "4.02", "{:?}", r.text());
    assert_eq!(r.json()["status"], "error");
    let r = peer.request(Req::post(&path, value.clone()).option(2054, b"x".to_vec())).await;
    r.assert_json(code::CREATED);
    assert_eq!(values(&server, &thing, "temperature").await.len(), 2, "only the accepted writes stored");
    server.stop().await;
}

#[tokio::test]
async fn non_confirmable_requests_get_non_responses() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let (sent, r) = peer
        .exchange(Req::post(&write_path(&thing), values_body(json!([{"key": "temperature", "value": 21}]))).non())
        .await;
    assert_eq!(r.kind, Kind::Non);
    assert!(!r.separate, "no empty ACK for a NON request");
    assert_eq!(r.token, sent.token);
    assert_eq!(r.assert_json(code::CREATED), json!({"status": "created"}));
    let r = peer.request(Req::get(&read_path(&thing, "temperature")).non()).await;
    assert_eq!(r.kind, Kind::Non);
    assert_eq!(r.assert_json(code::CONTENT)[0]["value"], 21);
    let r = peer.request(Req::get(&read_path(&thing, "nothing")).non()).await;
    assert_eq!(r.kind, Kind::Non);
    r.assert_error(code::NOT_FOUND, 404);
    assert_eq!(values(&server, &thing, "temperature").await, vec![json!(21)]);
    // A non-confirmable Observe registration.
    let (sent, r) = peer.exchange(Req::get(&format!("{}?keepAlive=60000", write_path(&thing))).observe(0).non()).await;
    assert_eq!(r.kind, Kind::Non);
    assert!(r.observe().is_some(), "the registration's answer carries Observe");
    assert_eq!(r.json(), json!({"status": "success", "message": "subscribed"}));
    assert_eq!(server.write(&thing, json!([{"key": "temperature", "value": 22}])).await, StatusCode::CREATED);
    assert_eq!(peer.data_notification(&sent.token, WAIT).await.json()[0]["value"], 22);
    server.stop().await;
}

#[tokio::test]
async fn an_empty_confirmable_message_gets_a_reset() {
    let (server, _thing, mut peer) = setup(|_| {}).await;
    peer.send_raw(&[0x40, 0x00, 0x12, 0x34]).await;
    let r = peer.wait(WAIT, |r| r.mid == 0x1234).await.expect("an answer to the ping");
    assert_eq!(r.kind, Kind::Rst, "CoAP ping is answered with a Reset");
    assert!(r.is_empty() && r.token.is_empty() && r.payload().is_empty());
    // An empty NON, ACK or RST from a client is not answered.
    for first in [0x50u8, 0x60, 0x70] {
        peer.send_raw(&[first, 0x00, 0x22, 0x22]).await;
    }
    peer.send_raw(&[0x40, 0x00, 0x33, 0x33]).await;
    let r = peer.wait(WAIT, |r| r.mid == 0x3333).await.expect("an answer to the second ping");
    assert_eq!(r.kind, Kind::Rst);
    assert!(peer.drain(Duration::from_millis(300), WAIT).await.is_empty(), "nothing answered the empty NON/ACK/RST");
    server.stop().await;
}

#[tokio::test]
async fn a_retransmitted_write_is_answered_again_and_stored_once() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let path = write_path(&thing);

    // The answer was lost: the client sends the same datagram (same message id) again.
    let sent = peer.send(&Req::post(&path, values_body(json!([{"key": "seq", "value": "first"}])))).await;
    let first = peer.answer_to(&sent, Kind::Con, Instant::now() + WAIT).await.expect("answer");
    assert_eq!(first.assert_json(code::CREATED), json!({"status": "created"}));
    peer.send_raw(&sent.bytes).await;
    let again = peer.answer_to(&sent, Kind::Con, Instant::now() + WAIT).await.expect("the answer again");
    assert_eq!(again.kind, Kind::Ack);
    assert_eq!(again.mid, sent.mid);
    assert_eq!((again.code, again.payload()), (first.code, first.payload()), "the same answer, from the cache");

    // Retransmissions that arrive while the first copy runs.
    let sent = peer.send(&Req::post(&path, values_body(json!([{"key": "seq", "value": "second"}])))).await;
    peer.send_raw(&sent.bytes).await;
    peer.send_raw(&sent.bytes).await;
    let r = peer.answer_to(&sent, Kind::Con, Instant::now() + WAIT).await.expect("answer");
    r.assert_json(code::CREATED);
    // Every copy's answer (or none) has arrived before the read.
    peer.drain(Duration::from_millis(300), WAIT).await;
    assert_eq!(values(&server, &thing, "seq").await, vec![json!("second"), json!("first")], "each write stored once");

    // The same message id from another endpoint is another exchange.
    let mut other = Peer::new(server.coap.expect("coap")).await;
    other.send_raw(&sent.bytes).await;
    let r = other.answer_to(&sent, Kind::Con, Instant::now() + WAIT).await.expect("answer to the other endpoint");
    r.assert_json(code::CREATED);
    assert_eq!(values(&server, &thing, "seq").await.len(), 3);

    // A re-registration (same token, a new message id) retransmitted once is still one
    // observer: one notification per write.
    let (token, _) = peer.observe(&format!("{path}?keepAlive=60000")).await;
    let registration = Req::get(&format!("{path}?keepAlive=60000")).observe(0).token(&token);
    let again = peer.send(&registration).await;
    peer.send_raw(&again.bytes).await;
    peer.answer_to(&again, Kind::Con, Instant::now() + WAIT).await.expect("answer");
    peer.drain(Duration::from_millis(300), WAIT).await;
    assert_eq!(server.write(&thing, json!([{"key": "seq", "value": "fourth"}])).await, StatusCode::CREATED);
    let n = peer.data_notification(&token, WAIT).await;
    assert_eq!(n.json()[0]["value"], "fourth");
    let extra = peer.try_notification(&token, Duration::from_millis(500)).await;
    assert!(extra.is_none(), "a second notification of one write: {extra:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_answer_follows_an_empty_ack_as_a_confirmable_response() {
    // 0: every confirmable request is acknowledged at once and answered separately.
    let (server, thing, mut peer) = setup(|a| a.coap_separate_after = Some(0)).await;
    let path = write_path(&thing);
    let (sent, r) = peer.exchange(Req::post(&path, values_body(json!([{"key": "n", "value": 1}])))).await;
    assert!(r.separate, "an empty ACK came first");
    assert_eq!(r.kind, Kind::Con, "a separate response is confirmable");
    assert_eq!(r.token, sent.token);
    assert_eq!(r.assert_json(code::CREATED), json!({"status": "created"}));
    assert_eq!(values(&server, &thing, "n").await, vec![json!(1)], "committed before the answer");
    // Acknowledged: never sent again.
    let again = peer.wait(Duration::from_secs(7), |x| x.mid == r.mid).await;
    assert!(again.is_none(), "an acknowledged separate response was retransmitted: {again:?}");

    // Not acknowledged: retransmitted with the same message id (RFC 7252 §4.2).
    peer.auto_ack = false;
    let sent = peer.send(&Req::get(&read_path(&thing, "n"))).await;
    let token = sent.token.clone();
    let empty = peer.wait(WAIT, |x| x.kind == Kind::Ack && x.mid == sent.mid).await.expect("the empty ACK");
    assert!(empty.is_empty());
    let first = peer.wait(WAIT, |x| x.kind == Kind::Con && x.token == token).await.expect("the separate response");
    assert_eq!(first.assert_json(code::CONTENT)[0]["value"], 1);
    let mid = first.mid;
    let second = peer.wait(Duration::from_secs(10), |x| x.mid == mid).await.expect("a retransmission");
    assert_eq!(second.kind, Kind::Con);
    assert_eq!((second.token.as_slice(), second.payload()), (first.token.as_slice(), first.payload()));
    let gap = second.at - first.at;
    assert!(gap >= Duration::from_millis(1500), "retransmitted after {gap:?}, before ACK_TIMEOUT");
    peer.ack(mid).await;

    // A NON request gets a NON answer, without an empty ACK.
    let r = peer.request(Req::get(&read_path(&thing, "n")).non()).await;
    assert_eq!(r.kind, Kind::Non);
    assert!(!r.separate);
    server.stop().await;
}

#[tokio::test]
async fn observe_delivers_every_write_from_every_protocol_after_subscribed() {
    let server = TestServer::start_with(|a| {
        coap_on(a);
        mqtt_on(a);
    })
    .await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[("temperature", true)]).await;
    let coap = server.coap.expect("coap");
    let mut peer = Peer::new(coap).await;

    // The SDK's registration: the keepAlive inside the last segment.
    let (token, first) = peer.observe(&format!("v2/things/{}?keepAlive=10000", thing.token)).await;
    assert_eq!(first.kind, Kind::Ack);
    assert_eq!(first.code_str(), "2.05");
    let mut seq = first.observe().expect("the registration's answer carries an Observe option");
    assert_eq!(first.json(), json!({"status": "success", "message": "subscribed"}));

    let mut check = |n: &Reply, what: &str| -> Value {
        assert_eq!(n.code_str(), "2.05", "{what}: {:?}", n.text());
        assert!(matches!(n.kind, Kind::Con | Kind::Non), "{what}: {:?}", n.kind);
        let o = n.observe().unwrap_or_else(|| panic!("{what}: a notification without an Observe option"));
        assert!(observe_newer(seq, o), "{what}: Observe {o} after {seq}");
        seq = o;
        let v = n.json();
        let items = v.as_array().unwrap_or_else(|| panic!("{what}: not an array: {v}"));
        assert!(items.iter().all(|i| i["key"].is_string() && i["datetime"].is_string()), "{what}: {v}");
        v
    };

    // HTTPS.
    assert_eq!(server.write(&thing, json!([{"key": "LED", "value": "ON"}])).await, StatusCode::CREATED);
    let n = peer.data_notification(&token, WAIT).await;
    let v = check(&n, "HTTPS write");
    assert_eq!((v[0]["key"].as_str(), &v[0]["value"]), (Some("LED"), &json!("ON")));

    // CoAP, from another device.
    let mut writer = Peer::new(coap).await;
    let r = writer
        .request(Req::post(
            &format!("v2/things/{}?", thing.token),
            values_body(json!([{"key": "fun", "value": "9000"}])),
        ))
        .await;
    r.assert_json(code::CREATED);
    let v = check(&peer.data_notification(&token, WAIT).await, "CoAP write");
    assert_eq!(v[0]["value"], "9000");

    // MQTT.
    let (mut device, _) =
        mqtt_support::Client::connect(server.mqtt.expect("mqtt"), mqtt_support::Opts::new("ESP8266Client")).await;
    device.publish_acked(&mqtt_support::thing_topic(&thing.token), r#"{"values":[{"key":"m","value":7}]}"#).await;
    let v = check(&peer.data_notification(&token, WAIT).await, "MQTT write");
    assert_eq!(v[0]["value"], 7);

    // An app user's write to the thing.
    let app = server.app(&panel, &["temperature"]).await;
    let user = server.app_user(&app, "user@example.com").await;
    server.link(&user, &thing.token).await;
    let app_path = format!("/v2/me/resources/temperature/{}", thing.id);
    let (status, v) = server.post_values(&app_path, &user, json!([{"value": 15}])).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let v = check(&peer.data_notification(&token, WAIT).await, "app write");
    assert_eq!((v[0]["key"].as_str(), &v[0]["value"]), (Some("temperature"), &json!(15)));
    // broadcast=false (app or device) reaches no observer: the next notification is the next
    // broadcast write.
    let (status, _) = server.post_values(&format!("{app_path}?broadcast=false"), &user, json!([{"value": 16}])).await;
    assert_eq!(status, StatusCode::CREATED);
    let quiet = values_body(json!([{"key": "quiet", "value": 1}]));
    let r = writer.request(Req::post(&format!("v2/things/{}?broadcast=false", thing.token), quiet)).await;
    r.assert_json(code::CREATED);
    assert_eq!(server.write(&thing, json!([{"key": "loud", "value": 1}])).await, StatusCode::CREATED);
    let v = check(&peer.data_notification(&token, WAIT).await, "after broadcast=false");
    assert_eq!(v[0]["key"], "loud", "a broadcast=false write was delivered: {v}");

    // A batch of writes arrives in order, each with a newer Observe number.
    for i in 0..10 {
        assert_eq!(server.write(&thing, json!([{"key": "i", "value": i}])).await, StatusCode::CREATED);
    }
    for i in 0..10 {
        let v = check(&peer.data_notification(&token, WAIT).await, "batch");
        assert_eq!(v[0]["value"], i);
    }
    // A write of several values is one notification with every item.
    let w = json!([{"key": "a", "value": 1}, {"key": "b", "value": 2}]);
    assert_eq!(server.write(&thing, w).await, StatusCode::CREATED);
    let v = check(&peer.data_notification(&token, WAIT).await, "two values");
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    server.stop().await;
}

#[tokio::test]
async fn keep_alives_are_confirmable_empty_objects_and_writes_carry_a_con_each_interval() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let (token, first) = peer.observe(&format!("{}?keepAlive=1000", write_path(&thing))).await;
    assert_eq!(first.json(), json!({"status": "success", "message": "subscribed"}));
    let mut seq = first.observe().expect("Observe");
    let subscribed = Instant::now();
    for _ in 0..2 {
        let ka = peer.notification(&token, Duration::from_secs(5)).await;
        assert_eq!(ka.text(), "{}", "an idle keepAlive brings {{}}");
        assert_eq!(ka.kind, Kind::Con, "keep-alives are confirmable");
        assert_eq!(ka.code_str(), "2.05");
        let o = ka.observe().expect("Observe on a keep-alive");
        assert!(observe_newer(seq, o));
        seq = o;
    }
    assert!(
        subscribed.elapsed() >= Duration::from_millis(1800),
        "two keep-alives {:?} after subscribing",
        subscribed.elapsed()
    );

    // Writes for three seconds, each read as it arrives: every one is delivered, in order, and at
    // least one notification per keepAlive interval is confirmable (so that a vanished observer
    // is noticed).
    let start = Instant::now();
    let mut cons = vec![start];
    let mut written = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(server.write(&thing, json!([{"key": "w", "value": written}])).await, StatusCode::CREATED);
        loop {
            let n = peer.notification(&token, WAIT).await;
            if n.kind == Kind::Con {
                cons.push(n.at);
            }
            if n.text() != "{}" {
                assert_eq!(n.json()[0]["value"], written, "in order");
                break;
            }
        }
        written += 1;
    }
    cons.push(Instant::now());
    let widest = cons.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(
        widest <= Duration::from_millis(2500),
        "{} confirmable notifications for {written} writes in 3 s; the widest gap without one {widest:?}",
        cons.len() - 2
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reset_ends_the_observation_and_frees_its_slot() {
    let (server, thing, mut peer) = setup(|a| a.realtime_streams_per_thing = Some(1)).await;
    let coap = server.coap.expect("coap");
    let path = format!("{}?keepAlive=60000", write_path(&thing));
    peer.auto_ack = false;
    let (token, first) = peer.observe(&path).await;
    first.assert_json(code::CONTENT);
    // The slot is taken.
    let mut other = Peer::new(coap).await;
    let (_, refused) = other.observe(&path).await;
    refused.assert_error(code::TOO_MANY_REQUESTS, 429);

    assert_eq!(server.write(&thing, json!([{"key": "k", "value": 1}])).await, StatusCode::CREATED);
    let n = peer.data_notification(&token, WAIT).await;
    // The device forgot the observation: it answers the notification with a Reset.
    peer.rst(n.mid).await;
    let t2 = observe_when_free(&mut other, &path).await;
    assert_eq!(server.write(&thing, json!([{"key": "k", "value": 2}])).await, StatusCode::CREATED);
    assert_eq!(other.data_notification(&t2, WAIT).await.json()[0]["value"], 2);
    let late = peer.try_notification(&token, Duration::from_secs(1)).await;
    assert!(late.is_none(), "a notification after the Reset: {late:?}");
    server.stop().await;
}

#[tokio::test]
async fn observe_1_with_the_same_token_deregisters() {
    let (server, thing, mut peer) = setup(|a| a.realtime_streams_per_thing = Some(1)).await;
    let path = format!("{}?keepAlive=60000", write_path(&thing));
    let (token, _) = peer.observe(&path).await;
    let r = peer.request(Req::get(&path).observe(1).token(&token)).await;
    assert_eq!(r.code_str(), "2.05", "{:?}", r.text());
    assert!(r.observe().is_none(), "the deregistration's answer carries no Observe option");
    assert_eq!(server.write(&thing, json!([{"key": "k", "value": 1}])).await, StatusCode::CREATED);
    let late = peer.try_notification(&token, Duration::from_secs(1)).await;
    assert!(late.is_none(), "a notification after deregistering: {late:?}");
    // The slot is free.
    let mut other = Peer::new(server.coap.expect("coap")).await;
    observe_when_free(&mut other, &path).await;
    server.stop().await;
}

#[tokio::test]
async fn observers_are_capped_per_thing_and_per_address() {
    // Per thing: THINGLINE_REALTIME_STREAMS_PER_THING (default 10).
    let (server, thing, mut peer) = setup(|a| a.coap_observers_per_address = Some(12)).await;
    let coap = server.coap.expect("coap");
    let path = format!("{}?keepAlive=60000", write_path(&thing));
    let mut tokens = Vec::new();
    for i in 0..10 {
        let (t, r) = peer.observe(&path).await;
        assert_eq!(r.json(), json!({"status": "success", "message": "subscribed"}), "observer {i}");
        tokens.push(t);
    }
    let (_, r) = peer.observe(&path).await;
    r.assert_error(code::TOO_MANY_REQUESTS, 429);
    assert!(r.observe().is_none(), "a refused registration carries no Observe option");
    // Every one of the ten gets a write.
    assert_eq!(server.write(&thing, json!([{"key": "k", "value": 1}])).await, StatusCode::CREATED);
    for t in &tokens {
        assert_eq!(peer.data_notification(t, WAIT).await.json()[0]["value"], 1);
    }

    // Per address: 12 here; this address has 10 on the first thing.
    let panel = server.panel_token().await;
    let mut other_things = Vec::new();
    for _ in 0..3 {
        other_things.push(server.thing(&panel, &[]).await);
    }
    for t in &other_things[..2] {
        let (_, r) = peer.observe(&format!("{}?keepAlive=60000", write_path(t))).await;
        r.assert_json(code::CONTENT);
    }
    let (_, r) = peer.observe(&format!("{}?keepAlive=60000", write_path(&other_things[2]))).await;
    r.assert_error(code::TOO_MANY_REQUESTS, 429);
    assert!(r.observe().is_none(), "a refused registration carries no Observe option");
    // Another address is not affected.
    let mut elsewhere = Peer::bind("127.0.0.2", coap).await;
    let (_, r) = elsewhere.observe(&format!("{}?keepAlive=60000", write_path(&other_things[2]))).await;
    assert_eq!(r.json(), json!({"status": "success", "message": "subscribed"}));
    server.stop().await;
}

#[tokio::test]
async fn past_the_server_wide_observer_cap_registrations_get_5_03() {
    let (server, thing, mut peer) = setup(|a| a.coap_max_observers = Some(2)).await;
    let coap = server.coap.expect("coap");
    let path = format!("{}?keepAlive=60000", write_path(&thing));
    let (first, _) = peer.observe(&path).await;
    peer.observe(&path).await.1.assert_json(code::CONTENT);
    let mut elsewhere = Peer::bind("127.0.0.2", coap).await;
    let (_, r) = elsewhere.observe(&path).await;
    r.assert_error(code::SERVICE_UNAVAILABLE, 503);
    assert!(r.observe().is_none());
    // A deregistration makes room.
    let r = peer.request(Req::get(&path).observe(1).token(&first)).await;
    assert_eq!(r.code_str(), "2.05");
    observe_when_free(&mut elsewhere, &path).await;
    server.stop().await;
}

#[tokio::test]
async fn the_server_date_answers_a_thing_token_only() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let t = &thing.token;
    let r = peer.request(Req::get(&format!("v2/utils/date?thingToken={t}&format=unix_timestamp"))).await;
    let v = r.assert_json(code::CONTENT);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((v["date"].as_i64().expect("seconds") - now).abs() < 60, "{v}");
    let r = peer.request(Req::get("v2/utils/date").query(&format!("thingToken={t}")).query("format=UTC")).await;
    let v = r.assert_json(code::CONTENT);
    assert!(v["date"].as_str().is_some_and(|d| d.ends_with('Z')), "{v}");
    peer.request(Req::get("v2/utils/date")).await.assert_error(code::UNAUTHORIZED, 401);
    let unknown = "C".repeat(43);
    peer.request(Req::get(&format!("v2/utils/date?thingToken={unknown}"))).await.assert_error(code::NOT_FOUND, 404);
    server.stop().await;
}

#[tokio::test]
async fn deleting_the_thing_ends_its_observations_with_4_04() {
    let server = TestServer::start_coap().await;
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let mut peer = Peer::new(server.coap.expect("coap")).await;
    let (token, _) = peer.observe(&format!("{}?keepAlive=60000", write_path(&thing))).await;
    let r = server.req(Method::DELETE, &format!("/v2/panel/things/{}", thing.id), &panel).send().await.expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    let n = peer.notification(&token, WAIT).await;
    n.assert_error(code::NOT_FOUND, 404);
    assert!(n.observe().is_none(), "the final 4.04 carries no Observe option");
    // The token reaches nothing any more.
    let r = peer.request(Req::post(&write_path(&thing), values_body(json!([{"key": "k", "value": 1}])))).await;
    r.assert_error(code::NOT_FOUND, 404);
    server.stop().await;
}

#[tokio::test]
async fn a_100_kb_settings_document_goes_in_block1_and_out_block2_byte_for_byte() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let doc = json!({"name": "big", "blob": noise(100 * 1024, 1)});
    let body = values_body(json!([{"key": "$settings", "value": doc}]));
    assert!(body.len() > 100 * 1024);

    let out = peer.post_block1(Req::post(&write_path(&thing), Vec::new()), &body, 6, true).await;
    assert_eq!(out.continues.len(), body.len().div_ceil(1024) - 1, "2.31 Continue for every block but the last");
    assert_eq!(out.last.assert_json(code::CREATED), json!({"status": "created"}));
    if let Some(b) = out.last.block1() {
        assert_eq!((b.num, b.more), (out.last_num, false), "the final answer's Block1");
    }
    let (_, stored) = server.read(&thing, "$settings", "").await;
    assert_eq!(stored[0]["value"], doc, "HTTPS reads what the blocks carried");

    // Read back: more than one datagram, so Block2 with an ETag and Size2.
    let (bytes, replies) = peer.get_blockwise(Req::get(&read_path(&thing, "$settings")), None).await;
    assert!(replies.len() > 100, "{} blocks", replies.len());
    assert_eq!(replies[0].block2().map(|b| b.size()), Some(1024), "1024-byte blocks by default");
    assert!(replies[0].size2().is_some(), "Size2 on the first block");
    let v: Value = serde_json::from_slice(&bytes).expect("the blocks make one JSON document");
    assert_eq!(v, json!([{"key": "$settings", "value": doc}]));
    assert_eq!(v[0]["value"]["blob"].as_str().map(str::as_bytes), doc["blob"].as_str().map(str::as_bytes));
    server.stop().await;
}

#[tokio::test]
async fn a_long_string_value_reads_back_in_the_block_size_the_client_asks_for() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let big = noise(100 * 1024, 2);
    assert_eq!(server.write(&thing, json!([{"key": "log", "value": big}])).await, StatusCode::CREATED);
    let (bytes, replies) = peer.get_blockwise(Req::get(&read_path(&thing, "log")), None).await;
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v[0]["value"].as_str(), Some(big.as_str()), "byte for byte");
    assert!(replies.len() >= 100);

    // A smaller value in 256-byte blocks (early negotiation in the first request).
    let small = noise(20 * 1024, 3);
    assert_eq!(server.write(&thing, json!([{"key": "log2", "value": small}])).await, StatusCode::CREATED);
    let (bytes, replies) = peer.get_blockwise(Req::get(&read_path(&thing, "log2")), Some(4)).await;
    assert!(replies.iter().all(|r| r.block2().is_some_and(|b| b.size() == 256)), "256-byte blocks");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v[0]["value"].as_str(), Some(small.as_str()));
    // The response to a late block alone (a client resuming) is that block.
    let r = peer.request(Req::get(&read_path(&thing, "log2")).block2(Block::new(3, false, 4))).await;
    assert_eq!(r.block2().map(|b| b.num), Some(3));
    assert_eq!(r.payload(), &bytes[3 * 256..4 * 256]);

    // A Block1 write of a long string value, in 512-byte blocks.
    let body = values_body(json!([{"key": "log3", "value": big}]));
    let out = peer.post_block1(Req::post(&write_path(&thing), Vec::new()), &body, 5, false).await;
    out.last.assert_json(code::CREATED);
    assert_eq!(values(&server, &thing, "log3").await, vec![json!(big)]);
    server.stop().await;
}

#[tokio::test]
async fn a_notification_larger_than_a_block_is_completed_block_wise() {
    let (server, thing, mut peer) = setup(|_| {}).await;
    let path = format!("{}?keepAlive=60000", write_path(&thing));
    let (token, _) = peer.observe(&path).await;
    let big = noise(5000, 21);
    assert_eq!(server.write(&thing, json!([{"key": "big", "value": big}])).await, StatusCode::CREATED);
    let n = peer.data_notification(&token, WAIT).await;
    assert_eq!(n.code_str(), "2.05");
    let b = n.block2().expect("a notification over 1024 bytes carries its first block (RFC 7959 §3.4)");
    assert_eq!((b.num, b.more, b.size()), (0, true, 1024));
    assert!(n.observe().is_some());
    let etag = n.etag().expect("the first block's ETag");
    // The rest with plain GETs (no Observe) of the same resource.
    let mut body = n.payload().to_vec();
    for num in 1.. {
        let r = peer.request(Req::get(&path).block2(Block::new(num, false, 6))).await;
        assert_eq!(r.code_str(), "2.05", "block {num}: {:?}", r.text());
        assert_eq!(r.etag().as_ref(), Some(&etag), "block {num} of the same representation");
        assert!(r.observe().is_none(), "a block fetch is not a registration");
        let b = r.block2().expect("Block2");
        assert_eq!(b.num, num);
        body.extend_from_slice(r.payload());
        if !b.more {
            break;
        }
    }
    assert_eq!(n.size2(), Some(body.len() as u32), "Size2 of the first block");
    let v: Value = serde_json::from_slice(&body).expect("the blocks make the notification's JSON");
    assert_eq!(v[0]["value"].as_str(), Some(big.as_str()));
    // The observation goes on.
    assert_eq!(server.write(&thing, json!([{"key": "small", "value": 1}])).await, StatusCode::CREATED);
    let n = peer.data_notification(&token, WAIT).await;
    assert_eq!(n.json()[0]["key"], "small");
    server.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_4_13_and_blocks_out_of_order_are_4_08() {
    let (server, thing, mut peer) = setup(|a| a.body_limit = Some(4096)).await;
    let path = write_path(&thing);
    let body = values_body(json!([{"key": "big", "value": noise(10_000, 4)}]));

    // Without Size1: refused at the block that passes the limit, not before.
    let out = peer.post_block1(Req::post(&path, Vec::new()), &body, 6, false).await;
    out.last.assert_error(code::REQUEST_ENTITY_TOO_LARGE, 413);
    assert!(out.last.size1().is_some_and(|s| s <= 4096), "4.13 tells the limit in Size1: {:?}", out.last.size1());
    assert!((out.last_num as usize + 1) * 1024 > 4096, "refused at block {} of 1024 bytes", out.last_num);
    // With Size1 announcing too much: refused no later than that block.
    let out = peer.post_block1(Req::post(&path, Vec::new()), &body, 6, true).await;
    out.last.assert_error(code::REQUEST_ENTITY_TOO_LARGE, 413);
    assert!(out.last_num <= 4, "refused at block {}", out.last_num);
    // One datagram over the limit.
    let r = peer.request(Req::post(&path, body.clone())).await;
    r.assert_error(code::REQUEST_ENTITY_TOO_LARGE, 413);
    assert!(values(&server, &thing, "big").await.is_empty(), "nothing of it stored");

    // Block 0, then block 2: 4.08 Request Entity Incomplete.
    let small = values_body(json!([{"key": "k", "value": noise(3000, 5)}]));
    let r = peer.request(Req::post(&path, small[..1024].to_vec()).block1(Block::new(0, true, 6))).await;
    assert_eq!(r.code, code::CONTINUE, "{:?}", r.text());
    let r = peer.request(Req::post(&path, small[2048..].to_vec()).block1(Block::new(2, false, 6))).await;
    assert_eq!(r.code_str(), "4.08", "{:?}", r.text());
    // A later block with no block 0 before it.
    let mut fresh = Peer::new(server.coap.expect("coap")).await;
    let r = fresh.request(Req::post(&path, small[1024..2048].to_vec()).block1(Block::new(1, true, 6))).await;
    assert_eq!(r.code_str(), "4.08", "{:?}", r.text());
    assert!(values(&server, &thing, "k").await.is_empty());
    // And a whole transfer after that still works.
    let out = peer.post_block1(Req::post(&path, Vec::new()), &small, 6, true).await;
    out.last.assert_json(code::CREATED);
    assert_eq!(values(&server, &thing, "k").await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_burst_over_the_rate_goes_unanswered_for_that_address_only() {
    let (server, thing, mut peer) = setup(|a| a.coap_rate = Some(20)).await;
    let coap = server.coap.expect("coap");
    let read = read_path(&thing, "nothing");
    let mut tokens = Vec::new();
    for _ in 0..200 {
        tokens.push(peer.send(&Req::get(&read).non()).await.token);
    }
    let answered = peer.drain(Duration::from_millis(1500), WAIT).await;
    let answered = answered.iter().filter(|r| tokens.contains(&r.token)).count();
    assert!((20..=60).contains(&answered), "{answered} of 200 answered at 20 requests/s (burst 20)");
    // Another address is served at once.
    let mut elsewhere = Peer::bind("127.0.0.2", coap).await;
    elsewhere.request(Req::get(&read)).await.assert_error(code::NOT_FOUND, 404);
    // And the first one again once the bucket refills (a request per 300 ms, at most 15 s).
    let deadline = Instant::now() + WAIT;
    while peer.try_request(Req::get(&read).non(), Duration::from_millis(300)).await.is_none() {
        assert!(Instant::now() < deadline, "{} unanswered {WAIT:?} after the burst", peer.local_addr());
    }
    server.stop().await;
}

#[tokio::test]
async fn answers_to_requests_without_a_valid_token_are_never_much_larger_than_the_request() {
    let server = TestServer::start_coap().await;
    let panel = server.panel_token().await;
    let product = server.product(&panel, &[]).await;
    let code = server.codes(&panel, &product, 1).await.remove(0);
    let mut peer = Peer::new(server.coap.expect("coap")).await;
    let unknown = "B".repeat(43);
    let cases = vec![
        Req::post("v2/things", serde_json::to_vec(&json!({"activationCode": code})).expect("json")),
        Req::post("v2/things", br#"{"activationCode":"x"}"#.to_vec()),
        Req::post("v2/things", b"{".to_vec()),
        Req::post("v2/things", b"[]".to_vec()),
        Req::get("x"),
        Req::get(""),
        Req::get("v2/things/x/resources/y"),
        Req::get(&format!("v2/things/{unknown}/resources/temperature?limit=1000&startDate=20150101000000")),
        Req::get(&format!("v2/things/{unknown}?keepAlive=10")).observe(0),
        Req::post(&format!("v2/things/{unknown}"), b"{}".to_vec()),
        Req::new(code::DELETE, "v2/things"),
        Req::get("v2/utils/date"),
        Req::get(&format!("v2/utils/date?thingToken={unknown}&format=UTC")),
        Req::get("").option(2053, Vec::new()),
        Req::post("v2/things", b"{}".to_vec()).content_format(42),
        Req::post("v2/things", b"x".to_vec()).block1(Block::new(5, true, 0)),
        Req::get("v2/things/x/y/z/w/v/u/t/s/r/q/p/o/n/m/l/k/j/i/h/g/f"),
    ];
    for req in cases {
        let desc = describe(&req);
        let (sent, r) = peer.exchange(req.token(&[])).await;
        let bound = (3 * sent.bytes.len()).max(256);
        assert!(
            r.len <= bound,
            "{desc}: a {}-byte request got a {}-byte {} answer (bound {bound}): {:?}",
            sent.bytes.len(),
            r.len,
            r.code_str(),
            r.text()
        );
    }
    server.stop().await;
}

/// A xorshift generator for the garbage test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test]
async fn garbage_datagrams_never_crash_the_server() {
    let (server, thing, mut peer) = setup(|a| a.coap_rate = Some(1_000_000)).await;
    let valid = [
        Req::post(&write_path(&thing), values_body(json!([{"key": "k", "value": 1}]))).encode(7, b"tok"),
        Req::get(&format!("{}?limit=3", read_path(&thing, "k"))).block2(Block::new(0, false, 6)).encode(8, b""),
        Req::get(&format!("{}?keepAlive=1000", write_path(&thing))).observe(0).encode(9, &[1, 2, 3, 4, 5, 6, 7, 8]),
        Req::post("v2/things", b"{\"activationCode\":\"x\"}".to_vec()).block1(Block::new(0, true, 1)).encode(10, b"a"),
    ];
    let mut crafted: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x40],
        vec![0x40, 0x01, 0x00],
        vec![0x40, 0x01, 0x00, 0x01],
        vec![0x4F, 0x01, 0x00, 0x01, 1, 2, 3],
        vec![0x40, 0x01, 0x00, 0x01, 0xFF],
        vec![0x40, 0x01, 0x00, 0x01, 0xF0],
        vec![0x40, 0x01, 0x00, 0x01, 0x0F],
        vec![0x40, 0x01, 0x00, 0x01, 0xEE, 0xFF, 0xFF, 0xFF, 0xFF],
        vec![0x40, 0x01, 0x00, 0x01, 0xDD, 0xFF, 0xFF, b'a'],
        vec![0x40, 0x01, 0x00, 0x01, 0xB2, 0xFF, 0xFE],
        vec![0x40, 0x01, 0x00, 0x01, 0x61, 0x07],
        vec![0x40, 0x01, 0x00, 0x01, 0xD4, 0x0A, 1, 2, 3, 4],
        vec![0x40, 0x01, 0x00, 0x01, 0x64, 1, 2, 3, 4],
        vec![0x40, 0xE0, 0x00, 0x01],
        vec![0x40, 0x45, 0x00, 0x01, 0xFF, b'{'],
        vec![0x60, 0x45, 0x00, 0x01, 0xFF, b'{'],
        vec![0x70, 0x01, 0x00, 0x01],
        vec![0x80, 0x01, 0x00, 0x01],
        vec![0x40, 0x07, 0x00, 0x01],
        vec![0x40, 0x1F, 0x00, 0x01],
    ];
    // 40 path segments; a 65,000-byte datagram.
    let mut many = Req::get("a");
    many.path = (0..40).map(|i| i.to_string()).collect();
    crafted.push(many.encode(11, b""));
    crafted.push(Req::post(&write_path(&thing), vec![b'x'; 65_000]).encode(12, b""));
    let mut rng = Rng(0x5EED_1234_5678_9ABC);
    for datagram in &crafted {
        peer.send_raw(datagram).await;
    }
    for i in 0..3000 {
        let d = match i % 3 {
            0 => {
                let n = rng.below(300);
                rng.bytes(n)
            }
            1 => {
                let mut d = valid[rng.below(valid.len())].clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(d.len());
                    d[at] = rng.next() as u8;
                }
                if rng.below(3) == 0 {
                    let keep = rng.below(d.len() + 1);
                    d.truncate(keep);
                }
                d
            }
            _ => {
                // A valid header with random options and payload.
                let mut d =
                    vec![0x40 | (rng.below(4) as u8) << 4, rng.below(8) as u8, rng.next() as u8, rng.next() as u8];
                let n = rng.below(60);
                d.extend(rng.bytes(n));
                d
            }
        };
        peer.send_raw(&d).await;
        if i % 200 == 0 {
            // Let the server keep up rather than have the kernel drop the datagrams.
            peer.drain(Duration::from_millis(20), Duration::from_secs(1)).await;
        }
    }
    // Whatever was answered was valid CoAP (the peer decodes every answer).
    peer.drain(Duration::from_millis(500), WAIT).await;
    let r = peer.request(Req::get(&read_path(&thing, "k"))).await;
    assert_eq!(r.code >> 5, 2, "a valid request after the garbage: {} {:?}", r.code_str(), r.text());
    let health = server.client.get(server.url("/v2/health")).send().await.expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn an_observer_that_never_acknowledges_is_dropped_after_the_retransmissions() {
    let (server, thing, mut peer) = setup(|a| a.realtime_streams_per_thing = Some(1)).await;
    let path = format!("{}?keepAlive=1000", write_path(&thing));
    // A device that vanished after registering: nothing is acknowledged.
    peer.auto_ack = false;
    let (token, _) = peer.observe(&path).await;
    let first_con = peer.wait(Duration::from_secs(5), |r| r.kind == Kind::Con && r.token == token).await;
    let first_con = first_con.expect("a confirmable keep-alive");
    let mid = first_con.mid;
    // Retransmitted with the same message id, the interval growing.
    let retry = peer.wait(Duration::from_secs(10), |r| r.mid == mid && r.kind == Kind::Con).await;
    let retry = retry.expect("a retransmission of the unacknowledged notification");
    assert!(
        retry.at - first_con.at >= Duration::from_millis(1500),
        "retransmitted after {:?}",
        retry.at - first_con.at
    );

    // Within MAX_TRANSMIT_WAIT (93 s) and a margin, the observation is gone and its slot free.
    let mut other = Peer::new(server.coap.expect("coap")).await;
    let deadline = first_con.at + Duration::from_secs(100);
    loop {
        let (_, r) = other.observe(&path).await;
        if r.code == code::CONTENT {
            break;
        }
        r.assert_error(code::TOO_MANY_REQUESTS, 429);
        assert!(Instant::now() < deadline, "the unacknowledged observation still holds its slot after 100 s");
        // Nothing to wait on: the server ends it silently. Look again in a while (reading, and
        // not acknowledging, what it retransmits meanwhile).
        peer.drain(Duration::from_secs(2), Duration::from_secs(2)).await;
    }
    let after = Instant::now() - first_con.at;
    assert!(after >= Duration::from_secs(20), "dropped after only {after:?}: before the retransmissions ran out");
    server.stop().await;
}

#[tokio::test]
async fn a_2_01_means_committed_even_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The binary as operators run it, with the default durability.
    let mut server = TestServer::spawn_in(dir.path(), &["--coap-addr", "127.0.0.1:0"], &[]);
    let panel = server.panel_token().await;
    let thing = server.thing(&panel, &[]).await;
    let mut peer = Peer::new(server.coap.expect("the spawned server's CoAP listener")).await;
    for i in 0..50 {
        let r = peer
            .request(Req::post(&format!("{}?", write_path(&thing)), values_body(json!([{"key": "seq", "value": i}]))))
            .await;
        assert_eq!(r.assert_json(code::CREATED), json!({"status": "created"}));
    }
    // Every 2.01 is in: kill -9 at once.
    server.kill_9();
    let restarted = TestServer::spawn_in(dir.path(), &[], &[]);
    let mut got = values(&restarted, &thing, "seq").await;
    got.reverse();
    assert_eq!(got, (0..50).map(|i| json!(i)).collect::<Vec<_>>(), "every acknowledged value survived, in order");
    restarted.stop().await;
}
