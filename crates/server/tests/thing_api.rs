//! The HTTP Thing API as device firmware uses it, against a real server on port 0: activation,
//! writes of every value type and date form, reads with paging, keys, all_resources,
//! description, magic resources, date, the streaming subscription, and bad input.

mod common;

use std::time::Duration;

use common::{JsonStream, TestServer, assert_envelope, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn activation_codes_are_single_use() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true)]).await;
    let codes = s.codes(&panel, &product, 2).await;
    assert_eq!(codes.len(), 2);
    assert_ne!(codes[0], codes[1]);

    let r = s.activate(&codes[0]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "created");
    assert_eq!(v["message"], "thing activated");
    assert_eq!(v["thingToken"].as_str().expect("token").len(), 43, "firmware expects 43 characters");
    assert!(v["thingId"].as_str().is_some_and(|i| !i.is_empty()));

    assert_envelope(s.activate(&codes[0]).await, 409).await;
    assert_envelope(s.activate("no-such-code").await, 404).await;
    let wrong_product = s
        .client
        .post(s.url("/v2/things"))
        .json(&json!({"activationCode": codes[1], "productId": "another"}))
        .send()
        .await
        .expect("send");
    assert_envelope(wrong_product, 404).await;
    let missing = s.client.post(s.url("/v2/things")).json(&json!({})).send().await.expect("send");
    assert_envelope(missing, 400).await;
    // The right product id works, over the plain device listener too.
    let r = s
        .client
        .post(format!("{}/v2/things/", s.http))
        .json(&json!({"activationCode": codes[1], "productId": product}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    s.stop().await;
}

#[tokio::test]
async fn values_of_any_json_type_are_stored_exactly_as_sent() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let values = [
        json!("23.5"),
        json!(24.805999999999997),
        json!(true),
        json!([1, "two", {"three": 3}]),
        json!({"nested": {"a": [null, 1.5e-7]}}),
        json!(12345678901234567u64),
    ];
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        assert_eq!(s.write(&t, json!([{"key": key, "value": v, "ignored": "extra"}])).await, StatusCode::CREATED);
        let (status, body) = s.read(&t, &key, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["key"], key.as_str());
        assert_eq!(&body[0]["value"], v, "value {i} changed on the way");
        let dt = body[0]["datetime"].as_str().expect("datetime");
        assert!(dt.ends_with('Z') && dt.len() == 24, "ISO-8601 UTC with milliseconds: {dt}");
    }
    // Numbers sent as strings stay strings, byte for byte.
    let raw = format!("{}/v2/things/{}", s.https, t.token);
    let r = s
        .client
        .post(&raw)
        .header("content-type", "application/json")
        .body(r#"{"values":[{"key":"volts","value":"003.30"},{"key":"big","value":1e400}]}"#)
        .send()
        .await
        .expect("send");
    // 1e400 is valid JSON text; it is stored as sent.
    assert_eq!(r.status(), StatusCode::CREATED);
    let text = s.client.get(format!("{raw}/resources/volts")).send().await.expect("read").text().await.expect("text");
    assert!(text.contains(r#""value":"003.30""#), "{text}");
    let text = s.client.get(format!("{raw}/resources/big")).send().await.expect("read").text().await.expect("text");
    assert!(text.contains(r#""value":1e400"#), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn every_input_date_form_is_accepted_and_reads_filter_by_range() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let forms = [
        ("20150202220035", "2015-02-02T22:00:35.000Z"),
        ("20150203T220035", "2015-02-03T22:00:35.000Z"),
        ("2015-02-04T22:00:35.120+02:00", "2015-02-04T20:00:35.120Z"),
        ("2015-02-05T22:00:35.5", "2015-02-05T22:00:35.500Z"),
    ];
    let values: Vec<Value> =
        forms.iter().enumerate().map(|(i, (d, _))| json!({"key": "temperature", "value": i, "datetime": d})).collect();
    assert_eq!(s.write(&t, json!(values)).await, StatusCode::CREATED);
    let (status, body) = s.read(&t, "temperature", "?limit=10").await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<&str> = body.as_array().expect("array").iter().map(|i| i["datetime"].as_str().expect("dt")).collect();
    let mut want: Vec<&str> = forms.iter().map(|(_, out)| *out).collect();
    want.reverse();
    assert_eq!(got, want, "newest first, every form parsed");

    // startDate inclusive, endDate exclusive, in every accepted form.
    let (_, body) =
        s.read(&t, "temperature", "?limit=10&startDate=20150203220035&endDate=2015-02-05T22:00:35.500Z").await;
    let got: Vec<i64> = body.as_array().expect("array").iter().map(|i| i["value"].as_i64().expect("n")).collect();
    assert_eq!(got, vec![2, 1]);
    // A written key with nothing in range reads [].
    let (status, body) = s.read(&t, "temperature", "?startDate=20200101000000").await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    // limit default 1.
    let (_, body) = s.read(&t, "temperature", "").await;
    assert_eq!(body.as_array().expect("array").len(), 1);

    for bad in ["?limit=0", "?limit=-3", "?limit=abc", "?limit=", "?startDate=20150230000000", "?endDate=yesterday"] {
        let r = s
            .client
            .get(s.url(&format!("/v2/things/{}/resources/temperature{bad}", t.token)))
            .send()
            .await
            .expect("read");
        assert_envelope(r, 400).await;
    }
    let bad_date = s.write(&t, json!([{"key": "temperature", "value": 1, "datetime": "2015-13-01"}])).await;
    assert_eq!(bad_date, StatusCode::BAD_REQUEST);
    s.stop().await;
}

/// Pages through a timeline with `endDate` = the oldest datetime received; returns the values.
async fn page_all(s: &TestServer, t: &common::TestThing, key: &str) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut end: Option<String> = None;
    loop {
        let q = match &end {
            Some(e) => format!("?limit=1000&endDate={}", urlencode(e)),
            None => "?limit=1000".to_owned(),
        };
        let (status, body) = s.read(t, key, &q).await;
        assert_eq!(status, StatusCode::OK);
        let page = body.as_array().expect("array").clone();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 1000);
        end = page.last().and_then(|i| i["datetime"].as_str()).map(str::to_owned);
        seen.extend(page.iter().map(|i| i["value"].as_i64().expect("int")));
    }
    seen
}

#[tokio::test]
async fn paging_2300_values_with_end_date_returns_each_exactly_once() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    // 23 requests of 100 values without datetimes: many share a millisecond of receive time.
    for batch in 0..23 {
        let values: Vec<Value> = (0..100).map(|i| json!({"key": "temperature", "value": batch * 100 + i})).collect();
        assert_eq!(s.write(&t, json!(values)).await, StatusCode::CREATED);
    }
    let mut seen = page_all(&s, &t, "temperature").await;
    assert_eq!(seen.len(), 2300);
    assert_eq!(seen[0], 2299, "newest first");
    seen.sort();
    assert_eq!(seen, (0..2300).collect::<Vec<i64>>());
    s.stop().await;
}

