//! Conformance checks for app objects ([`crate::ObjectStore`]): create/409, get, merge, delete,
//! ordering by primary key, paging (limit, skip, cursor), filters, sort by field, isolation of
//! collections, concurrent (group-committed) creates, and the indexes of shared collections
//! following their app's declaration.

use serde_json::{Value, json};
use thingline_core::classes::{Collection, IndexDeclarations, ListOrder, ListQuery, Owner, Scalar, prepare_object};

use crate::Store;
use thingline_core::model::App;

fn obj(id: &str, v: Value) -> thingline_core::classes::PreparedObject {
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

/// The objects checks (also run by [`super::run_all`]); the store must have the panel user
/// `ops@example.com`, whose apps `obj-app-1` to `obj-app-3` they create.
pub async fn objects_in_collections(store: &dyn Store) {
    let owner = store.panel_user_by_email("ops@example.com").await.expect("user").expect("exists").id;
    for id in ["obj-app-1", "obj-app-2"] {
        let app = App {
            id: id.into(),
            owner_id: owner,
            name: id.into(),
            resources: vec![],
            indexes: Default::default(),
            created_ms: 1,
        };
        store.create_app(&app).await.expect("app");
    }
    let c = Collection { app_id: "obj-app-1".into(), owner: Owner::User(1), path: "Playlists".into() };

    for (id, name, duration) in [("20", "Classic", 90), ("25", "Dubstep", 180), ("100", "Jazz", 90), ("a", "Rock", 60)]
    {
        store.create_object(&c, obj(id, json!({"name": name, "duration": duration}))).await.expect("create");
    }
    let dup = store.create_object(&c, obj("25", json!({}))).await.expect_err("duplicate _id");
    assert_eq!(dup.status(), 409, "an existing _id is a conflict");

    let one = store.object(&c, "25").await.expect("get").expect("exists");
    assert_eq!(one, r#"{"_id":"25","name":"Dubstep","duration":180}"#, "read back exactly as stored");
    assert_eq!(store.object(&c, "26").await.expect("get"), None);

    let all = store.list_objects(&c, &query(100)).await.expect("list");
    assert_eq!(ids(&all), ["a", "100", "25", "20"], "primary key descending, numbers numerically");
    let asc = ListQuery { order: ListOrder::IdAsc, ..query(100) };
    assert_eq!(ids(&store.list_objects(&c, &asc).await.expect("list")), ["20", "25", "100", "a"]);
    let page = ListQuery { skip: 1, ..query(2) };
    assert_eq!(ids(&store.list_objects(&c, &page).await.expect("list")), ["100", "25"]);
    let cursor = ListQuery { after: Some("100".into()), ..query(10) };
    assert_eq!(ids(&store.list_objects(&c, &cursor).await.expect("list")), ["25", "20"]);

    let filtered = ListQuery { filters: vec![("duration".into(), Scalar::Int(90))], ..query(10) };
    assert_eq!(ids(&store.list_objects(&c, &filtered).await.expect("list")), ["100", "20"]);
    let both = ListQuery {
        filters: vec![("duration".into(), Scalar::Int(90)), ("name".into(), Scalar::Text("Jazz".into()))],
        ..query(10)
    };
    assert_eq!(ids(&store.list_objects(&c, &both).await.expect("list")), ["100"]);
    let text_is_not_number = ListQuery { filters: vec![("duration".into(), Scalar::Text("90".into()))], ..query(10) };
    assert!(store.list_objects(&c, &text_is_not_number).await.expect("list").is_empty());
    let by_name = ListQuery { order: ListOrder::Field { name: "name".into(), desc: false }, ..query(10) };
    assert_eq!(ids(&store.list_objects(&c, &by_name).await.expect("list")), ["20", "25", "100", "a"]);
    let by_duration_desc = ListQuery {
        order: ListOrder::Field { name: "duration".into(), desc: true },
        after: Some("25".into()),
        ..query(10)
    };
    assert_eq!(ids(&store.list_objects(&c, &by_duration_desc).await.expect("list")), ["100", "20", "a"]);

    let filtered_sorted = ListQuery {
        filters: vec![("duration".into(), Scalar::Int(90))],
        order: ListOrder::Field { name: "name".into(), desc: true },
        ..query(10)
    };
    assert_eq!(ids(&store.list_objects(&c, &filtered_sorted).await.expect("list")), ["100", "20"]);
    let after = ListQuery { after: Some("100".into()), ..filtered_sorted };
    assert_eq!(ids(&store.list_objects(&c, &after).await.expect("list")), ["20"]);

    let patch = json!({"name": "Dubstep Mix", "extra": true}).as_object().cloned().unwrap_or_default();
    let merged = store.update_object(&c, "25", patch.clone()).await.expect("update").expect("exists");
    assert_eq!(merged, r#"{"_id":"25","name":"Dubstep Mix","duration":180,"extra":true}"#);
    assert_eq!(store.update_object(&c, "nope", patch).await.expect("update"), None);
    let by_new_name = ListQuery { filters: vec![("name".into(), Scalar::Text("Dubstep Mix".into()))], ..query(10) };
    assert_eq!(ids(&store.list_objects(&c, &by_new_name).await.expect("list")), ["25"], "index follows updates");
    let by_old_name = ListQuery { filters: vec![("name".into(), Scalar::Text("Dubstep".into()))], ..query(10) };
    assert!(store.list_objects(&c, &by_old_name).await.expect("list").is_empty());
    let by_bool = ListQuery { filters: vec![("extra".into(), Scalar::Bool(true))], ..query(10) };
    assert_eq!(ids(&store.list_objects(&c, &by_bool).await.expect("list")), ["25"]);

    assert!(store.delete_object(&c, "25").await.expect("delete"));
    assert!(!store.delete_object(&c, "25").await.expect("delete again"));
    assert_eq!(store.object(&c, "25").await.expect("get"), None);
    assert!(store.list_objects(&c, &by_new_name).await.expect("list").is_empty(), "index rows go with the object");

    // Other owners, apps and paths are other collections.
    for other in [
        Collection { owner: Owner::User(2), ..c.clone() },
        Collection { owner: Owner::App, ..c.clone() },
        Collection { app_id: "obj-app-2".into(), ..c.clone() },
        Collection { path: "Playlists/20/Songs".into(), ..c.clone() },
    ] {
        assert!(store.list_objects(&other, &query(10)).await.expect("list").is_empty(), "{other:?}");
        assert_eq!(store.object(&other, "20").await.expect("get"), None);
    }

    // Concurrent creates are committed together and each answered with its own result.
    let sub = Collection { path: "Playlists/20/Songs".into(), ..c.clone() };
    let creates = (0..60).map(|i| {
        let sub = sub.clone();
        async move { store.create_object(&sub, obj(&(i % 50).to_string(), json!({"i": i}))).await }
    });
    let results = futures_util::future::join_all(creates).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 50);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.status() == 409));
    assert_eq!(store.list_objects(&sub, &query(1000)).await.expect("list").len(), 50);

    // A filter matching many objects with a field sort walks the sort index (the other plan).
    let many = Collection { path: "Many".into(), ..c.clone() };
    let creates = (0..1100).map(|i| {
        let many = many.clone();
        async move { store.create_object(&many, obj(&i.to_string(), json!({"g": "x", "rank": i % 7}))).await }
    });
    for r in futures_util::future::join_all(creates).await {
        r.expect("create");
    }
    let mut expect: Vec<(i64, i64)> = (0..1100).map(|i| (i % 7, i)).collect();
    expect.sort_by(|a, b| b.cmp(a));
    let want: Vec<String> = expect.iter().map(|(_, i)| i.to_string()).collect();
    let sorted = ListQuery {
        filters: vec![("g".into(), Scalar::Text("x".into()))],
        order: ListOrder::Field { name: "rank".into(), desc: true },
        ..query(5)
    };
    assert_eq!(ids(&store.list_objects(&many, &sorted).await.expect("list")), want[..5]);
    let next = ListQuery { after: Some(want[4].clone()), skip: 1, ..sorted };
    assert_eq!(ids(&store.list_objects(&many, &next).await.expect("list")), want[6..11]);

    shared_collections_follow_declarations(store, owner).await;
}

