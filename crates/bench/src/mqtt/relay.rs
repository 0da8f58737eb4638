//! `mqtt-relay`: publish→subscribe through the broker. Per round and target: `--pairs` things,
//! each with a subscriber (SUBSCRIBE QoS 0 to `v2/things/{token}`, SUBACK before anything is
//! published) and a publisher on another connection. The publishers publish for `--warmup` +
//! `--seconds`: by default QoS 1 with `--inflight` PUBLISHes awaiting their PUBACK (closed loop:
//! each broker paces its publishers by acknowledging, so neither is flooded past what it can
//! take and an acknowledged message is one the broker took responsibility for), or with
//! `--qos0-rate` QoS 0 at a fixed rate per publisher (open loop: the same offered load for
//! both). Then the deliveries drain, the publishers still connected (a DISCONNECT right behind
//! the last PUBLISHes is no part of this measurement); each subscriber's distinct values are
//! counted against what its publisher sent in the window (acknowledged, for QoS 1), so a loss
//! shows as `missing`, with where in the window it happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};

use super::conn::{OpenPlan, OpenTally};
use super::publisher::{self, DRAIN, Mode, PublisherOutput, PublisherShared};
use super::report::{self, Cpu, Opening, RelayMeasurement, RelayReport};
use super::seconds::{self, Seconds};
use super::subscriber::{self, SubscriberOutput, SubscriberShared};
use super::targets::{Session, Setup, Target};
use super::{Clock, SETTLE, Window, client_runtime, join};
use crate::cli::{MqttRelayArgs, secs};
use crate::driver::summarize;

/// After the publishers stop: how long the deliveries may take to drain at most…
const DELIVERY_DRAIN: Duration = Duration::from_secs(10);
/// …and how long without a new delivery ends the drain early.
const DELIVERY_QUIET: Duration = Duration::from_secs(1);
const READ_CAPACITY: usize = 16 * 1024;

