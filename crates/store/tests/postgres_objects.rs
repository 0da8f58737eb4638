//! App objects on PostgreSQL: the objects conformance checks, the ordering and equality of
//! indexed values compared with the SQLite backend value by value, and what only a shared
//! database has to hold: two stores (two nodes) on one schema creating the same `_id`s, creating
//! one collection, merging into one object, indexing a field while the other writes, and changing
//! an app's declaration while the other creates shared collections.
//!
//! Each test gets a scratch schema on the server at `THINGLINE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); without a reachable server the tests print a
//! notice and pass, except on CI (`CI=true`), where they fail.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use thingline_core::classes::{
    Collection, IndexDeclarations, ListOrder, ListQuery, Owner, PreparedObject, Scalar, prepare_object,
};
use thingline_core::model::App;
use thingline_store::postgres::PgStore;
use thingline_store::testing::{drop_scratch, scratch_postgres_url};
use thingline_store::{CatalogStore, ObjectStore, Store, StoreOptions, conformance};

async fn open(url: &str) -> Arc<PgStore> {
    Arc::new(PgStore::open(url, &StoreOptions::default()).await.expect("open the PostgreSQL store"))
}

fn obj(id: &str, v: Value) -> PreparedObject {
    prepare_object(id.to_owned(), v.as_object().cloned().unwrap_or_default()).expect("valid object")
}

fn ids(bodies: &[String]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).expect("json")["_id"].as_str().expect("_id").to_owned())
        .collect()
}

fn query(limit: u32) -> ListQuery {
    ListQuery { limit, ..ListQuery::default() }
}

/// A panel user and app `app` (with `indexes` declared) in `store`.
async fn seed(store: &dyn Store, indexes: Value) {
    let owner = store.create_panel_user("ops@example.com", "x").await.expect("user").id;
    let indexes = IndexDeclarations::from_json(&indexes).expect("declaration");
    let app = App { id: "app".into(), owner_id: owner, name: "a".into(), resources: vec![], indexes, created_ms: 1 };
    store.create_app(&app).await.expect("app");
}

fn mine(path: &str) -> Collection {
    Collection { app_id: "app".into(), owner: Owner::User(1), path: path.into() }
}

