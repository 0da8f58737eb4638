//! `coap-observe`: notification latency from commit. Thingline is spawned with its CoAP listener
//! on and the realtime bench's fixture (one thing, app users for the Socket.IO clients) set up
//! through its API. Each round measures, alternating which goes first:
//!
//! - CoAP: `--observers` observers of the thing (module `observer`), then the realtime bench's
//!   paced HTTPS writer and statistics (`realtime::latency::measure_subscribed`): the value is a
//!   sequence number, latency is from the write's 201 (its commit) to the notification's receipt
//!   (and from its send), deliveries expected/received/missing; then the observers deregister;
//! - Socket.IO: as many subscribers of the same thing with the same writer pacing
//!   (`realtime::latency::measure`, target Thingline).
//!
//! Both run on the same client runtime (`--client-threads`, the realtime bench's), so their CPU
//! figures are comparable; the ratio is p99(CoAP) / p99(Socket.IO) of 201→receipt.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, watch};

use super::codec::Template;
use super::observer::{ObserverPlan, observer_task};
use super::report::{self, ObserveReport, ObserveRound, ObserverStats};
use super::thingline::CoapThingline;
use super::udpstat::{UdpCounters, socket_drops};
use crate::cli::{CoapObserveArgs, RealtimeArgs, RealtimeCommon, RealtimeTarget, secs};
use crate::mqtt::conn::OpenTally;
use crate::realtime::client::{Shared, SocketOutput};
use crate::realtime::fixture::{Fixture, setup};
use crate::realtime::latency::{Opening, WritePlan, measure, measure_subscribed};
use crate::realtime::report::TargetReport;
use crate::realtime::targets::TargetSpec;

/// How long the observer tasks get to deregister and hand back their records.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two measurements.
const SETTLE: Duration = Duration::from_secs(1);

/// `thingline-bench coap-observe`.
pub async fn run(args: &CoapObserveArgs) -> Result<()> {
    if args.observers == 0 || args.rounds == 0 || args.client_threads == 0 || args.connect_concurrency == 0 {
        bail!("--observers, --rounds, --client-threads and --connect-concurrency must be at least 1");
    }
    if !(args.rate > 0.0 && args.rate <= 100_000.0) || args.seconds <= 0.0 {
        bail!("--rate must be in (0, 100000] and --seconds positive");
    }
    let n = args.observers;
    // All observers and subscribers are on one thing, from one address.
    let env = vec![
        ("THINGLINE_COAP_RATE".to_string(), "10000000".to_string()),
        ("THINGLINE_COAP_OBSERVERS_PER_ADDRESS".to_string(), (2 * n).max(1000).to_string()),
        ("THINGLINE_COAP_MAX_OBSERVERS".to_string(), (2 * n).max(100_000).to_string()),
        ("THINGLINE_REALTIME_STREAMS_PER_THING".to_string(), (2 * n + 10).to_string()),
    ];
    let extra_args = vec!["--max-connections".to_string(), (n + 1_000).max(10_000).to_string()];
    let thingline = CoapThingline::start(&args.server, env, extra_args).await?;
    let store = thingline.store.clone();
    let realtime = realtime_args(args);
    let clients = crate::realtime::sockets::client_runtime(&realtime.common)?;
    let measured = rounds(args, &realtime, &thingline, clients.handle()).await;
    clients.shutdown_background();
    thingline.finish().await;
    let rounds = measured?;
    let params = json!({
        "observers": n,
        "rate": args.rate,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "keepAlive": args.keep_alive,
        "clientThreads": args.client_threads,
        "thing": "one, all observers and subscribers on it",
    });
    let report = ObserveReport::new(params, Some(store), rounds);
    report::print_observe(&report);
    if let Some(path) = &args.json {
        crate::report::write_json(path, &report)?;
    }
    report::check_observe(&report)
}

/// The realtime bench's arguments for the same measurement (target Thingline).
fn realtime_args(args: &CoapObserveArgs) -> RealtimeArgs {
    RealtimeArgs {
        subs: args.observers,
        rate: args.rate,
        seconds: args.seconds,
        warmup: args.warmup,
        common: RealtimeCommon {
            targets: vec![RealtimeTarget::Thingline],
            client_threads: args.client_threads,
            connect_concurrency: args.connect_concurrency,
            open_timeout: args.open_timeout,
            no_reference: true,
            node: "node".into(),
            refserver_script: None,
            floor_broadcast_threads: 2,
            json: None,
            server: args.server.clone(),
        },
    }
}