/// `thingline-bench mqtt-relay`.
pub async fn run(args: &MqttRelayArgs) -> Result<()> {
    if args.pairs == 0 || args.rounds == 0 || args.inflight == 0 || args.inflight > usize::from(u16::MAX) {
        bail!("--pairs and --rounds must be at least 1, --inflight in 1..=65535");
    }
    if args.seconds <= 0.0 || args.qos0_rate.is_some_and(|rate| !(rate > 0.0 && rate <= 1e6)) {
        bail!("--seconds must be positive, --qos0-rate in (0, 1000000]");
    }
    let mut env = Vec::new();
    if args.qos0_rate.is_none() && args.inflight > 64 {
        env.push(("THINGLINE_MQTT_MAX_INFLIGHT".to_string(), args.inflight.to_string()));
    }
    let common = &args.common;
    let session = Session::start(common, &Setup { things: args.pairs, env, restart: false }).await?;
    let clients = client_runtime(common.client_threads)?;
    let measured = async {
        let mut measurements = Vec::new();
        for round in 0..args.rounds {
            for target in session.order(round) {
                measurements.push(measure(args, target, round + 1, clients.handle()).await?);
                tokio::time::sleep(SETTLE).await;
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
        "pairs": args.pairs,
        "mode": mode_name(args),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "clientThreads": common.client_threads,
        "subscriptionQos": 0,
    });
    let report = RelayReport::new(params, store, measurements);
    report::print_relay(&report);
    if let Some(path) = &common.json {
        crate::report::write_json(path, &report)?;
    }
    report::check_relay(&report.measurements)
}

fn mode(args: &MqttRelayArgs) -> Mode {
    match args.qos0_rate {
        Some(rate) => Mode::Paced(rate),
        None => Mode::Window(args.inflight),
    }
}

fn mode_name(args: &MqttRelayArgs) -> String {
    match mode(args) {
        Mode::Window(n) => format!("qos1 inflight {n}"),
        Mode::Paced(rate) => format!("qos0 {rate}/s per publisher"),
    }
}

/// One target, one round.
async fn measure(
    args: &MqttRelayArgs,
    target: &Target,
    round: usize,
    clients: &tokio::runtime::Handle,
) -> Result<RelayMeasurement> {
    let label = target.label;
    let common = &args.common;
    let pairs = args.pairs;
    eprintln!("{label}: round {round}, {pairs} pairs, {}", mode_name(args));
    let clock = Clock::start();
    let open = |read_capacity| {
        Arc::new(OpenPlan {
            addr: target.addr,
            gate: Arc::new(Semaphore::new(common.connect_concurrency.max(1))),
            timeout: secs(common.open_timeout).max(Duration::from_millis(100)),
            read_capacity,
        })
    };
    let pid = std::process::id();

    // Subscribers first, each live (SUBACK) before anything is published.
    let subscribers = Arc::new(SubscriberShared { clock, items: AtomicU64::new(0) });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let plan = open(READ_CAPACITY);
    let mut sub_handles = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let (plan, shared, stop, opened) = (plan.clone(), subscribers.clone(), stop_rx.clone(), opened_tx.clone());
        let topic = target.topic(i);
        let client_id = format!("tlb-sub-{pid}-{label}-{round}-{i}");
        sub_handles.push(clients.spawn(async move {
            let conn = plan.open(&client_id, Some(&topic), &opened).await?;
            drop(opened);
            Some((i, subscriber::run(conn, shared, stop, 16 * 1024).await))
        }));
    }
    drop(opened_tx);
    let sub_tally = OpenTally::collect(label, "subscribers", &mut opened_rx, pairs).await;
    if let Err(err) = sub_tally.check(label, pairs) {
        let _ = stop_tx.send(true);
        join(sub_handles, Duration::from_secs(30)).await;
        return Err(err);
    }

    let publishers = Arc::new(PublisherShared::new(clock));
    let (go_tx, go_rx) = watch::channel(None::<Window>);
    let (release_tx, release_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let plan = open(4096);
    let mode = mode(args);
    let mut pub_handles = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let (plan, shared, go, opened) = (plan.clone(), publishers.clone(), go_rx.clone(), opened_tx.clone());
        let release = Some(release_rx.clone());
        let topic = target.topic(i);
        let client_id = format!("tlb-rpub-{pid}-{label}-{round}-{i}");
        pub_handles.push(clients.spawn(async move {
            let conn = plan.open(&client_id, None, &opened).await?;
            drop(opened);
            Some((i, publisher::run(conn, topic, mode, true, shared, go, release).await))
        }));
    }
    drop(opened_tx);
    let pub_tally = OpenTally::collect(label, "publishers", &mut opened_rx, pairs).await;
    if let Err(err) = pub_tally.check(label, pairs) {
        drop((go_tx, release_tx));
        let _ = stop_tx.send(true);
        join(pub_handles, Duration::from_secs(30)).await;
        join(sub_handles, Duration::from_secs(30)).await;
        return Err(err);
    }

    // Go: warm-up, window, then the publishers' last PUBACKs and the deliveries' drain.
    let start = clock.now_ns();
    let warmup = secs(args.warmup);
    let window =
        Window { from: start + warmup.as_nanos() as u64, to: start + (warmup + secs(args.seconds)).as_nanos() as u64 };
    let _ = go_tx.send(Some(window));
    let (seconds, cpu) = seconds::sample(&clock, window, &subscribers.items, target.pid).await;
    // The publishers' last PUBACKs, then the deliveries, the publishers still connected.
    let finished_by = Instant::now() + DRAIN + Duration::from_secs(5);
    while publishers.finished.load(Ordering::Relaxed) < pub_tally.opened && Instant::now() < finished_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = match mode {
        Mode::Paced(_) => publishers.sent.load(Ordering::Relaxed),
        Mode::Window(_) => publishers.acks.load(Ordering::Relaxed),
    };
    drain(&subscribers.items, delivered).await;
    let _ = release_tx.send(true);
    let published = join(pub_handles, Duration::from_secs(30)).await;
    let _ = stop_tx.send(true);
    let received = join(sub_handles, Duration::from_secs(30)).await;

    let measured = Measured { window, seconds, cpu };
    let measurement = tally(args, label, round, measured, &published, &received, &sub_tally, &pub_tally);
    eprintln!(
        "{label}: {:.0} delivered/s, send→receipt p50 {:.2} ms, p99 {:.2} ms, {} of {} missing",
        measurement.delivered_per_s,
        measurement.delivery_latency.p50_ms,
        measurement.delivery_latency.p99_ms,
        measurement.missing,
        measurement.expected
    );
    Ok(measurement)
}

