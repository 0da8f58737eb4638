//! The NATS bus against a real NATS server: two `NatsBus` instances are two nodes. Each test uses
//! its own random subject prefix, so tests running in parallel (or other installations on the same
//! server) do not see each other's messages.
//!
//! The server is `THINGLINE_TEST_NATS_URL` (default `nats://127.0.0.1:4222`). When it cannot be
//! reached the tests fail under CI (`CI=true`) and are skipped with a notice elsewhere. The
//! reconnect test starts a private `nats-server` on a free port (the machine's is never stopped)
//! and follows the same rule when no `nats-server` binary is installed.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use thingline_bus::nats::{NatsBus, NatsOptions};
use thingline_bus::{Bus, Event, Invalidation, Notifier, ObjectOp, Received, Remote, Subscription, Topic};
use thingline_core::model::{GeoAttr, ValueItem, WrittenValue};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn nats_url() -> String {
    std::env::var("THINGLINE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails under CI, skips with a notice elsewhere.
fn unavailable(what: &str) {
    assert!(!under_ci(), "{what} (CI=true: not skipping)");
    eprintln!("NOTICE: {what}: skipping");
}

fn options() -> NatsOptions {
    NatsOptions { prefix: format!("tltest{:016x}", rand::random::<u64>()), ..NatsOptions::default() }
}

async fn node(url: &str, options: &NatsOptions) -> anyhow::Result<Arc<NatsBus>> {
    NatsBus::connect(url, Notifier::new(1024), options.clone()).await
}

/// Two nodes on the shared server, or `None` (after the notice) when it is not reachable.
async fn two_nodes() -> Option<(Arc<NatsBus>, Arc<NatsBus>)> {
    let url = nats_url();
    let options = options();
    let a = match node(&url, &options).await {
        Ok(a) => a,
        Err(e) => {
            unavailable(&format!("NATS not reachable at {url} ({e:#})"));
            return None;
        }
    };
    let b = node(&url, &options).await.expect("second node");
    Some((a, b))
}

async fn next_event(sub: &mut Subscription) -> Arc<Event> {
    match timeout(WAIT, sub.recv()).await.expect("an event in time") {
        Received::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn next_remote(rx: &mut mpsc::Receiver<Remote>) -> Remote {
    timeout(WAIT, rx.recv()).await.expect("a remote message in time").expect("remote channel open")
}

/// The next invalidation, past any resets.
async fn next_invalidation(rx: &mut mpsc::Receiver<Remote>) -> Invalidation {
    loop {
        match next_remote(rx).await {
            Remote::Invalidate(inv) => return inv,
            Remote::Reset => {}
        }
    }
}

/// Waits for a reset, past any invalidations.
async fn next_reset(rx: &mut mpsc::Receiver<Remote>) {
    while next_remote(rx).await != Remote::Reset {}
}

/// Waits (bounded) until `cond` holds, checking every 20 ms.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let polled = timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting until {what}");
}

fn written(key: &str, value: &str, ts: i64, geo: Option<GeoAttr>) -> WrittenValue {
    WrittenValue { item: ValueItem { key: key.into(), value: value.into(), ts }, geo }
}

#[tokio::test]
async fn events_reach_the_other_node_in_order_and_once_here() {
    let Some((a, b)) = two_nodes().await else { return };
    assert!(a.coherent() && b.coherent());
    let status = a.status();
    assert_eq!((status.backend, status.connected, status.send_failures), ("nats", true, 0));

    let thing = Topic::Thing(41);
    let collection = Topic::Collection(Arc::from("app/a1/7/rooms.kitchen"));
    let user = Topic::User(7);
    let mut on_b_thing = b.notifier().subscribe(thing.clone());
    let mut on_b_collection = b.notifier().subscribe(collection.clone());
    let mut on_b_user = b.notifier().subscribe(user.clone());
    let mut on_a_thing = a.notifier().subscribe(thing.clone());

    let geo = GeoAttr { sent: r#"{"lat":41.39,"long":2.15}"#.into(), point: r#"{"type":"Point"}"#.into(), ts: 3 };
    let values = Event::Values {
        thing_seq: 41,
        thing_id: Arc::from("thing-41"),
        items: Arc::from(vec![
            written("temperature", "21.5", 1, None),
            written("text", "\"é \\u0000 \u{1F600} \\\"\"", 2, Some(geo)),
            written("k\u{7f}", "{\"a\":[1,2.50,null]}", i64::MAX, None),
        ]),
    };
    let second = Event::Values {
        thing_seq: 41,
        thing_id: Arc::from("thing-41"),
        items: Arc::from(vec![written("temperature", "22", 4, None)]),
    };
    let object = Event::Object { op: ObjectOp::Updated, id: Arc::from("o1"), body: Some(Arc::from(r#"{"_id":"o1"}"#)) };
    let gone = Event::Object { op: ObjectOp::Deleted, id: Arc::from("o1"), body: None };
    let access = Event::AccessChanged { user_id: 7 };
    let deleted = Event::ThingDeleted { thing_seq: 41 };

    assert_eq!(a.publish(&thing, values.clone()), 1);
    a.publish(&collection, object.clone());
    a.publish(&thing, second.clone());
    a.publish(&user, access.clone());
    a.publish(&collection, gone.clone());
    a.publish(&thing, deleted.clone());

    for expected in [&values, &second, &deleted] {
        assert_eq!(&*next_event(&mut on_b_thing).await, expected);
    }
    assert_eq!(&*next_event(&mut on_b_collection).await, &object);
    assert_eq!(&*next_event(&mut on_b_collection).await, &gone);
    assert_eq!(&*next_event(&mut on_b_user).await, &access);

    // A's subscriber had each of its events once, locally.
    for expected in [&values, &second, &deleted] {
        assert_eq!(&*next_event(&mut on_a_thing).await, expected);
    }
    // B answers on the same topic: NATS delivers to A in order, so any echo of A's own events
    // would come before B's marker.
    let marker = Event::AccessChanged { user_id: 99 };
    b.publish(&thing, marker.clone());
    assert_eq!(&*next_event(&mut on_a_thing).await, &marker);
    assert_eq!(&*next_event(&mut on_b_thing).await, &marker);

    until("the counters", || a.status().received == 1 && b.status().received == 6).await;
    assert_eq!(a.status().send_failures + b.status().send_failures, 0);
    a.close().await;
    b.close().await;
    assert!(!a.coherent());
}

#[tokio::test]
async fn a_large_values_event_arrives_whole() {
    let Some((a, b)) = two_nodes().await else { return };
    let thing = Topic::Thing(9);
    let mut on_b = b.notifier().subscribe(thing.clone());
    let items: Vec<_> =
        (0..20_000).map(|i| written(&format!("k{}", i % 50), &format!("\"{i:0>98}\""), i, None)).collect();
    assert_eq!(items[0].item.value.len(), 100);
    let big = Event::Values { thing_seq: 9, thing_id: Arc::from("thing-9"), items: items.into() };
    let after =
        Event::Values { thing_seq: 9, thing_id: Arc::from("thing-9"), items: vec![written("k", "1", 1, None)].into() };
    a.publish(&thing, big.clone());
    a.publish(&thing, after.clone());
    assert_eq!(&*next_event(&mut on_b).await, &big);
    assert_eq!(&*next_event(&mut on_b).await, &after);
    assert_eq!(a.status().send_failures, 0);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn invalidations_reach_the_other_nodes_only() {
    let Some((a, b)) = two_nodes().await else { return };
    let mut remote_a = a.take_remote().expect("A's remote channel");
    let mut remote_b = b.take_remote().expect("B's remote channel");
    assert!(a.take_remote().is_none(), "taken once");

    let first = Invalidation::Thing { seq: 3, id: "thing-3".into(), token: "tok".into() };
    let second = Invalidation::UserSessions { user_id: 5, keep: Some("digest".into()) };
    a.invalidate(first.clone());
    a.invalidate(second.clone());
    assert_eq!(next_remote(&mut remote_b).await, Remote::Invalidate(first));
    assert_eq!(next_remote(&mut remote_b).await, Remote::Invalidate(second));

    // Had A heard its own invalidations, they would come before B's.
    b.invalidate(Invalidation::AllUserAccess);
    assert_eq!(next_remote(&mut remote_a).await, Remote::Invalidate(Invalidation::AllUserAccess));
    assert!(remote_b.try_recv().is_err());
    assert!(a.coherent() && b.coherent());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn one_node_losing_its_link_resets_every_node() {
    let Some((a, b)) = two_nodes().await else { return };
    let mut remote_a = a.take_remote().expect("A's remote channel");
    let mut remote_b = b.take_remote().expect("B's remote channel");
    a.force_reconnect().await.expect("reconnect requested");
    // A may have missed B's invalidations, and B may have missed A's: both reset.
    assert_eq!(next_remote(&mut remote_a).await, Remote::Reset);
    assert_eq!(next_remote(&mut remote_b).await, Remote::Reset);
    until("both nodes are coherent again", || a.coherent() && b.coherent()).await;
    b.invalidate(Invalidation::Product { product_id: "p".into() });
    assert_eq!(next_remote(&mut remote_a).await, Remote::Invalidate(Invalidation::Product { product_id: "p".into() }));
    assert!(remote_a.try_recv().is_err() && remote_b.try_recv().is_err());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_wrong_url_fails_the_start() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let options = NatsOptions { connect_timeout: Duration::from_secs(2), ..options() };
    let started = timeout(WAIT, node(&format!("nats://127.0.0.1:{port}"), &options)).await.expect("fails in time");
    let error = format!("{:#}", started.err().expect("no server there"));
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
}

/// A private `nats-server`, killed when dropped.
struct PrivateServer {
    port: u16,
    child: Option<Child>,
}

impl PrivateServer {
    fn installed() -> bool {
        Command::new("nats-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    }

    async fn start(port: u16) -> PrivateServer {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let server = PrivateServer { port, child: Some(child) };
        let listening = timeout(WAIT, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(listening.is_ok(), "private nats-server listening on {port}");
        server
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_lost_link_makes_the_nodes_incoherent_and_its_return_resets_them() {
    // Shown when the test fails.
    let _ =
        tracing_subscriber::fmt().with_env_filter("thingline_bus=debug,async_nats=info").with_test_writer().try_init();
    if !PrivateServer::installed() {
        unavailable("no nats-server binary to test reconnection with");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut server = PrivateServer::start(port).await;
    let url = format!("nats://127.0.0.1:{}", server.port);
    let options = options();
    let a = node(&url, &options).await.expect("node A");
    let b = node(&url, &options).await.expect("node B");
    let mut remote_a = a.take_remote().expect("A's remote channel");
    let mut remote_b = b.take_remote().expect("B's remote channel");
    assert!(a.coherent() && b.coherent());

    server.stop();
    until("both nodes see the link down", || !a.coherent() && !b.coherent() && !a.status().connected).await;
    // Sent while the link is down: queued without blocking, sent once A is back (B may not be
    // back yet and miss it: the resets cover that).
    a.invalidate(Invalidation::UserAccess { user_id: 1 });
    a.publish(&Topic::User(1), Event::AccessChanged { user_id: 1 });

    let _server = PrivateServer::start(port).await;
    // Each node resets its own caches: it may have missed invalidations (and B also hears A's
    // peer reset: A may have lost invalidations B needed).
    next_reset(&mut remote_a).await;
    next_reset(&mut remote_b).await;
    until("both nodes are coherent again", || {
        // A platform takes what arrives: so do we.
        while remote_a.try_recv().is_ok() || remote_b.try_recv().is_ok() {}
        a.coherent() && b.coherent()
    })
    .await;
    assert!(a.status().connected && b.status().connected);

    // Events and invalidations flow again.
    let mut on_b = b.notifier().subscribe(Topic::User(2));
    a.publish(&Topic::User(2), Event::AccessChanged { user_id: 2 });
    assert_eq!(&*next_event(&mut on_b).await, &Event::AccessChanged { user_id: 2 });
    b.invalidate(Invalidation::App { app_id: "app".into() });
    assert_eq!(next_invalidation(&mut remote_a).await, Invalidation::App { app_id: "app".into() });
    a.close().await;
    b.close().await;
}
