//! A hostile app user against the real `thingline` binary (issue #10): anyone can register in an
//! app (the appId is public), so one user — or many self-registered ones — must not be able to
//! spend a shared `/classes/app` collection's index budget for everyone. Shared collections are
//! filtered and sorted only on the fields the operator declared; private `/classes/me` ones keep
//! index-on-first-use, each user paying for their own.
//!
//! `THINGLINE_TEST_BIN` runs it against another build (see `common/spawned.rs`).

mod common;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use common::spawned::spawn;

/// GETs `path` with a session; (status, body).
async fn get(client: &Client, base: &str, token: &str, path: &str) -> (StatusCode, Value) {
    let r = client.get(format!("{base}{path}")).header("Authorization", token).send().await.expect("get");
    common::json_of(r).await
}

async fn post(client: &Client, base: &str, token: &str, path: &str, body: Value) {
    let r = client.post(format!("{base}{path}")).header("Authorization", token).json(&body).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::CREATED, "POST {path}");
}

fn ids(v: &Value) -> Vec<String> {
    v["results"].as_array().expect("results").iter().map(|o| o["_id"].as_str().expect("_id").to_owned()).collect()
}

fn where_(filter: Value) -> String {
    common::urlencode(&filter.to_string())
}

/// Asserts a 400 envelope that names the field and says how the operator declares it.
fn assert_undeclared(status: StatusCode, v: &Value, collection: &str, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!((v["status"].as_str(), v["code"].as_u64()), (Some("error"), Some(400)), "{v}");
    let m = v["message"].as_str().expect("message");
    assert!(m.contains(&format!("field {field:?} is not declared for the shared collection {collection:?}")), "{m}");
    assert!(m.contains(&format!(r#"{{"indexes":{{"{collection}":["{field}"]}}}}"#)), "says how to declare it: {m}");
}

#[tokio::test]
async fn one_user_cannot_spend_a_shared_collections_index_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &["--durability", "normal"]);
    let client = common::client_for(dir.path());
    let api = common::Api { client: &client, base: &p.https };
    let base = p.https.as_str();
    let panel = api.panel_token().await;
    let app = api.app_with_indexes(&panel, json!({"Tracks": ["genre", "rank"]})).await;
    let alice = api.app_user(&app, "alice@example.com").await;
    let mallory = api.app_user(&app, "mallory@example.com").await;

    for (i, genre) in [(1, "jazz"), (2, "rock"), (3, "jazz"), (4, "jazz")] {
        let o = json!({"_id": i, "genre": genre, "rank": 10 * i, "mood": "calm"});
        post(&client, base, &alice, "/v2/classes/app/Tracks", o.clone()).await;
        post(&client, base, &alice, "/v2/classes/app/Albums/1/Tracks", o).await;
    }

    // Mallory names 70 junk fields (more than the 64 a collection may index), by where and by
    // sort, and so does another account she registers: every one is refused, none is indexed.
    for i in 0..70 {
        let field = format!("junk{i}");
        let path = if i % 2 == 0 {
            format!("/v2/classes/app/Tracks?where={}", where_(json!({ &field: 1 })))
        } else {
            format!("/v2/classes/app/Tracks?sort=-{field}")
        };
        let (status, v) = get(&client, base, &mallory, &path).await;
        assert_undeclared(status, &v, "Tracks", &field);
    }
    let sock = api.app_user(&app, "sock@example.com").await;
    let (status, v) = get(&client, base, &sock, "/v2/classes/app/Tracks?sort=more").await;
    assert_undeclared(status, &v, "Tracks", "more");

    // Alice's queries on the declared fields still work, in every shared collection of that name.
    for collection in ["Tracks", "Albums/1/Tracks"] {
        let q = format!("/v2/classes/app/{collection}?where={}&sort=-rank", where_(json!({"genre": "jazz"})));
        let (status, v) = get(&client, base, &alice, &q).await;
        assert_eq!(status, StatusCode::OK, "{collection}: {v}");
        assert_eq!(ids(&v), ["4", "3", "1"], "{collection}");
    }
    // An undeclared field is the same clear 400 for her.
    let (status, v) =
        get(&client, base, &alice, &format!("/v2/classes/app/Tracks?where={}", where_(json!({"mood": "calm"})))).await;
    assert_undeclared(status, &v, "Tracks", "mood");
    let (status, v) = get(&client, base, &mallory, "/v2/classes/app/Albums/1/Tracks?sort=mood").await;
    assert_undeclared(status, &v, "Tracks", "mood");

    // Private collections are unaffected: any field, indexed on first use (each user's own budget
    // of 64, checked in classes_api.rs).
    for (token, i, mood) in [(&alice, 1, "calm"), (&alice, 2, "loud"), (&mallory, 1, "loud")] {
        post(&client, base, token, "/v2/classes/me/Tracks", json!({"_id": i, "mood": mood})).await;
    }
    for i in 0..3 {
        let (status, v) = get(&client, base, &mallory, &format!("/v2/classes/me/Tracks?sort=junk{i}")).await;
        assert_eq!((status, ids(&v)), (StatusCode::OK, Vec::<String>::new()), "{v}");
    }
    let q = format!("/v2/classes/me/Tracks?where={}", where_(json!({"mood": "loud"})));
    for token in [&alice, &mallory] {
        let (status, v) = get(&client, base, token, &q).await;
        let want = if token == &alice { "2" } else { "1" };
        assert_eq!((status, ids(&v)), (StatusCode::OK, vec![want.to_owned()]), "{v}");
    }
    // The client's connections close while the runtime runs on: a graceful stop waits for them.
    drop(client);
    let status = tokio::task::spawn_blocking(move || p.stop()).await.expect("stop");
    assert!(status.success(), "{status:?}");
}
