//! Speed check of the panel's reads (issue 14) on both backends, run on demand (it seeds 100,000
//! things and 100,000 values): `cargo test -p thingline-store --release --test panel_speed --
//! --ignored --nocapture`. PostgreSQL is the server of `THINGLINE_TEST_POSTGRES_URL` (skipped
//! with a notice when unreachable). Reports the bulk creation of 100,000 things; p50/p99 of a
//! page of 25 of them for each order and direction at the start, middle and end, and for
//! searches; and of a chart series over 100,000 values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use thingline_core::model::Product;
use thingline_store::testing::{drop_scratch, scratch_postgres_url};
use thingline_store::{NewPoint, NewThing, Store, StoreOptions, ThingPageQuery, ThingSort};

const THINGS: usize = 100_000;
const VALUES: usize = 100_000;
const RUNS: usize = 30;

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

/// p50 and p99 of `RUNS` runs of `f`.
async fn time<F, Fut, T>(mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await;
        runs.push(t.elapsed());
    }
    (pct(runs.clone(), 0.5), pct(runs, 0.99))
}

/// Seeds the store and measures; `name_sql` names every third thing of `big` (as settings writes
/// would, without 33,000 of them).
async fn run(store: Arc<dyn Store>, name_sql: impl AsyncFnOnce()) {
    let backend = store.backend();
    let owner = store.create_panel_user("ops@example.com", "x").await.expect("user").id;
    for id in ["big", "small"] {
        let product = Product { id: id.into(), owner_id: owner, name: id.into(), resources: vec![], created_ms: 1 };
        store.create_product(&product).await.expect("product");
    }
    // Ids in an order unrelated to creation (7919 is prime to 100,000).
    let news: Vec<NewThing> = (0..THINGS)
        .map(|i| NewThing { id: format!("t-{:06}", (i * 7919) % THINGS), token: format!("tok-{i}"), now_ms: 1 })
        .collect();
    let t = Instant::now();
    let things = store.create_things("big", &news, 1).await.expect("bulk creation");
    println!("[{backend}] create_things of {THINGS}: {:?}", t.elapsed());
    let small: Vec<NewThing> =
        (0..10_000).map(|i| NewThing { id: format!("s-{i:06}"), token: format!("stok-{i}"), now_ms: 1 }).collect();
    store.create_things("small", &small, 1).await.expect("bulk creation");
    name_sql().await;

    // Values for the first 2,000 things (several timelines each), and 100,000 in one timeline.
    for chunk in things[..2_000].chunks(100) {
        let appends = chunk.iter().map(|thing| {
            let points = ["a", "b", "c"]
                .iter()
                .map(|k| NewPoint { key: (*k).into(), ts: Some(1_000 + thing.seq), value: "1".into() })
                .collect();
            store.append(thing.seq, points)
        });
        for r in futures_util::future::join_all(appends).await {
            r.expect("append");
        }
    }
    let chart = things[0].seq;
    let t = Instant::now();
    for chunk in (0..VALUES).collect::<Vec<_>>().chunks(10_000) {
        let points = chunk
            .iter()
            .map(|&i| {
                let value = match i % 20 {
                    0 => format!("\"{}.5\"", i % 100),
                    1 => "{\"a\":1}".to_owned(),
                    _ => format!("{}", (i % 1000) as f64 / 10.0),
                };
                NewPoint { key: "temp".into(), ts: Some(1_000_000 + i as i64 * 1_000), value }
            })
            .collect();
        store.append(chart, points).await.expect("append");
    }
    println!("[{backend}] appended {VALUES} values in {:?}", t.elapsed());

    for sort in [ThingSort::Activated, ThingSort::Id, ThingSort::Name] {
        for descending in [false, true] {
            for skip in [0, THINGS as u64 / 2, THINGS as u64 - 25] {
                let q = ThingPageQuery { sort, descending, search: None, skip, limit: 25 };
                let page = store.things_page("big", &q).await.expect("page");
                assert_eq!((page.total, page.rows.len()), (THINGS as u64, 25));
                let (p50, p99) = time(|| store.things_page("big", &q)).await;
                println!("[{backend}] page of 25, {sort:?} desc={descending} skip={skip}: p50 {p50:?} p99 {p99:?}");
            }
        }
    }
    for search in ["sensor 12", "t-0001", "SENSOR 99999", "no such thing"] {
        for sort in [ThingSort::Activated, ThingSort::Name] {
            let q = ThingPageQuery { sort, descending: false, search: Some(search.into()), skip: 0, limit: 25 };
            let total = store.things_page("big", &q).await.expect("page").total;
            let (p50, p99) = time(|| store.things_page("big", &q)).await;
            println!("[{backend}] search {search:?} ({total} found), {sort:?}: p50 {p50:?} p99 {p99:?}");
        }
    }

    let end = 1_000_000 + VALUES as i64 * 1_000;
    for (what, start, points) in
        [("all, 800 points", 1_000_000, 800), ("all, 4000 points", 1_000_000, 4000), ("last 800", end - 800_000, 800)]
    {
        let series = store.series(chart, "temp", start, end, points).await.expect("series").expect("written");
        let (p50, p99) = time(|| store.series(chart, "temp", start, end, points)).await;
        println!(
            "[{backend}] series {what}: {} numeric, {} not, {} points (downsampled {}): p50 {p50:?} p99 {p99:?}",
            series.count,
            series.non_numeric,
            series.points.len(),
            series.downsampled
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn panel_speed_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let url = format!("sqlite://{}", path.display());
    let options = StoreOptions { sync_full: false, ..StoreOptions::default() };
    let store = thingline_store::open(&url, &options).await.expect("open");
    run(store.clone(), async || {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
        sqlx::query(
            "UPDATE things SET settings = json_object('name', 'Sensor ' || seq), name = 'Sensor ' || seq \
             WHERE product_id = 'big' AND seq % 3 = 0",
        )
        .execute(&mut conn)
        .await
        .expect("names");
        conn.close().await.expect("close");
    })
    .await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn panel_speed_postgres() {
    let Some(url) = scratch_postgres_url().await else { return };
    let store = thingline_store::open(&url, &StoreOptions::default()).await.expect("open");
    run(store.clone(), async || {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(
            "UPDATE things SET settings = '{\"name\":\"Sensor ' || seq || '\"}', name = 'Sensor ' || seq \
             WHERE product_id = 'big' AND seq % 3 = 0",
        )
        .execute(&mut conn)
        .await
        .expect("names");
        // What autovacuum does soon after a bulk load: the visibility map lets the pages be
        // read from the indexes alone.
        sqlx::query("VACUUM ANALYZE things").execute(&mut conn).await.expect("vacuum");
        conn.close().await.expect("close");
    })
    .await;
    store.close().await;
    drop_scratch(&url).await;
}
