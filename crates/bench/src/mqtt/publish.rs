//! `mqtt-publish`: QoS 1 publish throughput. Per `--inflight`, round and target: `--clients`
//! connections opened (client i publishes to thing i's topic), then all of them publish at
//! once for `--warmup` + `--seconds`, each keeping up to `--inflight` PUBLISHes awaiting their
//! PUBACK; the PUBACKs of the window per second (and per whole second), publish→PUBACK latency,
//! and the CPU of broker and clients over the window. Thingline acknowledges a QoS 1 PUBLISH
//! once the value is committed (with `--durability full`, on disk); Mosquitto at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};

use super::conn::{OpenPlan, OpenTally, samples};
use super::publisher::{self, DRAIN, Mode, PublisherShared};
use super::report::{self, Opening, PublishMeasurement, PublishReport};
use super::targets::{Session, Setup, Target};
use super::{Clock, SETTLE, Window, client_runtime, join, seconds};
use crate::cli::{MqttPublishArgs, secs};
use crate::driver::summarize;

/// Thingline's default THINGLINE_MQTT_MAX_INFLIGHT; raised when `--inflight` asks for more.
const SERVER_DEFAULT_INFLIGHT: usize = 64;
/// Read buffer of a publisher (room for many PUBACKs per read).
const READ_CAPACITY: usize = 4096;

/// `thingline-bench mqtt-publish`.
pub async fn run(args: &MqttPublishArgs) -> Result<()> {
    if args.clients == 0 || args.rounds == 0 || args.inflight.is_empty() || args.inflight.contains(&0) {
        bail!("--clients, --rounds and every --inflight must be at least 1");
    }
    if args.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let max_inflight = args.inflight.iter().copied().max().unwrap_or(1);
    if max_inflight > usize::from(u16::MAX) {
        bail!("--inflight is at most 65535 (MQTT packet ids)");
    }
    let mut env = Vec::new();
    if max_inflight > SERVER_DEFAULT_INFLIGHT {
        env.push(("THINGLINE_MQTT_MAX_INFLIGHT".to_string(), max_inflight.to_string()));
    }
    let common = &args.common;
    let session = Session::start(common, &Setup { things: args.clients, env, restart: false }).await?;
    let clients = client_runtime(common.client_threads)?;
    let measured = async {
        let mut measurements = Vec::new();
        for &inflight in &args.inflight {
            for round in 0..args.rounds {
                for target in session.order(round) {
                    measurements.push(measure(args, target, inflight, round + 1, clients.handle()).await?);
                    tokio::time::sleep(SETTLE).await;
                }
            }
        }
        anyhow::Ok(measurements)
    }
    .await;
    clients.shutdown_background();
    let store = session.store.clone();
    session.finish().await;
    let measurements = measured?;
    let params = json!({
        "clients": args.clients,
        "inflight": args.inflight,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "clientThreads": common.client_threads,
        "qos": 1,
        "payload": r#"{"values":[{"key":"temp","value":N}]}"#,
    });
    let report = PublishReport::new(params, store, measurements);
    report::print_publish(&report);
    if let Some(path) = &common.json {
        crate::report::write_json(path, &report)?;
    }
    report::check_publish(&report.measurements)
}

/// One target at one `--inflight`.
async fn measure(
    args: &MqttPublishArgs,
    target: &Target,
    inflight: usize,
    round: usize,
    clients: &tokio::runtime::Handle,
) -> Result<PublishMeasurement> {
    let label = target.label;
    let common = &args.common;
    eprintln!("{label}: round {round}, {} clients, inflight {inflight}", args.clients);
    let clock = Clock::start();
    let shared = Arc::new(PublisherShared::new(clock));
    let plan = Arc::new(OpenPlan {
        addr: target.addr,
        gate: Arc::new(Semaphore::new(common.connect_concurrency.max(1))),
        timeout: secs(common.open_timeout).max(Duration::from_millis(100)),
        read_capacity: READ_CAPACITY,
    });
    let (go_tx, go_rx) = watch::channel(None::<Window>);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let pid = std::process::id();
    let mut handles = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let (plan, shared, go, opened) = (plan.clone(), shared.clone(), go_rx.clone(), opened_tx.clone());
        let topic = target.topic(i);
        let client_id = format!("tlb-pub-{pid}-{label}-{round}-{inflight}-{i}");
        handles.push(clients.spawn(async move {
            let conn = plan.open(&client_id, None, &opened).await?;
            drop(opened);
            Some(publisher::run(conn, topic, Mode::Window(inflight), false, shared, go, None).await)
        }));
    }
    drop(opened_tx);
    let tally = OpenTally::collect(label, "clients", &mut opened_rx, args.clients).await;
    if let Err(err) = tally.check(label, args.clients) {
        drop(go_tx);
        join(handles, Duration::from_secs(30)).await;
        return Err(err);
    }

    // Go: warm-up, then the measured window, sampled every second.
    let warmup = secs(args.warmup);
    let start = clock.now_ns();
    let window =
        Window { from: start + warmup.as_nanos() as u64, to: start + (warmup + secs(args.seconds)).as_nanos() as u64 };
    let _ = go_tx.send(Some(window));
    let (seconds, cpu) = seconds::sample(&clock, window, &shared.acks, target.pid).await;

    // The clients stop at the window's end and wait for their last PUBACKs.
    let outputs = join(handles, DRAIN + Duration::from_secs(10)).await;
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let (mut sent, mut acked, mut unacked, mut unexpected, mut in_window) = (0, 0, 0, 0, 0);
    for output in &outputs {
        sent += output.sent;
        acked += output.acked;
        unacked += output.unacked;
        unexpected += output.unexpected_acks;
        in_window += output.acked_in_window;
        latencies.extend_from_slice(&output.latencies_ns);
        errors.extend(output.error.clone());
    }
    let missing_clients = tally.opened.saturating_sub(outputs.len());
    if missing_clients > 0 {
        errors.push(format!("{missing_clients} clients did not finish"));
    }
    let measurement = PublishMeasurement {
        target: label.to_string(),
        round,
        inflight,
        clients: Opening::new(args.clients, &tally),
        window_seconds: window.seconds(),
        acked_in_window: in_window,
        acks_per_s: in_window as f64 / window.seconds(),
        seconds,
        sent,
        acked,
        unacked,
        unexpected_acks: unexpected,
        client_errors: errors.len() as u64,
        client_error_samples: errors.iter().take(3).cloned().collect(),
        latency: summarize(&mut latencies),
        cpu,
    };
    eprintln!(
        "{label}: inflight {inflight}: {:.0} PUBACKs/s, p50 {:.2} ms, p99 {:.2} ms{}",
        measurement.acks_per_s,
        measurement.latency.p50_ms,
        measurement.latency.p99_ms,
        if errors.is_empty() {
            String::new()
        } else {
            format!(", {} clients dropped: {}", errors.len(), samples(&errors))
        }
    );
    Ok(measurement)
}
