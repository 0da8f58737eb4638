//! `thingline migrate` end to end: an installation built through the real API on SQLite, copied
//! by the real binary into a scratch PostgreSQL schema, then served from PostgreSQL: everything
//! reads back byte for byte (values and their paging, codes, links, grants, settings, outbox,
//! objects and their filters), old passwords and session tokens still work, and new writes get
//! fresh ids. A second test interrupts a copy (SIGKILL mid-table) and runs it again, and checks
//! the targets migrate refuses. Skipped (with a notice) where PostgreSQL is unreachable.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{APP_USER_PASSWORD, TestServer, json_of, urlencode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A server on SQLite in `dir` (whatever backend the suite runs on) with the in-process bus.
async fn start_sqlite(dir: &Path) -> TestServer {
    let url = format!("sqlite://{}/thingline.db", dir.display());
    TestServer::start_in(dir.to_path_buf(), move |a| {
        a.store_url = Some(url);
        a.bus_url = None;
        a.bus_prefix = None;
    })
    .await
}

/// A server on the PostgreSQL store `url`, in data dir `dir`, with the in-process bus.
async fn start_postgres(dir: &Path, url: &str) -> TestServer {
    let url = url.to_owned();
    TestServer::start_in(dir.to_path_buf(), move |a| {
        a.store_url = Some(url);
        a.bus_url = None;
        a.bus_prefix = None;
    })
    .await
}

/// Runs `thingline migrate` to the end; returns (success, stdout, stderr).
fn run_migrate(from: &Path, to: &str, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::spawned::bin())
        .arg("migrate")
        .args(["--from", &format!("sqlite://{}", from.display()), "--to", to])
        .args(extra)
        .env_remove("THINGLINE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run thingline migrate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stdout, stderr)
}

/// The count line of `table` in migrate's report: (sqlite, postgres, check).
fn count_line(stdout: &str, table: &str) -> (i64, i64, String) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no count line for {table} in:\n{stdout}"));
    let parts: Vec<&str> = line.split_whitespace().collect();
    (parts[1].parse().expect("sqlite count"), parts[2].parse().expect("postgres count"), parts[3].to_owned())
}