#[tokio::test]
async fn paging_1500_values_written_in_one_request_is_exact() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let values: Vec<Value> = (0..1500).map(|i| json!({"key": "temperature", "value": i})).collect();
    assert_eq!(s.write(&t, json!(values)).await, StatusCode::CREATED);
    // Same explicit datetime for 50 values: kept distinct too.
    let same: Vec<Value> =
        (0..50).map(|i| json!({"key": "same", "value": i, "datetime": "2020-01-01T00:00:00.000Z"})).collect();
    assert_eq!(s.write(&t, json!(same)).await, StatusCode::CREATED);
    let mut seen = page_all(&s, &t, "temperature").await;
    seen.sort();
    assert_eq!(seen, (0..1500).collect::<Vec<i64>>());
    let mut same = page_all(&s, &t, "same").await;
    same.sort();
    assert_eq!(same, (0..50).collect::<Vec<i64>>());
    s.stop().await;
}

#[tokio::test]
async fn keys_all_resources_and_description() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let r = s.client.get(s.url(&format!("/v2/things/{}/resources", t.token))).send().await.expect("keys");
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"resources": []}));
    let (status, _) = s.read(&t, "temperature", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a never-written key is 404");

    for v in [1, 2, 3] {
        assert_eq!(
            s.write(&t, json!([{"key": "temperature", "value": v}, {"key": "humidity", "value": v * 10}])).await,
            StatusCode::CREATED
        );
    }
    let r = s.client.get(s.url(&format!("/v2/things/{}/resources", t.token))).send().await.expect("keys");
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"resources": ["humidity", "temperature"]}));

    let r = s.client.get(s.url(&format!("/v2/things/{}/all_resources?limit=2", t.token))).send().await.expect("all");
    let all: Value = r.json().await.expect("json");
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 2);
    let temp = all.iter().find(|e| e["key"] == "temperature").expect("temperature");
    let vals: Vec<i64> =
        temp["values"].as_array().expect("values").iter().map(|i| i["value"].as_i64().expect("n")).collect();
    assert_eq!(vals, vec![3, 2]);

    let desc = json!({"model": "TL-1", "fw": "1.2.3"});
    let r = s
        .client
        .put(s.url(&format!("/v2/things/{}/resources/description", t.token)))
        .json(&desc)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"status": "success"}));
    let (status, body) = s.read(&t, "description", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["value"], desc);
    s.stop().await;
}

