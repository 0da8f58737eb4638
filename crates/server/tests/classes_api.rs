//! The Objects API (`/v2/classes`) over the real server and real TLS: the guide's calls and
//! relation examples, privacy of `/me`, sharing of `/app` between users of one app, isolation
//! between apps, ordering, paging, filters and sorting, validation errors, and collection
//! subscriptions (changes and `{}` on idle).

mod common;

use std::time::Duration;

use common::{JsonStream, TestServer, assert_envelope};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

/// A server with one app and a fresh panel account.
async fn setup() -> (TestServer, String) {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    s.product(&panel, &[("temperature", true)]).await;
    let app = s.app(&panel, &["temperature"]).await;
    (s, app)
}

async fn call(s: &TestServer, token: &str, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut rb = s.req(method, path, token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.expect("request")
}

async fn ok_json(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    r.json().await.expect("json")
}

async fn results(s: &TestServer, token: &str, path: &str) -> Vec<Value> {
    let v = ok_json(call(s, token, Method::GET, path, None).await, StatusCode::OK).await;
    v["results"].as_array().expect("results").clone()
}

fn ids(objects: &[Value]) -> Vec<String> {
    objects.iter().map(|o| o["_id"].as_str().expect("_id is a string").to_owned()).collect()
}

#[tokio::test]
async fn guide_calls_and_relations() {
    let (s, app) = setup().await;
    let t = s.app_user(&app, "alice@example.com").await;

    // Store with _id in the body, then in the path.
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Playlists", Some(json!({"_id": "25", "name": "Dubstep"}))).await;
    assert_eq!(ok_json(r, StatusCode::CREATED).await, json!({"status": "success", "message": "created", "id": "25"}));
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Playlists/20", Some(json!({"name": "Classic", "duration": 90})))
        .await;
    assert_eq!(ok_json(r, StatusCode::CREATED).await["id"], "20");
    // An existing _id is a 409 and leaves the stored object alone.
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Playlists", Some(json!({"_id": "25", "name": "Other"}))).await;
    assert_envelope(r, 409).await;
    assert_eq!(results(&s, &t, "/v2/classes/me/Playlists/25").await, [json!({"_id": "25", "name": "Dubstep"})]);
    // A number as _id is stored as its decimal string.
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Playlists", Some(json!({"_id": 7, "name": "Seven"}))).await;
    assert_eq!(ok_json(r, StatusCode::CREATED).await["id"], "7");
    // No _id: a random one.
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Playlists", Some(json!({"name": "Anon"}))).await;
    let generated = ok_json(r, StatusCode::CREATED).await["id"].as_str().expect("id").to_owned();
    assert!(!generated.is_empty());

    // Update merges: fields not sent stay.
    let r = call(&s, &t, Method::PUT, "/v2/classes/me/Playlists/25", Some(json!({"duration": 180}))).await;
    assert_eq!(ok_json(r, StatusCode::OK).await, json!({"status": "success", "message": "updated"}));
    let r = call(&s, &t, Method::PUT, "/v2/classes/me/Playlists/25", Some(json!({"name": "Dubstep Mix"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = call(&s, &t, Method::GET, "/v2/classes/me/Playlists/25", None).await;
    assert_eq!(
        ok_json(got, StatusCode::OK).await,
        json!({"results": [{"_id": "25", "name": "Dubstep Mix", "duration": 180}]}),
        "read back exactly as stored plus _id"
    );
    let r = call(&s, &t, Method::PUT, "/v2/classes/me/Playlists/99", Some(json!({"a": 1}))).await;
    assert_envelope(r, 404).await;

    // Collection: primary key descending (numbers numerically, other ids after them).
    let all = results(&s, &t, "/v2/classes/me/Playlists").await;
    assert_eq!(ids(&all), vec![generated.as_str(), "25", "20", "7"]);
    assert_eq!(all[2], json!({"_id": "20", "name": "Classic", "duration": 90}));

    // Delete.
    let r = call(&s, &t, Method::DELETE, "/v2/classes/me/Playlists/25", None).await;
    assert_eq!(ok_json(r, StatusCode::OK).await, json!({"status": "success", "message": "deleted"}));
    assert_envelope(call(&s, &t, Method::GET, "/v2/classes/me/Playlists/25", None).await, 404).await;
    assert_envelope(call(&s, &t, Method::DELETE, "/v2/classes/me/Playlists/25", None).await, 404).await;
    let empty = call(&s, &t, Method::GET, "/v2/classes/me/Nothing", None).await;
    assert_eq!(ok_json(empty, StatusCode::OK).await, json!({"results": []}));

    // Relations: the parent need not exist; trailing slashes as in the guide.
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Playlists/25/Songs/100/", Some(json!({"title": "Song"}))).await;
    assert_eq!(ok_json(r, StatusCode::CREATED).await["id"], "100");
    let r =
        call(&s, &t, Method::POST, "/v2/classes/me/Playlists/25/Songs/100/Artist/10/", Some(json!({"n": "A"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Songs/100/Playlist/25", Some(json!({"n": "reverse"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r =
        call(&s, &t, Method::POST, "/v2/classes/me/Songs/100/Playlist/25/Artist/10", Some(json!({"n": "deep"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(ids(&results(&s, &t, "/v2/classes/me/Playlists/25/Songs").await), ["100"]);
    assert_eq!(ids(&results(&s, &t, "/v2/classes/me/Playlists/25/Songs/100/Artist/").await), ["10"]);
    let one = results(&s, &t, "/v2/classes/me/Playlists/25/Songs/100/Artist/10").await;
    assert_eq!(one, vec![json!({"_id": "10", "n": "A"})]);
    // Different orderings are different collections, and sub-collections are not in the parent.
    assert_eq!(results(&s, &t, "/v2/classes/me/Songs/100/Playlist").await, vec![json!({"_id": "25", "n": "reverse"})]);
    assert_eq!(
        results(&s, &t, "/v2/classes/me/Songs/100/Playlist/25/Artist").await,
        vec![json!({"_id": "10", "n": "deep"})]
    );
    assert_envelope(call(&s, &t, Method::GET, "/v2/classes/me/Songs/100", None).await, 404).await;
    assert!(!ids(&results(&s, &t, "/v2/classes/me/Playlists").await).contains(&"100".to_owned()));

    // Form bodies store strings.
    let r = s
        .client
        .post(s.url("/v2/classes/me/Forms/f1"))
        .header("Authorization", &t)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("name=Dubstep&n=5")
        .send()
        .await
        .expect("post form");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        results(&s, &t, "/v2/classes/me/Forms/f1").await,
        vec![json!({"_id": "f1", "name": "Dubstep", "n": "5"})]
    );

    // Without a session: 401. On the plain device listener: 403, HTTPS required.
    let r = s.client.get(s.url("/v2/classes/me/Playlists")).send().await.expect("get");
    assert_envelope(r, 401).await;
    let r = s
        .client
        .get(format!("{}/v2/classes/me/Playlists", s.http))
        .header("Authorization", &t)
        .send()
        .await
        .expect("get");
    assert_envelope(r, 403).await;
    s.stop().await;
}

#[tokio::test]
async fn privacy_sharing_and_isolation_between_apps() {
    let (s, app) = setup().await;
    let panel = s.panel_token().await;
    let other_app = s.app(&panel, &["temperature"]).await;
    let alice = s.app_user(&app, "alice@example.com").await;
    let bob = s.app_user(&app, "bob@example.com").await;
    let carol = s.app_user(&other_app, "carol@example.com").await;
    // The same email in another app is another user.
    let alice2 = s.app_user(&other_app, "alice@example.com").await;

    // /me is private to the user who stored it.
    let r = call(&s, &alice, Method::POST, "/v2/classes/me/Notes/1", Some(json!({"text": "mine"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_envelope(call(&s, &bob, Method::GET, "/v2/classes/me/Notes/1", None).await, 404).await;
    assert!(results(&s, &bob, "/v2/classes/me/Notes").await.is_empty());
    assert_envelope(call(&s, &bob, Method::PUT, "/v2/classes/me/Notes/1", Some(json!({"x": 1}))).await, 404).await;
    assert_envelope(call(&s, &bob, Method::DELETE, "/v2/classes/me/Notes/1", None).await, 404).await;
    // Bob may use the same id in his own collection.
    let r = call(&s, &bob, Method::POST, "/v2/classes/me/Notes/1", Some(json!({"text": "bob's"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(results(&s, &alice, "/v2/classes/me/Notes/1").await, vec![json!({"_id": "1", "text": "mine"})]);
    // /me and /app are different collections.
    assert!(results(&s, &alice, "/v2/classes/app/Notes").await.is_empty());

    // /app is shared by every user of the app.
    let r = call(&s, &alice, Method::POST, "/v2/classes/app/Shared/1", Some(json!({"by": "alice"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(results(&s, &bob, "/v2/classes/app/Shared/1").await, vec![json!({"_id": "1", "by": "alice"})]);
    let r = call(&s, &bob, Method::PUT, "/v2/classes/app/Shared/1", Some(json!({"seen": true}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        results(&s, &alice, "/v2/classes/app/Shared").await,
        vec![json!({"_id": "1", "by": "alice", "seen": true})]
    );
    assert_envelope(call(&s, &bob, Method::POST, "/v2/classes/app/Shared", Some(json!({"_id": "1"}))).await, 409).await;

    // Never across apps.
    for t in [&carol, &alice2] {
        assert_envelope(call(&s, t, Method::GET, "/v2/classes/app/Shared/1", None).await, 404).await;
        assert!(results(&s, t, "/v2/classes/app/Shared").await.is_empty());
        assert!(results(&s, t, "/v2/classes/me/Notes").await.is_empty());
        assert_envelope(call(&s, t, Method::DELETE, "/v2/classes/app/Shared/1", None).await, 404).await;
    }
    let r = call(&s, &carol, Method::POST, "/v2/classes/app/Shared/1", Some(json!({"by": "carol"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED, "the same id in another app is another object");
    assert_eq!(results(&s, &bob, "/v2/classes/app/Shared/1").await[0]["by"], "alice");
    s.stop().await;
}

#[tokio::test]
async fn ordering_paging_filters_and_sort() {
    let (s, app) = setup().await;
    let t = s.app_user(&app, "alice@example.com").await;
    // 150 objects, created concurrently (the writer commits them in groups).
    let creates = (1..=150).map(|i| {
        let body =
            json!({"_id": i, "genre": if i % 3 == 0 { "jazz" } else { "rock" }, "rank": 1000 - i, "odd": i % 2 == 1});
        call(&s, &t, Method::POST, "/v2/classes/me/Tracks", Some(body))
    });
    for r in futures_util::future::join_all(creates).await {
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // Without limit: up to 1000, primary key descending (so every one of the 150 here).
    let page = results(&s, &t, "/v2/classes/me/Tracks").await;
    let expect: Vec<String> = (1..=150).rev().map(|i: i32| i.to_string()).collect();
    assert_eq!(ids(&page), expect);
    let first = results(&s, &t, "/v2/classes/me/Tracks?limit=100").await;
    assert_eq!(ids(&first), expect[..100]);
    // limit / skip / cursor.
    assert_eq!(ids(&results(&s, &t, "/v2/classes/me/Tracks?limit=3&skip=2").await), ["148", "147", "146"]);
    assert_eq!(ids(&results(&s, &t, "/v2/classes/me/Tracks?limit=3&after=51").await), ["50", "49", "48"]);
    assert_eq!(
        results(&s, &t, "/v2/classes/me/Tracks?limit=5000").await.len(),
        150,
        "a limit over 1000 is served, clamped (clamping: core unit test)"
    );
    // Walk every page with the cursor: each object exactly once.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() { "?limit=40".to_owned() } else { format!("?limit=40&after={after}") };
        let page = ids(&results(&s, &t, &format!("/v2/classes/me/Tracks{q}")).await);
        let Some(last) = page.last() else { break };
        after = last.clone();
        seen.extend(page);
    }
    assert_eq!(seen, expect);
    assert_eq!(ids(&results(&s, &t, "/v2/classes/me/Tracks?sort=_id&limit=2").await), ["1", "2"]);

    // Equality filters on top-level fields, alone and combined; sorting by a field.
    let jazz = results(&s, &t, "/v2/classes/me/Tracks?limit=1000&where=%7B%22genre%22%3A%22jazz%22%7D").await;
    assert_eq!(jazz.len(), 50);
    assert_eq!(jazz[0]["_id"], "150");
    let q = format!("/v2/classes/me/Tracks?where={}", common::urlencode(r#"{"genre":"jazz","odd":true}"#));
    let odd_jazz = ids(&results(&s, &t, &q).await);
    assert_eq!(odd_jazz.len(), 25);
    assert_eq!(odd_jazz[..2], ["147", "141"]);
    let by_rank = ids(&results(&s, &t, "/v2/classes/me/Tracks?sort=rank&limit=3").await);
    assert_eq!(by_rank, ["150", "149", "148"], "rank = 1000 - id, ascending");
    let by_rank_desc = ids(&results(&s, &t, "/v2/classes/me/Tracks?sort=-rank&limit=2&after=1").await);
    assert_eq!(by_rank_desc, ["2", "3"]);
    let q = format!("/v2/classes/me/Tracks?sort=-rank&limit=3&where={}", common::urlencode(r#"{"genre":"jazz"}"#));
    assert_eq!(ids(&results(&s, &t, &q).await), ["3", "6", "9"]);
    let q = format!("/v2/classes/me/Tracks?where={}", common::urlencode(r#"{"rank":"999"}"#));
    assert!(results(&s, &t, &q).await.is_empty(), "a string never equals a number");
    // Filters follow updates.
    call(&s, &t, Method::PUT, "/v2/classes/me/Tracks/1", Some(json!({"genre": "jazz"}))).await;
    let q = format!("/v2/classes/me/Tracks?limit=1000&where={}", common::urlencode(r#"{"genre":"jazz"}"#));
    assert_eq!(results(&s, &t, &q).await.len(), 51);

    // Bad paging and query parameters are 400s.
    for q in [
        "limit=0",
        "limit=-3",
        "limit=abc",
        "limit=",
        "skip=-1",
        "skip=100001",
        "where=nope",
        "where=%5B1%5D",
        "where=%7B%22a%22%3A%5B1%5D%7D",
        "sort=",
        "after=a%2Fb",
        "sort=rank&after=nope",
        "subscribe=maybe",
    ] {
        let r = call(&s, &t, Method::GET, &format!("/v2/classes/me/Tracks?{q}"), None).await;
        assert_envelope(r, 400).await;
    }
    s.stop().await;
}

/// `where` on `color` and `sort` on `w` (a float) against a model of the collection.
async fn check_against_model(s: &TestServer, t: &str, model: &std::collections::BTreeMap<String, Value>) {
    let red = format!("/v2/classes/me/Notes?limit=1000&where={}", common::urlencode(r#"{"color":"red"}"#));
    let want: Vec<String> = model.iter().rev().filter(|(_, o)| o["color"] == "red").map(|(id, _)| id.clone()).collect();
    assert_eq!(ids(&results(s, t, &red).await), want, "where color=red");
    let q = format!("/v2/classes/me/Notes?limit=1000&sort=-w&where={}", common::urlencode(r#"{"flag":true}"#));
    let mut flagged: Vec<(&String, f64)> =
        model.iter().filter(|(_, o)| o["flag"] == true).map(|(id, o)| (id, o["w"].as_f64().expect("w"))).collect();
    flagged.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(a.0)));
    let want: Vec<String> = flagged.into_iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids(&results(s, t, &q).await), want, "flag=true sorted by -w");
}

/// Fields are indexed from the first `where`/`sort` naming them: objects stored before are found,
/// and creates, updates and deletes after it keep the index right, also after a restart.
#[tokio::test]
async fn fields_are_indexed_on_first_use_and_kept_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let panel = s.panel_token().await;
    s.product(&panel, &[("temperature", true)]).await;
    let app = s.app(&panel, &["temperature"]).await;
    let t = s.app_user(&app, "indexes@example.com").await;
    let mut model = std::collections::BTreeMap::new();
    let object = |i: u32| {
        json!({"color": if i.is_multiple_of(2) { "red" } else { "blue" }, "w": f64::from(i) * 0.37 + 0.001,
               "flag": !i.is_multiple_of(3), "size": i})
    };
    async fn put(s: &TestServer, t: &str, model: &mut std::collections::BTreeMap<String, Value>, id: String, o: Value) {
        let r = call(s, t, Method::POST, &format!("/v2/classes/me/Notes/{id}"), Some(o.clone())).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        model.insert(id, o);
    }
    for i in 0..40 {
        put(&s, &t, &mut model, format!("n{i:03}"), object(i)).await;
    }
    // First filter and sort: the fields are indexed now, the 40 stored objects included.
    check_against_model(&s, &t, &model).await;
    // Creates (concurrent: one group), updates changing an indexed field, deletes.
    let paths: Vec<String> = (40..60).map(|i| format!("/v2/classes/me/Notes/n{i:03}")).collect();
    let creates = paths.iter().zip(40..60).map(|(p, i)| call(&s, &t, Method::POST, p, Some(object(i))));
    for r in futures_util::future::join_all(creates).await {
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    for i in 40..60 {
        model.insert(format!("n{i:03}"), object(i));
    }
    for (id, patch) in [
        ("n002", json!({"color": "blue"})),
        ("n005", json!({"color": "red", "w": 99.5})),
        ("n044", json!({"flag": false})),
        ("n045", json!({"flag": true, "w": -1.25})),
    ] {
        let r = call(&s, &t, Method::PUT, &format!("/v2/classes/me/Notes/{id}"), Some(patch.clone())).await;
        assert_eq!(r.status(), StatusCode::OK, "update {id}");
        let o = model.get_mut(id).expect("in model");
        for (k, v) in patch.as_object().expect("object") {
            o[k] = v.clone();
        }
    }
    for id in ["n004", "n007", "n050"] {
        let r = call(&s, &t, Method::DELETE, &format!("/v2/classes/me/Notes/{id}"), None).await;
        assert_eq!(r.status(), StatusCode::OK, "delete {id}");
        model.remove(id);
    }
    check_against_model(&s, &t, &model).await;

    // After a restart the writer still knows which fields are indexed.
    s.stop().await;
    let s = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    put(&s, &t, &mut model, "n100".into(), object(100)).await;
    put(&s, &t, &mut model, "n101".into(), json!({"color": "red", "w": 0.5, "flag": true})).await;
    let r = call(&s, &t, Method::PUT, "/v2/classes/me/Notes/n001", Some(json!({"color": "red"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    model.get_mut("n001").expect("n001")["color"] = json!("red");
    check_against_model(&s, &t, &model).await;
    // A field filtered for the first time after the restart.
    let q = format!("/v2/classes/me/Notes?where={}", common::urlencode(r#"{"size":100}"#));
    assert_eq!(ids(&results(&s, &t, &q).await), ["n100"]);
    // At most 64 indexed fields per collection (4 so far): a 65th is refused with a clear 400,
    // the indexed ones keep working.
    for i in 0..60 {
        assert!(results(&s, &t, &format!("/v2/classes/me/Notes?sort=f{i}")).await.is_empty());
    }
    let r = call(&s, &t, Method::GET, "/v2/classes/me/Notes?sort=f60", None).await;
    let e = assert_envelope(r, 400).await;
    assert!(e["message"].as_str().is_some_and(|m| m.contains("64 indexed fields")), "{e}");
    check_against_model(&s, &t, &model).await;
    s.stop().await;
}

/// `where` and `sort` on shared collections name only the fields the operator declared for the
/// collection's name. A declaration added later indexes the objects already stored (in every
/// shared collection of that name), one removed drops the field, and both hold after a restart.
#[tokio::test]
async fn shared_collections_follow_the_operators_declaration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let panel = s.panel_token().await;
    let app = s.app(&panel, &[]).await;
    let alice = s.app_user(&app, "alice@example.com").await;
    let bob = s.app_user(&app, "bob@example.com").await;
    let collections = ["Tracks", "Albums/7/Tracks"];
    for c in collections {
        let path = format!("/v2/classes/app/{c}");
        let creates = (1..=30).map(|i| {
            let body = json!({"_id": i, "genre": if i % 3 == 0 { "jazz" } else { "rock" }, "rank": 100 - i});
            call(&s, &alice, Method::POST, &path, Some(body))
        });
        for r in futures_util::future::join_all(creates).await {
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    }
    let jazz_by_rank =
        |c: &str| format!("/v2/classes/app/{c}?sort=rank&limit=4&where={}", common::urlencode(r#"{"genre":"jazz"}"#));
    let e = assert_envelope(call(&s, &bob, Method::GET, &jazz_by_rank("Tracks"), None).await, 400).await;
    let m = e["message"].as_str().expect("message");
    assert!(m.contains(r#"field "genre" is not declared for the shared collection "Tracks""#), "{m}");
    assert!(m.contains(r#"{"indexes":{"Tracks":["genre"]}}"#), "{m}");

    // The operator declares genre and rank for every shared "Tracks": the stored objects are found.
    let app_path = format!("/v2/panel/apps/{app}");
    let declare = |indexes: Value| call(&s, &panel, Method::PUT, &app_path, Some(json!({ "indexes": indexes })));
    let v = ok_json(declare(json!({"Tracks": ["genre", "rank"]})).await, StatusCode::OK).await;
    assert_eq!(v["app"]["indexes"], json!({"Tracks": ["genre", "rank"]}));
    for c in collections {
        assert_eq!(ids(&results(&s, &bob, &jazz_by_rank(c)).await), ["30", "27", "24", "21"], "{c}");
    }
    // Writes after it keep the indexes right; a new shared collection of that name has them too.
    call(&s, &bob, Method::PUT, "/v2/classes/app/Tracks/27", Some(json!({"genre": "rock"}))).await;
    call(&s, &bob, Method::DELETE, "/v2/classes/app/Tracks/30", None).await;
    let r =
        call(&s, &bob, Method::POST, "/v2/classes/app/Tracks", Some(json!({"_id": "x", "genre": "jazz", "rank": 1})))
            .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(ids(&results(&s, &alice, &jazz_by_rank("Tracks")).await), ["x", "24", "21", "18"]);
    let r =
        call(&s, &bob, Method::POST, "/v2/classes/app/Albums/8/Tracks/1", Some(json!({"genre": "jazz", "rank": 5})))
            .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(ids(&results(&s, &alice, &jazz_by_rank("Albums/8/Tracks")).await), ["1"]);
    // Another name, and sorting by _id, need no declaration; private collections are unaffected.
    let r = call(&s, &bob, Method::GET, "/v2/classes/app/Notes?sort=rank", None).await;
    assert_envelope(r, 400).await;
    assert_eq!(ids(&results(&s, &bob, "/v2/classes/app/Tracks?sort=_id&limit=2").await), ["1", "2"]);
    assert!(results(&s, &bob, "/v2/classes/me/Tracks?sort=anything").await.is_empty());

    // A field no longer declared is refused again; the declaration survives a restart.
    ok_json(declare(json!({"Tracks": ["rank"]})).await, StatusCode::OK).await;
    assert_envelope(call(&s, &bob, Method::GET, &jazz_by_rank("Tracks"), None).await, 400).await;
    s.stop().await;
    let s = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    assert_envelope(call(&s, &bob, Method::GET, &jazz_by_rank("Tracks"), None).await, 400).await;
    assert_eq!(ids(&results(&s, &bob, "/v2/classes/app/Tracks?sort=-rank&limit=3").await), ["1", "2", "3"]);
    let r = call(&s, &bob, Method::POST, "/v2/classes/app/Albums/9/Tracks/1", Some(json!({"rank": 5}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(ids(&results(&s, &alice, "/v2/classes/app/Albums/9/Tracks?sort=rank").await), ["1"]);
    s.stop().await;
}

/// Deleting an app user (panel) removes the user's private objects; a user registered after it
/// never sees them, and the shared collection stays.
#[tokio::test]
async fn a_deleted_users_private_objects_go_with_the_user() {
    let (s, app) = setup().await;
    let panel = s.panel_token().await;
    let old = s.app_user(&app, "old@example.com").await;
    for path in ["/v2/classes/me/Notes", "/v2/classes/app/Shared"] {
        let r = call(&s, &old, Method::POST, path, Some(json!({"_id": "1", "text": "old"}))).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let users =
        ok_json(call(&s, &panel, Method::GET, &format!("/v2/panel/apps/{app}/users"), None).await, StatusCode::OK)
            .await;
    let id = users["users"][0]["userId"].as_i64().expect("userId");
    let r = call(&s, &panel, Method::DELETE, &format!("/v2/panel/apps/{app}/users/{id}"), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let new = s.app_user(&app, "new@example.com").await;
    assert!(results(&s, &new, "/v2/classes/me/Notes").await.is_empty(), "nothing of the deleted user");
    assert_eq!(results(&s, &new, "/v2/classes/app/Shared").await.len(), 1, "shared objects stay");
    s.stop().await;
}

#[tokio::test]
async fn validation_errors_are_clear_and_store_nothing() {
    let (s, app) = setup().await;
    let t = s.app_user(&app, "alice@example.com").await;
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Items/1", Some(json!({"keep": "me"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let long_id = "x".repeat(129);
    let long_name = "C".repeat(65);
    let deep_path = "/v2/classes/me".to_owned() + &"/C/1".repeat(9);
    for path in [
        format!("/v2/classes/me/Items/{long_id}"),
        format!("/v2/classes/me/{long_name}"),
        "/v2/classes/me/Bad%20Name".to_owned(),
        "/v2/classes/me/Items/a%20b".to_owned(),
        deep_path,
    ] {
        let r = call(&s, &t, Method::POST, &path, Some(json!({"a": 1}))).await;
        let v = assert_envelope(r, 400).await;
        assert!(v["message"].as_str().is_some_and(|m| m.contains("Invalid") || m.contains("deep")), "{v}");
    }
    assert_envelope(call(&s, &t, Method::GET, "/v2/classes/other/Items", None).await, 404).await;

    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    for (body, status) in [
        (json!({"d": deep}), 400),
        (json!([1, 2]), 400),
        (json!("text"), 400),
        (json!({"_id": 1.5}), 400),
        (json!({"_id": {"a": 1}}), 400),
        (json!({"_id": "has space"}), 400),
        (json!({"s": "x".repeat(300 * 1024)}), 413),
    ] {
        let r = call(&s, &t, Method::POST, "/v2/classes/me/Items", Some(body)).await;
        assert_envelope(r, status).await;
    }
    // Body _id must match the path.
    let r = call(&s, &t, Method::POST, "/v2/classes/me/Items/2", Some(json!({"_id": "3"}))).await;
    assert_envelope(r, 400).await;
    let r = call(&s, &t, Method::PUT, "/v2/classes/me/Items/1", Some(json!({"_id": "9"}))).await;
    assert_envelope(r, 400).await;
    // Malformed JSON names the place; over the body limit is a 413.
    let r = s
        .client
        .post(s.url("/v2/classes/me/Items"))
        .header("Authorization", &t)
        .header("Content-Type", "application/json")
        .body("{\"a\": ")
        .send()
        .await
        .expect("post");
    assert_envelope(r, 400).await;
    let r = s
        .client
        .post(s.url("/v2/classes/me/Items"))
        .header("Authorization", &t)
        .header("Content-Type", "application/json")
        .body(format!("{{\"s\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)))
        .send()
        .await
        .expect("post");
    assert_envelope(r, 413).await;
    // An update that would make the object too large changes nothing.
    let r = call(&s, &t, Method::PUT, "/v2/classes/me/Items/1", Some(json!({"s": "x".repeat(300 * 1024)}))).await;
    assert_envelope(r, 413).await;
    // Methods on the wrong kind of path.
    assert_envelope(call(&s, &t, Method::PUT, "/v2/classes/me/Items", Some(json!({"a": 1}))).await, 400).await;
    assert_envelope(call(&s, &t, Method::DELETE, "/v2/classes/me/Items", None).await, 400).await;
    assert_envelope(call(&s, &t, Method::GET, "/v2/classes/me/Items/1?subscribe=true", None).await, 400).await;
    assert_envelope(call(&s, &t, Method::GET, "/v2/classes/me/Items?subscribe=true&keepAlive=x", None).await, 400)
        .await;

    // Nothing above was stored or changed.
    assert_eq!(results(&s, &t, "/v2/classes/me/Items").await, vec![json!({"_id": "1", "keep": "me"})]);
    s.stop().await;
}

#[tokio::test]
async fn subscription_streams_changes_of_exactly_that_collection() {
    let (s, app) = setup().await;
    let alice = s.app_user(&app, "alice@example.com").await;
    let bob = s.app_user(&app, "bob@example.com").await;

    let r = call(&s, &alice, Method::GET, "/v2/classes/app/Playlists?subscribe=true&keepAlive=1000", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut stream = JsonStream::new(r, Duration::from_secs(10));
    let r = call(&s, &alice, Method::GET, "/v2/classes/me/Playlists?subscribe=true&keepAlive=1000", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut mine = JsonStream::new(r, Duration::from_secs(10));

    // Idle: `{}` after keepAlive.
    assert_eq!(stream.next_within(Duration::from_secs(5)).await, Some(json!({})));

    // Changes by another user of the app; a sub-collection and bob's /me are not delivered.
    for path in ["/v2/classes/app/Playlists/20/Songs", "/v2/classes/me/Playlists"] {
        let r = call(&s, &bob, Method::POST, path, Some(json!({"_id": "b1"}))).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{path}");
    }
    let r =
        call(&s, &bob, Method::POST, "/v2/classes/app/Playlists", Some(json!({"_id": "20", "name": "Classic"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(stream.next_data().await.expect("stream open"), json!([{"_id": "20", "name": "Classic"}]));
    call(&s, &bob, Method::PUT, "/v2/classes/app/Playlists/20", Some(json!({"duration": 90}))).await;
    assert_eq!(
        stream.next_data().await.expect("stream open"),
        json!([{"_id": "20", "name": "Classic", "duration": 90}])
    );
    call(&s, &bob, Method::DELETE, "/v2/classes/app/Playlists/20", None).await;
    assert_eq!(stream.next_data().await.expect("stream open"), json!([{"_id": "20", "_deleted": true}]));

    // Alice's own /me collection: only her changes.
    call(&s, &alice, Method::POST, "/v2/classes/me/Playlists", Some(json!({"_id": "a1"}))).await;
    assert_eq!(mine.next_data().await.expect("stream open"), json!([{"_id": "a1"}]));
    s.stop().await;
}
