//! Upgrading a SQLite store written by an earlier version: migration 0005 (declared indexes of
//! shared collections) runs on a database at schema 4 that holds objects and first-use indexes.

use serde_json::json;
use sqlx::{Connection, Row};
use thingline_core::classes::{Collection, IndexDeclarations, ListQuery, Owner, Scalar};
use thingline_store::StoreOptions;

/// The migrations of schema 4, as an earlier version applied them.
const SCHEMA_4: [&str; 4] = [
    include_str!("../migrations/sqlite/0001_foundation.sql"),
    include_str!("../migrations/sqlite/0002_app_users.sql"),
    include_str!("../migrations/sqlite/0003_objects.sql"),
    include_str!("../migrations/sqlite/0004_object_indexes.sql"),
];

#[tokio::test]
async fn first_use_indexes_of_shared_collections_are_dropped_and_private_ones_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let url = format!("sqlite://{}", path.display());
    {
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc")).await.expect("connect");
        sqlx::raw_sql(
            "CREATE TABLE thingline_schema (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL); \
             INSERT INTO thingline_schema VALUES (1, 0), (2, 0), (3, 0), (4, 0);",
        )
        .execute(&mut conn)
        .await
        .expect("schema table");
        for sql in SCHEMA_4 {
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("old migration");
        }
        // One shared and one private "Tracks" collection, each with two objects and `genre`
        // indexed on first use (as schema 4 did for any user).
        sqlx::raw_sql(
            "INSERT INTO panel_users (id, email, password_hash, created_ms) VALUES (1, 'ops@example.com', 'x', 0); \
             INSERT INTO apps (id, owner_id, name, resources, created_ms) VALUES ('app', 1, 'a', '[]', 0); \
             INSERT INTO object_collections (id, app_id, owner, path) VALUES (1, 'app', 0, 'Tracks'), (2, 'app', 5, 'Tracks'); \
             INSERT INTO objects (cid, k, body) VALUES \
               (1, '011', '{\"_id\":\"1\",\"genre\":\"jazz\"}'), (1, '012', '{\"_id\":\"2\",\"genre\":\"rock\"}'), \
               (2, '011', '{\"_id\":\"1\",\"genre\":\"jazz\"}'), (2, '012', '{\"_id\":\"2\",\"genre\":\"rock\"}'); \
             INSERT INTO object_indexes (cid, name) VALUES (1, 'genre'), (2, 'genre'); \
             INSERT INTO object_fields (cid, name, v, k) VALUES \
               (1, 'genre', 'jazz', '011'), (1, 'genre', 'rock', '012'), (2, 'genre', 'jazz', '011'), (2, 'genre', 'rock', '012');",
        )
        .execute(&mut conn)
        .await
        .expect("old data");
        conn.close().await.expect("close");
    }

    let store = thingline_store::open(&url, &StoreOptions::default()).await.expect("open runs migration 0005");
    let mut app = store.app("app").await.expect("get").expect("exists");
    assert!(app.indexes.is_empty(), "no field is declared after the upgrade");
    let shared = Collection { app_id: "app".into(), owner: Owner::App, path: "Tracks".into() };
    let private = Collection { owner: Owner::User(5), ..shared.clone() };
    assert!(store.indexed_fields(&shared).await.expect("indexed").is_empty(), "shared first-use index dropped");
    assert_eq!(store.indexed_fields(&private).await.expect("indexed"), ["genre"], "private index kept");
    let jazz =
        ListQuery { limit: 10, filters: vec![("genre".into(), Scalar::Text("jazz".into()))], ..Default::default() };
    assert_eq!(store.list_objects(&private, &jazz).await.expect("private list").len(), 1);
    assert_eq!(store.list_objects(&shared, &jazz).await.expect_err("undeclared").status(), 400);

    // Declaring the field indexes the stored objects again (no index row was left behind).
    app.indexes = IndexDeclarations::from_json(&json!({"Tracks": ["genre"]})).expect("declaration");
    assert!(store.update_app(&app).await.expect("update"));
    let found = store.list_objects(&shared, &jazz).await.expect("shared list");
    assert_eq!(found, [r#"{"_id":"1","genre":"jazz"}"#]);
    store.close().await;

    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
    let rows = sqlx::query("SELECT cid, count(*) FROM object_fields GROUP BY cid ORDER BY cid")
        .fetch_all(&mut conn)
        .await
        .expect("rows");
    let counts: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(counts, [(1, 2), (2, 2)], "each stored object indexed once");
}

/// The migrations of schema 5, as an earlier version applied them.
const SCHEMA_5: [&str; 5] = [
    include_str!("../migrations/sqlite/0001_foundation.sql"),
    include_str!("../migrations/sqlite/0002_app_users.sql"),
    include_str!("../migrations/sqlite/0003_objects.sql"),
    include_str!("../migrations/sqlite/0004_object_indexes.sql"),
    include_str!("../migrations/sqlite/0005_app_object_indexes.sql"),
];

/// Migration 0006 (the panel): the names of the settings documents written before it and the
/// last login of users with live sessions are filled in; settings writes keep the name after.
#[tokio::test]
async fn names_and_last_logins_of_an_earlier_store_are_filled_in() {
    use thingline_store::{ThingPageQuery, ThingSort};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    {
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc")).await.expect("connect");
        sqlx::raw_sql(
            "CREATE TABLE thingline_schema (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL); \
             INSERT INTO thingline_schema VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0);",
        )
        .execute(&mut conn)
        .await
        .expect("schema table");
        for sql in SCHEMA_5 {
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("old migration");
        }
        // Settings with a name, a name that is no string, a name holding U+0000, a NUL elsewhere
        // in the document, and none; a user with two sessions, one without.
        sqlx::raw_sql(
            r#"INSERT INTO panel_users (id, email, password_hash, created_ms) VALUES (1, 'ops@example.com', 'x', 0);
               INSERT INTO products (id, owner_id, name, resources, created_ms) VALUES ('p', 1, 'p', '[]', 0);
               INSERT INTO things (seq, id, token, product_id, settings, created_ms) VALUES
                 (1, 'a', 'ta', 'p', '{"name":"Kitchen","x":1}', 0),
                 (2, 'b', 'tb', 'p', '{"name":5}', 0),
                 (3, 'c', 'tc', 'p', '{"name":"a\u0000b"}', 0),
                 (4, 'd', 'td', 'p', '{"other":"\u0000","name":"Attic"}', 0),
                 (5, 'e', 'te', 'p', '{}', 0);
               INSERT INTO apps (id, owner_id, name, resources, created_ms) VALUES ('app', 1, 'a', '[]', 0);
               INSERT INTO app_users (id, app_id, email, password_hash, created_ms) VALUES
                 (1, 'app', 'a@example.com', 'x', 0), (2, 'app', 'b@example.com', 'x', 0);
               INSERT INTO app_sessions (token_digest, user_id, expires_ms, created_ms) VALUES
                 ('s1', 1, 9000, 100), ('s2', 1, 9000, 300);"#,
        )
        .execute(&mut conn)
        .await
        .expect("old data");
        conn.close().await.expect("close");
    }

    let store = thingline_store::open(&url, &StoreOptions::default()).await.expect("open runs migration 0006");
    let by_name = ThingPageQuery { sort: ThingSort::Name, descending: false, search: None, skip: 0, limit: 10 };
    let page = store.things_page("p", &by_name).await.expect("page");
    let names: Vec<(&str, Option<&str>)> = page.rows.iter().map(|r| (r.thing.id.as_str(), r.name.as_deref())).collect();
    assert_eq!(
        names,
        [("d", Some("Attic")), ("a", Some("Kitchen")), ("b", None), ("c", None), ("e", None)],
        "names of the documents written before, sorted, the nameless last"
    );
    let seq = page.rows[4].thing.seq;
    store.update_thing_settings(seq, Some("name"), json!("Basement")).await.expect("settings");
    let page = store.things_page("p", &by_name).await.expect("page");
    assert_eq!(page.rows[0].name.as_deref(), Some("Attic"));
    assert_eq!(page.rows[1].name.as_deref(), Some("Basement"), "a settings write sets the name");

    let users = store.app_user_summaries("app").await.expect("users");
    let logins: Vec<Option<i64>> = users.iter().map(|u| u.last_login_ms).collect();
    assert_eq!(logins, [Some(300), None], "the last login is the newest live session's");
    store.close().await;
}
