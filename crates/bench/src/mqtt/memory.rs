//! `mqtt-memory`: the broker's resident memory per idle MQTT connection. Per target: its VmRSS
//! once settled; `--conns` connections opened (CONNECT, keepalive 60 s) and left idle (a
//! PINGREQ every 30 s keeps them alive), VmRSS settled again; then each SUBSCRIBEs (QoS 0) to a
//! thing topic, spread over `--things` things, VmRSS settled a third time. Per connection:
//! (connected − before) and (subscribed − before) over the connections still open. Thingline is
//! the spawned process, restarted on its data dir after the setup (so that the memory its
//! allocator kept from the setup's HTTPS activations cannot absorb the connections'); Mosquitto the running one (`pidof mosquitto`), whose allocator keeps the
//! memory of earlier connections: its VmRSS figure is then a lower bound (the report gives the
//! peak VmRSS before the run to show it), and its own heap count (`sysheap`) is read at the
//! same three points.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};

use super::codec::{self, Packet};
use super::conn::{Conn, KEEPALIVE_SECS, OpenPlan, OpenTally, samples};
use super::report::{self, MemoryMeasurement, MemoryReport, Opening};
use super::sysheap::HeapProbe;
use super::targets::{Session, Setup, Target};
use super::{SETTLE, client_runtime, join};
use crate::cli::{MqttMemoryArgs, MqttTarget, secs};
use crate::realtime::memory::settled_rss;
use crate::server::status_bytes_of;

/// Thingline's default THINGLINE_REALTIME_STREAMS_PER_THING.
const SERVER_DEFAULT_STREAMS_PER_THING: usize = 10;
/// Read buffer of an idle connection (SUBACK, PINGRESP: a few bytes; it grows if needed).
const READ_CAPACITY: usize = 64;
/// How long every SUBSCRIBE may take to be acknowledged, in all.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the idle connections are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Subscribe,
    Close,
}

/// What an idle connection reports.
enum Event {
    Subscribed(Result<(), String>),
    Disconnected(String),
}

/// `thingline-bench mqtt-memory`.
pub async fn run(args: &MqttMemoryArgs) -> Result<()> {
    if args.conns == 0 || args.things == 0 {
        bail!("--conns and --things must be at least 1");
    }
    let per_thing = args.conns.div_ceil(args.things);
    let mut env = Vec::new();
    if per_thing > SERVER_DEFAULT_STREAMS_PER_THING {
        env.push(("THINGLINE_REALTIME_STREAMS_PER_THING".to_string(), per_thing.to_string()));
    }
    let common = &args.common;
    let session = Session::start(common, &Setup { things: args.things, env, restart: true }).await?;
    let clients = client_runtime(common.client_threads)?;
    let measured = async {
        let mut measurements = Vec::new();
        for target in session.order(0) {
            measurements.push(measure(args, target, clients.handle()).await?);
            tokio::time::sleep(SETTLE).await;
        }
        anyhow::Ok(measurements)
    }
    .await;
    clients.shutdown_background();
    let store = session.store.clone();
    session.finish().await;
    let measurements = measured?;
    let params = json!({
        "conns": args.conns,
        "things": args.things,
        "keepaliveSecs": KEEPALIVE_SECS,
        "settleSecs": args.settle_secs,
        "settleTimeout": args.settle_timeout,
    });
    let report = MemoryReport::new(params, store, measurements);
    report::print_memory(&report);
    if let Some(path) = &common.json {
        crate::report::write_json(path, &report)?;
    }
    Ok(())
}

