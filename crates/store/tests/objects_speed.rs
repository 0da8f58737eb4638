//! Speed check of the objects store against the targets (run on demand, it seeds a
//! million objects): `cargo test -p thingline-store --release --test objects_speed -- --ignored --nocapture`.
//! Reports p50/p99 of get-one at 1M objects and of list-100 in a 100,000-object collection.

use std::time::{Duration, Instant};

use serde_json::json;
use thingline_core::classes::{Collection, ListQuery, Owner, prepare_object};
use thingline_core::model::App;
use thingline_store::StoreOptions;

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn objects_speed() {
    let total: usize = std::env::var("OBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store =
        thingline_store::open(&url, &StoreOptions { sync_full: false, read_connections: 4, ..StoreOptions::default() })
            .await
            .expect("open");
    let owner = store.create_panel_user("ops@example.com", "x").await.expect("user").id;
    store
        .create_app(&App {
            id: "app".into(),
            owner_id: owner,
            name: "a".into(),
            resources: vec![],
            indexes: Default::default(),
            created_ms: 1,
        })
        .await
        .expect("app");
    let coll = |i: usize| Collection {
        app_id: "app".into(),
        owner: Owner::User(1 + (i % 10) as i64),
        path: if i < 100_000 { "Big".into() } else { format!("Small{}", i % 900) },
    };
    let started = Instant::now();
    for chunk in (0..total).collect::<Vec<_>>().chunks(512) {
        let futs = chunk.iter().map(|&i| {
            let c = if i < 100_000 { Collection { owner: Owner::User(1), ..coll(i) } } else { coll(i) };
            let o = prepare_object(
                i.to_string(),
                json!({"name": format!("n{i}"), "rank": i % 1000, "tags": ["a", "b"]})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
            .expect("object");
            let store = store.clone();
            async move { store.create_object(&c, o).await }
        });
        for r in futures_util::future::join_all(futs).await {
            r.expect("create");
        }
    }
    let seed = started.elapsed();
    println!("seeded {total} objects in {seed:?} ({:.0}/s)", total as f64 / seed.as_secs_f64());

    let big = Collection { app_id: "app".into(), owner: Owner::User(1), path: "Big".into() };
    let mut gets = Vec::new();
    for n in 0..5000usize {
        let i = (n * 7919) % total;
        let c = if i < 100_000 { big.clone() } else { coll(i) };
        let t = Instant::now();
        let o = store.object(&c, &i.to_string()).await.expect("get");
        gets.push(t.elapsed());
        assert!(o.is_some(), "object {i}");
    }
    println!("get one: p50 {:?} p99 {:?}", pct(gets.clone(), 0.5), pct(gets, 0.99));

    let mut lists = Vec::new();
    for n in 0..1000u64 {
        let q = ListQuery { limit: 100, after: Some(((n * 97) % 100_000).to_string()), ..ListQuery::default() };
        let t = Instant::now();
        let page = store.list_objects(&big, &q).await.expect("list");
        lists.push(t.elapsed());
        assert!(page.len() <= 100);
    }
    println!("list 100 of 100k: p50 {:?} p99 {:?}", pct(lists.clone(), 0.5), pct(lists, 0.99));
    // The first filter and sort on `rank` and `name` index those fields (objects already stored
    // included): once per collection and field.
    let q = ListQuery::from_params(Some("100"), None, None, Some("{\"rank\":1}"), Some("-name")).expect("q");
    let t = Instant::now();
    store.list_objects(&big, &q).await.expect("first filtered list");
    println!("first filter+sort in 100k (indexes rank and name): {:?}", t.elapsed());
    let mut filtered = Vec::new();
    for n in 0..300 {
        let q =
            ListQuery::from_params(Some("100"), None, None, Some(&format!("{{\"rank\":{}}}", n % 1000)), Some("-name"))
                .expect("q");
        let t = Instant::now();
        store.list_objects(&big, &q).await.expect("list");
        filtered.push(t.elapsed());
    }
    println!("filter+sort in 100k: p50 {:?} p99 {:?}", pct(filtered.clone(), 0.5), pct(filtered, 0.99));
    store.close().await;
}