async fn rounds(
    args: &CoapObserveArgs,
    realtime: &RealtimeArgs,
    thingline: &CoapThingline,
    clients: &Handle,
) -> Result<Vec<ObserveRound>> {
    let fixture =
        setup(&thingline.api, &args.server, args.observers).await.context("setting up through Thingline's API")?;
    let cert = thingline.data_dir().join("tls/cert.pem");
    let target =
        TargetSpec { label: "socket.io", addr: thingline.process.addr, pid: thingline.process.pid, cert: &cert };
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let coap_first = round % 2 == 1;
        let (coap, stats, socketio) = if coap_first {
            let (coap, stats) = measure_coap(args, realtime, thingline, &fixture, clients).await?;
            tokio::time::sleep(SETTLE).await;
            let socketio = measure(realtime, &target, &fixture, clients).await?;
            (coap, stats, socketio)
        } else {
            let socketio = measure(realtime, &target, &fixture, clients).await?;
            tokio::time::sleep(SETTLE).await;
            let (coap, stats) = measure_coap(args, realtime, thingline, &fixture, clients).await?;
            (coap, stats, socketio)
        };
        tokio::time::sleep(SETTLE).await;
        rounds.push(ObserveRound::new(round, if coap_first { "coap" } else { "socket.io" }, coap, stats, socketio));
    }
    Ok(rounds)
}

/// One CoAP measurement: the observers registered, the writes and statistics of the realtime
/// bench, the observers deregistered.
async fn measure_coap(
    args: &CoapObserveArgs,
    realtime: &RealtimeArgs,
    thingline: &CoapThingline,
    fixture: &Fixture,
    clients: &Handle,
) -> Result<(TargetReport, ObserverStats)> {
    let label = "coap";
    let n = args.observers;
    let plan = Arc::new(ObserverPlan {
        addr: thingline.coap,
        register: Template::observe(&fixture.thing_token, args.keep_alive, 0),
        deregister: Template::observe(&fixture.thing_token, args.keep_alive, 1),
        open_timeout: secs(args.open_timeout).max(Duration::from_millis(100)),
        gate: Arc::new(Semaphore::new(args.connect_concurrency)),
        capacity: WritePlan::of(realtime).total as usize + 16,
    });
    let shared = Arc::new(Shared {
        base: Instant::now(),
        deliveries: AtomicU64::new(0),
        topic_errors: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
    });
    eprintln!("{label}: registering {n} observers ({} client threads)", args.client_threads);
    let udp_start = UdpCounters::now();
    let drops_start = socket_drops(thingline.coap);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let handles: Vec<_> = (0..n)
        .map(|i| clients.spawn(observer_task(plan.clone(), i, shared.clone(), opened_tx.clone(), stop_rx.clone())))
        .collect();
    drop(opened_tx);
    let tally = OpenTally::collect(label, "observers", &mut opened_rx, n).await;
    let opening = Opening {
        opened: tally.opened,
        retries: tally.retries.clone(),
        failures: tally.failures.clone(),
        open_seconds: tally.seconds,
    };
    let mut stats = ObserverStats::default();
    let close = async {
        let _ = stop_tx.send(true);
        let (outputs, all) = collect(handles).await;
        stats = all;
        stats.udp = UdpCounters::now().since(&udp_start);
        stats.server_socket_drops =
            socket_drops(thingline.coap).zip(drops_start).map(|(end, start)| end.saturating_sub(start));
        outputs
    };
    if let Err(err) = tally.check(label, n) {
        close.await;
        return Err(err);
    }
    let url = format!("https://{}/v2/things/{}", thingline.process.addr, fixture.thing_token);
    let report = measure_subscribed(realtime, label, &url, thingline.process.pid, shared, opening, close).await?;
    eprintln!(
        "{label}: {} notifications ({} confirmable), {} ended by the server, {} deregistered ({} failed)",
        stats.notifications, stats.confirmable, stats.ended, stats.deregistered, stats.deregister_failures
    );
    Ok((report, stats))
}

/// The observers' records and their counts added up (aborting those that do not stop within
/// [`STOP_TIMEOUT`]).
async fn collect(
    handles: Vec<tokio::task::JoinHandle<(SocketOutput, ObserverStats)>>,
) -> (Vec<SocketOutput>, ObserverStats) {
    let stop_by = tokio::time::Instant::now() + STOP_TIMEOUT;
    let mut outputs = Vec::with_capacity(handles.len());
    let mut stats = ObserverStats::default();
    let mut unjoined = 0usize;
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(stop_by, handle).await {
            Ok(Ok((output, observer))) => {
                stats.add(&observer);
                outputs.push(output);
            }
            Ok(Err(err)) => eprintln!("note: coap: an observer task failed: {err}"),
            Err(_) => {
                abort.abort();
                unjoined += 1;
            }
        }
    }
    if unjoined > 0 {
        eprintln!("note: coap: {unjoined} observer tasks did not stop within {STOP_TIMEOUT:?} (aborted)");
    }
    (outputs, stats)
}
