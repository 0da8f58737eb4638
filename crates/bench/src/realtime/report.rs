//! What the realtime commands report: per target and per run, the ratios between the targets,
//! the printed form, and the loss check that fails `realtime-latency`.

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::driver::LatencySummary;
use crate::report::StoreSetup;

/// Results of one target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    pub target: String,
    pub subs: usize,
    pub opened: usize,
    /// Socket opens that failed once and succeeded on the retry.
    pub open_retries: usize,
    /// Why the first attempts failed (a few).
    pub open_retry_samples: Vec<String>,
    /// Sockets that could not be opened in two attempts (not counted in `expected_deliveries`).
    pub open_failures: usize,
    pub open_failure_samples: Vec<String>,
    pub open_seconds: f64,
    pub rate: f64,
    pub warmup_writes: u64,
    pub measured_writes: u64,
    pub write_errors: u64,
    pub write_error_samples: Vec<String>,
    /// Writes per second from the first to the last send (warm-up included).
    pub achieved_write_rate: f64,
    /// Writes sent more than one period after their tick was due.
    pub late_writes: u64,
    pub max_inflight: usize,
    pub expected_deliveries: u64,
    pub received_deliveries: u64,
    pub missing: u64,
    /// Data frames on the topic that were not an array of values (error envelopes).
    pub topic_errors: u64,
    pub topic_error_samples: Vec<String>,
    /// Sockets closed by the server before the end.
    pub disconnects: u64,
    /// Deliveries that arrived before the write's 201 (counted as 0 in `latency_from_201`).
    pub delivered_before_201: u64,
    /// Writer's send → client's receipt.
    pub latency_from_send: LatencySummary,
    /// Writer's 201 → client's receipt.
    pub latency_from_201: LatencySummary,
    /// Writer's send → 201, measured writes only.
    pub write_rtt: LatencySummary,
    /// First measured send → last expected delivery in (or the drain deadline).
    pub window_seconds: f64,
    /// utime+stime of the server process over the window.
    pub server_cpu_seconds: Option<f64>,
    /// getrusage(RUSAGE_SELF) of this process over the window (clients, writer, everything).
    pub bench_cpu_seconds: Option<f64>,
    /// The client runtime's threads alone over the window.
    pub client_threads_cpu_seconds: Option<f64>,
    /// The machine's busy time over the window less the server's and this process's: other
    /// processes (the machine is shared) and interrupts charged to no process.
    pub others_cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    /// Thingline's store, when it was measured.
    pub store: Option<StoreSetup>,
    pub targets: Vec<TargetReport>,
    /// thingline p99 / reference p99 (send→receipt), when both were measured.
    pub p99_thingline_over_reference: Option<f64>,
    /// thingline p99 / floor p99, when both were measured.
    pub p99_thingline_over_floor: Option<f64>,
    /// reference p99 / floor p99, when both were measured.
    pub p99_reference_over_floor: Option<f64>,
}

/// Idle memory of one target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryTargetReport {
    pub target: String,
    pub conns: usize,
    pub opened: usize,
    pub open_retries: usize,
    pub open_failures: usize,
    pub open_failure_samples: Vec<String>,
    pub open_seconds: f64,
    /// Server VmRSS once settled after setup, before any socket was opened.
    pub rss_before_kb: u64,
    /// Server VmRSS once settled with every socket open, authenticated and subscribed.
    pub rss_after_kb: u64,
    /// (after − before) / opened.
    pub kb_per_connection: f64,
    /// Whether VmRSS stopped moving (within 256 KiB over 2 s) before the settle timeout, before
    /// and after opening.
    pub settled_before: bool,
    pub settled_after: bool,
    /// Sockets closed by the server while idle.
    pub disconnects: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    /// Thingline's store, when it was measured.
    pub store: Option<StoreSetup>,
    pub targets: Vec<MemoryTargetReport>,
    pub kb_thingline_over_reference: Option<f64>,
    pub kb_thingline_over_floor: Option<f64>,
    pub kb_reference_over_floor: Option<f64>,
}

impl RealtimeReport {
    pub fn new(params: Value, store: Option<StoreSetup>, targets: Vec<TargetReport>) -> Self {
        let p99: Vec<(&str, f64)> = targets.iter().map(|t| (t.target.as_str(), t.latency_from_send.p99_ms)).collect();
        let [over_reference, over_floor, reference_over_floor] = ratios(&p99);
        Self {
            scenario: "realtime-latency".into(),
            params,
            generated_at: crate::report::now(),
            cpus: cpus(),
            store,
            p99_thingline_over_reference: over_reference,
            p99_thingline_over_floor: over_floor,
            p99_reference_over_floor: reference_over_floor,
            targets,
        }
    }
}

impl MemoryReport {
    pub fn new(params: Value, store: Option<StoreSetup>, targets: Vec<MemoryTargetReport>) -> Self {
        let kb: Vec<(&str, f64)> = targets.iter().map(|t| (t.target.as_str(), t.kb_per_connection)).collect();
        let [over_reference, over_floor, reference_over_floor] = ratios(&kb);
        Self {
            scenario: "realtime-memory".into(),
            params,
            generated_at: crate::report::now(),
            cpus: cpus(),
            store,
            kb_thingline_over_reference: over_reference,
            kb_thingline_over_floor: over_floor,
            kb_reference_over_floor: reference_over_floor,
            targets,
        }
    }
}

pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

