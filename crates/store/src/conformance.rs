//! The conformance suite every backend runs: behaviour the platform relies on, written against
//! `dyn Store` only. A backend's test file opens a fresh store and calls [`run_all`].

use std::sync::Arc;

use thingline_core::query::TimelineQuery;

use crate::{NewPoint, NewThing, Product, ResourceDecl, Store};

/// Runs every check; panics (test failure) with a message naming the broken rule.
pub async fn run_all(store: Arc<dyn Store>) {
    panel_users_and_sessions(&*store).await;
    let thing_seq = activation_is_single_use(&*store).await;
    timelines_keep_distinct_datetimes(&*store, thing_seq).await;
    timelines_page_exactly(&*store, thing_seq).await;
    settings_documents(&*store, thing_seq).await;
}

async fn panel_users_and_sessions(store: &dyn Store) {
    let user = store.create_panel_user("ops@example.com", "$argon2id$x").await.expect("create user");
    assert!(
        store.create_panel_user("ops@example.com", "$argon2id$y").await.is_err(),
        "duplicate panel email must be refused"
    );
    store.create_panel_session(user.id, "digest-1", 2_000).await.expect("session");
    assert_eq!(store.panel_session_user("digest-1", 1_000).await.expect("lookup"), Some(user.clone()));
    assert_eq!(store.panel_session_user("digest-1", 3_000).await.expect("lookup"), None, "expired session");
    store.delete_panel_session("digest-1").await.expect("delete");
    assert_eq!(store.panel_session_user("digest-1", 1_000).await.expect("lookup"), None);
}

async fn activation_is_single_use(store: &dyn Store) -> i64 {
    let owner = store.panel_user_by_email("ops@example.com").await.expect("user").expect("exists").id;
    let product = Product {
        id: "prod-1".into(),
        owner_id: owner,
        name: "sensor".into(),
        resources: vec![ResourceDecl { key: "temperature".into(), public: true }],
        created_ms: 1,
    };
    store.create_product(&product).await.expect("product");
    assert_eq!(store.product("prod-1").await.expect("get"), Some(product));
    store.create_activation_codes("prod-1", &["code-a".into(), "code-b".into()], 5).await.expect("codes");
    let new = |id: &str| NewThing { id: id.into(), token: format!("token-{id}"), now_ms: 10 };
    let thing = store.activate("code-a", None, new("t1")).await.expect("activate");
    assert_eq!(thing.product_id, "prod-1");
    let again = store.activate("code-a", None, new("t2")).await.expect_err("used code");
    assert_eq!(again.status(), 409, "a used code is a conflict");
    let unknown = store.activate("nope", None, new("t3")).await.expect_err("unknown code");
    assert_eq!(unknown.status(), 404);
    let wrong = store.activate("code-b", Some("other"), new("t4")).await.expect_err("wrong product");
    assert_eq!(wrong.status(), 404);
    assert_eq!(store.thing_by_token("token-t1").await.expect("by token"), Some(thing.clone()));
    let codes = store.activation_codes("prod-1").await.expect("codes");
    assert_eq!(codes.iter().filter(|c| c.thing_id.is_some()).count(), 1);
    assert_eq!(store.delete_product("prod-1").await.expect_err("has things").status(), 409);
    thing.seq
}

async fn timelines_keep_distinct_datetimes(store: &dyn Store, seq: i64) {
    let pts: Vec<NewPoint> =
        (0..1500).map(|i| NewPoint { key: "burst".into(), ts: None, value: i.to_string() }).collect();
    let stored = store.append(seq, pts).await.expect("append");
    let mut ts: Vec<i64> = stored.iter().map(|p| p.ts).collect();
    ts.sort();
    ts.dedup();
    assert_eq!(ts.len(), 1500, "server-stamped datetimes of one timeline must be distinct");
    // Explicit equal datetimes are kept distinct too.
    let same: Vec<NewPoint> =
        (0..10).map(|i| NewPoint { key: "same".into(), ts: Some(1_000), value: i.to_string() }).collect();
    let stored = store.append(seq, same).await.expect("append");
    let mut ts: Vec<i64> = stored.iter().map(|p| p.ts).collect();
    ts.dedup();
    assert_eq!(ts.len(), 10);
    let again = store
        .append(seq, vec![NewPoint { key: "same".into(), ts: Some(1_000), value: "\"x\"".into() }])
        .await
        .expect("append");
    assert!(!(1_000..1_010).contains(&again[0].ts), "a taken datetime moves to a free one");
}

async fn timelines_page_exactly(store: &dyn Store, seq: i64) {
    let mut seen = Vec::new();
    let mut end = None;
    loop {
        let q = TimelineQuery { limit: 1000, start: None, end };
        let page = store.read(seq, "burst", &q).await.expect("read").expect("exists");
        if page.is_empty() {
            break;
        }
        assert!(page.windows(2).all(|w| w[0].ts > w[1].ts), "newest first");
        end = page.last().map(|p| p.ts);
        seen.extend(page.into_iter().map(|p| p.value));
    }
    seen.sort_by_key(|v| v.parse::<i64>().unwrap_or(-1));
    let expected: Vec<String> = (0..1500).map(|i: i32| i.to_string()).collect();
    assert_eq!(seen, expected, "paging by endDate returns every value exactly once");
    assert!(
        store.read(seq, "never", &TimelineQuery { limit: 1, start: None, end: None }).await.expect("read").is_none()
    );
    let none = TimelineQuery { limit: 5, start: Some(0), end: Some(1) };
    assert_eq!(store.read(seq, "burst", &none).await.expect("read"), Some(vec![]), "written key, empty range");
    let keys = store.keys(seq).await.expect("keys");
    assert_eq!(keys, vec!["burst".to_string(), "same".to_string()]);
}

async fn settings_documents(store: &dyn Store, seq: i64) {
    assert_eq!(store.thing_settings(seq).await.expect("get"), serde_json::json!({}));
    store.update_thing_settings(seq, None, serde_json::json!({"name": "A", "foo": "bar"})).await.expect("set");
    let doc = store.update_thing_settings(seq, Some("name"), serde_json::json!("B")).await.expect("set path");
    assert_eq!(doc, serde_json::json!({"name": "B", "foo": "bar"}));
    assert_eq!(store.thing_settings(seq).await.expect("get"), doc);
}
