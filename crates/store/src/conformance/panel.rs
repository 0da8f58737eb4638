//! Conformance checks for what the web panel reads (issue 14): bulk creation of things, the
//! pages of a product's things (each order, both directions, searches, totals, last seen), chart
//! series of a timeline (numeric values, buckets) and the app users' summaries. Each answer is
//! compared with the same computation done in Rust over what the check wrote.

use serde_json::json;
use thingline_core::model::{App, Product, Thing};

use crate::series::numeric_value;
use crate::{NewPoint, NewThing, Series, SeriesPoint, Store, ThingPageQuery, ThingRow, ThingSort};

/// The panel checks (also run by [`super::run_all`]); the store must have the panel user
/// `ops@example.com`, whose products `panel-*` and app `panel-app` they create.
pub async fn panel_reads(store: &dyn Store) {
    let owner = store.panel_user_by_email("ops@example.com").await.expect("user").expect("exists").id;
    for id in ["panel-p", "panel-other", "panel-series"] {
        let product = Product { id: id.into(), owner_id: owner, name: id.into(), resources: vec![], created_ms: 1 };
        store.create_product(&product).await.expect("product");
    }
    let things = bulk_creation(store).await;
    things_pages(store, &things).await;
    series_of_timelines(store).await;
    app_user_summaries(store, owner, &things).await;
}

fn new_thing(id: &str) -> NewThing {
    NewThing { id: id.into(), token: format!("token-{id}"), now_ms: 1 }
}

/// 40 things of `panel-p` whose id order is not their creation order; returns them as created.
async fn bulk_creation(store: &dyn Store) -> Vec<Thing> {
    let missing = store.create_things("panel-nope", &[new_thing("x")], 5).await.expect_err("unknown product");
    assert_eq!(missing.status(), 404, "bulk creation in an unknown product");
    assert!(store.create_things("panel-p", &[], 5).await.expect("nothing").is_empty());

    // Prefixes that differ by case and hold LIKE wildcards, in an order unrelated to creation.
    let prefixes = ["Ab", "ab", "b_", "b%"];
    let ids: Vec<String> = (0..40).map(|i| format!("{}-{:02}", prefixes[(i * 7) % 4], (i * 17) % 40)).collect();
    let news: Vec<NewThing> = ids.iter().map(|id| new_thing(id)).collect();
    let created = store.create_things("panel-p", &news, 77).await.expect("bulk creation");
    assert_eq!(created.len(), 40);
    for (thing, id) in created.iter().zip(&ids) {
        assert_eq!(&thing.id, id, "things come back in the order given");
        assert_eq!(thing.token, format!("token-{id}"));
        assert_eq!(thing.product_id, "panel-p");
        assert_eq!(thing.activation_code, None, "a bulk-created thing has no activation code");
        assert_eq!(thing.created_ms, 77);
    }
    assert!(created.windows(2).all(|w| w[0].seq < w[1].seq), "seq follows the order given");
    let by_token = store.thing_by_token(&created[3].token).await.expect("get");
    assert_eq!(by_token.as_ref(), Some(&created[3]), "a bulk-created thing is found by its token");

    // All or nothing: an id taken (by an earlier thing, or twice in the batch) creates none.
    let taken = store.create_things("panel-p", &[new_thing("new-1"), new_thing(&ids[5])], 78).await;
    assert_eq!(taken.expect_err("taken id").status(), 409, "a taken id is a conflict");
    let twice = store.create_things("panel-p", &[new_thing("new-2"), new_thing("new-2")], 78).await;
    assert_eq!(twice.expect_err("id twice").status(), 409, "an id twice in the batch is a conflict");
    for id in ["new-1", "new-2"] {
        assert_eq!(store.thing_by_id(id).await.expect("get"), None, "nothing of a refused batch is created");
    }
    assert_eq!(store.things_of_product("panel-p").await.expect("things"), created);

    let other = store.create_things("panel-other", &[new_thing("other-1")], 78).await.expect("other product");
    store.update_thing_settings(other[0].seq, None, json!({"name": "Sensor other"})).await.expect("name");
    created
}

