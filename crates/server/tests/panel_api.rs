//! The operator's panel API: login, products with public/private resources, activation codes,
//! things of a product, apps (asking only for public keys), and account scoping.

mod common;

use common::{TestServer, assert_envelope};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn login_is_required_and_rate_limited() {
    let s = TestServer::start().await;
    assert_envelope(s.client.get(s.url("/v2/panel/products")).send().await.expect("send"), 401).await;
    let bad =
        s.client.get(s.url("/v2/panel/products")).header("Authorization", "not-a-token").send().await.expect("send");
    assert_envelope(bad, 401).await;
    // Bearer prefix accepted.
    let token = s.panel_token().await;
    let r = s.client.get(s.url("/v2/panel/products")).bearer_auth(&token).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    for _ in 0..10 {
        let r = s
            .client
            .post(s.url("/v2/panel/login"))
            .json(&json!({"email": common::PANEL_EMAIL, "password": "wrong-password"}))
            .send()
            .await
            .expect("send");
        assert_envelope(r, 401).await;
    }
    let r = s
        .client
        .post(s.url("/v2/panel/login"))
        .json(&json!({"email": common::PANEL_EMAIL, "password": common::PANEL_PASSWORD}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 429).await;
    // Logout ends the session.
    let r = s.client.post(s.url("/v2/panel/logout")).header("Authorization", &token).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.client.get(s.url("/v2/panel/products")).header("Authorization", &token).send().await.expect("send");
    assert_envelope(r, 401).await;
    s.stop().await;
}

#[tokio::test]
async fn products_codes_things_and_apps() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let get = |path: String| {
        let c = s.client.clone();
        let url = s.url(&path);
        let panel = panel.clone();
        async move { c.get(url).header("Authorization", panel).send().await.expect("send") }
    };
    let product = s.product(&panel, &[("temperature", true), ("secret", false)]).await;
    let v: Value = get(format!("/v2/panel/products/{product}")).await.json().await.expect("json");
    assert_eq!(
        v["product"]["resources"],
        json!([{"key": "temperature", "public": true}, {"key": "secret", "public": false}])
    );
    let list: Value = get("/v2/panel/products".into()).await.json().await.expect("json");
    assert_eq!(list["products"].as_array().expect("array").len(), 1);

    let codes = s.codes(&panel, &product, 3).await;
    let r = s.activate(&codes[0]).await;
    let thing: Value = r.json().await.expect("json");
    let v: Value = get(format!("/v2/panel/products/{product}/things")).await.json().await.expect("json");
    assert_eq!(v["things"][0]["thingId"], thing["thingId"]);
    assert_eq!(v["things"][0]["thingToken"], thing["thingToken"]);
    assert_eq!(v["things"][0]["activated"], true);
    assert_eq!(v["pendingActivationCodes"], 2);
    let v: Value = get(format!("/v2/panel/products/{product}/activation-codes")).await.json().await.expect("json");
    let used: Vec<bool> =
        v["codes"].as_array().expect("array").iter().map(|c| c["used"].as_bool().expect("bool")).collect();
    assert_eq!(used.iter().filter(|u| **u).count(), 1);

    for bad in [json!({"count": 0}), json!({"count": 1001}), json!({"count": "many"})] {
        let r = s
            .client
            .post(s.url(&format!("/v2/panel/products/{product}/activation-codes")))
            .header("Authorization", &panel)
            .json(&bad)
            .send()
            .await
            .expect("send");
        assert_envelope(r, 400).await;
    }

    // Apps may ask only for keys some product declares public.
    let app = s.app(&panel, &["temperature"]).await;
    let r = s
        .client
        .post(s.url("/v2/panel/apps"))
        .header("Authorization", &panel)
        .json(&json!({"name": "bad", "resources": ["secret"]}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 400).await;
    let r = s
        .client
        .put(s.url(&format!("/v2/panel/apps/{app}")))
        .header("Authorization", &panel)
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = get(format!("/v2/panel/apps/{app}")).await.json().await.expect("json");
    assert_eq!(v["app"]["name"], "renamed");
    assert_eq!(v["app"]["resources"], json!(["temperature"]));

    // Updating a product's resources; a product with things cannot be deleted.
    let r = s
        .client
        .put(s.url(&format!("/v2/panel/products/{product}")))
        .header("Authorization", &panel)
        .json(&json!({"resources": [{"key": "temperature", "public": true}, {"key": "humidity", "public": true}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = get(format!("/v2/panel/products/{product}")).await.json().await.expect("json");
    let keys: Vec<&str> =
        v["product"]["resources"].as_array().expect("resources").iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, ["temperature", "humidity"], "{v}");
    let r = s
        .client
        .delete(s.url(&format!("/v2/panel/products/{product}")))
        .header("Authorization", &panel)
        .send()
        .await
        .expect("send");
    assert_envelope(r, 409).await;

    // Deleting the thing revokes its token.
    let thing_id = thing["thingId"].as_str().expect("id");
    let token = thing["thingToken"].as_str().expect("token");
    let r = s
        .client
        .delete(s.url(&format!("/v2/panel/things/{thing_id}")))
        .header("Authorization", &panel)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .post(s.url(&format!("/v2/things/{token}")))
        .json(&json!({"values": [{"key": "temperature", "value": 1}]}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 404).await;
    let r = s
        .client
        .delete(s.url(&format!("/v2/panel/apps/{app}")))
        .header("Authorization", &panel)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_envelope(get(format!("/v2/panel/apps/{app}")).await, 404).await;

    // Bad shapes are 400, never 422.
    let r = s
        .client
        .post(s.url("/v2/panel/products"))
        .header("Authorization", &panel)
        .json(&json!({"name": 5, "resources": "temperature"}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 400).await;
    s.stop().await;
}

#[tokio::test]
async fn accounts_do_not_see_each_other() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true)]).await;
    s.platform().create_panel_user("other@example.com", "other-password").await.expect("second account");
    let r = s
        .client
        .post(s.url("/v2/panel/login"))
        .json(&json!({"email": "other@example.com", "password": "other-password"}))
        .send()
        .await
        .expect("send");
    let other = r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_owned();
    let r = s
        .client
        .get(s.url(&format!("/v2/panel/products/{product}")))
        .header("Authorization", &other)
        .send()
        .await
        .expect("send");
    assert_envelope(r, 404).await;
    let r = s
        .client
        .post(s.url(&format!("/v2/panel/products/{product}/activation-codes")))
        .header("Authorization", &other)
        .json(&json!({"count": 1}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 404).await;
    // The other account has no public "temperature" of its own.
    let r = s
        .client
        .post(s.url("/v2/panel/apps"))
        .header("Authorization", &other)
        .json(&json!({"name": "x", "resources": ["temperature"]}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 400).await;
    s.stop().await;
}

/// An app's index declaration (`indexes`: fields of its shared collections that may be filtered
/// and sorted on, by collection name) round-trips through create, get, list and update; an update
/// without it keeps it; a bad one is a 400 that changes nothing.
#[tokio::test]
async fn app_index_declarations_round_trip() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let send = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut rb = s.req(method, &path, &panel);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move { rb.send().await.expect("send") }
    };
    let get_app = |app: String| {
        let r = send(reqwest::Method::GET, format!("/v2/panel/apps/{app}"), None);
        async move {
            let r = r.await;
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.expect("json")["app"].clone()
        }
    };
    let declared = json!({"Tracks": ["genre", "rank"], "Playlists": ["name"]});
    let app = common::Api { client: &s.client, base: &s.https }.app_with_indexes(&panel, declared.clone()).await;
    assert_eq!(get_app(app.clone()).await["indexes"], declared);
    let plain = s.app(&panel, &[]).await;
    assert_eq!(get_app(plain).await["indexes"], json!({}), "none declared");
    let list: Value = send(reqwest::Method::GET, "/v2/panel/apps".into(), None).await.json().await.expect("json");
    let listed = list["apps"].as_array().expect("apps").iter().find(|a| a["appId"] == app).expect("listed").clone();
    assert_eq!(listed["indexes"], declared);

    // An update without "indexes" keeps them; with it, the whole declaration is replaced.
    let path = format!("/v2/panel/apps/{app}");
    let r = send(reqwest::Method::PUT, path.clone(), Some(json!({"name": "renamed"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get_app(app.clone()).await["indexes"], declared);
    let replaced = json!({"Tracks": ["rank"]});
    let r = send(reqwest::Method::PUT, path.clone(), Some(json!({"indexes": replaced}))).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["app"]["indexes"], replaced, "{v}");
    assert_eq!(get_app(app.clone()).await["indexes"], replaced);

    // Bad declarations: 400, nothing changes.
    let too_many: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
    for bad in [
        json!(["genre"]),
        json!({"Bad Name": ["genre"]}),
        json!({"Tracks": "genre"}),
        json!({"Tracks": [5]}),
        json!({"Tracks": ["_id"]}),
        json!({"Tracks": [""]}),
        json!({"Tracks": ["genre", "genre"]}),
        json!({ "Tracks": too_many }),
    ] {
        let r = send(reqwest::Method::PUT, path.clone(), Some(json!({"indexes": bad}))).await;
        let e = assert_envelope(r, 400).await;
        assert!(e["message"].as_str().is_some_and(|m| m.starts_with("indexes")), "{bad}: {e}");
        let r = send(reqwest::Method::POST, "/v2/panel/apps".into(), Some(json!({"name": "x", "indexes": bad}))).await;
        assert_envelope(r, 400).await;
    }
    assert_eq!(get_app(app).await["indexes"], replaced);
    s.stop().await;
}