fn declared(v: Value) -> IndexDeclarations {
    IndexDeclarations::from_json(&v).expect("valid declaration")
}

fn sorted_by(name: &str) -> ListQuery {
    ListQuery { order: ListOrder::Field { name: name.into(), desc: false }, ..query(100) }
}

fn filtered(name: &str, v: Scalar) -> ListQuery {
    ListQuery { filters: vec![(name.into(), v)], ..query(100) }
}

/// A shared collection is indexed on exactly the fields its app declares for its name: from its
/// first object on, and, once `update_app` returns, after a change (objects already stored
/// included; fields no longer declared dropped). Reads naming another field are a 400 and index
/// nothing. Private collections and other names are not touched.
async fn shared_collections_follow_declarations(store: &dyn Store, owner: i64) {
    let mut app = App {
        id: "obj-app-3".into(),
        owner_id: owner,
        name: "declared".into(),
        resources: vec![],
        indexes: declared(json!({"Tracks": ["genre"]})),
        created_ms: 1,
    };
    store.create_app(&app).await.expect("app");
    assert_eq!(store.app("obj-app-3").await.expect("get").as_ref(), Some(&app), "indexes round trip");
    let shared = |path: &str| Collection { app_id: "obj-app-3".into(), owner: Owner::App, path: path.into() };
    let (tracks, nested, notes) = (shared("Tracks"), shared("Albums/1/Tracks"), shared("Notes"));
    let mine = Collection { owner: Owner::User(7), ..tracks.clone() };
    for (i, c) in [&tracks, &nested, &notes, &mine].into_iter().enumerate() {
        for id in 0..3i64 {
            let o =
                obj(&id.to_string(), json!({"genre": if id == 1 { "jazz" } else { "rock" }, "rank": 10 - id, "i": i}));
            store.create_object(c, o).await.expect("create");
        }
    }
    let indexed = |c: Collection| async move { store.indexed_fields(&c).await.expect("indexed fields") };
    assert_eq!(indexed(tracks.clone()).await, ["genre"], "a new shared collection has its declared fields");
    assert_eq!(indexed(nested.clone()).await, ["genre"], "by collection name, at any depth");
    assert!(indexed(notes.clone()).await.is_empty(), "another name");
    assert!(indexed(mine.clone()).await.is_empty(), "declarations are for shared collections only");
    let jazz = filtered("genre", Scalar::Text("jazz".into()));
    assert_eq!(ids(&store.list_objects(&tracks, &jazz).await.expect("list")), ["1"]);

    // An undeclared field of a shared collection: 400, nothing indexed. A private collection
    // indexes it on first use.
    let e = store.list_objects(&tracks, &sorted_by("rank")).await.expect_err("undeclared");
    assert_eq!(e.status(), 400, "{e}");
    assert_eq!(indexed(tracks.clone()).await, ["genre"]);
    assert_eq!(ids(&store.list_objects(&mine, &sorted_by("rank")).await.expect("list")), ["2", "1", "0"]);
    assert_eq!(indexed(mine.clone()).await, ["rank"]);

    // The declaration changes: rank is indexed with the objects already stored, genre dropped.
    app.indexes = declared(json!({"Tracks": ["rank"], "Notes": ["genre", "i"]}));
    assert!(store.update_app(&app).await.expect("update"));
    assert_eq!(store.app("obj-app-3").await.expect("get").as_ref(), Some(&app));
    for c in [&tracks, &nested] {
        assert_eq!(indexed(c.clone()).await, ["rank"], "{c:?}");
        assert_eq!(ids(&store.list_objects(c, &sorted_by("rank")).await.expect("list")), ["2", "1", "0"]);
        let e = store.list_objects(c, &jazz).await.expect_err("no longer declared");
        assert_eq!(e.status(), 400);
    }
    assert_eq!(indexed(notes.clone()).await, ["genre", "i"]);
    assert_eq!(ids(&store.list_objects(&notes, &jazz).await.expect("list")), ["1"]);
    assert_eq!(indexed(mine.clone()).await, ["rank"], "private collections keep their own indexes");

    // Writes after the change keep the declared index right.
    let patch = json!({"rank": 0}).as_object().cloned().unwrap_or_default();
    store.update_object(&tracks, "0", patch).await.expect("update").expect("exists");
    store.create_object(&tracks, obj("3", json!({"rank": 9}))).await.expect("create");
    assert!(store.delete_object(&tracks, "1").await.expect("delete"));
    assert_eq!(ids(&store.list_objects(&tracks, &sorted_by("rank")).await.expect("list")), ["0", "2", "3"]);
    let rank_8 = filtered("rank", Scalar::Int(8));
    assert_eq!(ids(&store.list_objects(&tracks, &rank_8).await.expect("list")), ["2"]);

    // An update that leaves the declaration alone leaves the indexes alone; an empty one drops them.
    app.name = "renamed".into();
    assert!(store.update_app(&app).await.expect("update"));
    assert_eq!(indexed(tracks.clone()).await, ["rank"]);
    app.indexes = IndexDeclarations::default();
    assert!(store.update_app(&app).await.expect("update"));
    for c in [&tracks, &nested, &notes] {
        assert!(indexed(c.clone()).await.is_empty(), "{c:?}");
    }
    assert_eq!(store.list_objects(&tracks, &rank_8).await.expect_err("dropped").status(), 400);
    assert!(!store.update_app(&App { id: "nope".into(), ..app }).await.expect("unknown app"));
}