/// The name each thing of `panel-p` gets, by its index (None: no name set, or not a string).
async fn name_things(store: &dyn Store, things: &[Thing]) -> Vec<Option<String>> {
    let mut names = Vec::with_capacity(things.len());
    for (i, thing) in things.iter().enumerate() {
        let (doc, name) = match i % 6 {
            0 => (json!({"other": 1}), None),
            1 => (json!({"name": format!("Sensor {i}")}), Some(format!("Sensor {i}"))),
            2 => (json!({"name": format!("sensor {i}"), "x": [1]}), Some(format!("sensor {i}"))),
            3 => (json!({"name": i}), None),
            4 => (json!({"name": "same"}), Some("same".to_owned())),
            _ => (json!({"name": format!("{i}% off_\\ Émile")}), Some(format!("{i}% off_\\ Émile"))),
        };
        store.update_thing_settings(thing.seq, None, doc).await.expect("settings");
        names.push(name);
    }
    // A name set by path, then replaced by a document without one.
    store.update_thing_settings(things[0].seq, Some("name"), json!("zz by path")).await.expect("path");
    names[0] = Some("zz by path".into());
    store.update_thing_settings(things[6].seq, Some("name"), json!("first")).await.expect("path");
    store.update_thing_settings(things[6].seq, None, json!({"gone": true})).await.expect("replace");
    names[6] = None;
    names
}

async fn things_pages(store: &dyn Store, things: &[Thing]) {
    let names = name_things(store, things).await;
    // Values in two timelines of the first thing, one of the second: last seen is the newest.
    let point = |key: &str, ts: i64| NewPoint { key: key.into(), ts: Some(ts), value: "1".into() };
    store.append(things[0].seq, vec![point("a", 1_000), point("b", 5_000), point("a", 2_000)]).await.expect("append");
    store.append(things[1].seq, vec![point("a", 3_000)]).await.expect("append");
    let last_seen = |i: usize| match i {
        0 => Some(5_000),
        1 => Some(3_000),
        _ => None,
    };
    let rows: Vec<ThingRow> = things
        .iter()
        .enumerate()
        .map(|(i, t)| ThingRow { thing: t.clone(), name: names[i].clone(), last_seen_ms: last_seen(i) })
        .collect();

    let searches = [None, Some(""), Some("ab"), Some("Ab"), Some("b_"), Some("b%"), Some("SENSOR 1"), Some("% OFF_\\")];
    let more_searches = [Some("émile"), Some("Émile"), Some("same"), Some("zz"), Some("nothing"), Some("sensor other")];
    for search in searches.into_iter().chain(more_searches) {
        let matching: Vec<&ThingRow> = rows.iter().filter(|r| matches(r, search)).collect();
        for sort in [ThingSort::Activated, ThingSort::Id, ThingSort::Name] {
            for descending in [false, true] {
                let mut expected = matching.clone();
                expected.sort_by(|a, b| {
                    let key = |r: &ThingRow| match sort {
                        ThingSort::Activated => (false, String::new(), r.thing.seq),
                        ThingSort::Id => (false, r.thing.id.clone(), r.thing.seq),
                        ThingSort::Name => (r.name.is_none(), r.name.clone().unwrap_or_default(), r.thing.seq),
                    };
                    key(a).cmp(&key(b))
                });
                if descending {
                    expected.reverse();
                }
                let what = format!("sort {sort:?}, descending {descending}, search {search:?}");
                let mut got = Vec::new();
                let mut skip = 0;
                loop {
                    let q = ThingPageQuery { sort, descending, search: search.map(str::to_owned), skip, limit: 7 };
                    let page = store.things_page("panel-p", &q).await.expect("page");
                    assert_eq!(page.total, expected.len() as u64, "total, {what}");
                    assert!(page.rows.len() <= 7);
                    if page.rows.is_empty() {
                        break;
                    }
                    skip += page.rows.len() as u64;
                    got.extend(page.rows);
                }
                let expected: Vec<ThingRow> = expected.into_iter().cloned().collect();
                assert_eq!(got, expected, "pages, {what}");
            }
        }
    }
    let all = ThingPageQuery { sort: ThingSort::Activated, descending: false, search: None, skip: 0, limit: 1000 };
    assert_eq!(store.things_page("panel-p", &all).await.expect("page").rows, rows, "one page of everything");
    let past = ThingPageQuery { skip: 40, ..all.clone() };
    let page = store.things_page("panel-p", &past).await.expect("page");
    assert_eq!((page.total, page.rows.len()), (40, 0), "a page past the end");
    let far = ThingPageQuery { skip: u64::MAX, ..all.clone() };
    assert!(store.things_page("panel-p", &far).await.expect("page").rows.is_empty());
    let none = store.things_page("panel-nope", &all).await.expect("page of an unknown product");
    assert_eq!((none.total, none.rows.len()), (0, 0));
}

