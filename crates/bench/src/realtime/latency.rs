//! The `realtime-latency` measurement of one target: its sockets opened, the paced writes, the
//! drain of the last deliveries, and the statistics (send→receipt, 201→receipt, write RTT, CPU
//! over the window, deliveries expected/received/missing). Everything after the opening
//! ([`measure_subscribed`]) serves any kind of subscriber that records (value, receipt time) in
//! a [`SocketOutput`]: `coap-observe` measures its CoAP observers with it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::client::{Shared, SocketOutput};
use super::cpu::CpuSnapshot;
use super::report::TargetReport;
use super::sockets::{close_sockets, open_sockets};
use super::writer::write_loop;
use super::{Fixture, TargetSpec};
use crate::cli::RealtimeArgs;
use crate::driver::summarize;

/// After the last write's 201: how long to wait for the expected deliveries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The writes of a measurement: warm-up, measured, in all.
#[derive(Debug, Clone, Copy)]
pub struct WritePlan {
    pub warmup: u64,
    pub measured: u64,
    pub total: u64,
}

impl WritePlan {
    pub fn of(args: &RealtimeArgs) -> Self {
        let warmup = (args.warmup.max(0.0) * args.rate).round() as u64;
        let measured = ((args.seconds * args.rate).round() as u64).max(1);
        Self { warmup, measured, total: warmup + measured }
    }
}

/// How opening a target's subscribers went.
#[derive(Debug, Clone, Default)]
pub struct Opening {
    pub opened: usize,
    /// Opened on the retry after a failed first attempt (why the first failed).
    pub retries: Vec<String>,
    /// Failed twice.
    pub failures: Vec<String>,
    pub open_seconds: f64,
}

/// One target: `--subs` sockets opened, `--rate` writes for `--warmup` + `--seconds`, the last
/// deliveries drained (at most [`DRAIN_TIMEOUT`]), the sockets closed, the figures computed.
pub async fn measure(
    args: &RealtimeArgs,
    target: &TargetSpec<'_>,
    fixture: &Fixture,
    clients: &tokio::runtime::Handle,
) -> Result<TargetReport> {
    let label = target.label;
    let plan = WritePlan::of(args);
    let sockets = open_sockets(&args.common, target, fixture, clients, args.subs, plan.total as usize + 16).await?;
    let shared = sockets.shared.clone();
    let opening = Opening {
        opened: sockets.opened,
        retries: sockets.retries.clone(),
        failures: sockets.failures.clone(),
        open_seconds: sockets.open_seconds,
    };
    let url = format!("https://{}/v2/things/{}", target.addr, fixture.thing_token);
    measure_subscribed(args, label, &url, target.pid, shared, opening, close_sockets(sockets, label)).await
}