/// Wait until the subscribers hold `expected` items, or none came for [`DELIVERY_QUIET`], or
/// [`DELIVERY_DRAIN`] passed.
async fn drain(items: &AtomicU64, expected: u64) {
    let until = Instant::now() + DELIVERY_DRAIN;
    let mut last = items.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while Instant::now() < until && last < expected && last_change.elapsed() < DELIVERY_QUIET {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = items.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
}

/// What the coordinator measured itself: the window, its seconds, the CPU over it.
struct Measured {
    window: Window,
    seconds: Seconds,
    cpu: Cpu,
}

/// The figures of one measurement from every client's output, pair by pair.
#[allow(clippy::too_many_arguments)]
fn tally(
    args: &MqttRelayArgs,
    label: &str,
    round: usize,
    Measured { window, seconds, cpu }: Measured,
    published: &[(usize, PublisherOutput)],
    received: &[(usize, SubscriberOutput)],
    sub_tally: &OpenTally,
    pub_tally: &OpenTally,
) -> RelayMeasurement {
    let qos0 = args.qos0_rate.is_some();
    let mut by_pair: Vec<(Option<&PublisherOutput>, Option<&SubscriberOutput>)> = vec![(None, None); args.pairs];
    for (i, output) in published {
        by_pair[*i].0 = Some(output);
    }
    for (i, output) in received {
        by_pair[*i].1 = Some(output);
    }
    let mut m = RelayMeasurement {
        target: label.to_string(),
        round,
        pairs: args.pairs,
        mode: mode_name(args),
        subscribers: Opening::new(args.pairs, sub_tally),
        publishers: Opening::new(args.pairs, pub_tally),
        window_seconds: window.seconds(),
        published: 0,
        publish_per_s: 0.0,
        delivered_in_window: 0,
        delivered_per_s: 0.0,
        expected: 0,
        received: 0,
        missing: 0,
        missing_pairs: 0,
        missing_samples: Vec::new(),
        unexpected: 0,
        duplicates: 0,
        packets: 0,
        topic_errors: 0,
        topic_error_samples: Vec::new(),
        unacked: 0,
        client_errors: 0,
        client_error_samples: Vec::new(),
        delivery_latency: Default::default(),
        puback_latency: Default::default(),
        seconds,
        cpu,
    };
    let mut errors = Vec::new();
    let mut delivery = Vec::new();
    let mut puback = Vec::new();
    let mut publisher_side = 0;
    for (i, pair) in by_pair.into_iter().enumerate() {
        let (Some(publisher), Some(subscriber)) = pair else {
            errors.push(format!("pair {i}: publisher or subscriber never opened"));
            continue;
        };
        m.published += publisher.sent_in_window;
        m.unacked += publisher.unacked;
        publisher_side += if qos0 { publisher.sent_in_window } else { publisher.acked_in_window };
        puback.extend_from_slice(&publisher.latencies_ns);
        // Distinct values, each at its first receipt.
        let mut records = subscriber.records.clone();
        records.sort_unstable();
        let before = records.len();
        records.dedup_by_key(|(value, _)| *value);
        m.duplicates += (before - records.len()) as u64;
        let mut got = Vec::with_capacity(records.len());
        for &(value, at) in &records {
            m.delivered_in_window += u64::from(window.contains(at));
            if window.contains(value) {
                got.push(value);
                delivery.push(at.saturating_sub(value));
            }
        }
        let mut expected = publisher.expected_values.clone();
        expected.sort_unstable();
        let (missing, extra) = compare_values(&expected, &got);
        m.expected += expected.len() as u64;
        m.received += (got.len() - extra) as u64;
        m.missing += missing.len() as u64;
        m.unexpected += extra as u64;
        if !missing.is_empty() {
            m.missing_pairs += 1;
            if m.missing_samples.len() < 5 {
                m.missing_samples.push(describe_missing(i, &missing, &expected, window));
            }
        }
        m.packets += subscriber.packets;
        m.topic_errors += subscriber.topic_errors;
        if m.topic_error_samples.len() < 3 {
            m.topic_error_samples.extend(subscriber.topic_error_sample.clone());
        }
        for (who, error) in [("publisher", &publisher.error), ("subscriber", &subscriber.error)] {
            if let Some(error) = error {
                errors.push(format!("{who} {i}: {error}"));
            }
        }
    }
    m.publish_per_s = publisher_side as f64 / window.seconds();
    m.delivered_per_s = m.delivered_in_window as f64 / window.seconds();
    m.client_errors = errors.len() as u64;
    m.client_error_samples = errors.into_iter().take(3).collect();
    m.delivery_latency = summarize(&mut delivery);
    m.puback_latency = summarize(&mut puback);
    m
}

/// The values of `expected` not in `got`, and how many of `got` are not in `expected` (both
/// sorted and distinct).
fn compare_values(expected: &[u64], got: &[u64]) -> (Vec<u64>, usize) {
    let mut missing = Vec::new();
    let mut extra = 0;
    let (mut e, mut g) = (0, 0);
    while e < expected.len() || g < got.len() {
        match (expected.get(e), got.get(g)) {
            (Some(a), Some(b)) if a == b => {
                e += 1;
                g += 1;
            }
            (Some(a), Some(b)) if a < b => {
                missing.push(*a);
                e += 1;
            }
            (Some(a), None) => {
                missing.push(*a);
                e += 1;
            }
            _ => {
                extra += 1;
                g += 1;
            }
        }
    }
    (missing, extra)
}

/// Where a pair's missing messages were: how many, in how many runs of consecutive messages,
/// and when the first and last were sent (seconds into the window).
fn describe_missing(pair: usize, missing: &[u64], expected: &[u64], window: Window) -> String {
    let mut runs = 0;
    let mut previous = None;
    for value in missing {
        let at = expected.binary_search(value).unwrap_or(0);
        if previous.is_none_or(|p: usize| at != p + 1) {
            runs += 1;
        }
        previous = Some(at);
    }
    let offset = |v: &u64| v.saturating_sub(window.from) as f64 / 1e9;
    format!(
        "pair {pair}: {} of {} missing, in {runs} runs, sent from +{:.3} s to +{:.3} s into the window",
        missing.len(),
        expected.len(),
        missing.first().map_or(0.0, offset),
        missing.last().map_or(0.0, offset)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_extra_values() {
        let (missing, extra) = compare_values(&[1, 2, 3, 5, 8], &[2, 3, 4, 8, 9]);
        assert_eq!((missing, extra), (vec![1, 5], 2));
        assert_eq!(compare_values(&[], &[1]), (vec![], 1));
        assert_eq!(compare_values(&[1], &[]), (vec![1], 0));
    }

    #[test]
    fn missing_runs_are_described() {
        let window = Window { from: 1_000_000_000, to: 3_000_000_000 };
        let expected = [1_000_000_000, 1_500_000_000, 2_000_000_000, 2_500_000_000];
        let text = describe_missing(3, &[1_500_000_000, 2_000_000_000], &expected, window);
        assert_eq!(text, "pair 3: 2 of 4 missing, in 1 runs, sent from +0.500 s to +1.000 s into the window");
        let text = describe_missing(3, &[1_000_000_000, 2_500_000_000], &expected, window);
        assert!(text.contains("in 2 runs"), "{text}");
    }
}
