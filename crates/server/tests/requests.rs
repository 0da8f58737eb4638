//! Request rules of the HTTP adapter, against the real `thingline` binary: a known path with a
//! method it does not serve is a 405 with the `Allow` header and the envelope (not a 400), and
//! no JSON body may nest deeper than `thingline_core::json::MAX_DEPTH` (32) levels: a value
//! nested 500,000 levels deep is a 400 on every write path, nothing is stored, and the server
//! keeps serving. Also liveness and readiness on one node.

mod common;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use common::spawned::{Proc, spawn};
use common::{Api, assert_envelope, json_of};

#[tokio::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &[]);
    let client = common::client_for(dir.path());
    // (base, method, path, the exact Allow header): the thing API (also on the plain device
    // listener), the app API, the panel API and health. Methods are listed in the order the
    // routes declare them; a GET route also serves HEAD.
    let cases = [
        (&p.https, Method::DELETE, "/v2/things/some-token", "POST,GET,HEAD"),
        (&p.http, Method::PUT, "/v2/things/some-token", "POST,GET,HEAD"),
        (&p.http, Method::GET, "/v2/things", "POST"),
        (&p.https, Method::POST, "/v2/things/some-token/resources/temperature", "GET,HEAD"),
        (&p.https, Method::GET, "/v2/login", "POST"),
        (&p.https, Method::PUT, "/v2/register", "POST"),
        (&p.https, Method::PATCH, "/v2/panel/products/some-id", "GET,HEAD,PUT,DELETE"),
        (&p.https, Method::GET, "/v2/panel/login", "POST"),
        (&p.https, Method::POST, "/v2/health", "GET,HEAD"),
        (&p.http, Method::DELETE, "/v2/health", "GET,HEAD"),
    ];
    for (base, method, path, allow) in cases {
        let r = client.request(method.clone(), format!("{base}{path}")).send().await.expect("request");
        let got = r.headers().get("allow").map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(got.as_deref(), Some(allow), "{method} {base}{path}");
        let v = assert_envelope(r, 405).await;
        assert!(v["message"].as_str().is_some_and(|m| m.contains(method.as_str())), "{method} {path}: {v}");
    }
    // HEAD: the status and Allow, no body.
    let r = client.head(format!("{}/v2/login", p.https)).send().await.expect("head");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    // An unknown path stays a 404, and a served method is served.
    let r = client.delete(format!("{}/v2/nothing-here", p.https)).send().await.expect("delete");
    assert!(r.headers().get("allow").is_none());
    assert_envelope(r, 404).await;
    let r = client.get(format!("{}/v2/health", p.https)).send().await.expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    stop(p).await;
}

/// `levels` arrays around `1`: `nest(2)` is `[[1]]`.
fn nest(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// A JSON body as text, sent as `application/json`.
async fn send(client: &Client, method: Method, url: String, token: Option<&str>, body: String) -> reqwest::Response {
    let mut rb = client.request(method, url).header("Content-Type", "application/json").body(body);
    if let Some(t) = token {
        rb = rb.header("Authorization", t);
    }
    rb.send().await.expect("request")
}

/// A 400 envelope that names the nesting limit.
async fn assert_too_deep(r: reqwest::Response, what: &str) {
    let v = assert_envelope(r, 400).await;
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("deeper than 32 levels"), "{what}: {v}");
}

