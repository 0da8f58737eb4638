//! Runs the store conformance suite against the PostgreSQL backend, and checks what only a
//! shared database has to hold: two stores (two nodes) on one schema appending to one timeline
//! never give two values the same datetime nor lose one, a code activated from both is used
//! once, and the timeline partitions are created and split safely by both at once.
//!
//! Each test gets a scratch schema on the server at `THINGLINE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); without a reachable server the tests print a
//! notice and pass, except on CI (`CI=true`), where they fail.

use std::collections::HashSet;
use std::sync::Arc;

use thingline_core::model::Product;
use thingline_core::query::TimelineQuery;
use thingline_core::time::{MAX_MS, MIN_MS};
use thingline_store::postgres::PgStore;
use thingline_store::testing::{drop_scratch, scratch_postgres_url};
use thingline_store::{CatalogStore, NewPoint, NewThing, Store, StoreOptions, ThingStore, TimelineStore, conformance};

async fn open(url: &str) -> Arc<PgStore> {
    Arc::new(PgStore::open(url, &StoreOptions::default()).await.expect("open the PostgreSQL store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_backend_conforms() {
    let Some(url) = scratch_postgres_url().await else { return };
    let store = thingline_store::open(&url, &StoreOptions::default()).await.expect("open");
    assert_eq!(store.backend(), "postgres");
    conformance::run_all(store.clone()).await;
    store.close().await;
    drop_scratch(&url).await;
}

/// A panel user, a product with `codes` activation codes; returns the product id.
async fn seed(store: &dyn Store, codes: usize) -> String {
    let owner = store.create_panel_user("ops@example.com", "x").await.expect("user").id;
    let product = Product { id: "p".into(), owner_id: owner, name: "p".into(), resources: vec![], created_ms: 1 };
    store.create_product(&product).await.expect("product");
    let codes: Vec<String> = (0..codes).map(|i| format!("code-{i}")).collect();
    store.create_activation_codes("p", &codes, 1).await.expect("codes");
    "p".into()
}

fn new_thing(id: &str) -> NewThing {
    NewThing { id: id.into(), token: format!("token-{id}"), now_ms: 1 }
}

/// Every value of a timeline, by paging with `end` from the newest.
async fn read_all(store: &dyn Store, seq: i64, key: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut end = None;
    loop {
        let q = TimelineQuery { limit: 1000, start: None, end };
        let page = store.read(seq, key, &q).await.expect("read").expect("written");
        let Some(last) = page.last() else { break };
        end = Some(last.ts);
        out.extend(page.into_iter().map(|p| (p.ts, p.value)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_appending_to_one_timeline_keep_datetimes_distinct() {
    let Some(url) = scratch_postgres_url().await else { return };
    let (a, b) = tokio::join!(open(&url), open(&url));
    seed(&*a, 1).await;
    let thing = a.activate("code-0", None, new_thing("t")).await.expect("activate");
    let seq = thing.seq;

    // Many small appends from both nodes at once: stamped by the server, all at one explicit
    // datetime, and a few values per request mixing both.
    const TASKS: usize = 16;
    const APPENDS: usize = 40;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store: Arc<PgStore> = if task % 2 == 0 { a.clone() } else { b.clone() };
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..APPENDS {
                let value = |i: usize| format!("\"{task}-{n}-{i}\"");
                let points = match n % 3 {
                    0 => vec![NewPoint { key: "k".into(), ts: None, value: value(0) }],
                    1 => vec![NewPoint { key: "k".into(), ts: Some(1_000), value: value(0) }],
                    _ => vec![
                        NewPoint { key: "k".into(), ts: None, value: value(0) },
                        NewPoint { key: "k".into(), ts: Some(1_000), value: value(1) },
                        NewPoint { key: "k".into(), ts: None, value: value(2) },
                    ],
                };
                let stored = store.append(seq, points).await.expect("append");
                acked.extend(stored.into_iter().map(|p| (p.ts, p.value)));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.expect("task"));
    }
    let per_task: usize = (0..APPENDS).map(|n| if n % 3 == 2 { 3 } else { 1 }).sum();
    assert_eq!(acked.len(), TASKS * per_task, "every append acknowledged");
    let datetimes: HashSet<i64> = acked.iter().map(|(ts, _)| *ts).collect();
    assert_eq!(datetimes.len(), acked.len(), "every acknowledged value has its own datetime");

    // Both nodes read back exactly what was acknowledged, once each.
    acked.sort();
    for store in [&a, &b] {
        let mut stored = read_all(&**store, seq, "k").await;
        stored.sort();
        assert_eq!(stored, acked, "nothing lost, nothing duplicated");
    }

    // Requests writing several timelines (new ones too), listed in different orders, from both
    // nodes: groups lock their timelines in one order, so they neither deadlock nor fail.
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store: Arc<PgStore> = if task % 2 == 0 { a.clone() } else { b.clone() };
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..APPENDS {
                let mut keys: Vec<String> = (0..5).map(|k| format!("m{}", (k * (task + 1) + n) % 7)).collect();
                keys.dedup();
                let points: Vec<NewPoint> = keys
                    .iter()
                    .map(|k| NewPoint { key: k.clone(), ts: (n % 2 == 0).then_some(5_000), value: format!("{task}") })
                    .collect();
                let stored = store.append(seq, points).await.expect("append");
                acked.extend(stored.into_iter().map(|p| (p.key, p.ts)));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.expect("task"));
    }
    let distinct: HashSet<&(String, i64)> = acked.iter().collect();
    assert_eq!(distinct.len(), acked.len(), "datetimes distinct per timeline");
    let mut stored = 0;
    for k in 0..7 {
        stored += read_all(&*b, seq, &format!("m{k}")).await.len();
    }
    assert_eq!(stored, acked.len(), "every acknowledged value stored once");
    a.close().await;
    b.close().await;
    drop_scratch(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_activated_from_two_nodes_is_used_once() {
    let Some(url) = scratch_postgres_url().await else { return };
    let (a, b) = tokio::join!(open(&url), open(&url));
    const CODES: usize = 50;
    seed(&*a, CODES).await;
    let mut handles = Vec::new();
    for code in 0..CODES {
        for (node, store) in [&a, &b].into_iter().enumerate() {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                store.activate(&format!("code-{code}"), Some("p"), new_thing(&format!("t-{code}-{node}"))).await
            }));
        }
    }
    let mut wins = 0;
    for h in handles {
        match h.await.expect("task") {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e.status(), 409, "the loser finds the code used: {e}"),
        }
    }
    assert_eq!(wins, CODES, "each code activates exactly once");
    let codes = b.activation_codes("p").await.expect("codes");
    assert!(codes.iter().all(|c| c.thing_id.is_some() && c.used_ms.is_some()));
    assert_eq!(b.things_of_product("p").await.expect("things").len(), CODES);
    a.close().await;
    b.close().await;
    drop_scratch(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_cover_every_datetime_and_split_safely() {
    let Some(url) = scratch_postgres_url().await else { return };
    let (a, b) = tokio::join!(open(&url), open(&url));
    seed(&*a, 1).await;
    let seq = a.activate("code-0", None, new_thing("t")).await.expect("activate").seq;
    let now = thingline_core::time::now_ms();
    const MONTH: i64 = 31 * 86_400_000;
    // The edges of the supported range, now, and values months ahead (in the future partition).
    let datetimes = [MIN_MS, -1, 0, now - 400 * MONTH, now, now + 5 * MONTH, now + 9 * MONTH, MAX_MS - 1];
    for (i, ts) in datetimes.iter().enumerate() {
        let p = NewPoint { key: "k".into(), ts: Some(*ts), value: i.to_string() };
        assert_eq!(a.append(seq, vec![p]).await.expect("append")[0].ts, *ts);
    }
    // A year on, from both nodes at once: the months are split off the future partition, the
    // values dated then move into them.
    let later = now + 12 * MONTH;
    let (ra, rb) = tokio::join!(a.maintain_partitions(later), b.maintain_partitions(later));
    ra.expect("maintenance on a");
    rb.expect("maintenance on b");
    let stored = read_all(&*b, seq, "k").await;
    let mut expected: Vec<(i64, String)> = datetimes.iter().enumerate().map(|(i, ts)| (*ts, i.to_string())).collect();
    expected.sort_by_key(|p| std::cmp::Reverse(p.0));
    assert_eq!(stored, expected, "every value readable after the split");
    let newest = b.read(seq, "k", &TimelineQuery::default()).await.expect("read").expect("written");
    assert_eq!(newest[0].ts, MAX_MS - 1);

    // The layout: history, one partition per month up to the last one, future; all in the
    // scratch schema, the values in the partitions of their months.
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.expect("schema");
    assert!(schema.starts_with("tl_"), "{schema}");
    let parts: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, n.nspname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = 'points'::regclass ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("partitions");
    assert!(parts.iter().all(|(_, ns)| *ns == schema), "partitions in the scratch schema: {parts:?}");
    let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"points_history") && names.contains(&"points_future"), "{names:?}");
    assert!(names.len() >= 2 + 12 + 3, "a month per partition up to three after the later date: {names:?}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename IN \
         ('panel_users','panel_sessions','products','activation_codes','apps','things','timelines', \
          'app_users','app_sessions','app_links','app_grants','app_outbox')",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .expect("tables");
    assert_eq!(tables, 12, "every table in the scratch schema");
    let in_future: i64 = sqlx::query_scalar("SELECT count(*) FROM points_future").fetch_one(&pool).await.expect("n");
    assert_eq!(in_future, 1, "only the value dated in 9999 is in the future partition");
    let in_history: i64 = sqlx::query_scalar("SELECT count(*) FROM points_history").fetch_one(&pool).await.expect("n");
    assert_eq!(in_history, 4, "the values before the first month are history");
    pool.close().await;

    // A third node opening now runs the maintenance again: nothing to do, nothing breaks.
    let c = open(&url).await;
    assert_eq!(read_all(&*c, seq, "k").await.len(), datetimes.len());
    for s in [a, b, c] {
        s.close().await;
    }
    drop_scratch(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_waits_for_appends_in_flight_and_deleting_a_thing_removes_its_values() {
    let Some(url) = scratch_postgres_url().await else { return };
    let a = open(&url).await;
    seed(&*a, 2).await;
    let seq = a.activate("code-0", None, new_thing("t")).await.expect("activate").seq;
    let appends: Vec<_> = (0..200)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                a.append(seq, vec![NewPoint { key: format!("k{}", i % 7), ts: None, value: i.to_string() }]).await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    a.close().await;
    let mut acked = 0;
    for h in appends {
        match h.await.expect("task") {
            Ok(_) => acked += 1,
            Err(e) => assert_eq!(e.status(), 503, "an append after close is refused: {e}"),
        }
    }
    let b = open(&url).await;
    let mut stored = 0;
    for k in 0..7 {
        if b.read(seq, &format!("k{k}"), &TimelineQuery::default()).await.expect("read").is_some() {
            stored += read_all(&*b, seq, &format!("k{k}")).await.len();
        }
    }
    assert_eq!(stored, acked, "every acknowledged append was committed before close returned");
    assert!(b.delete_thing("t").await.expect("delete"));
    assert!(b.keys(seq).await.expect("keys").is_empty());
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM points").fetch_one(&pool).await.expect("count");
    assert_eq!(left, 0, "a deleted thing's values are gone");
    pool.close().await;
    b.close().await;
    drop_scratch(&url).await;
}
