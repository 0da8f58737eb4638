//! The App API walked through as app-development-guide.txt describes it, top to bottom, against
//! a real server over real TLS: register, login, link, resources, grant (confirmation in the
//! outbox, and through a real SMTP conversation when configured), values with the guide's
//! 2,300-value paging example, posting with `store`/`broadcast`, magic resources, settings, date.

mod app_api_support;
mod common;

use std::time::Duration;

use app_api_support::*;
use common::{APP_USER_PASSWORD, JsonStream, TestServer, assert_envelope, eventually, json_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn the_guide_top_to_bottom() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;

    // Curl test: no session token.
    let v = assert_envelope(s.client.get(s.url("/v2/")).send().await.expect("get"), 401).await;
    assert_eq!(v["message"], "Invalid session token");

    let thing = s.thing(&panel, &[("temperature", true), ("$geo", true), ("$settings", true), ("secret", false)]).await;
    let app = s.app(&panel, &["temperature", "$geo", "$settings"]).await;

    // Register: creates and logs in.
    let (status, v) = s.register(&app, "user@example.com").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["message"], "user created");
    assert_eq!(v["expirationDate"], 31_536_000);
    assert_eq!(v["roles"], json!({}));
    let first = v["token"].as_str().expect("token").to_owned();
    assert!(first.len() >= 22, "at least 128 bits");

    // Login: a new token each time.
    let (status, v) = s.login(&app, "user@example.com", APP_USER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let token = v["token"].as_str().expect("token").to_owned();
    assert_ne!(token, first);
    let (status, v) = get(&s, "/v2/", &token).await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Link the thing with its thingToken.
    let thing_id = s.link(&token, &thing.token).await;
    assert_eq!(thing_id, thing.id);

    // Roles in the guide's shape, without logging in again (the earlier token sees the link too).
    let (_, v) = s.login(&app, "user@example.com", APP_USER_PASSWORD).await;
    let all = json!({"get": true, "post": true, "grant": true, "put": true, "delete": true});
    assert_eq!(v["roles"]["RSRC_temperature"][&thing.id], all, "{v}");
    assert!(v["roles"].get("RSRC_secret").is_none());
    let (_, me) = get(&s, "/v2/me", &first).await;
    assert_eq!(me["roles"]["RSRC_temperature"][&thing.id], all, "{me}");

    // Things of the user carry _id.
    let (status, v) = get(&s, "/v2/me/things", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["_id"], thing.id);

    // Resources.
    let (status, v) = get(&s, "/v2/me/resources", &token).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = v.as_array().expect("array").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec!["temperature", "$geo", "$settings"], "{v}");
    assert_eq!(v[0]["things"], json!([thing.id]));

    // 2,300 values written by the thing in one request; paging by endDate returns each once.
    let values: Vec<Value> = (0..2300).map(|i| json!({"key": "temperature", "value": i})).collect();
    assert_eq!(s.write(&thing, Value::Array(values)).await, StatusCode::CREATED);
    let (status, v) = get(&s, "/v2/me/resources/temperature", &token).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v[&thing.id].as_array().map(Vec::len), Some(1), "default limit 1: {v}");
    assert_eq!(v[&thing.id][0]["value"], 2299);
    assert!(v[&thing.id][0]["datetime"].is_string());

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut end: Option<String> = None;
    loop {
        let path = match &end {
            None => format!("/v2/me/resources/temperature/{}?limit=1000", thing.id),
            Some(e) => format!("/v2/me/resources/temperature/{}?limit=1000&endDate={e}", thing.id),
        };
        let (status, v) = get(&s, &path, &token).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let page = v.as_array().expect("array").clone();
        if page.is_empty() {
            break;
        }
        pages.push(page.len());
        for item in &page {
            assert_eq!(item["key"], "temperature");
            seen.push(item["value"].as_i64().expect("number"));
        }
        end = page.last().and_then(|i| i["datetime"].as_str()).map(str::to_owned);
    }
    assert_eq!(pages, vec![1000, 1000, 300]);
    assert_eq!(seen, (0..2300).rev().collect::<Vec<i64>>(), "every value once, newest first");

    // Grant a friend read access; the confirmation goes to the granter's outbox.
    let friend = s.app_user(&app, "friend@email.com").await;
    let (status, v) = grant(&s, &token, "friend@email.com", json!({"temperature": {&thing.id: {"get": true}}})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"status": "success", "message": "granted"}));
    let (_, v) = get(&s, "/v2/me/resources", &friend).await;
    assert_eq!(v, json!([{"name": "temperature", "things": [thing.id]}]));
    let (status, v) = get(&s, &format!("/v2/me/resources/temperature/{}", thing.id), &friend).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v[0]["value"], 2299);
    let (status, _) =
        s.post_values(&format!("/v2/me/resources/temperature/{}", thing.id), &friend, json!([{"value": 1}])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = s.client.get(s.url(&format!("/v2/panel/apps/{app}/outbox"))).header("Authorization", &panel).send().await;
    let (status, v) = json_of(r.expect("outbox")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["mails"][0]["to"], "user@example.com", "{v}");
    assert!(v["mails"][0]["body"].as_str().is_some_and(|b| b.contains("friend@email.com")), "{v}");

    // Post from the app with store/broadcast: the thing's subscribers receive broadcasts.
    let r = s.client.get(s.url(&format!("/v2/things/{}?keepAlive=60000", thing.token))).send().await;
    let mut stream = JsonStream::new(r.expect("subscribe"), Duration::from_secs(20));
    assert_eq!(stream.next().await, Some(json!({"status": "success", "message": "subscribed"})));
    let path = format!("/v2/me/resources/temperature/{}", thing.id);
    let (status, v) = s.post_values(&path, &token, json!([{"value": 15}])).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v, json!({"status": "Success", "message": "Created"}));
    let (status, v) = s.post_values(&format!("{path}?store=false"), &token, json!([{"value": 111}])).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = s.post_values(&format!("{path}?broadcast=false"), &token, json!([{"value": 222}])).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, _) = s.post_values(&path, &token, json!([{"value": 333}])).await;
    assert_eq!(status, StatusCode::CREATED);
    // The values of the stream's documents (each an item or an array of items), in order.
    let mut seen = Vec::new();
    while !seen.contains(&json!(333)) {
        let items = match stream.next().await.expect("stream open") {
            Value::Array(items) => items,
            other => vec![other],
        };
        seen.extend(items.iter().filter_map(|i| i.get("value").cloned()));
    }
    // store=false is broadcast, broadcast=false (222) is not.
    assert_eq!(seen, [json!(15), json!(111), json!(333)]);
    let (_, v) = get(&s, &format!("{path}?limit=3"), &token).await;
    let latest: Vec<i64> = v.as_array().expect("array").iter().filter_map(|i| i["value"].as_i64()).collect();
    assert_eq!(latest, vec![333, 222, 15], "store=false is not stored");

    // Magic resources from the app side.
    let geo_path = format!("/v2/me/resources/$geo/{}", thing.id);
    let (status, v) = s
        .post_values(&geo_path, &token, json!([{"value": {"type": "Point", "coordinates": [2.154007, 41.390205]}}]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v, json!({"status": "created"}));
    let (status, v) = get(&s, &geo_path, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v[0]["key"], "$geo");
    assert_eq!(v[0]["value"], json!({"type": "Point", "coordinates": [2.154007, 41.390205]}));
    let set_path = format!("/v2/me/resources/$settings/{}", thing.id);
    let (status, _) = s.post_values(&set_path, &token, json!([{"value": {"name": "My Thing", "foo": "bar"}}])).await;
    assert_eq!(status, StatusCode::CREATED);
    let name_path = format!("/v2/me/resources/$settings.name/{}", thing.id);
    let (status, _) = s.post_values(&name_path, &token, json!([{"value": "My Thing 2"}])).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, v) = get(&s, &set_path, &token).await;
    assert_eq!(v, json!([{"key": "$settings", "value": {"name": "My Thing 2", "foo": "bar"}}]));
    let (_, v) = get(&s, &name_path, &token).await;
    assert_eq!(v, json!([{"key": "$settings.name", "value": "My Thing 2"}]));

    // User settings: merged; GET returns exactly what was set.
    let r = s
        .req(Method::PUT, "/v2/me/settings", &token)
        .json(&json!({"hair-color": "pink", "phones": ["13246578", "99833212"]}))
        .send()
        .await
        .expect("settings");
    let (status, v) = json_of(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"status": "success", "message": "updated"}));
    let r = s.req(Method::PUT, "/v2/me/settings", &token).json(&json!({"avatar": "a.png"})).send().await;
    assert_eq!(r.expect("settings").status(), StatusCode::OK);
    let (_, v) = get(&s, "/v2/me/settings", &token).await;
    assert_eq!(v, json!({"hair-color": "pink", "phones": ["13246578", "99833212"], "avatar": "a.png"}));

    // Server date with a session token.
    let (status, v) = get(&s, "/v2/utils/date/?format=UTC", &token).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["date"].as_str().is_some_and(|d| d.ends_with('Z')), "{v}");
    assert_eq!(v["values"][0]["value"], v["date"]);
    let (_, v) = get(&s, "/v2/utils/date?format=unix_timestamp", &token).await;
    let secs = v["date"].as_i64().expect("seconds");
    assert!(secs > 1_600_000_000 && secs < 100_000_000_000, "{v}");
    let r = s.client.get(s.url("/v2/utils/date?format=UTC")).send().await.expect("date");
    assert_envelope(r, 401).await;

    // Unlink; logout.
    let r = s.req(Method::DELETE, &format!("/v2/me/things/{}", thing.id), &token).send().await.expect("unlink");
    assert_eq!(r.status(), StatusCode::OK);
    let (_, v) = get(&s, "/v2/me/things", &token).await;
    assert_eq!(v, json!([]));
    let (_, v) = get(&s, "/v2/me/resources", &friend).await;
    assert_eq!(v, json!([]), "grants given by the owner end with the link");
    let r = s.req(Method::DELETE, "/v2/me/session", &token).send().await.expect("logout");
    assert_eq!(r.status(), StatusCode::OK);
    let v = assert_envelope(s.req(Method::GET, "/v2/me/things", &token).send().await.expect("get"), 401).await;
    assert_eq!(v["message"], "Invalid session token");
    s.stop().await;
}