/// thingline/reference, thingline/floor and reference/floor of a figure.
fn ratios(figures: &[(&str, f64)]) -> [Option<f64>; 3] {
    [
        ratio(figures, "thingline", "reference"),
        ratio(figures, "thingline", "floor"),
        ratio(figures, "reference", "floor"),
    ]
}

/// `a / b` of two targets' figures (label, figure), when both were measured.
fn ratio(figures: &[(&str, f64)], a: &str, b: &str) -> Option<f64> {
    let find = |label: &str| figures.iter().find(|(l, _)| *l == label).map(|(_, v)| *v);
    match (find(a), find(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    }
}

pub fn print_report(report: &RealtimeReport) {
    println!();
    print_store(report.store.as_ref());
    for t in &report.targets {
        print_target(t, report.cpus);
    }
    let ratios = [
        ("thingline/reference", report.p99_thingline_over_reference),
        ("thingline/floor", report.p99_thingline_over_floor),
        ("reference/floor", report.p99_reference_over_floor),
    ];
    for (name, ratio) in ratios {
        if let Some(ratio) = ratio {
            println!("{name} send→receipt p99: {ratio:.2}");
        }
    }
}

/// The lines of one target (`cpus`: the machine's cores).
pub fn print_target(t: &TargetReport, cpus: usize) {
    let opt = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:.2}"));
    let s = &t.latency_from_send;
    println!(
        "{:<10} {} subscribers x {} writes/s, {} measured writes (+{} warm-up), {} cores",
        t.target, t.opened, t.rate, t.measured_writes, t.warmup_writes, cpus
    );
    println!(
        "  sockets      {}/{} opened in {:.1} s, {} retried after a failed first attempt, {} failed twice",
        t.opened, t.subs, t.open_seconds, t.open_retries, t.open_failures
    );
    for sample in &t.open_retry_samples {
        println!("    first attempt: {sample}");
    }
    for sample in &t.open_failure_samples {
        println!("    failed: {sample}");
    }
    println!(
        "  deliveries   expected {}  received {}  missing {}  (error envelopes {}, disconnects {})",
        t.expected_deliveries, t.received_deliveries, t.missing, t.topic_errors, t.disconnects
    );
    println!(
        "  send→receipt p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms",
        s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
    );
    println!(
        "  201→receipt  p50 {:.2}  p99 {:.2} ms  ({} deliveries before their 201)",
        t.latency_from_201.p50_ms, t.latency_from_201.p99_ms, t.delivered_before_201
    );
    println!(
        "  write RTT    p50 {:.2}  p99 {:.2} ms  ({} errors, {:.1} writes/s achieved, {} late, max {} in flight)",
        t.write_rtt.p50_ms, t.write_rtt.p99_ms, t.write_errors, t.achieved_write_rate, t.late_writes, t.max_inflight
    );
    println!(
        "  CPU          server {} s, bench process {} s (client threads {} s), others+irq {} s over {:.2} s",
        opt(t.server_cpu_seconds),
        opt(t.bench_cpu_seconds),
        opt(t.client_threads_cpu_seconds),
        opt(t.others_cpu_seconds),
        t.window_seconds
    );
    for sample in t.write_error_samples.iter().chain(&t.topic_error_samples) {
        println!("  ! {sample}");
    }
}

pub fn print_memory_report(report: &MemoryReport) {
    println!();
    print_store(report.store.as_ref());
    for t in &report.targets {
        let flag = |settled: bool| if settled { "" } else { " (not settled)" };
        println!(
            "{:<10} {:.1} KB per idle connection ({} opened of {}, VmRSS {} KB{} → {} KB{}, {} disconnects)",
            t.target,
            t.kb_per_connection,
            t.opened,
            t.conns,
            t.rss_before_kb,
            flag(t.settled_before),
            t.rss_after_kb,
            flag(t.settled_after),
            t.disconnects
        );
        for sample in &t.open_failure_samples {
            println!("    failed: {sample}");
        }
    }
    let ratios = [
        ("thingline/reference", report.kb_thingline_over_reference),
        ("thingline/floor", report.kb_thingline_over_floor),
        ("reference/floor", report.kb_reference_over_floor),
    ];
    for (name, ratio) in ratios {
        if let Some(ratio) = ratio {
            println!("{name} KB per connection: {ratio:.2}");
        }
    }
}

/// Fail when a target lost more than 0.1 % of its deliveries or writes.
/// The store line, when Thingline was measured (the bench always spawns it here).
fn print_store(store: Option<&StoreSetup>) {
    if store.is_some() {
        println!("{}", crate::report::store_line(store));
    }
}

pub fn check_loss(targets: &[TargetReport]) -> Result<()> {
    let mut bad = Vec::new();
    for t in targets {
        let missing = t.missing as f64 / t.expected_deliveries.max(1) as f64;
        let failed = t.write_errors as f64 / (t.warmup_writes + t.measured_writes).max(1) as f64;
        if missing > crate::report::MAX_ERROR_RATE
            || failed > crate::report::MAX_ERROR_RATE
            || t.received_deliveries == 0
        {
            bad.push(format!("{}: {} missing deliveries, {} failed writes", t.target, t.missing, t.write_errors));
        }
    }
    if bad.is_empty() { Ok(()) } else { bail!("more than 0.1 % lost: {}", bad.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_need_both_targets() {
        let figures = [("thingline", 20.0), ("floor", 5.0)];
        assert_eq!(ratio(&figures, "thingline", "floor"), Some(4.0));
        assert_eq!(ratio(&figures, "thingline", "reference"), None);
        assert_eq!(ratio(&[("thingline", 1.0), ("floor", 0.0)], "thingline", "floor"), None);
    }
}