async fn measure(
    args: &MqttMemoryArgs,
    target: &Target,
    clients: &tokio::runtime::Handle,
) -> Result<MemoryMeasurement> {
    let label = target.label;
    let common = &args.common;
    let pid = target.pid.ok_or_else(|| anyhow!("{label}: no pid, its memory cannot be read (--mosquitto-pid)"))?;
    let min_wait = secs(args.settle_secs);
    let timeout = secs(args.settle_timeout).max(min_wait);
    let probe = match target.kind {
        MqttTarget::Mosquitto => match HeapProbe::start(target.addr).await {
            Ok(probe) => Some(probe),
            Err(err) => {
                eprintln!("note: {label}: no heap count ({err:#})");
                None
            }
        },
        MqttTarget::Thingline => None,
    };
    let heap = async |probe: &Option<HeapProbe>| match probe {
        Some(probe) => probe.next_value().await.map_err(|err| eprintln!("note: {label}: {err:#}")).ok(),
        None => None,
    };
    let (before, settled_before) = settled_rss(pid, min_wait, timeout).await?;
    let peak_before = status_bytes_of(pid, "VmHWM").ok();
    let heap_before = heap(&probe).await;
    eprintln!(
        "{label}: VmRSS {} KB before opening (peak so far {} KB{})",
        before / 1024,
        peak_before.map_or(0, |b| b / 1024),
        heap_before.map(|h| format!(", heap {} KB", h / 1024)).unwrap_or_default()
    );

    let plan = Arc::new(OpenPlan {
        addr: target.addr,
        gate: Arc::new(Semaphore::new(common.connect_concurrency.max(1))),
        timeout: secs(common.open_timeout).max(Duration::from_millis(100)),
        read_capacity: READ_CAPACITY,
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let me = std::process::id();
    let mut handles = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let (plan, phase, opened, events) = (plan.clone(), phase_rx.clone(), opened_tx.clone(), events_tx.clone());
        let topic = target.topic(i % args.things);
        let client_id = format!("tlb-idle-{me}-{label}-{i}");
        handles.push(clients.spawn(async move {
            let conn = plan.open(&client_id, None, &opened).await?;
            drop(opened);
            idle(conn, topic, phase, events).await;
            Some(())
        }));
    }
    drop((opened_tx, events_tx));
    let tally = OpenTally::collect(label, "connections", &mut opened_rx, args.conns).await;
    let measured = async {
        tally.check(label, args.conns)?;
        let (connected, settled_connected) = settled_rss(pid, min_wait, timeout).await?;
        let heap_connected = heap(&probe).await;
        eprintln!("{label}: VmRSS {} KB with {} idle connections", connected / 1024, tally.opened);
        let _ = phase_tx.send(Phase::Subscribe);
        let mut subscribed = 0usize;
        let mut failures = Vec::new();
        let mut disconnects = Vec::new();
        let by = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
        while subscribed + failures.len() + disconnects.len() < tally.opened {
            match tokio::time::timeout_at(by, events_rx.recv()).await {
                Ok(Some(Event::Subscribed(Ok(())))) => subscribed += 1,
                Ok(Some(Event::Subscribed(Err(err)))) => failures.push(err),
                Ok(Some(Event::Disconnected(err))) => disconnects.push(err),
                Ok(None) | Err(_) => break,
            }
        }
        let silent = tally.opened - subscribed - failures.len() - disconnects.len();
        if silent > 0 {
            failures.push(format!("{silent} SUBSCRIBEs unanswered within {SUBSCRIBE_TIMEOUT:?}"));
        }
        eprintln!("{label}: {subscribed}/{} connections subscribed over {} things", tally.opened, args.things);
        if !failures.is_empty() {
            eprintln!("{label}: {} SUBSCRIBEs FAILED: {}", failures.len(), samples(&failures));
        }
        let (after, settled_after) = settled_rss(pid, min_wait, timeout).await?;
        let heap_subscribed = heap(&probe).await;
        // Connections closed by the broker while idle since.
        while let Ok(event) = events_rx.try_recv() {
            if let Event::Disconnected(err) = event {
                disconnects.push(err);
            }
        }
        let open_now = tally.opened.saturating_sub(disconnects.len()).max(1) as f64;
        let per = |rss: u64| (rss as f64 - before as f64) / 1024.0 / open_now;
        let heap_per =
            |at: Option<u64>| heap_before.zip(at).map(|(before, at)| (at as f64 - before as f64) / 1024.0 / open_now);
        let measurement = MemoryMeasurement {
            target: label.to_string(),
            connections: Opening::new(args.conns, &tally),
            things: args.things,
            subscribed,
            subscribe_failures: failures.len(),
            subscribe_failure_samples: failures.into_iter().take(3).collect(),
            rss_peak_before_kb: peak_before.map(|b| b / 1024),
            rss_before_kb: before / 1024,
            rss_connected_kb: connected / 1024,
            rss_subscribed_kb: after / 1024,
            settled: [settled_before, settled_connected, settled_after],
            kb_per_connection: per(connected),
            kb_per_subscribed_connection: per(after),
            heap_kb: [heap_before, heap_connected, heap_subscribed].map(|h| h.map(|h| h / 1024)),
            heap_kb_per_connection: heap_per(heap_connected),
            heap_kb_per_subscribed_connection: heap_per(heap_subscribed),
            disconnects: disconnects.len() as u64,
            disconnect_samples: disconnects.into_iter().take(3).collect(),
        };
        eprintln!(
            "{label}: {:.1} KB per idle connection, {:.1} KB per subscribed one",
            measurement.kb_per_connection, measurement.kb_per_subscribed_connection
        );
        anyhow::Ok(measurement)
    }
    .await;
    let _ = phase_tx.send(Phase::Close);
    join(handles, Duration::from_secs(30)).await;
    measured.with_context(|| format!("measuring {label}"))
}

/// An idle connection: answers nothing but keeps alive (PINGREQ every half keepalive),
/// SUBSCRIBEs when told, reports its SUBACK or the broker closing it, DISCONNECTs when told.
async fn idle(mut conn: Conn, topic: Vec<u8>, mut phase: watch::Receiver<Phase>, events: mpsc::UnboundedSender<Event>) {
    let half = Duration::from_secs(u64::from(KEEPALIVE_SECS) / 2);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    loop {
        let step: Result<bool> = tokio::select! {
            read = conn.rx.fill(&mut conn.stream) => match read {
                Ok(_) => answer(&mut conn, &events),
                Err(err) => Err(err),
            },
            _ = ping.tick() => {
                codec::pingreq(&mut conn.tx);
                Ok(true)
            }
            changed = phase.changed() => match changed.map(|_| *phase.borrow_and_update()) {
                Ok(Phase::Subscribe) => {
                    codec::subscribe(&mut conn.tx, 1, &topic, 0);
                    Ok(true)
                }
                Ok(Phase::Idle) => Ok(true),
                Ok(Phase::Close) | Err(_) => Ok(false),
            },
        };
        let step = match step {
            Ok(true) => conn.flush().await.map(|_| true),
            other => other,
        };
        match step {
            Ok(true) => {}
            Ok(false) => break,
            Err(err) => {
                let _ = events.send(Event::Disconnected(format!("{err:#}")));
                return;
            }
        }
    }
    conn.close().await;
}

/// The packets an idle connection may get: SUBACK (reported), PINGRESP, a QoS 1 PUBLISH
/// (acknowledged; nothing is published during the measurement).
fn answer(conn: &mut Conn, events: &mpsc::UnboundedSender<Event>) -> Result<bool> {
    while let Some(packet) = conn.rx.next()? {
        match packet {
            Packet::SubAck { codes: [0], .. } => {
                let _ = events.send(Event::Subscribed(Ok(())));
            }
            Packet::SubAck { codes, .. } => {
                let _ = events.send(Event::Subscribed(Err(format!("SUBACK refused: {codes:02x?}"))));
            }
            Packet::Publish { qos: 1, pid: Some(pid), .. } => codec::puback(&mut conn.tx, pid),
            _ => {}
        }
    }
    Ok(true)
}
