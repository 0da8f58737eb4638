//! PostgreSQL briefly away: a node reaches its database through a TCP proxy the test can cut.
//! While it is cut, writes and reads answer 503 in the error envelope (never a 500, never a hang
//! past the store's bounds), readiness says the store is not available, and nothing of a refused
//! write is stored; once the database is back the node serves again by itself, with everything
//! acknowledged before still there.
//!
//! Runs wherever PostgreSQL is reachable, always under `CI=true`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use common::backend;
use common::{TestServer, eventually};

/// A TCP proxy to `upstream` that can be cut (every open connection closed, new ones closed at
/// once) and restored.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (flag, cut_rx) = (Arc::clone(&up), cuts.subscribe());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, up, cuts }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `url` with its `host:port` replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> (String, String) {
    let at = url.find('@').map_or_else(|| url.find("://").expect("scheme") + 3, |i| i + 1);
    let end = at + url[at..].find('/').expect("path");
    let upstream = url[at..end].to_owned();
    (format!("{}{}{}", &url[..at], addr, &url[end..]), upstream)
}

#[tokio::test]
async fn postgres_away_is_a_503_and_the_node_recovers_by_itself() {
    let Some(cluster) = backend::new_cluster() else { return };
    let (_, upstream) = through(&cluster.store_url, "127.0.0.1:1".parse().expect("addr"));
    let proxy = Proxy::start(upstream).await;
    let (store_url, _) = through(&cluster.store_url, proxy.addr);
    let dir = tempfile::tempdir().expect("dir");
    let s = TestServer::start_in(dir.path().to_path_buf(), |a| {
        a.store_url = Some(store_url.clone());
        a.bus_url = None;
        a.bus_prefix = None;
    })
    .await;
    let panel = s.panel_token().await;
    let thing = s.thing(&panel, &[("temperature", true)]).await;
    assert_eq!(s.write(&thing, json!([{"key": "temperature", "value": "before"}])).await, StatusCode::CREATED);

    proxy.cut();
    // A write of three values: 503 with the envelope, within the store's bounds.
    let started = std::time::Instant::now();
    let body = json!({"values": [
        {"key": "temperature", "value": "away-1"},
        {"key": "temperature", "value": "away-2"},
        {"key": "humidity", "value": "away-3"},
    ]});
    let r = s.client.post(format!("{}/v2/things/{}", s.http, thing.token)).json(&body).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.expect("envelope");
    assert_eq!((v["status"].clone(), v["code"].clone()), (json!("error"), json!(503)), "{v}");
    assert!(started.elapsed() < Duration::from_secs(20), "answered within the store's bounds");
    // (A one-node `limit=1` read may still be answered from memory: ask for a page.)
    let (status, v) = s.read(&thing, "temperature", "?limit=10").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a read too: {v}");
    let (status, v) = common::json_of(s.client.get(s.url("/v2/health/ready")).send().await.expect("ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["details"]["store"]["ok"], false, "{v}");

    proxy.restore();
    // The node recovers by itself: writes are acknowledged again.
    eventually(Duration::from_secs(30), || async {
        (s.write(&thing, json!([{"key": "temperature", "value": "after"}])).await == StatusCode::CREATED).then_some(())
    })
    .await;
    let (status, v) = s.read(&thing, "temperature", "?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let stored: Vec<&str> = v.as_array().expect("array").iter().filter_map(|it| it["value"].as_str()).collect();
    assert_eq!(stored.first(), Some(&"after"), "{v}");
    assert_eq!(stored.last(), Some(&"before"), "acknowledged before the outage: {v}");
    assert!(!stored.iter().any(|x| x.starts_with("away")), "nothing of the refused write: {v}");
    let (status, _) = s.read(&thing, "humidity", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing of the refused write on any key");
    let (status, _) = common::json_of(s.client.get(s.url("/v2/health/ready")).send().await.expect("ready")).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
    thingline_store::testing::drop_scratch(&cluster.store_url).await;
}
