//! One test per App API rule (contract.md): what a user may see and do, accounts and sessions,
//! login rate limits, and HTTPS only. Each test starts its own real server.

mod app_api_support;
mod common;

use std::time::Duration;

use app_api_support::*;
use common::{APP_USER_PASSWORD, TestServer, TestThing, assert_envelope, eventually, json_of};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A server, a panel token, one thing of a product with `resources`, an app asking for `asks`,
/// and an owner who linked the thing.
async fn setup(resources: &[(&str, bool)], asks: &[&str]) -> (TestServer, String, TestThing, String, String) {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let thing = s.thing(&panel, resources).await;
    let app = s.app(&panel, asks).await;
    let owner = s.app_user(&app, "owner@example.com").await;
    s.link(&owner, &thing.token).await;
    (s, panel, thing, app, owner)
}

#[tokio::test]
async fn private_resource_is_invisible_and_unwritable() {
    let (s, _, thing, _, owner) = setup(&[("temperature", true), ("secret", false)], &["temperature"]).await;
    assert_eq!(
        s.write(&thing, json!([{"key": "secret", "value": 1}, {"key": "temperature", "value": 2}])).await,
        StatusCode::CREATED
    );
    let path = format!("/v2/me/resources/secret/{}", thing.id);
    let hidden = assert_envelope(s.req(Method::GET, &path, &owner).send().await.expect("get"), 404).await;
    let never = format!("/v2/me/resources/never/{}", thing.id);
    let unwritten = assert_envelope(s.req(Method::GET, &never, &owner).send().await.expect("get"), 404).await;
    assert_eq!(hidden["message"], "Resource secret not found");
    assert_eq!(unwritten["message"], "Resource never not found", "same answer as a key never written");
    let (status, _) = s.post_values(&path, &owner, json!([{"value": 99}])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, v) = s.read(&thing, "secret", "?limit=10").await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "nothing stored: {v}");
    let (_, v) = get(&s, "/v2/me/resources", &owner).await;
    assert_eq!(v, json!([{"name": "temperature", "things": [thing.id]}]));
    let (status, _) = get(&s, "/v2/me/resources/secret", &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn resource_the_app_did_not_ask_for_is_invisible() {
    let (s, _, thing, _, owner) =
        setup(&[("temperature", true), ("pressure", true), ("$settings", true)], &["temperature"]).await;
    assert_eq!(s.write(&thing, json!([{"key": "pressure", "value": 1013}])).await, StatusCode::CREATED);
    let (status, _) = get(&s, &format!("/v2/me/resources/pressure/{}", thing.id), &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        s.post_values(&format!("/v2/me/resources/pressure/{}", thing.id), &owner, json!([{"value": 1}])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Magic keys follow their base key, which this app did not ask for either.
    let (status, _) = get(&s, &format!("/v2/me/resources/$settings.name/{}", thing.id), &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        s.post_values(&format!("/v2/me/resources/$settings/{}", thing.id), &owner, json!([{"value": {"a": 1}}])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, v) = s.read(&thing, "$settings", "").await;
    assert_eq!(v[0]["value"], json!({}), "nothing stored");
    let (_, v) = get(&s, "/v2/me/resources", &owner).await;
    assert_eq!(v, json!([{"name": "temperature", "things": [thing.id]}]));
    s.stop().await;
}

#[tokio::test]
async fn unlinked_user_is_denied() {
    let (s, _, thing, app, _owner) = setup(&[("temperature", true)], &["temperature"]).await;
    assert_eq!(s.write(&thing, json!([{"key": "temperature", "value": 20}])).await, StatusCode::CREATED);
    let other = s.app_user(&app, "other@example.com").await;
    let path = format!("/v2/me/resources/temperature/{}", thing.id);
    assert_eq!(get(&s, &path, &other).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.post_values(&path, &other, json!([{"value": 1}])).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&s, "/v2/me/resources", &other).await.1, json!([]));
    assert_eq!(get(&s, "/v2/me/things", &other).await.1, json!([]));
    assert_eq!(get(&s, "/v2/me/resources/temperature", &other).await.0, StatusCode::NOT_FOUND);
    // Linking by thingId is refused once somebody linked the thing; by thingToken it works.
    let r = s.req(Method::POST, "/v2/me/things", &other).json(&json!({"thingId": thing.id})).send().await;
    assert_envelope(r.expect("link"), 403).await;
    assert_eq!(s.link(&other, &thing.token).await, thing.id);
    assert_eq!(get(&s, &path, &other).await.0, StatusCode::OK, "the link counts without logging in again");
    s.stop().await;
}

#[tokio::test]
async fn linking_by_thing_id_works_for_an_unlinked_thing() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let thing = s.thing(&panel, &[("temperature", true)]).await;
    let app = s.app(&panel, &["temperature"]).await;
    let u = s.app_user(&app, "u@example.com").await;
    let r = s.req(Method::POST, "/v2/me/things", &u).json(&json!({"thingId": thing.id})).send().await;
    let (status, v) = json_of(r.expect("link")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["thingId"], thing.id);
    let r = s.req(Method::POST, "/v2/me/things", &u).json(&json!({"thingId": "nope"})).send().await;
    assert_envelope(r.expect("link"), 404).await;
    let r = s.req(Method::POST, "/v2/me/things", &u).json(&json!({})).send().await;
    assert_envelope(r.expect("link"), 400).await;
    s.stop().await;
}

#[tokio::test]
async fn friend_is_read_only_and_cannot_grant_onward() {
    let (s, _, thing, app, owner) = setup(&[("temperature", true)], &["temperature"]).await;
    assert_eq!(s.write(&thing, json!([{"key": "temperature", "value": 20}])).await, StatusCode::CREATED);
    let friend = s.app_user(&app, "friend@example.com").await;
    s.app_user(&app, "third@example.com").await;
    let (status, v) = grant(&s, &owner, "friend@example.com", json!({"temperature": {&thing.id: {"get": true}}})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let path = format!("/v2/me/resources/temperature/{}", thing.id);
    let (status, v) = get(&s, &path, &friend).await;
    assert_eq!((status, v[0]["value"].clone()), (StatusCode::OK, json!(20)));
    let (_, v) = get(&s, "/v2/me/resources/temperature", &friend).await;
    assert_eq!(v[&thing.id][0]["value"], 20);
    let (status, _) = s.post_values(&path, &friend, json!([{"value": 1}])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, v) = s.read(&thing, "temperature", "?limit=10").await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "nothing stored");
    let (status, _) = grant(&s, &friend, "third@example.com", json!({"temperature": {&thing.id: {"get": true}}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no grant permission");
    let (_, login_v) = s.login(&app, "friend@example.com", APP_USER_PASSWORD).await;
    assert_eq!(
        login_v["roles"]["RSRC_temperature"][&thing.id],
        json!({"get": true, "post": false, "grant": false, "put": false, "delete": false})
    );
    assert_eq!(get(&s, "/v2/me/things", &friend).await.1, json!([]), "granted things are not linked things");
    // Revoking (all false) ends the friend's access at once.
    let (status, _) =
        grant(&s, &owner, "friend@example.com", json!({"temperature": {&thing.id: {"get": false}}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(&s, &path, &friend).await.0, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn grant_beyond_own_rights_is_refused() {
    let (s, panel, thing, app, owner) = setup(&[("temperature", true), ("secret", false)], &["temperature"]).await;
    let friend = s.app_user(&app, "friend@example.com").await;
    s.app_user(&app, "third@example.com").await;
    let t = &thing.id;
    let (status, _) =
        grant(&s, &owner, "friend@example.com", json!({"temperature": {t: {"get": true, "grant": true}}})).await;
    assert_eq!(status, StatusCode::OK);
    // The friend holds get+grant: may pass on get, not post, not grant-less keys.
    let (status, _) = grant(&s, &friend, "third@example.com", json!({"temperature": {t: {"post": true}}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = grant(&s, &friend, "third@example.com", json!({"temperature": {t: {"get": true}}})).await;
    assert_eq!(status, StatusCode::OK);
    // Nobody grants what is hidden from them.
    let (status, _) = grant(&s, &owner, "third@example.com", json!({"secret": {t: {"get": true}}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The granted user must exist in the same app.
    let (status, v) = grant(&s, &owner, "nobody@example.com", json!({"temperature": {t: {"get": true}}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let other_app = s.app(&panel, &["temperature"]).await;
    s.app_user(&other_app, "elsewhere@example.com").await;
    let (status, _) = grant(&s, &owner, "elsewhere@example.com", json!({"temperature": {t: {"get": true}}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = grant(&s, &owner, "friend@example.com", json!({"temperature": {t: {"fly": true}}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = grant(&s, &owner, "friend@example.com", json!("nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A settings path is granted through `$settings` (a grant on the path would grant nothing).
    let (status, v) = grant(&s, &owner, "friend@example.com", json!({"$settings.name": {t: {"get": true}}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("\"$settings\"")), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn apps_are_isolated() {
    let (s, panel, thing, app_a, owner) = setup(&[("temperature", true)], &["temperature"]).await;
    let app_b = s.app(&panel, &["temperature"]).await;
    // The same email is another user in another app.
    let (status, _) = s.register(&app_b, "owner@example.com").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s.register(&app_a, "OWNER@example.com").await;
    assert_eq!(status, StatusCode::CONFLICT, "duplicate email in one app");
    let (_, v) = s.login(&app_b, "owner@example.com", APP_USER_PASSWORD).await;
    let b_token = v["token"].as_str().expect("token").to_owned();
    assert_eq!(v["roles"], json!({}));
    assert_eq!(get(&s, "/v2/me/things", &b_token).await.1, json!([]));
    assert_eq!(get(&s, &format!("/v2/me/resources/temperature/{}", thing.id), &b_token).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&s, "/v2/me/settings", &owner).await.1, json!({}));
    // Deleting an app ends its sessions at once.
    let r = s.client.delete(s.url(&format!("/v2/panel/apps/{app_a}"))).header("Authorization", &panel).send().await;
    assert_eq!(r.expect("delete").status(), StatusCode::OK);
    assert_envelope(s.req(Method::GET, "/v2/me/things", &owner).send().await.expect("get"), 401).await;
    assert_eq!(get(&s, "/v2/me/things", &b_token).await.0, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn expired_and_logged_out_tokens_are_refused() {
    let (s, _, _, app, owner) = setup(&[("temperature", true)], &["temperature"]).await;
    let r = s
        .client
        .post(s.url("/v2/login"))
        .json(&json!({"email": "owner@example.com", "password": APP_USER_PASSWORD, "app": app, "expirationDate": 1}))
        .send()
        .await
        .expect("login");
    let (status, v) = json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["expirationDate"], 1);
    let short = v["token"].as_str().expect("token").to_owned();
    assert_eq!(get(&s, "/v2/me/things", &short).await.0, StatusCode::OK);
    eventually(Duration::from_secs(10), || {
        let (s, short) = (&s, &short);
        async move { (get(s, "/v2/me/things", short).await.0 == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
    // Bearer is accepted; logout ends the token.
    assert_eq!(get(&s, "/v2/me/things", &format!("Bearer {owner}")).await.0, StatusCode::OK);
    let r = s.req(Method::DELETE, "/v2/me/session", &format!("Bearer {owner}")).send().await.expect("logout");
    assert_eq!(r.status(), StatusCode::OK);
    let v = assert_envelope(s.req(Method::GET, "/v2/me/things", &owner).send().await.expect("get"), 401).await;
    assert_eq!(v["message"], "Invalid session token");
    assert_envelope(s.req(Method::GET, "/v2/me/things", "garbage").send().await.expect("get"), 401).await;
    assert_envelope(s.client.get(s.url("/v2/me/things")).send().await.expect("get"), 401).await;
    s.stop().await;
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let (s, _, _, app, first) = setup(&[("temperature", true)], &["temperature"]).await;
    let (_, v) = s.login(&app, "owner@example.com", APP_USER_PASSWORD).await;
    let second = v["token"].as_str().expect("token").to_owned();
    // A refused request changes nothing: settings over the limit keep the old password.
    let r = s
        .req(Method::PUT, "/v2/me/settings", &first)
        .json(&json!({"password": "another long password", "blob": "x".repeat(70_000)}))
        .send()
        .await
        .expect("settings");
    assert_envelope(r, 413).await;
    assert_eq!(s.login(&app, "owner@example.com", APP_USER_PASSWORD).await.0, StatusCode::OK);
    // The same when only the merged document is over the limit (each patch alone is under it).
    let put = |body: serde_json::Value| s.req(Method::PUT, "/v2/me/settings", &first).json(&body).send();
    assert_eq!(put(json!({"a": "x".repeat(40_000)})).await.expect("settings").status(), StatusCode::OK);
    let r = put(json!({"password": "another long password", "b": "x".repeat(40_000)})).await.expect("settings");
    assert_envelope(r, 413).await;
    assert_eq!(s.login(&app, "owner@example.com", APP_USER_PASSWORD).await.0, StatusCode::OK);
    assert_eq!(put(json!({"a": null})).await.expect("settings").status(), StatusCode::OK);
    let r = s
        .req(Method::PUT, "/v2/me/settings", &first)
        .json(&json!({"password": "the new long password", "color": "red"}))
        .send()
        .await
        .expect("settings");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get(&s, "/v2/me/settings", &first).await.1, json!({"color": "red"}), "password never stored");
    assert_envelope(s.req(Method::GET, "/v2/me/settings", &second).send().await.expect("get"), 401).await;
    assert_eq!(s.login(&app, "owner@example.com", APP_USER_PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.login(&app, "owner@example.com", "the new long password").await.0, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn accounts_errors_and_rate_limit() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let app = s.app(&panel, &[]).await;
    s.app_user(&app, "a@example.com").await;
    // Form-urlencoded works like JSON.
    let r = s
        .client
        .post(s.url("/v2/register"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("email=b%40example.com&password=another+password&app={app}"))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, v) = s.register(&app, "a@example.com").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s.register("no-such-app", "a@example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(v["message"].as_str().is_some_and(|m| m.contains("no-such-app")), "{v}");
    let r = s.client.post(s.url("/v2/login")).json(&json!({"email": "a@example.com"})).send().await;
    assert_envelope(r.expect("login"), 400).await;
    let r =
        s.client.post(s.url("/v2/login")).body("{\"email\": ").header("Content-Type", "application/json").send().await;
    assert_envelope(r.expect("login"), 400).await;

    // 10 failures per email; the 11th attempt is 429 even with the right password.
    for _ in 0..10 {
        assert_eq!(s.login(&app, "a@example.com", "wrong password!").await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, v) = s.login(&app, "a@example.com", APP_USER_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], 429);
    // Another user of the app is not blocked.
    assert_eq!(s.login(&app, "b@example.com", "another password").await.0, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn app_api_answers_only_over_https() {
    let (s, _, thing, app, owner) = setup(&[("temperature", true)], &["temperature"]).await;
    let plain = reqwest::Client::new();
    for (method, path) in [
        (Method::POST, "/v2/register"),
        (Method::POST, "/v2/login"),
        (Method::GET, "/v2/me/resources"),
        (Method::GET, "/v2/me/things"),
        (Method::PUT, "/v2/me/grant"),
        (Method::GET, "/v2/utils/date?format=UTC"),
        (Method::GET, "/v2/panel/apps"),
    ] {
        let r = plain
            .request(method, format!("{}{}", s.http, path))
            .header("Authorization", &owner)
            .json(&json!({"email": "owner@example.com", "password": APP_USER_PASSWORD, "app": app}))
            .send()
            .await
            .expect("plain");
        let v = assert_envelope(r, 403).await;
        assert_eq!(v["message"], "HTTPS required", "{path}");
    }
    // Devices still work on plain HTTP.
    let r = plain.get(format!("{}/v2/utils/date?thingToken={}", s.http, thing.token)).send().await.expect("date");
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}