/// The search rule: the id starts with the text, or the name contains it, ASCII letters of
/// either case matching.
fn matches(row: &ThingRow, search: Option<&str>) -> bool {
    let Some(text) = search.filter(|s| !s.is_empty()) else { return true };
    row.thing.id.starts_with(text)
        || row.name.as_ref().is_some_and(|n| n.to_ascii_lowercase().contains(&text.to_ascii_lowercase()))
}

/// What [`crate::TimelineStore::series`] must answer for `values` (datetime, JSON text).
fn expected_series(values: &[(i64, &str)], start: i64, end: i64, points: u32) -> Series {
    let in_range: Vec<(i64, Option<f64>)> =
        values.iter().filter(|(ts, _)| (start..end).contains(ts)).map(|(ts, v)| (*ts, numeric_value(v))).collect();
    let mut numeric: Vec<(i64, f64)> = in_range.iter().filter_map(|(ts, v)| v.map(|v| (*ts, v))).collect();
    numeric.sort_by_key(|p| p.0);
    let count = numeric.len() as u64;
    let non_numeric = in_range.len() as u64 - count;
    if count <= u64::from(points) {
        let points = numeric.iter().map(|&(t_ms, v)| SeriesPoint { t_ms, min: v, max: v, avg: v }).collect();
        return Series { count, non_numeric, downsampled: false, points };
    }
    let width = (end - start + i64::from(points) - 1) / i64::from(points);
    let mut buckets: Vec<(i64, Vec<f64>)> = Vec::new();
    for (ts, v) in numeric {
        let b = start + (ts - start) / width * width;
        match buckets.last_mut() {
            Some((t, vs)) if *t == b => vs.push(v),
            _ => buckets.push((b, vec![v])),
        }
    }
    let points = buckets
        .into_iter()
        .map(|(t_ms, vs)| SeriesPoint {
            t_ms,
            min: vs.iter().copied().fold(f64::INFINITY, f64::min),
            max: vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            avg: vs.iter().sum::<f64>() / vs.len() as f64,
        })
        .collect();
    Series { count, non_numeric, downsampled: true, points }
}

fn assert_series(got: &Series, expected: &Series, what: &str) {
    assert_eq!(
        (got.count, got.non_numeric, got.downsampled, got.points.len()),
        (expected.count, expected.non_numeric, expected.downsampled, expected.points.len()),
        "count, non-numeric, downsampled, points: {what}\ngot {got:?}\nexpected {expected:?}"
    );
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
    for (g, e) in got.points.iter().zip(&expected.points) {
        assert!(
            g.t_ms == e.t_ms && close(g.min, e.min) && close(g.max, e.max) && close(g.avg, e.avg),
            "point {g:?}, expected {e:?}: {what}"
        );
    }
}