/// GET with an optional Authorization header: (status, body text).
async fn get_text(s: &TestServer, path: &str, token: Option<&str>) -> (u16, String) {
    let mut r = s.client.get(s.url(path));
    if let Some(t) = token {
        r = r.header("Authorization", t);
    }
    let r = r.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Every value of a thing's key, page by page (1000 newest first, then `endDate` = the oldest
/// datetime received): the raw text of each page.
async fn all_pages(s: &TestServer, thing_token: &str, key: &str) -> Vec<String> {
    let mut pages = Vec::new();
    let mut end: Option<String> = None;
    loop {
        let mut path = format!("/v2/things/{thing_token}/resources/{}?limit=1000", urlencode(key));
        if let Some(e) = &end {
            path.push_str(&format!("&endDate={}", urlencode(e)));
        }
        let (status, text) = get_text(s, &path, None).await;
        assert_eq!(status, 200, "{path}: {text}");
        let page: Vec<Value> = serde_json::from_str(&text).expect("a page");
        if page.is_empty() {
            return pages;
        }
        end = Some(page.last().expect("oldest")["datetime"].as_str().expect("datetime").to_owned());
        pages.push(text);
    }
}

/// What the installation built by [`build`] holds, as the API answers it.
struct Installation {
    panel: String,
    product: String,
    unused_codes: Vec<String>,
    used_code: String,
    things: Vec<common::TestThing>,
    app: String,
    alice: String,
    bob: String,
}

/// Builds an installation through the API: a product with codes (some used), three things with
/// thousands of values over months (some requested at equal datetimes), an app with users,
/// links, a grant (and its outbox mail), settings, and objects in private and shared collections
/// with indexed fields.
async fn build(s: &TestServer) -> Installation {
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true), ("humidity", true), ("$settings", true)]).await;
    let mut codes = s.codes(&panel, &product, 10).await;
    let mut things = Vec::new();
    let mut used = Vec::new();
    for _ in 0..3 {
        let code = codes.pop().expect("code");
        let r = s.activate(&code).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.expect("json");
        things.push(common::TestThing {
            token: v["thingToken"].as_str().expect("token").to_owned(),
            id: v["thingId"].as_str().expect("id").to_owned(),
            product_id: product.clone(),
        });
        used.push(code);
    }
    // Thing 0: 4,000 hourly values from September 2025 on (five months), of every JSON kind,
    // exact digits kept; five values requested at one datetime (moved to the next free ms).
    let start = 1_756_684_800_000i64; // 2025-09-01T00:00:00Z
    let mut values = Vec::new();
    for i in 0..4000i64 {
        let value = match i % 5 {
            0 => json!(i as f64 * 0.1),
            1 => json!(format!("{i}.5")),
            2 => json!({"a": [i, true, null], "b": "x"}),
            3 => json!(24.805999999999997),
            _ => json!(i),
        };
        values.push(json!({"key": "temperature", "value": value, "datetime": start + i * 3_600_000}));
    }
    for i in 0..5 {
        values.push(json!({"key": "temperature", "value": format!("same {i}"), "datetime": "2025-10-15T12:00:00Z"}));
    }
    assert_eq!(s.write(&things[0], json!(values)).await, StatusCode::CREATED);
    // Thing 1: 1,500 server-stamped values of humidity and its settings.
    let values: Vec<Value> = (0..1500).map(|i| json!({"key": "humidity", "value": i})).collect();
    assert_eq!(s.write(&things[1], json!(values)).await, StatusCode::CREATED);
    let settings = json!([{"key": "$settings", "value": {"name": "boiler", "floor": 2}}]);
    assert_eq!(s.write(&things[1], settings).await, StatusCode::CREATED);
    // Thing 2: a few values far apart (1990 and 2030).
    let values = json!([
        {"key": "temperature", "value": 1, "datetime": "1990-01-01T00:00:00Z"},
        {"key": "temperature", "value": 2, "datetime": "2030-06-01T00:00:00.123Z"},
    ]);
    assert_eq!(s.write(&things[2], values).await, StatusCode::CREATED);

    let app = s.api().app_with_indexes(&panel, json!({"Tracks": ["genre", "rank"]})).await;
    let r = s
        .req(Method::PUT, &format!("/v2/panel/apps/{app}"), &panel)
        .json(&json!({"resources": ["temperature", "humidity", "$settings"]}))
        .send()
        .await
        .expect("update app");
    assert_eq!(r.status(), StatusCode::OK);
    let alice = s.app_user(&app, "alice@example.com").await;
    let bob = s.app_user(&app, "bob@example.com").await;
    s.link(&alice, &things[0].token).await;
    s.link(&alice, &things[1].token).await;
    let r = s
        .req(Method::PUT, "/v2/me/grant", &alice)
        .json(&json!({"email": "bob@example.com", "permissions": {"temperature": {&things[0].id: {"get": true}}}}))
        .send()
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.req(Method::PUT, "/v2/me/settings", &alice).json(&json!({"hair": "pink", "n": 1})).send().await;
    assert_eq!(r.expect("settings").status(), StatusCode::OK);

    // Objects: a private collection (fields indexed on first use), a shared one (declared).
    for i in 0..40 {
        let flag = match i % 3 {
            0 => Value::Null,
            1 => json!(false),
            _ => json!(true),
        };
        let body = json!({"_id": i.to_string(), "n": i, "tag": if i % 2 == 0 { "even" } else { "odd" },
                          "flag": flag, "f": i as f64 + 0.5, "s": if i % 4 == 0 { json!("90") } else { json!(90) }});
        let r = s.req(Method::POST, "/v2/classes/me/Notes", &alice).json(&body).send().await.expect("object");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    for (i, genre) in ["rock", "jazz", "rock", "pop", "rock", "jazz"].iter().enumerate() {
        let body = json!({"genre": genre, "rank": 10 - i as i64, "title": format!("t{i}")});
        let r = s.req(Method::POST, "/v2/classes/app/Tracks", &bob).json(&body).send().await.expect("track");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // First use indexes these private fields (object_indexes, object_fields rows).
    for q in private_queries() {
        let (status, text) = get_text(s, &q, Some(&alice)).await;
        assert_eq!(status, 200, "{q}: {text}");
    }
    Installation { panel, product, unused_codes: codes, used_code: used.remove(0), things, app, alice, bob }
}

fn private_queries() -> Vec<String> {
    let w = |v: Value| urlencode(&v.to_string());
    vec![
        "/v2/classes/me/Notes".to_owned(),
        format!("/v2/classes/me/Notes?where={}", w(json!({"tag": "even"}))),
        format!("/v2/classes/me/Notes?where={}", w(json!({"flag": true}))),
        format!("/v2/classes/me/Notes?where={}", w(json!({"flag": null}))),
        format!("/v2/classes/me/Notes?where={}", w(json!({"s": "90"}))),
        format!("/v2/classes/me/Notes?where={}", w(json!({"s": 90.0}))),
        format!("/v2/classes/me/Notes?where={}", w(json!({"f": 10.5}))),
        "/v2/classes/me/Notes?sort=-n&limit=7".to_owned(),
        "/v2/classes/me/Notes?sort=f&limit=5&after=3".to_owned(),
        "/v2/classes/me/Notes?sort=flag&limit=40".to_owned(),
        "/v2/classes/me/Notes/17".to_owned(),
    ]
}

/// Everything the API answers about the installation, as (request, status, body text).
async fn snapshot(s: &TestServer, i: &Installation) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    let mut get = async |path: String, token: Option<&str>| {
        let (status, text) = get_text(s, &path, token).await;
        out.push((path, status, text));
    };
    let panel = Some(i.panel.as_str());
    get("/v2/panel/products".into(), panel).await;
    get(format!("/v2/panel/products/{}/activation-codes", i.product), panel).await;
    get(format!("/v2/panel/products/{}/things", i.product), panel).await;
    get("/v2/panel/apps".into(), panel).await;
    get(format!("/v2/panel/apps/{}/users", i.app), panel).await;
    get(format!("/v2/panel/apps/{}/outbox", i.app), panel).await;
    for t in &i.things {
        get(format!("/v2/panel/things/{}", t.id), panel).await;
        get(format!("/v2/things/{}/resources", t.token), None).await;
        get(format!("/v2/things/{}/all_resources?limit=3", t.token), None).await;
        get(format!("/v2/things/{}/resources/$settings", t.token), None).await;
        let q = format!("?limit=1000&startDate=2025-10-15T11:00:00Z&endDate={}", urlencode("2025-10-15T13:00:00.003Z"));
        get(format!("/v2/things/{}/resources/temperature{q}", t.token), None).await;
    }
    let alice = Some(i.alice.as_str());
    let bob = Some(i.bob.as_str());
    get("/v2/me/things".into(), alice).await;
    get("/v2/me/resources".into(), alice).await;
    get("/v2/me/settings".into(), alice).await;
    get(format!("/v2/me/resources/humidity/{}?limit=20", i.things[1].id), alice).await;
    get("/v2/me/resources".into(), bob).await;
    get(format!("/v2/me/resources/temperature/{}?limit=30", i.things[0].id), bob).await;
    for q in private_queries() {
        get(q, alice).await;
    }
    let w = |v: Value| urlencode(&v.to_string());
    get(format!("/v2/classes/app/Tracks?where={}", w(json!({"genre": "rock"}))), bob).await;
    get("/v2/classes/app/Tracks?sort=rank".into(), alice).await;
    get("/v2/classes/app/Tracks?sort=-genre&limit=2".into(), bob).await;
    get("/v2/classes/app/Tracks?sort=_id".into(), bob).await;
    out
}