#[tokio::test]
async fn json_nested_deeper_than_32_levels_is_refused_on_every_write_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &[]);
    let client = common::client_for(dir.path());
    let api = Api { client: &client, base: &p.https };
    let panel = api.panel_token().await;
    let thing = api.thing(&panel, &[("deep", true), ("$settings", true)]).await;
    let app = api.app(&panel, &["deep", "$settings"]).await;
    let r = client
        .post(format!("{}/v2/register", p.https))
        .json(&json!({"email": "deep@example.com", "password": common::APP_USER_PASSWORD, "app": app}))
        .send()
        .await
        .expect("register");
    let (status, v) = json_of(r).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let session = v["token"].as_str().expect("token").to_owned();
    let r = client
        .post(format!("{}/v2/me/things", p.https))
        .header("Authorization", &session)
        .json(&json!({"thingToken": thing.token}))
        .send()
        .await
        .expect("link");
    assert_eq!(r.status(), StatusCode::CREATED);

    let thing_url = format!("{}/v2/things/{}", p.https, thing.token);
    let app_url = format!("{}/v2/me/resources/deep/{}", p.https, thing.id);
    let objects_url = format!("{}/v2/classes/me/Items", p.https);
    let settings_url = format!("{}/v2/me/settings", p.https);
    let thing_write = |value: &str| format!(r#"{{"values":[{{"key":"deep","value":{value}}}]}}"#);
    let settings_write = |value: &str| format!(r#"{{"values":[{{"key":"$settings","value":{{"a":{value}}}}}]}}"#);
    let app_write = |value: &str| format!(r#"{{"values":[{{"value":{value}}}]}}"#);
    let object = |value: &str| format!(r#"{{"a":{value}}}"#);

    // 500,000 levels (1 MB of brackets, under the 1 MiB body limit) on every write path.
    let deep = nest(500_000);
    let r = send(&client, Method::POST, thing_url.clone(), None, thing_write(&deep)).await;
    assert_too_deep(r, "thing write").await;
    let r = send(&client, Method::POST, thing_url.clone(), None, settings_write(&deep)).await;
    assert_too_deep(r, "$settings write").await;
    let r = send(&client, Method::POST, app_url.clone(), Some(&session), app_write(&deep)).await;
    assert_too_deep(r, "app write").await;
    let r = send(&client, Method::POST, objects_url.clone(), Some(&session), object(&deep)).await;
    assert_too_deep(r, "object").await;
    let r = send(&client, Method::PUT, settings_url.clone(), Some(&session), object(&deep)).await;
    assert_too_deep(r, "user settings").await;
    // The same over the plain device listener, and as a form-labelled body (read as JSON).
    let r =
        send(&client, Method::POST, format!("{}/v2/things/{}", p.http, thing.token), None, thing_write(&deep)).await;
    assert_too_deep(r, "thing write over plain HTTP").await;
    let r = client
        .post(&thing_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(thing_write(&deep))
        .send()
        .await
        .expect("form write");
    assert_too_deep(r, "thing write labelled as a form").await;

    // Nothing was stored.
    let read = |key: &str| client.get(format!("{thing_url}/resources/{}", common::urlencode(key))).send();
    assert_eq!(read("deep").await.expect("read").status(), StatusCode::NOT_FOUND, "no value stored");
    let (_, v) = json_of(read("$settings").await.expect("read")).await;
    assert_eq!(v, json!([{"key": "$settings", "value": {}}]));
    let r = client.get(&objects_url).header("Authorization", &session).send().await.expect("list");
    let (status, v) = json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["results"], json!([]), "no object stored: {v}");
    let r = client.get(&settings_url).header("Authorization", &session).send().await.expect("settings");
    assert_eq!(json_of(r).await.1, json!({}));

    // At the limit: a body 32 levels deep is served, 33 is refused. A thing or app write puts
    // its value 3 levels down (29 of its own); `$settings` and the object add one more level.
    let r = send(&client, Method::POST, thing_url.clone(), None, thing_write(&nest(30))).await;
    assert_too_deep(r, "thing write, 33 levels").await;
    let r = send(&client, Method::POST, thing_url.clone(), None, thing_write(&nest(29))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, v) = json_of(read("deep").await.expect("read")).await;
    assert_eq!(v[0]["value"], serde_json::from_str::<Value>(&nest(29)).expect("json"));
    let r = send(&client, Method::POST, app_url.clone(), Some(&session), app_write(&nest(30))).await;
    assert_too_deep(r, "app write, 33 levels").await;
    let r = send(&client, Method::POST, app_url, Some(&session), app_write(&nest(29))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(&client, Method::POST, thing_url.clone(), None, settings_write(&nest(29))).await;
    assert_too_deep(r, "$settings write, 33 levels").await;
    let r = send(&client, Method::POST, thing_url.clone(), None, settings_write(&nest(28))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, v) = json_of(read("$settings").await.expect("read")).await;
    assert_eq!(v[0]["value"]["a"], serde_json::from_str::<Value>(&nest(28)).expect("json"));
    let r = send(&client, Method::POST, objects_url.clone(), Some(&session), object(&nest(32))).await;
    assert_too_deep(r, "object, 33 levels").await;
    let r = send(&client, Method::POST, objects_url, Some(&session), object(&nest(31))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(&client, Method::PUT, settings_url.clone(), Some(&session), object(&nest(32))).await;
    assert_too_deep(r, "user settings, 33 levels").await;
    let r = send(&client, Method::PUT, settings_url.clone(), Some(&session), object(&nest(31))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = client.get(&settings_url).header("Authorization", &session).send().await.expect("settings");
    assert_eq!(json_of(r).await.1["a"], serde_json::from_str::<Value>(&nest(31)).expect("json"));
    stop(p).await;
}

/// SIGTERM; exit 0. On the blocking pool: this runtime keeps running the client's connections,
/// which answer the server's HTTP/2 shutdown (else the drain waits its 10 s for them).
async fn stop(p: Proc) {
    let status = tokio::task::spawn_blocking(move || p.stop()).await.expect("stop");
    assert_eq!(status.code(), Some(0));
}

/// Liveness and readiness on one node, over HTTPS and the plain device listener: readiness names
/// the suite's store and bus and says they are up.
#[tokio::test]
async fn health_and_readiness_on_one_node() {
    let s = common::TestServer::start().await;
    let (backend, bus) =
        if common::backend::scale_out_selected() { ("postgres", "nats") } else { ("sqlite", "in-process") };
    for base in [&s.https, &s.http] {
        let (status, v) = json_of(s.client.get(format!("{base}/v2/health")).send().await.expect("health")).await;
        assert_eq!((status, v), (StatusCode::OK, json!({"status": "ok"})));
        let (status, v) = json_of(s.client.get(format!("{base}/v2/health/ready")).send().await.expect("ready")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["ready"], true, "{v}");
        assert_eq!(v["details"]["store"]["backend"], backend, "{v}");
        assert_eq!(v["details"]["store"]["ok"], true, "{v}");
        assert_eq!(v["details"]["bus"]["backend"], bus, "{v}");
        assert_eq!(v["details"]["bus"]["connected"], true, "{v}");
        assert_eq!(v["details"]["stopping"], false, "{v}");
    }
    s.stop().await;
}