async fn series_of_timelines(store: &dyn Store) {
    let thing = &store.create_things("panel-series", &[new_thing("series-1")], 1).await.expect("thing")[0];
    // Numbers, numeric strings, and every kind of value that is not numeric, 10 ms apart from
    // 1000; two values outside the ranges asked below.
    let texts = [
        "1",
        "2.5",
        "-3",
        "\"4.5\"",
        "\"+6\"",
        "\"1e3\"",
        "\"-2.5E-1\"",
        "\"007\"",
        "1.5e2",
        "true",
        "null",
        "{\"a\":1}",
        "[1,2]",
        "\"abc\"",
        "\"\"",
        "1e400",
        "\"1e400\"",
        "-1e400",
        "\"1.\"",
        "\".5\"",
        "\" 5\"",
        "\"1e\"",
        "\"--1\"",
        "\"0x10\"",
        "\"NaN\"",
        "\"\\u0031\"",
        "\"12a\"",
        "1e-400",
        "\"0e99999\"",
        "\"1e99999\"",
        "-0.0",
        "12345678901234567890123",
        "7",
        "8.25",
        "-9",
        "\"10\"",
        // Whitespace around a number (trailing only: the common path; leading: the full rule),
        // and an exponent.
        "5 ",
        " 6\n",
        "1E5",
    ];
    // Numbers too long, as a number and as a string.
    let long_number = "1".repeat(crate::series::MAX_NUMERIC_CHARS + 1);
    let long_string = format!("\"{long_number}\"");
    let mut values: Vec<(i64, &str)> = texts.iter().enumerate().map(|(i, t)| (1_000 + 10 * i as i64, *t)).collect();
    values.push((1_000 + 10 * texts.len() as i64, &long_number));
    values.push((1_005 + 10 * texts.len() as i64, &long_string));
    values.push((500, "100"));
    values.push((100_000, "200"));
    let points: Vec<NewPoint> =
        values.iter().map(|(ts, v)| NewPoint { key: "temp".into(), ts: Some(*ts), value: (*v).to_owned() }).collect();
    store.append(thing.seq, points).await.expect("append");

    let (start, end) = (1_000, 1_000 + 10 * (texts.len() as i64 + 1));
    let numeric = values.iter().filter(|(ts, v)| (start..end).contains(ts) && numeric_value(v).is_some()).count();
    assert_eq!(numeric, 20, "the values hold 20 numeric ones in range");
    for points in [800, numeric as u32, numeric as u32 - 1, 7, 3, 1] {
        let got = store.series(thing.seq, "temp", start, end, points).await.expect("series").expect("written");
        let expected = expected_series(&values, start, end, points);
        assert_series(&got, &expected, &format!("{points} points"));
    }
    assert!(!store.series(thing.seq, "temp", start, end, 20).await.expect("series").expect("written").downsampled);
    assert!(store.series(thing.seq, "temp", start, end, 19).await.expect("series").expect("written").downsampled);
    // The whole timeline (the values outside the range above too), in buckets of an odd width.
    let (start, end) = (0, 100_001);
    for points in [1000, 13] {
        let got = store.series(thing.seq, "temp", start, end, points).await.expect("series").expect("written");
        assert_series(&got, &expected_series(&values, start, end, points), &format!("all, {points} points"));
    }

    let empty = Series { count: 0, non_numeric: 0, downsampled: false, points: vec![] };
    let none = store.series(thing.seq, "temp", 2_000, 3_000, 10).await.expect("series");
    assert_eq!(none, Some(empty.clone()), "a written key, nothing in range");
    let backwards = store.series(thing.seq, "temp", 3_000, 2_000, 10).await.expect("series");
    assert_eq!(backwards, Some(empty), "an empty range");
    let only_other = store.series(thing.seq, "temp", 1_090, 1_150, 10).await.expect("series").expect("written");
    assert_eq!((only_other.count, only_other.non_numeric), (0, 6), "no numeric value in range");
    assert_eq!(store.series(thing.seq, "never", 0, 10_000, 10).await.expect("series"), None, "unknown key");
    assert_eq!(store.series(i64::MAX, "temp", 0, 10_000, 10).await.expect("series"), None, "unknown thing");
}

async fn app_user_summaries(store: &dyn Store, owner: i64, things: &[Thing]) {
    for id in ["panel-app", "panel-app-2"] {
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
    let ann = store.create_app_user("panel-app", "ann@example.com", "$argon2id$a", 10).await.expect("ann");
    let bob = store.create_app_user("panel-app", "bob@example.com", "$argon2id$b", 11).await.expect("bob");
    let cid = store.create_app_user("panel-app", "cid@example.com", "$argon2id$c", 12).await.expect("cid");
    let other = store.create_app_user("panel-app-2", "ann@example.com", "$argon2id$d", 13).await.expect("other");

    store.create_app_session(ann.id, "panel-s1", 10_000, 100).await.expect("session");
    store.create_app_session(ann.id, "panel-s2", 10_000, 200).await.expect("session");
    store.create_app_session(cid.id, "panel-s3", 10_000, 150).await.expect("session");
    store.create_app_session(other.id, "panel-s4", 10_000, 300).await.expect("session");
    assert!(store.delete_app_session("panel-s2").await.expect("logout"), "the last session ends");
    // Linked in an order other than the ids'.
    for i in [5, 1, 2] {
        assert!(store.link_thing(ann.id, &things[i].id, false, 20).await.expect("link"));
    }
    assert!(store.link_thing(cid.id, &things[1].id, false, 20).await.expect("link"));
    assert!(store.link_thing(other.id, &things[3].id, false, 20).await.expect("link"));

    let sorted = |idx: &[usize]| {
        let mut ids: Vec<String> = idx.iter().map(|&i| things[i].id.clone()).collect();
        ids.sort();
        ids
    };
    let got = store.app_user_summaries("panel-app").await.expect("summaries");
    let got: Vec<(i64, Option<i64>, Vec<String>)> =
        got.into_iter().map(|s| (s.user.id, s.last_login_ms, s.linked_things)).collect();
    assert_eq!(
        got,
        vec![(ann.id, Some(200), sorted(&[5, 1, 2])), (bob.id, None, vec![]), (cid.id, Some(150), sorted(&[1]))],
        "users oldest first, with their last login (kept after logout) and their things, sorted"
    );
    let summaries = store.app_user_summaries("panel-app").await.expect("summaries");
    assert_eq!(summaries[0].user, ann, "the user as stored");
    assert!(store.app_user_summaries("panel-nope").await.expect("summaries").is_empty());
}