/// Every value of every (thing, key) of the installation, page by page.
async fn timelines(s: &TestServer, i: &Installation) -> Vec<Vec<String>> {
    vec![
        all_pages(s, &i.things[0].token, "temperature").await,
        all_pages(s, &i.things[1].token, "humidity").await,
        all_pages(s, &i.things[2].token, "temperature").await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_moves_from_sqlite_to_postgres() {
    let Some(pg) = thingline_store::testing::scratch_postgres_url().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let source_dir = dir.path().join("sqlite");
    let s = start_sqlite(&source_dir).await;
    let inst = build(&s).await;
    let before = snapshot(&s, &inst).await;
    let pages_before = timelines(&s, &inst).await;
    assert_eq!(pages_before[0].len(), 5, "4,005 values in five pages");
    let values: usize =
        pages_before[0].iter().map(|p| serde_json::from_str::<Vec<Value>>(p).expect("page").len()).sum();
    assert_eq!(values, 4005);
    s.stop().await;

    let db = source_dir.join("thingline.db");
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = run_migrate(&db, &pg, &["--batch", "1000"]);
    let took = started.elapsed();
    assert!(ok, "migrate failed:\n{stdout}\n{stderr}");
    eprintln!("migrate took {took:?}\n{stdout}{stderr}");
    for (table, at_least) in [
        ("panel_users", 1),
        ("panel_sessions", 1),
        ("products", 1),
        ("activation_codes", 10),
        ("apps", 1),
        ("things", 3),
        ("timelines", 3),
        ("points", 4005 + 1500 + 2),
        ("app_users", 2),
        ("app_sessions", 2),
        ("app_links", 2),
        ("app_grants", 1),
        ("app_outbox", 1),
        ("object_collections", 2),
        ("objects", 46),
        ("object_indexes", 5),
        ("object_fields", 100),
    ] {
        let (source, target, check) = count_line(&stdout, table);
        assert_eq!((source, check.as_str()), (target, "ok"), "{table}");
        assert!(source >= at_least, "{table}: {source} rows, expected at least {at_least}");
    }

    let s = start_postgres(&dir.path().join("pg"), &pg).await;
    assert_eq!(s.platform().store().backend(), "postgres");
    let after = snapshot(&s, &inst).await;
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "{} answers the same", b.0);
    }
    assert_eq!(timelines(&s, &inst).await, pages_before, "every value, byte for byte, paged the same");

    // Old passwords log in; the panel account too.
    let (status, v) = s.login(&inst.app, "alice@example.com", APP_USER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let panel = s.panel_token().await;
    assert!(!panel.is_empty());

    // Codes: a used one stays used, an unused one activates (a new thing seq).
    let r = s.activate(&inst.used_code).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = s.activate(&inst.unused_codes[0]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    let new_thing = common::TestThing {
        token: v["thingToken"].as_str().expect("token").to_owned(),
        id: v["thingId"].as_str().expect("id").to_owned(),
        product_id: inst.product.clone(),
    };
    assert_eq!(s.write(&new_thing, json!([{"key": "temperature", "value": 7}])).await, StatusCode::CREATED);
    let (_, v) = s.read(&new_thing, "temperature", "").await;
    assert_eq!(v[0]["value"], json!(7));
    // A new key on an old thing (a new timeline id), appended after the copied values.
    assert_eq!(s.write(&inst.things[0], json!([{"key": "pressure", "value": 1013}])).await, StatusCode::CREATED);
    assert_eq!(s.write(&inst.things[0], json!([{"key": "temperature", "value": "new"}])).await, StatusCode::CREATED);
    let (_, v) = s.read(&inst.things[0], "temperature", "?limit=2").await;
    assert_eq!(v[0]["value"], json!("new"));
    // New users, collections, grants (outbox), panel users: fresh ids.
    let carol = s.app_user(&inst.app, "carol@example.com").await;
    let r = s.req(Method::POST, "/v2/classes/me/Fresh", &carol).json(&json!({"a": 1})).send().await.expect("object");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.req(Method::POST, "/v2/classes/app/Other", &carol).json(&json!({"a": 1})).send().await.expect("object");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.req(Method::POST, "/v2/classes/me/Notes", &inst.alice).json(&json!({"n": 99})).send().await;
    assert_eq!(r.expect("object").status(), StatusCode::CREATED);
    let r = s
        .req(Method::PUT, "/v2/me/grant", &inst.alice)
        .json(&json!({"email": "carol@example.com", "permissions": {"humidity": {&inst.things[1].id: {"get": true}}}}))
        .send()
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::OK);
    let (_, outbox) = json_of(
        s.req(Method::GET, &format!("/v2/panel/apps/{}/outbox", inst.app), &panel).send().await.expect("outbox"),
    )
    .await;
    assert_eq!(outbox["mails"].as_array().map(Vec::len), Some(2), "{outbox}");
    let user = s.platform().create_panel_user("second@example.com", "another password").await.expect("panel user");
    assert!(user.id > 1);
    s.stop().await;
    thingline_store::testing::drop_scratch(&pg).await;
}

/// A `thingline migrate` killed after its first progress line on `points`.
fn migrate_killed_mid_points(from: &Path, to: &str) -> Vec<String> {
    let mut child = Command::new(common::spawned::bin())
        .arg("migrate")
        .args(["--from", &format!("sqlite://{}", from.display()), "--to", to])
        .args(["--batch", "100", "--progress-every-ms", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn migrate");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let progress = line.starts_with("points: ") && line.contains(" rows/s");
        lines.push(line);
        if progress {
            child.kill().expect("kill -9");
            break;
        }
    }
    let status = child.wait().expect("reaped");
    assert!(!status.success(), "killed before the end: {lines:?}");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_resumes_and_foreign_targets_are_refused() {
    let Some(pg) = thingline_store::testing::scratch_postgres_url().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let source_dir = dir.path().join("sqlite");
    let s = start_sqlite(&source_dir).await;
    let panel = s.panel_token().await;
    let thing = s.thing(&panel, &[("temperature", true)]).await;
    for part in 0..2i64 {
        let values: Vec<Value> = (0..10_000i64)
            .map(|i| json!({"key": "temperature", "value": part * 10_000 + i, "datetime": 1_700_000_000_000i64 + (part * 10_000 + i) * 60_000}))
            .collect();
        assert_eq!(s.write(&thing, json!(values)).await, StatusCode::CREATED);
    }
    s.stop().await;
    let db = source_dir.join("thingline.db");

    let lines = migrate_killed_mid_points(&db, &pg);
    assert!(lines.iter().any(|l| l.starts_with("things: done")), "{lines:?}");
    let (ok, stdout, stderr) = run_migrate(&db, &pg, &["--batch", "100"]);
    assert!(ok, "the second run completes:\n{stdout}\n{stderr}");
    assert!(stderr.contains("things: copied by an earlier run"), "{stderr}");
    assert!(stderr.contains("points: copying 20000 rows (resuming after "), "{stderr}");
    assert_eq!(count_line(&stdout, "points"), (20_000, 20_000, "ok".to_owned()));
    // A third run finds everything done and checks again.
    let (ok, stdout, stderr) = run_migrate(&db, &pg, &[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stderr.contains("points: copied by an earlier run (20000 rows)"), "{stderr}");

    // Served from PostgreSQL: every value once, in order.
    let s2 = start_postgres(&dir.path().join("pg"), &pg).await;
    let pages = all_pages(&s2, &thing.token, "temperature").await;
    let got: Vec<i64> = pages
        .iter()
        .flat_map(|p| serde_json::from_str::<Vec<Value>>(p).expect("page"))
        .map(|v| v["value"].as_i64().expect("int"))
        .collect();
    assert_eq!(got, (0..20_000).rev().collect::<Vec<i64>>());
    s2.stop().await;

    // Another source into the same target: refused.
    let other_dir = dir.path().join("other");
    let s3 = start_sqlite(&other_dir).await;
    s3.stop().await;
    let (ok, _, stderr) = run_migrate(&other_dir.join("thingline.db"), &pg, &[]);
    assert!(!ok);
    assert!(stderr.contains("the target holds a migration from another source"), "{stderr}");

    // A target some server already uses (rows, no migration record): refused, untouched.
    let Some(used) = thingline_store::testing::scratch_postgres_url().await else { return };
    let s4 = start_postgres(&dir.path().join("pg2"), &used).await;
    s4.stop().await;
    let (ok, _, stderr) = run_migrate(&db, &used, &[]);
    assert!(!ok);
    assert!(stderr.contains("the target is not empty"), "{stderr}");
    // Not a Thingline store, and a missing file.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"").expect("junk");
    let (ok, _, stderr) = run_migrate(&junk, &used, &[]);
    assert!(!ok && stderr.contains("not a Thingline store"), "{stderr}");
    let (ok, _, stderr) = run_migrate(&dir.path().join("missing.db"), &used, &[]);
    assert!(!ok && stderr.contains("no SQLite store"), "{stderr}");

    thingline_store::testing::drop_scratch(&pg).await;
    thingline_store::testing::drop_scratch(&used).await;
}