fn shared(path: &str) -> Collection {
    Collection { app_id: "app".into(), owner: Owner::App, path: path.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_objects_conform() {
    let Some(url) = scratch_postgres_url().await else { return };
    let store = thingline_store::open(&url, &StoreOptions::default()).await.expect("open");
    store.create_panel_user("ops@example.com", "$argon2id$x").await.expect("user");
    conformance::objects::objects_in_collections(&*store).await;
    store.close().await;
    drop_scratch(&url).await;
}

/// Values of every kind, among them the edges where a float is not exact or an integer is
/// beyond a float's precision: sorted, filtered and paged, PostgreSQL answers exactly what
/// SQLite answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexed_values_order_and_compare_as_on_sqlite() {
    let Some(url) = scratch_postgres_url().await else { return };
    let pg = thingline_store::open(&url, &StoreOptions::default()).await.expect("open");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite://{}", dir.path().join("t.db").display());
    let lite = thingline_store::open(&sqlite_url, &StoreOptions::default()).await.expect("open sqlite");
    let values = [
        json!(90),
        json!(90.0),
        json!(-1),
        json!(0),
        json!(-0.0),
        json!(0.1),
        json!(0.30000000000000004),
        json!(1e-300),
        json!(-1e300),
        json!(1.7976931348623157e308),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(9007199254740993i64),
        json!(9007199254740992.0),
        json!(1152921504606846980i64),
        json!(1152921504606846976.0),
        json!(u64::MAX),
        json!(""),
        json!("90"),
        json!("a"),
        json!("a\u{0}"),
        json!("a\u{0}b"),
        json!("B"),
        json!("é"),
        json!("z"),
        json!("\u{10ffff}"),
        json!(null),
        json!(false),
        json!(true),
        json!([1]),
        json!({"x": 1}),
        json!("x".repeat(1025)),
    ];
    let c = mine("Values");
    for store in [&pg, &lite] {
        seed(&**store, json!({})).await;
        for (i, v) in values.iter().enumerate() {
            store.create_object(&c, obj(&i.to_string(), json!({ "v": v, "i": i, "all": 1 }))).await.expect("create");
        }
        // A second object per value, so that ties order by _id.
        for (i, v) in values.iter().enumerate() {
            store.create_object(&c, obj(&format!("t{i}"), json!({ "v": v, "all": 1 }))).await.expect("create");
        }
    }
    let mut reads: Vec<ListQuery> = Vec::new();
    for desc in [false, true] {
        reads.push(ListQuery { order: ListOrder::Field { name: "v".into(), desc }, ..query(1000) });
        for after in ["0", "1", "5", "12", "t13", "20", "26", "28"] {
            reads.push(ListQuery {
                order: ListOrder::Field { name: "v".into(), desc },
                after: Some(after.into()),
                ..query(1000)
            });
        }
    }
    for v in &values {
        if let Some(s) = Scalar::of(v) {
            reads.push(ListQuery { filters: vec![("v".into(), s.clone())], ..query(1000) });
            reads.push(ListQuery {
                filters: vec![("v".into(), s)],
                order: ListOrder::Field { name: "i".into(), desc: true },
                ..query(1000)
            });
        }
    }
    for extra in [Scalar::Float(90.5), Scalar::Int(1), Scalar::Text("A".into()), Scalar::Float(9007199254740993.0)] {
        reads.push(ListQuery { filters: vec![("v".into(), extra)], ..query(1000) });
    }
    for read in &reads {
        let want = ids(&lite.list_objects(&c, read).await.expect("sqlite list"));
        let got = ids(&pg.list_objects(&c, read).await.expect("postgres list"));
        assert_eq!(got, want, "{read:?}");
    }
    // A selective filter with a field order is sorted in memory: in the order of the index.
    // (Compared with the index order, not with SQLite's in-memory sort, which compares integers
    // with floats as floats.)
    for desc in [false, true] {
        for after in [None, Some("12"), Some("t13"), Some("20")] {
            let sorted = ListQuery {
                order: ListOrder::Field { name: "v".into(), desc },
                after: after.map(str::to_owned),
                ..query(1000)
            };
            let want = ids(&lite.list_objects(&c, &sorted).await.expect("sqlite list"));
            let selective = ListQuery { filters: vec![("all".into(), Scalar::Int(1))], skip: 1, limit: 40, ..sorted };
            let got = ids(&pg.list_objects(&c, &selective).await.expect("postgres list"));
            assert_eq!(got, want[1..41.min(want.len())], "{selective:?}");
        }
    }
    // The sort order itself, spelled out (ids of the first object per value).
    let sorted = ListQuery { order: ListOrder::Field { name: "v".into(), desc: false }, ..query(1000) };
    let order: Vec<String> =
        ids(&pg.list_objects(&c, &sorted).await.expect("list")).into_iter().filter(|i| !i.starts_with('t')).collect();
    assert_eq!(
        order,
        [
            "8", "11", "2", "3", "4", "7", "5", "6", "0", "1", "13", "12", "15", "14", "10", "16", "9", "17", "18",
            "22", "19", "20", "21", "24", "23", "25", "26", "27", "28"
        ],
        "numbers exactly, then text by bytes, then null < false < true; arrays, objects and long text unlisted"
    );
    let err = pg.list_objects(&c, &ListQuery { after: Some("29".into()), ..sorted }).await.expect_err("no v");
    assert_eq!(err.status(), 400);
    pg.close().await;
    lite.close().await;
    drop_scratch(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_merge_leaves_the_object_and_its_index_unchanged() {
    let Some(url) = scratch_postgres_url().await else { return };
    let store = open(&url).await;
    seed(&*store, json!({})).await;
    let c = mine("Docs");
    store.create_object(&c, obj("1", json!({"n": 1, "s": "x"}))).await.expect("create");
    let by_n = ListQuery { filters: vec![("n".into(), Scalar::Int(1))], ..query(10) };
    assert_eq!(ids(&store.list_objects(&c, &by_n).await.expect("list")), ["1"]);
    let big = json!({"n": 2, "s": "y".repeat(300 * 1024)}).as_object().cloned().unwrap_or_default();
    let e = store.update_object(&c, "1", big).await.expect_err("too large");
    assert_eq!(e.status(), 413);
    assert_eq!(store.object(&c, "1").await.expect("get").as_deref(), Some(r#"{"_id":"1","n":1,"s":"x"}"#));
    assert_eq!(ids(&store.list_objects(&c, &by_n).await.expect("list")), ["1"]);
    store.close().await;
    drop_scratch(&url).await;
}

/// Field names and values PostgreSQL text cannot hold (U+0000): values are indexed (BYTEA),
/// names cannot be and are refused for reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nul_characters() {
    let Some(url) = scratch_postgres_url().await else { return };
    let store = open(&url).await;
    seed(&*store, json!({})).await;
    let c = mine("Nul");
    store.create_object(&c, obj("1", json!({"s": "a\u{0}b", "a\u{0}": 1}))).await.expect("create");
    let by_s = ListQuery { filters: vec![("s".into(), Scalar::Text("a\u{0}b".into()))], ..query(10) };
    assert_eq!(ids(&store.list_objects(&c, &by_s).await.expect("list")), ["1"]);
    store.create_object(&c, obj("2", json!({"s": "a\u{0}c"}))).await.expect("create");
    assert_eq!(store.object(&c, "1").await.expect("get").as_deref(), Some(r#"{"_id":"1","s":"a\u0000b","a\u0000":1}"#));
    let by_name = ListQuery { filters: vec![("a\u{0}".into(), Scalar::Int(1))], ..query(10) };
    assert_eq!(store.list_objects(&c, &by_name).await.expect_err("nul in a name").status(), 400);
    store.close().await;
    drop_scratch(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_create_one_collection_and_the_same_ids() {
    let Some(url) = scratch_postgres_url().await else { return };
    let (a, b) = tokio::join!(open(&url), open(&url));
    seed(&*a, json!({"Shared": ["g"]})).await;
    for c in [mine("Fresh"), shared("Shared"), shared("X/1/Shared")] {
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                store.create_object(&c, obj(&(i / 2).to_string(), json!({"g": i % 3, "node": i % 2}))).await
            }));
        }
        let mut created = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(()) => created += 1,
                Err(e) => assert_eq!(e.status(), 409, "{e}"),
            }
        }
        assert_eq!(created, 20, "each _id created once: {c:?}");
        let all = a.list_objects(&c, &query(100)).await.expect("list");
        assert_eq!(all.len(), 20);
        let from_b = b.list_objects(&c, &query(100)).await.expect("list");
        assert_eq!(all, from_b, "both nodes read the same");
        if c.owner == Owner::App {
            assert_eq!(a.indexed_fields(&c).await.expect("indexed"), ["g"]);
            let by_g: usize = futures_util::future::join_all((0..3).map(|g| {
                let (a, c) = (a.clone(), c.clone());
                async move {
                    let q = ListQuery { filters: vec![("g".into(), Scalar::Int(g))], ..query(100) };
                    a.list_objects(&c, &q).await.expect("list").len()
                }
            }))
            .await
            .into_iter()
            .sum();
            assert_eq!(by_g, 20, "every object indexed once");
        }
    }
    a.close().await;
    b.close().await;
    drop_scratch(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_merging_into_one_object_lose_nothing() {
    let Some(url) = scratch_postgres_url().await else { return };
    let (a, b) = tokio::join!(open(&url), open(&url));
    seed(&*a, json!({})).await;
    let c = mine("Counters");
    a.create_object(&c, obj("1", json!({}))).await.expect("create");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let patch = json!({ format!("f{i}"): i }).as_object().cloned().unwrap_or_default();
            store.update_object(&c, "1", patch).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("update").expect("exists");
    }
    let body: Value = serde_json::from_str(&b.object(&c, "1").await.expect("get").expect("exists")).expect("json");
    let fields = body.as_object().expect("object");
    assert_eq!(fields.len(), 41, "every merged field kept: {body}");
    a.close().await;
    b.close().await;
    drop_scratch(&url).await;
}

/// One node indexes fields on first use (private) while the other creates, updates and deletes
/// objects: afterwards each filter finds exactly the objects that match.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexing_while_another_node_writes_misses_nothing() {
    let Some(url) = scratch_postgres_url().await else { return };
    let (a, b) = tokio::join!(open(&url), open(&url));
    seed(&*a, json!({})).await;
    let c = mine("Busy");
    for i in 0..300 {
        a.create_object(&c, obj(&i.to_string(), json!({"x": i % 5, "y": i % 2}))).await.expect("create");
    }
    let writer = {
        let (a, c) = (a.clone(), c.clone());
        tokio::spawn(async move {
            for i in 300..700 {
                a.create_object(&c, obj(&i.to_string(), json!({"x": i % 5, "y": i % 2}))).await.expect("create");
                if i % 10 == 0 {
                    let patch = json!({"x": 9}).as_object().cloned().unwrap_or_default();
                    a.update_object(&c, &(i - 300).to_string(), patch).await.expect("update").expect("exists");
                    assert!(a.delete_object(&c, &(i - 299).to_string()).await.expect("delete"));
                }
            }
        })
    };
    for name in ["x", "y"] {
        let q = ListQuery { filters: vec![(name.into(), Scalar::Int(0))], ..query(1) };
        b.list_objects(&c, &q).await.expect("index on first use");
    }
    writer.await.expect("writer");
    let all = b.list_objects(&c, &query(1000)).await.expect("list");
    let mut expect: Vec<(i64, i64, String)> = Vec::new();
    for body in &all {
        let v: Value = serde_json::from_str(body).expect("json");
        let id = v["_id"].as_str().expect("_id").to_owned();
        expect.push((v["x"].as_i64().expect("x"), v["y"].as_i64().expect("y"), id));
    }
    for (name, values) in [("x", vec![0, 1, 2, 3, 4, 9]), ("y", vec![0, 1])] {
        for value in values {
            let q = ListQuery { filters: vec![(name.into(), Scalar::Int(value))], ..query(1000) };
            let got: HashSet<String> = ids(&b.list_objects(&c, &q).await.expect("list")).into_iter().collect();
            let want: HashSet<String> = expect
                .iter()
                .filter(|(x, y, _)| if name == "x" { *x == value } else { *y == value })
                .map(|(_, _, id)| id.clone())
                .collect();
            assert_eq!(got, want, "{name} = {value}");
        }
    }
    assert_eq!(b.indexed_fields(&c).await.expect("indexed"), ["x", "y"]);
    a.close().await;
    b.close().await;
    drop_scratch(&url).await;
}

/// One node changes the app's declaration while the other creates objects in new and existing
/// shared collections: afterwards every shared collection has exactly the declared fields, with
/// a row for each of its objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declaration_change_while_another_node_creates_collections() {
    let Some(url) = scratch_postgres_url().await else { return };
    let (a, b) = tokio::join!(open(&url), open(&url));
    seed(&*a, json!({"Songs": ["g"]})).await;
    let mut app = a.app("app").await.expect("get").expect("exists");
    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                let c = shared(&format!("Lists/{}/Songs", i % 20));
                b.create_object(&c, obj(&i.to_string(), json!({"g": "x", "r": i}))).await.expect("create");
            }
        })
    };
    for decl in [json!({"Songs": ["r"]}), json!({"Songs": ["g", "r"]}), json!({"Songs": ["r"]})] {
        tokio::task::yield_now().await;
        app.indexes = IndexDeclarations::from_json(&decl).expect("declaration");
        assert!(a.update_app(&app).await.expect("update app"));
    }
    writer.await.expect("writer");
    let mut total = 0;
    for l in 0..20 {
        let c = shared(&format!("Lists/{l}/Songs"));
        assert_eq!(b.indexed_fields(&c).await.expect("indexed"), ["r"], "{c:?}");
        let sorted = ListQuery { order: ListOrder::Field { name: "r".into(), desc: false }, ..query(100) };
        let n = a.list_objects(&c, &sorted).await.expect("list").len();
        assert_eq!(n, a.list_objects(&c, &query(100)).await.expect("list").len(), "every object indexed");
        total += n;
        let g = ListQuery { filters: vec![("g".into(), Scalar::Text("x".into()))], ..query(100) };
        assert_eq!(a.list_objects(&c, &g).await.expect_err("undeclared").status(), 400);
    }
    assert_eq!(total, 60);
    a.close().await;
    b.close().await;
    drop_scratch(&url).await;
}
