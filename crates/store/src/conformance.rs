//! The conformance suite every backend runs: behaviour the platform relies on, written against
//! `dyn Store` only. A backend's test file opens a fresh store and calls [`run_all`].

pub mod objects;
pub mod panel;

use std::sync::Arc;

use thingline_core::query::TimelineQuery;

use crate::{NewPoint, NewThing, Store};
use thingline_core::model::{GrantEntry, Product, ResourceDecl};

/// Runs every check; panics (test failure) with a message naming the broken rule.
pub async fn run_all(store: Arc<dyn Store>) {
    panel_users_and_sessions(&*store).await;
    let thing_seq = activation_is_single_use(&*store).await;
    timelines_keep_distinct_datetimes(&*store, thing_seq).await;
    timelines_page_exactly(&*store, thing_seq).await;
    timelines_stay_inside_the_supported_range(&*store, thing_seq).await;
    a_first_write_never_reads_as_an_empty_timeline(&store, thing_seq).await;
    settings_documents(&*store, thing_seq).await;
    app_users_sessions_links_grants(&*store).await;
    objects::objects_in_collections(&*store).await;
    panel::panel_reads(&*store).await;
}

/// A read racing the first append of a key answers "never written" or the value, never an empty
/// page (which says "written, nothing in this range"): the read must decide from one snapshot.
async fn a_first_write_never_reads_as_an_empty_timeline(store: &Arc<dyn Store>, seq: i64) {
    for round in 0..100 {
        let key = format!("race-{round}");
        let writer = {
            let store = Arc::clone(store);
            let key = key.clone();
            tokio::spawn(async move {
                store.append(seq, vec![NewPoint { key, ts: None, value: "1".into() }]).await.expect("append")
            })
        };
        let query = TimelineQuery { limit: 10, start: None, end: None };
        let read_until_written = async {
            loop {
                match store.read(seq, &key, &query).await.expect("read") {
                    None => tokio::task::yield_now().await,
                    Some(points) => {
                        assert_eq!(points.len(), 1, "round {round}: a written key read as an empty page");
                        break;
                    }
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read_until_written)
            .await
            .expect("the value is readable once appended");
        writer.await.expect("writer");
    }
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
    assert_eq!(store.unused_activation_codes("prod-1").await.expect("count"), 1);
    assert_eq!(store.unused_activation_codes("no-such-product").await.expect("count"), 0);
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
    // History written backwards (older than anything stored) keeps its datetimes.
    let older = store
        .append(seq, vec![NewPoint { key: "same".into(), ts: Some(500), value: "1".into() }])
        .await
        .expect("append");
    assert_eq!(older[0].ts, 500);
    let older = store
        .append(seq, vec![NewPoint { key: "same".into(), ts: Some(500), value: "2".into() }])
        .await
        .expect("append");
    assert_eq!(older[0].ts, 501, "a datetime taken by the oldest value moves forward");
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

/// No datetime is assigned past `MAX_MS` (9999-12-31T23:59:59.999Z): a request that would need one
/// is a 400 and stores nothing, other requests (also of the same group commit) are answered on
/// their own, and paging by `end` stays exact at the edge.
async fn timelines_stay_inside_the_supported_range(store: &dyn Store, seq: i64) {
    use thingline_core::time::MAX_MS;
    let point = |key: &str, ts: Option<i64>, v: &str| NewPoint { key: key.into(), ts, value: v.into() };
    let at = |ts: i64, v: &str| point("edge", Some(ts), v);

    let first = store.append(seq, vec![at(MAX_MS, "1")]).await.expect("a value at the maximum");
    assert_eq!(first[0].ts, MAX_MS);
    let again = store.append(seq, vec![at(MAX_MS, "2")]).await.expect_err("the maximum is taken");
    assert_eq!(again.status(), 400, "a second value at the maximum has no datetime left: {again}");
    let stamped = store.append(seq, vec![point("edge", None, "3")]).await.expect_err("stamped after the maximum");
    assert_eq!(stamped.status(), 400, "a server-stamped value after the maximum: {stamped}");
    let past = store.append(seq, vec![at(MAX_MS + 1, "4")]).await.expect_err("past the maximum");
    assert_eq!(past.status(), 400, "an explicit datetime past the maximum: {past}");

    // A backfill moves forward to the next free millisecond, and is refused when none is left.
    assert_eq!(store.append(seq, vec![at(MAX_MS - 2, "5")]).await.expect("free")[0].ts, MAX_MS - 2);
    assert_eq!(store.append(seq, vec![at(MAX_MS - 2, "6")]).await.expect("moved")[0].ts, MAX_MS - 1);
    let full = store.append(seq, vec![at(MAX_MS - 2, "7")]).await.expect_err("no free datetime");
    assert_eq!(full.status(), 400, "a backfill pushed past the maximum: {full}");
    // All or nothing: the first point of a refused request is not stored either.
    let mixed = store.append(seq, vec![at(MAX_MS - 10, "8"), at(MAX_MS - 1, "9")]).await.expect_err("refused");
    assert_eq!(mixed.status(), 400);

    // Concurrent requests (committed in groups): each is answered on its own, and nothing of a
    // refused one is stored.
    let requests = (0..16).map(|i| {
        let points = if i % 4 == 0 {
            vec![point("partial", None, "never"), at(MAX_MS, "refused")]
        } else {
            vec![point("beside", None, "ok")]
        };
        store.append(seq, points)
    });
    for (i, r) in futures_util::future::join_all(requests).await.into_iter().enumerate() {
        match r {
            Ok(stored) => assert!(i % 4 != 0 && stored[0].ts <= MAX_MS, "request {i}"),
            Err(e) => assert!(i % 4 == 0 && e.status() == 400, "request {i}: {e}"),
        }
    }
    let partial = store.read(seq, "partial", &TimelineQuery { limit: 10, start: None, end: None }).await;
    assert_eq!(partial.expect("read"), None, "no point of a refused request is stored");

    // Exactly what was acknowledged, once each, also when paging by `end` from the maximum.
    let all = TimelineQuery { limit: 1000, start: None, end: None };
    let page = store.read(seq, "edge", &all).await.expect("read").expect("exists");
    let got: Vec<(i64, &str)> = page.iter().map(|p| (p.ts, p.value.as_str())).collect();
    assert_eq!(got, vec![(MAX_MS, "1"), (MAX_MS - 1, "6"), (MAX_MS - 2, "5")]);
    let mut seen = Vec::new();
    let mut end = None;
    loop {
        let page = store.read(seq, "edge", &TimelineQuery { limit: 1, start: None, end }).await.expect("read");
        let page = page.expect("exists");
        let Some(p) = page.first() else { break };
        assert!(p.ts <= MAX_MS);
        end = Some(p.ts);
        seen.push(p.value.clone());
    }
    assert_eq!(seen, ["1", "6", "5"], "paging by end returns every value exactly once");
    let top = TimelineQuery { limit: 10, start: Some(MAX_MS), end: None };
    assert_eq!(store.read(seq, "edge", &top).await.expect("read").expect("exists").len(), 1);
}

async fn settings_documents(store: &dyn Store, seq: i64) {
    assert_eq!(store.thing_settings(seq).await.expect("get"), serde_json::json!({}));
    store.update_thing_settings(seq, None, serde_json::json!({"name": "A", "foo": "bar"})).await.expect("set");
    let doc = store.update_thing_settings(seq, Some("name"), serde_json::json!("B")).await.expect("set path");
    assert_eq!(doc, serde_json::json!({"name": "B", "foo": "bar"}));
    assert_eq!(store.thing_settings(seq).await.expect("get"), doc);
}

async fn app_users_sessions_links_grants(store: &dyn Store) {
    use thingline_core::model::App;
    let owner = store.panel_user_by_email("ops@example.com").await.expect("user").expect("exists").id;
    let app = App {
        id: "app-1".into(),
        owner_id: owner,
        name: "a".into(),
        resources: vec![],
        indexes: Default::default(),
        created_ms: 1,
    };
    store.create_app(&app).await.expect("app");
    let alice = store.create_app_user("app-1", "alice@example.com", "$argon2id$a", 1).await.expect("alice");
    let dup = store.create_app_user("app-1", "alice@example.com", "$argon2id$b", 1).await.expect_err("duplicate");
    assert_eq!(dup.status(), 409, "duplicate email in one app");
    let unknown = store.create_app_user("nope", "x@example.com", "$argon2id$b", 1).await.expect_err("no app");
    assert_eq!(unknown.status(), 404, "unknown app");
    let bob = store.create_app_user("app-1", "bob@example.com", "$argon2id$b", 2).await.expect("bob");
    assert_eq!(store.app_user_by_email("app-1", "alice@example.com").await.expect("get"), Some(alice.clone()));

    // Sessions expire, and a password change ends every other session.
    store.create_app_session(alice.id, "s1", 2_000, 1).await.expect("s1");
    store.create_app_session(alice.id, "s2", 2_000, 1).await.expect("s2");
    assert_eq!(store.app_session("s1", 1_000).await.expect("get").map(|s| s.user_id), Some(alice.id));
    assert_eq!(store.app_session("s1", 3_000).await.expect("get"), None, "expired");
    store.set_app_user_password(alice.id, "$argon2id$new", Some("s1")).await.expect("password");
    assert!(store.app_session("s1", 1_000).await.expect("get").is_some(), "the changing session stays");
    assert!(store.app_session("s2", 1_000).await.expect("get").is_none(), "other sessions end");
    assert!(store.delete_app_session("s1").await.expect("logout"));
    assert!(store.app_session("s1", 1_000).await.expect("get").is_none());

    // Links: by token any user; exclusive only when unlinked.
    let thing = store.thing_by_token("token-t1").await.expect("thing").expect("exists");
    assert!(store.link_thing(alice.id, &thing.id, true, 5).await.expect("link"));
    assert!(store.link_thing(alice.id, &thing.id, true, 5).await.expect("own link again"));
    assert!(!store.link_thing(bob.id, &thing.id, true, 5).await.expect("exclusive refused"));
    assert_eq!(store.linked_things(alice.id).await.expect("things"), vec![thing.clone()]);
    assert_eq!(store.link_thing(alice.id, "no-thing", false, 5).await.expect_err("unknown").status(), 404);

    // Grants: a batch applies whole, in order; a regrant replaces; perms 0 revokes.
    let entry = |key: &str, thing_id: &str, perms: u8| GrantEntry { thing_id: thing_id.into(), key: key.into(), perms };
    let granted = |grants: Vec<crate::GrantRecord>| {
        let mut v: Vec<(String, u8, i64)> = grants.into_iter().map(|g| (g.key, g.perms, g.granted_by)).collect();
        v.sort();
        v
    };
    let batch = [entry("temperature", &thing.id, 1), entry("humidity", &thing.id, 3), entry("pressure", &thing.id, 1)];
    store.set_grants(bob.id, alice.id, &batch, 6).await.expect("grant");
    // A regrant replaces; within a batch the later entry of a pair wins.
    let regrant = [entry("temperature", &thing.id, 31), entry("temperature", &thing.id, 3)];
    store.set_grants(bob.id, alice.id, &regrant, 7).await.expect("regrant");
    let expect = |v: &[(&str, u8)]| v.iter().map(|(k, p)| ((*k).to_owned(), *p, alice.id)).collect::<Vec<_>>();
    let grants = granted(store.grants_of(bob.id).await.expect("grants"));
    assert_eq!(grants, expect(&[("humidity", 3), ("pressure", 1), ("temperature", 3)]), "a batch applies whole");
    // Revoking an absent grant is no error.
    let revoke = [entry("humidity", &thing.id, 0), entry("light", &thing.id, 0)];
    store.set_grants(bob.id, alice.id, &revoke, 8).await.expect("revoke");
    let grants = granted(store.grants_of(bob.id).await.expect("grants"));
    assert_eq!(grants, expect(&[("pressure", 1), ("temperature", 3)]), "perms 0 revokes");
    // All or nothing: when the last entry fails (an unknown thing), the change, revoke and new
    // grant before it are not applied either.
    let before = store.grants_of(bob.id).await.expect("grants");
    let failing = [
        entry("temperature", &thing.id, 31),
        entry("pressure", &thing.id, 0),
        entry("light", &thing.id, 1),
        entry("temperature", "no-thing", 1),
    ];
    let e = store.set_grants(bob.id, alice.id, &failing, 9).await.expect_err("unknown thing");
    assert_eq!(e.status(), 404, "a grant on an unknown thing");
    assert_eq!(store.grants_of(bob.id).await.expect("grants"), before, "a failed batch changes no grant");
    let e = store.set_grants(i64::MAX, alice.id, &batch, 9).await.expect_err("unknown grantee");
    assert_eq!(e.status(), 404, "a grant to an unknown user");
    assert_eq!(store.grants_of(bob.id).await.expect("grants"), before);
    // Unlinking removes the grants the user gave.
    assert_eq!(store.unlink_thing(alice.id, &thing.id).await.expect("unlink"), Some(vec![bob.id]));
    assert!(store.grants_of(bob.id).await.expect("grants").is_empty());
    assert_eq!(store.unlink_thing(alice.id, &thing.id).await.expect("unlink again"), None);

    // Settings merge; null removes.
    assert_eq!(store.app_user_settings(bob.id).await.expect("get"), serde_json::json!({}));
    let patch = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    store.merge_app_user_settings(bob.id, patch(serde_json::json!({"a": 1, "b": 2})), 1024).await.expect("merge");
    let doc = store
        .merge_app_user_settings(bob.id, patch(serde_json::json!({"b": null, "c": [3]})), 1024)
        .await
        .expect("merge");
    assert_eq!(doc, serde_json::json!({"a": 1, "c": [3]}));
    // The bound is on the merged document: small patches cannot grow it past the limit.
    let big = patch(serde_json::json!({"d": "x".repeat(1010)}));
    let e = store.merge_app_user_settings(bob.id, big, 1024).await.expect_err("over the limit once merged");
    assert_eq!(e.status(), 413);
    assert_eq!(store.app_user_settings(bob.id).await.expect("get"), serde_json::json!({"a": 1, "c": [3]}));

    // Outbox, newest first.
    store.add_outbox_mail("app-1", "alice@example.com", "s1", "b1", 8).await.expect("mail");
    store.add_outbox_mail("app-1", "alice@example.com", "s2", "b2", 9).await.expect("mail");
    let mails = store.outbox_of_app("app-1", 10).await.expect("outbox");
    assert_eq!(mails.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(), vec!["s2", "s1"]);

    // Deleting the app removes its users and their sessions.
    store.create_app_session(bob.id, "s3", 2_000, 1).await.expect("s3");
    assert!(store.delete_app("app-1").await.expect("delete app"));
    assert!(store.app_session("s3", 1_000).await.expect("get").is_none(), "sessions of a deleted app end");
    assert!(store.app_user(bob.id).await.expect("get").is_none());
}
