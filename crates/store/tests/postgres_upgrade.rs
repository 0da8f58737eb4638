//! Upgrading a PostgreSQL store written by an earlier version: migration 0004 (the panel) runs on
//! a schema at version 3 that holds things with settings and app users with sessions. Each test
//! gets a scratch schema (see `postgres_conformance.rs`); skipped with a notice when the server
//! is unreachable, except on CI.

use serde_json::json;
use sqlx::Connection;
use thingline_store::testing::{drop_scratch, scratch_postgres_url};
use thingline_store::{StoreOptions, ThingPageQuery, ThingSort};

/// The migrations of schema 3, as an earlier version applied them.
const SCHEMA_3: [&str; 3] = [
    include_str!("../migrations/postgres/0001_foundation.sql"),
    include_str!("../migrations/postgres/0002_objects.sql"),
    include_str!("../migrations/postgres/0003_attempts.sql"),
];

/// The names of the settings documents written before (a document holding the escape \u0000
/// anywhere is left without one: PostgreSQL's json parser refuses it) and the last login of
/// users with live sessions are filled in; settings writes keep the name after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_last_logins_of_an_earlier_store_are_filled_in() {
    let Some(url) = scratch_postgres_url().await else { return };
    {
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(
            "CREATE TABLE thingline_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL); \
             INSERT INTO thingline_schema VALUES (1, 0), (2, 0), (3, 0);",
        )
        .execute(&mut conn)
        .await
        .expect("schema table");
        for sql in SCHEMA_3 {
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("old migration");
        }
        sqlx::raw_sql(
            r#"INSERT INTO panel_users (id, email, password_hash, created_ms) VALUES (1, 'ops@example.com', 'x', 0);
               INSERT INTO products (id, owner_id, name, resources, created_ms) VALUES ('p', 1, 'p', '[]', 0);
               INSERT INTO things (seq, id, token, product_id, settings, created_ms) VALUES
                 (1, 'a', 'ta', 'p', '{"name":"Kitchen","x":1}', 0),
                 (2, 'b', 'tb', 'p', '{"name":5}', 0),
                 (3, 'c', 'tc', 'p', '{"name":"a\u0000b"}', 0),
                 (4, 'd', 'td', 'p', '{"other":"\u0000","name":"Attic"}', 0),
                 (5, 'e', 'te', 'p', '{"name":"x\\u0000"}', 0),
                 (6, 'f', 'tf', 'p', '[1]', 0),
                 (7, 'g', 'tg', 'p', '"name"', 0);
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

    let store = thingline_store::open(&url, &StoreOptions::default()).await.expect("open runs migration 0004");
    let by_name = ThingPageQuery { sort: ThingSort::Name, descending: false, search: None, skip: 0, limit: 10 };
    let page = store.things_page("p", &by_name).await.expect("page");
    let names: Vec<(&str, Option<&str>)> = page.rows.iter().map(|r| (r.thing.id.as_str(), r.name.as_deref())).collect();
    assert_eq!(
        names,
        [
            ("a", Some("Kitchen")),
            ("e", Some("x\\u0000")),
            ("b", None),
            ("c", None),
            ("d", None),
            ("f", None),
            ("g", None)
        ],
        "names of the documents written before (an escaped backslash is no \\u0000), the nameless last"
    );
    let seq = page.rows[4].thing.seq;
    store.update_thing_settings(seq, None, json!({"other": "\u{0}", "name": "Attic"})).await.expect("settings");
    let page = store.things_page("p", &by_name).await.expect("page");
    assert_eq!(page.rows[0].name.as_deref(), Some("Attic"), "a settings write sets the name");

    let users = store.app_user_summaries("app").await.expect("users");
    let logins: Vec<Option<i64>> = users.iter().map(|u| u.last_login_ms).collect();
    assert_eq!(logins, [Some(300), None], "the last login is the newest live session's");
    store.close().await;
    drop_scratch(&url).await;
}
