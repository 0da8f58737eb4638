//! The SQLite write-ahead log stays bounded: a read transaction that pins the WAL while a burst
//! is written lets it grow far past its limit, and once that reader is gone the background
//! checkpoint brings the file back under the limit by itself (no later write needed), without
//! losing a value.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use thingline_core::model::Product;
use thingline_store::sqlite::SqliteOptions;
use thingline_store::{NewPoint, NewThing, StoreOptions};

/// A small WAL limit so that the burst stays small (production default: 64 MiB).
const LIMIT: u64 = 1024 * 1024;
/// The burst: 16 appends of 128 values of ~4 KiB, about 8 MiB of WAL frames.
const APPENDS: usize = 16;
const PER_APPEND: usize = 128;

fn wal_len(wal: &Path) -> u64 {
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_shrinks_back_under_its_limit_once_a_long_reader_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.db");
    let wal = dir.path().join("t.db-wal");
    let options =
        StoreOptions { sync_full: false, sqlite: SqliteOptions { wal_limit_bytes: LIMIT }, ..StoreOptions::default() };
    let store = thingline_store::open(&format!("sqlite://{}", db.display()), &options).await.expect("open");
    let owner = store.create_panel_user("ops@example.com", "x").await.expect("user").id;
    let product = Product { id: "p".into(), owner_id: owner, name: "s".into(), resources: vec![], created_ms: 1 };
    store.create_product(&product).await.expect("product");
    store.create_activation_codes("p", &["code".into()], 1).await.expect("codes");
    let thing = store
        .activate("code", None, NewThing { id: "t".into(), token: "tok".into(), now_ms: 1 })
        .await
        .expect("activate");

    // A plain connection of its own holds a read transaction open: its snapshot pins the WAL.
    let mut reader = SqliteConnectOptions::new().filename(&db).connect().await.expect("reader");
    let mut tx = reader.begin().await.expect("begin");
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM points").fetch_one(&mut *tx).await.expect("count");

    let value = format!("\"{}\"", "x".repeat(4000));
    for _ in 0..APPENDS {
        let points = (0..PER_APPEND).map(|_| NewPoint { key: "k".into(), ts: None, value: value.clone() }).collect();
        store.append(thing.seq, points).await.expect("append");
    }
    let grown = wal_len(&wal);
    assert!(grown > 4 * LIMIT, "the WAL should have grown behind the reader, it is {grown} bytes");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM points").fetch_one(&mut *tx).await.expect("count");
    assert_eq!(seen, before, "the reader keeps its snapshot");
    tx.rollback().await.expect("end the read");

    // No write from here on: the checkpoint alone must bring the file back under the limit.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let len = wal_len(&wal);
        if len <= LIMIT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the WAL is still {len} bytes (limit {LIMIT}) 8 s after the reader left (it had grown to {grown})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM points").fetch_one(&mut reader).await.expect("count");
    assert_eq!(after, before + (APPENDS * PER_APPEND) as i64, "every value is still there");
    reader.close().await.expect("close reader");
    store.close().await;
}