/// The measurement once the subscribers are open: `--rate` writes to `url` (the HTTPS write of
/// the subscribed thing) for `--warmup` + `--seconds`, the last deliveries drained (at most
/// [`DRAIN_TIMEOUT`]), the subscribers stopped by awaiting `close` (which hands back their
/// records), the figures computed. `shared` is the subscribers' clock and counters; `pid` the
/// server's.
pub async fn measure_subscribed(
    args: &RealtimeArgs,
    label: &str,
    url: &str,
    pid: u32,
    shared: Arc<Shared>,
    opening: Opening,
    close: impl Future<Output = Vec<SocketOutput>>,
) -> Result<TargetReport> {
    let rate = args.rate;
    let WritePlan { warmup: warmup_writes, measured: measured_writes, total: total_writes } = WritePlan::of(args);
    let opened = opening.opened;

    // Write, then wait for the last deliveries.
    eprintln!("{label}: writing {rate}/s for {:.0} s warm-up + {:.0} s measured", args.warmup.max(0.0), args.seconds);
    let writer = match write_loop(url, rate, warmup_writes, total_writes, &shared, pid).await {
        Ok(writer) => writer,
        Err(err) => {
            close.await;
            return Err(err);
        }
    };
    let ok_writes = writer.samples.iter().filter(|s| s.ack_ns.is_some()).count() as u64;
    let expected_all = ok_writes * opened as u64;
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    while shared.deliveries.load(Ordering::Relaxed) < expected_all && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let window_end_ns = shared.now_ns();
    let cpu_end = CpuSnapshot::take(pid);

    // Stop the clients and collect their records.
    let Opening { retries, failures, open_seconds, .. } = opening;
    let outputs = close.await;

    // Statistics.
    let mut send_ns = vec![None; total_writes as usize + 1];
    let mut ack_ns = vec![None; total_writes as usize + 1];
    let mut write_errors = Vec::new();
    for sample in &writer.samples {
        if let Some(slot) = send_ns.get_mut(sample.seq as usize) {
            *slot = Some(sample.send_ns);
        }
        if let Some(slot) = ack_ns.get_mut(sample.seq as usize) {
            *slot = sample.ack_ns;
        }
        if let Some(err) = &sample.error {
            write_errors.push(format!("seq {}: {err}", sample.seq));
        }
    }
    let first_measured = warmup_writes + 1;
    let in_window = |seq: u64| seq >= first_measured && seq <= total_writes;
    let mut from_send = Vec::with_capacity(measured_writes as usize * opened);
    let mut from_201 = Vec::with_capacity(measured_writes as usize * opened);
    let mut before_201 = 0u64;
    let mut topic_samples = Vec::new();
    for output in &outputs {
        for &(seq, t) in &output.records {
            if !in_window(seq) {
                continue;
            }
            if let Some(Some(sent)) = send_ns.get(seq as usize) {
                from_send.push(t.saturating_sub(*sent));
            }
            if let Some(Some(acked)) = ack_ns.get(seq as usize) {
                if t < *acked {
                    before_201 += 1;
                }
                from_201.push(t.saturating_sub(*acked));
            }
        }
        if let Some(sample) = &output.topic_error_sample
            && topic_samples.len() < 3
        {
            topic_samples.push(sample.clone());
        }
    }
    // Distinct values per socket: a duplicate delivery must not hide a missing one.
    let received: u64 = outputs
        .iter()
        .map(|o| {
            let seqs: std::collections::HashSet<u64> =
                o.records.iter().map(|(seq, _)| *seq).filter(|seq| in_window(*seq)).collect();
            seqs.len() as u64
        })
        .sum();
    let mut rtt: Vec<u64> = writer
        .samples
        .iter()
        .filter(|s| in_window(s.seq))
        .filter_map(|s| s.ack_ns.map(|a| a.saturating_sub(s.send_ns)))
        .collect();
    // Only acknowledged writes are committed and delivered: a failed write counts as a write
    // error, not as `opened` missing deliveries too.
    let acked_measured = writer.samples.iter().filter(|s| in_window(s.seq) && s.ack_ns.is_some()).count() as u64;
    let expected = acked_measured * opened as u64;
    let window_start_ns = send_ns.get(first_measured as usize).copied().flatten().unwrap_or(0);
    let cpu = |end: Option<f64>, start: Option<f64>| end.zip(start).map(|(e, s)| e - s);
    let report = TargetReport {
        target: label.to_string(),
        subs: args.subs,
        opened,
        open_retries: retries.len(),
        open_retry_samples: retries.iter().take(3).cloned().collect(),
        open_failures: failures.len(),
        open_failure_samples: failures.iter().take(3).cloned().collect(),
        open_seconds,
        rate,
        warmup_writes,
        measured_writes,
        write_errors: write_errors.len() as u64,
        write_error_samples: write_errors.into_iter().take(3).collect(),
        achieved_write_rate: writer.achieved_rate(),
        late_writes: writer.late,
        max_inflight: writer.max_inflight,
        expected_deliveries: expected,
        received_deliveries: received,
        missing: expected.saturating_sub(received),
        topic_errors: shared.topic_errors.load(Ordering::Relaxed),
        topic_error_samples: topic_samples,
        disconnects: shared.disconnects.load(Ordering::Relaxed),
        delivered_before_201: before_201,
        latency_from_send: summarize(&mut from_send),
        latency_from_201: summarize(&mut from_201),
        write_rtt: summarize(&mut rtt),
        window_seconds: window_end_ns.saturating_sub(window_start_ns) as f64 / 1e9,
        server_cpu_seconds: cpu(cpu_end.server, writer.cpu_start.server),
        bench_cpu_seconds: cpu(cpu_end.process, writer.cpu_start.process),
        client_threads_cpu_seconds: cpu(cpu_end.client_threads, writer.cpu_start.client_threads),
        others_cpu_seconds: cpu(cpu_end.machine, writer.cpu_start.machine).map(|machine| {
            machine
                - cpu(cpu_end.process, writer.cpu_start.process).unwrap_or(0.0)
                - cpu(cpu_end.server, writer.cpu_start.server).unwrap_or(0.0)
        }),
    };
    eprintln!(
        "{label}: p99 {:.2} ms, {}/{} deliveries",
        report.latency_from_send.p99_ms, report.received_deliveries, report.expected_deliveries
    );
    Ok(report)
}