#[tokio::test]
async fn magic_geo_and_settings() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let point = json!({"type": "Point", "coordinates": [2.154007, 41.390205]});
    // GeoJSON, legacy pair, and null + geo attribute (strings) all read back as GeoJSON.
    let inputs = [
        json!({"key": "$geo", "value": point}),
        json!({"key": "$geo", "value": [2.154007, 41.390205]}),
        json!({"key": "$geo", "value": null, "geo": {"lat": "41.390205", "long": "2.154007"}}),
    ];
    for input in inputs {
        assert_eq!(s.write(&t, json!([input])).await, StatusCode::CREATED);
        let (status, body) = s.read(&t, "$geo", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body[0]["key"], "$geo");
        assert_eq!(body[0]["value"], point);
    }
    for bad in [json!([200.0, 41.0]), json!({"type": "Point", "coordinates": [2.0, 95.0]}), json!("here")] {
        assert_eq!(s.write(&t, json!([{"key": "$geo", "value": bad}])).await, StatusCode::BAD_REQUEST);
    }
    // A geo attribute on an ordinary value also records the position.
    let w = json!([{"key": "temperature", "value": 20, "geo": {"lat": 10.5, "long": -3.25}}]);
    assert_eq!(s.write(&t, w).await, StatusCode::CREATED);
    let (_, body) = s.read(&t, "$geo", "").await;
    assert_eq!(body[0]["value"], json!({"type": "Point", "coordinates": [-3.25, 10.5]}));

    let settings = json!({"name": "My Thing", "foo": "bar"});
    assert_eq!(s.write(&t, json!([{"key": "$settings", "value": settings}])).await, StatusCode::CREATED);
    let (_, body) = s.read(&t, "$settings", "").await;
    assert_eq!(body, json!([{"key": "$settings", "value": settings}]));
    assert_eq!(s.write(&t, json!([{"key": "$settings.name", "value": "Renamed"}])).await, StatusCode::CREATED);
    let (_, body) = s.read(&t, "$settings.name", "").await;
    assert_eq!(body, json!([{"key": "$settings.name", "value": "Renamed"}]));
    let (_, body) = s.read(&t, "$settings", "").await;
    assert_eq!(body[0]["value"], json!({"name": "Renamed", "foo": "bar"}));
    let (status, _) = s.read(&t, "$settings.missing", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(s.write(&t, json!([{"key": "$unknown", "value": 1}])).await, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn form_urlencoded_writes_store_strings() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let r = s
        .client
        .post(s.url(&format!("/v2/things/{}", t.token)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("values%5B0%5D%5Bkey%5D=temperature&values[0][value]=21.5&values[1][key]=door&values[1][value]=open+now")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, body) = s.read(&t, "temperature", "").await;
    assert_eq!(body[0]["value"], "21.5");
    let (_, body) = s.read(&t, "door", "").await;
    assert_eq!(body[0]["value"], "open now");
    s.stop().await;
}

/// A thing subscription: each chunk one JSON document (thing-api.md), each within 10 s.
fn thing_stream(resp: reqwest::Response) -> JsonStream {
    JsonStream::one_per_chunk(resp, Duration::from_secs(10))
}

#[tokio::test]
async fn store_and_broadcast_flags() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let stream_url = format!("{}/v2/things/{}?keepAlive=60000", s.http, t.token);
    let mut stream = thing_stream(s.client.get(&stream_url).send().await.expect("subscribe"));
    let first = stream.next().await.expect("stream open");
    assert_eq!(first, json!({"status": "success", "message": "subscribed"}));

    let post = |q: &'static str, v: i64| s.write_query(&t, json!([{"key": "temperature", "value": v}]), q);
    assert_eq!(post("?store=false", 1).await, StatusCode::CREATED);
    assert_eq!(post("?broadcast=false", 2).await, StatusCode::CREATED);
    assert_eq!(post("", 3).await, StatusCode::CREATED);
    // The stream sees 1 (broadcast only) and 3, never 2.
    assert_eq!(stream.next().await.expect("stream open")[0]["value"], 1);
    assert_eq!(stream.next().await.expect("stream open")[0]["value"], 3);
    // The store has 2 and 3, never 1.
    let (_, body) = s.read(&t, "temperature", "?limit=10").await;
    let stored: Vec<i64> = body.as_array().expect("array").iter().map(|i| i["value"].as_i64().expect("n")).collect();
    assert_eq!(stored, vec![3, 2]);
    assert_eq!(post("?store=maybe", 4).await, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn stream_delivers_writes_and_idle_heartbeats() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let url = s.url(&format!("/v2/things/{}?keepAlive=1000", t.token));
    let mut stream = thing_stream(s.client.get(&url).send().await.expect("subscribe"));
    assert_eq!(stream.next().await.expect("stream open")["message"], "subscribed");
    // Idle: {} within keepAlive (+ margin).
    assert_eq!(stream.next().await, Some(json!({})));
    assert_eq!(
        s.write(&t, json!([{"key": "temperature", "value": 7}, {"key": "humidity", "value": 70}])).await,
        StatusCode::CREATED
    );
    let items = stream.next().await.expect("stream open");
    assert_eq!(items.as_array().expect("array of items").len(), 2);
    assert_eq!(items[0]["key"], "temperature");
    assert_eq!(items[0]["value"], 7);
    assert!(items[0]["datetime"].as_str().is_some());
    let bad = s.client.get(s.url(&format!("/v2/things/{}?keepAlive=soon", t.token))).send().await.expect("send");
    assert_envelope(bad, 400).await;
    s.stop().await;
}

#[tokio::test]
async fn server_date_for_devices() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let r =
        s.client.get(format!("{}/v2/utils/date?thingToken={}&format=UTC", s.http, t.token)).send().await.expect("date");
    let v: Value = r.json().await.expect("json");
    let d = v["date"].as_str().expect("date string");
    assert!(d.ends_with('Z'));
    assert_eq!(v["values"][0]["value"], v["date"]);
    let r = s
        .client
        .get(format!("{}/v2/utils/date?thingToken={}&format=unix_timestamp", s.http, t.token))
        .send()
        .await
        .expect("date");
    let v: Value = r.json().await.expect("json");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((v["date"].as_i64().expect("seconds") - now).abs() < 60);
    let r = s.client.get(format!("{}/v2/utils/date", s.http)).send().await.expect("date");
    // Without any credential the plain listener refuses (app call), HTTPS answers 401.
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_envelope(s.client.get(s.url("/v2/utils/date")).send().await.expect("date"), 401).await;
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_envelope_and_leaves_data_intact() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    assert_eq!(s.write(&t, json!([{"key": "temperature", "value": 1}])).await, StatusCode::CREATED);
    let url = s.url(&format!("/v2/things/{}", t.token));
    let send = |body: Vec<u8>| {
        let c = s.client.clone();
        let url = url.clone();
        async move { c.post(url).header("content-type", "application/json").body(body).send().await.expect("send") }
    };
    let v = assert_envelope(send(b"{\"values\": [{\"key\": \"temperature\",".to_vec()).await, 400).await;
    assert!(v["message"].as_str().expect("msg").contains("line 1"), "says where: {v}");
    assert_envelope(send(b"{\"values\": \"nope\"}".to_vec()).await, 400).await;
    assert_envelope(send(b"[]".to_vec()).await, 400).await;
    assert_envelope(send(b"".to_vec()).await, 400).await;
    assert_envelope(send(vec![0xff, 0xfe]).await, 400).await;
    assert_envelope(send(b"{\"values\":[{\"key\":\"a/b\",\"value\":1}]}".to_vec()).await, 400).await;
    // Over the 1 MiB limit: 413, with Content-Length and chunked.
    let big = format!("{{\"values\":[{{\"key\":\"temperature\",\"value\":\"{}\"}}]}}", "x".repeat(1024 * 1024 + 10));
    assert_envelope(send(big.clone().into_bytes()).await, 413).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.into_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = s
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 413).await;
    // One value may fill the whole body limit.
    let fits = format!("{{\"values\":[{{\"key\":\"blob\",\"value\":\"{}\"}}]}}", "y".repeat(1024 * 1024 - 100));
    assert_eq!(send(fits.into_bytes()).await.status(), StatusCode::CREATED);
    // Unknown token, unknown route, wrong method.
    let r = s
        .client
        .post(s.url("/v2/things/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .json(&json!({"values": []}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 404).await;
    assert_envelope(s.client.get(s.url("/v2/nothing/here")).send().await.expect("send"), 404).await;
    // What was stored before is intact.
    let (_, body) = s.read(&t, "temperature", "?limit=10").await;
    assert_eq!(body.as_array().expect("array").len(), 1);
    assert_eq!(body[0]["value"], 1);
    s.stop().await;
}

#[tokio::test]
async fn app_and_panel_routes_are_https_only() {
    let s = TestServer::start().await;
    for (method, path) in
        [("POST", "/v2/panel/login"), ("POST", "/v2/login"), ("GET", "/v2/me/resources"), ("GET", "/v2/classes/me/x")]
    {
        let r = s
            .client
            .request(method.parse().expect("method"), format!("{}{path}", s.http))
            .body("{}")
            .send()
            .await
            .expect("send");
        let v = assert_envelope(r, 403).await;
        assert_eq!(v["message"], "HTTPS required");
    }
    let r = s.client.get(format!("{}/v2/health", s.http)).send().await.expect("health");
    assert_eq!(r.json::<Value>().await.expect("json"), json!({"status": "ok"}));
    assert_envelope(s.client.get(s.url("/v2/")).send().await.expect("root"), 401).await;
    s.stop().await;
}

#[tokio::test]
async fn latest_value_reads_stay_exact_with_backfills_and_large_values() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    assert_eq!(s.write(&t, json!([{"key": "temperature", "value": 1}])).await, StatusCode::CREATED);
    assert_eq!(latest_value(&s, &t).await, json!(1));
    // An older value written later is not the newest.
    let old = json!([{"key": "temperature", "value": 0, "datetime": "2001-01-01T00:00:00Z"}]);
    assert_eq!(s.write(&t, old).await, StatusCode::CREATED);
    assert_eq!(latest_value(&s, &t).await, json!(1));
    assert_eq!(s.write(&t, json!([{"key": "temperature", "value": 2}])).await, StatusCode::CREATED);
    assert_eq!(latest_value(&s, &t).await, json!(2));
    // A large newest value, then an older small one: the large one stays the newest.
    let big = "z".repeat(10_000);
    assert_eq!(s.write(&t, json!([{"key": "temperature", "value": big}])).await, StatusCode::CREATED);
    assert_eq!(latest_value(&s, &t).await, json!(big));
    let old = json!([{"key": "temperature", "value": 3, "datetime": "2002-01-01T00:00:00Z"}]);
    assert_eq!(s.write(&t, old).await, StatusCode::CREATED);
    assert_eq!(latest_value(&s, &t).await, json!(big));
    // store=false values are never the stored newest.
    let w = json!([{"key": "temperature", "value": 99}]);
    assert_eq!(s.write_query(&t, w, "?store=false").await, StatusCode::CREATED);
    assert_eq!(latest_value(&s, &t).await, json!(big));
    s.stop().await;
}

async fn latest_value(s: &TestServer, t: &common::TestThing) -> Value {
    let (status, body) = s.read(t, "temperature", "").await;
    assert_eq!(status, StatusCode::OK);
    body[0]["value"].clone()
}