#[tokio::test]
async fn grant_confirmation_goes_through_smtp_when_configured() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let s = TestServer::start_with(|a| {
        a.smtp_url = Some(url);
        a.smtp_from = Some("noreply@thingline.test".into());
    })
    .await;
    let panel = s.panel_token().await;
    let thing = s.thing(&panel, &[("temperature", true)]).await;
    let app = s.app(&panel, &["temperature"]).await;
    let owner = s.app_user(&app, "owner@example.com").await;
    s.app_user(&app, "friend@example.com").await;
    s.link(&owner, &thing.token).await;
    let (status, v) = grant(&s, &owner, "friend@example.com", json!({"temperature": {&thing.id: {"get": true}}})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mail = eventually(Duration::from_secs(20), || {
        let mails = sink.mails.clone();
        async move { mails.lock().first().cloned() }
    })
    .await;
    assert!(mail.from.contains("noreply@thingline.test"), "{mail:?}");
    assert_eq!(mail.to, vec!["<owner@example.com>".to_owned()]);
    assert!(mail.data.contains("friend@example.com"), "{}", mail.data);
    let r = s.client.get(s.url(&format!("/v2/panel/apps/{app}/outbox"))).header("Authorization", &panel).send().await;
    let (_, v) = json_of(r.expect("outbox")).await;
    assert_eq!(v["mails"], json!([]), "sent mails are not kept in the outbox");
    s.stop().await;
}
