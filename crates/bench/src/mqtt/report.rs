//! What the MQTT commands report: per target and round, the thingline/mosquitto ratios of the
//! medians, the printed form, and the checks that fail a run (lost or unacknowledged messages,
//! clients the server dropped).

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::Value;

use super::conn::OpenTally;
use super::seconds::Seconds;
use crate::driver::{LatencySummary, median};
use crate::realtime::cpu::CpuSnapshot;
use crate::report::{MAX_ERROR_RATE, StoreSetup, store_line};

/// How opening a measurement's connections went.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Opening {
    pub connections: usize,
    pub opened: usize,
    /// Opened on the retry after a failed first attempt.
    pub retries: usize,
    /// Failed twice.
    pub failures: usize,
    pub samples: Vec<String>,
    pub seconds: f64,
}

impl Opening {
    pub fn new(connections: usize, tally: &OpenTally) -> Self {
        Self {
            connections,
            opened: tally.opened,
            retries: tally.retries.len(),
            failures: tally.failures.len(),
            samples: tally.failures.iter().chain(&tally.retries).take(3).cloned().collect(),
            seconds: tally.seconds,
        }
    }

    pub(crate) fn line(&self, what: &str) -> String {
        format!(
            "{what} {}/{} open in {:.1} s ({} retried, {} failed)",
            self.opened, self.connections, self.seconds, self.retries, self.failures
        )
    }
}

/// CPU seconds over a measured window.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    /// utime+stime of the broker (`None`: pid unknown).
    pub server_seconds: Option<f64>,
    /// This whole process (clients and all).
    pub bench_seconds: Option<f64>,
    /// The MQTT client threads alone.
    pub client_threads_seconds: Option<f64>,
    /// Every core of the machine, interrupts included. Less the broker and this process: what
    /// other processes used (the machine is shared: a sign of a noisy measurement) plus the
    /// interrupts charged to no process (loopback TCP, a few seconds per 10 s here).
    pub machine_seconds: Option<f64>,
    /// Of the machine's, the time in hard and soft interrupts (loopback UDP and TCP are
    /// received there). Without IRQ time accounting it is charged to the process that was
    /// running as well, so it overlaps the processes' figures rather than adding to them.
    pub irq_seconds: Option<f64>,
}

impl Cpu {
    pub fn new(used: CpuSnapshot) -> Self {
        Self {
            server_seconds: used.server,
            bench_seconds: used.process,
            client_threads_seconds: used.client_threads,
            machine_seconds: used.machine,
            irq_seconds: used.irq,
        }
    }

    /// The machine's busy time less the broker's and this process's.
    pub fn others(&self) -> Option<f64> {
        let (machine, bench) = (self.machine_seconds?, self.bench_seconds?);
        Some(machine - bench - self.server_seconds.unwrap_or(0.0))
    }

    /// CPU microseconds per message of the broker and of the client threads.
    fn line(&self, messages: u64) -> String {
        self.line_named("broker", messages)
    }

    /// [`Cpu::line`] with the server called `server`.
    pub(crate) fn line_named(&self, server: &str, messages: u64) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:.2}"));
        let per = |v: Option<f64>| match v {
            Some(v) if messages > 0 => format!("{:.1}", v * 1e6 / messages as f64),
            _ => "?".to_string(),
        };
        let others = self.others();
        format!(
            "CPU          {server} {} s ({} µs/msg), client threads {} s ({} µs/msg), bench process {} s, others+irq {} s (the machine's interrupts {} s, most inside the processes' figures)",
            opt(self.server_seconds),
            per(self.server_seconds),
            opt(self.client_threads_seconds),
            per(self.client_threads_seconds),
            opt(self.bench_seconds),
            opt(others),
            opt(self.irq_seconds)
        )
    }
}

/// `mqtt-publish`: one target, one `--inflight`, one round.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishMeasurement {
    pub target: String,
    pub round: usize,
    pub inflight: usize,
    pub clients: Opening,
    pub window_seconds: f64,
    /// PUBACKs that arrived in the window.
    pub acked_in_window: u64,
    pub acks_per_s: f64,
    /// PUBACKs in each whole second of the window, others' CPU in each, the quiet-seconds rate.
    pub seconds: Seconds,
    pub sent: u64,
    pub acked: u64,
    /// PUBLISHes never acknowledged (within 10 s after the window).
    pub unacked: u64,
    pub unexpected_acks: u64,
    /// Clients that stopped early (connection failed or closed by the server).
    pub client_errors: u64,
    pub client_error_samples: Vec<String>,
    /// publish→PUBACK of the PUBACKs in the window.
    pub latency: LatencySummary,
    pub cpu: Cpu,
}

/// thingline / mosquitto of one `--inflight`, on the medians over rounds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ratios {
    pub inflight: usize,
    pub throughput: f64,
    /// Of the quiet-seconds rates (medians over the rounds that have one).
    pub throughput_quiet: Option<f64>,
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    pub store: Option<StoreSetup>,
    pub measurements: Vec<PublishMeasurement>,
    pub thingline_over_mosquitto: Vec<Ratios>,
}

impl PublishReport {
    pub fn new(params: Value, store: Option<StoreSetup>, measurements: Vec<PublishMeasurement>) -> Self {
        let mut inflights: Vec<usize> = measurements.iter().map(|m| m.inflight).collect();
        inflights.dedup();
        let ratios = inflights
            .into_iter()
            .filter_map(|inflight| {
                let of = |target: &str| -> Vec<(f64, f64, f64)> {
                    measurements
                        .iter()
                        .filter(|m| m.inflight == inflight && m.target == target)
                        .map(|m| (m.acks_per_s, m.latency.p50_ms, m.latency.p99_ms))
                        .collect()
                };
                let quiet = |target: &str| -> Vec<f64> {
                    measurements
                        .iter()
                        .filter(|m| m.inflight == inflight && m.target == target)
                        .filter_map(|m| m.seconds.quiet_rate)
                        .collect()
                };
                let throughput_quiet = quiet_ratio(&quiet("thingline"), &quiet("mosquitto"));
                compare(&of("thingline"), &of("mosquitto")).map(|[throughput, p50, p99]| Ratios {
                    inflight,
                    throughput,
                    throughput_quiet,
                    p50,
                    p99,
                })
            })
            .collect();
        Self {
            scenario: "mqtt-publish".into(),
            params,
            generated_at: crate::report::now(),
            cpus: cpus(),
            store,
            measurements,
            thingline_over_mosquitto: ratios,
        }
    }
}

/// `mqtt-relay`: one target, one round.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayMeasurement {
    pub target: String,
    pub round: usize,
    pub pairs: usize,
    /// `qos1 inflight N` or `qos0 R/s per publisher`.
    pub mode: String,
    pub subscribers: Opening,
    pub publishers: Opening,
    pub window_seconds: f64,
    /// Messages published in the window (send time).
    pub published: u64,
    /// Publisher side per second: PUBACKs in the window (QoS 1), or messages sent (QoS 0).
    pub publish_per_s: f64,
    /// Value items that reached the subscribers in the window (receipt time).
    pub delivered_in_window: u64,
    pub delivered_per_s: f64,
    /// Deliveries in each whole second, others' CPU in each, the quiet-seconds rate.
    pub seconds: Seconds,
    /// Messages sent in the window that every subscriber must get: acknowledged ones (QoS 1),
    /// all (QoS 0).
    pub expected: u64,
    /// Of those, the distinct ones the subscribers got (per subscriber, by value).
    pub received: u64,
    pub missing: u64,
    /// Pairs whose subscriber missed at least one.
    pub missing_pairs: u64,
    /// Where the missing ones were, for a few pairs.
    pub missing_samples: Vec<String>,
    /// Values received that were sent in the window but not expected (QoS 1: never acknowledged).
    pub unexpected: u64,
    /// Value items received more than once.
    pub duplicates: u64,
    /// PUBLISH packets the subscribers got (Thingline may put several items in one).
    pub packets: u64,
    pub topic_errors: u64,
    pub topic_error_samples: Vec<String>,
    /// QoS 1 PUBLISHes never acknowledged.
    pub unacked: u64,
    pub client_errors: u64,
    pub client_error_samples: Vec<String>,
    /// publish (send) → subscriber's receipt, of the messages sent in the window.
    pub delivery_latency: LatencySummary,
    /// publish → PUBACK (QoS 1), of the PUBACKs in the window.
    pub puback_latency: LatencySummary,
    pub cpu: Cpu,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    pub store: Option<StoreSetup>,
    pub measurements: Vec<RelayMeasurement>,
    /// Delivered per second, delivery p50 and p99, thingline / mosquitto (medians).
    pub thingline_over_mosquitto: Option<Ratios>,
}

impl RelayReport {
    pub fn new(params: Value, store: Option<StoreSetup>, measurements: Vec<RelayMeasurement>) -> Self {
        let of = |target: &str| -> Vec<(f64, f64, f64)> {
            measurements
                .iter()
                .filter(|m| m.target == target)
                .map(|m| (m.delivered_per_s, m.delivery_latency.p50_ms, m.delivery_latency.p99_ms))
                .collect()
        };
        let quiet = |target: &str| -> Vec<f64> {
            measurements.iter().filter(|m| m.target == target).filter_map(|m| m.seconds.quiet_rate).collect()
        };
        let throughput_quiet = quiet_ratio(&quiet("thingline"), &quiet("mosquitto"));
        let ratios = compare(&of("thingline"), &of("mosquitto")).map(|[throughput, p50, p99]| Ratios {
            inflight: 0,
            throughput,
            throughput_quiet,
            p50,
            p99,
        });
        Self {
            scenario: "mqtt-relay".into(),
            params,
            generated_at: crate::report::now(),
            cpus: cpus(),
            store,
            measurements,
            thingline_over_mosquitto: ratios,
        }
    }
}

/// `mqtt-memory`: one target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryMeasurement {
    pub target: String,
    pub connections: Opening,
    pub things: usize,
    pub subscribed: usize,
    pub subscribe_failures: usize,
    pub subscribe_failure_samples: Vec<String>,
    /// The broker's peak VmRSS (VmHWM) before opening: above `rss_before_kb`, the broker may
    /// reuse memory it kept from earlier connections, and the VmRSS figures are lower bounds.
    pub rss_peak_before_kb: Option<u64>,
    /// Broker VmRSS once settled: before opening, with every connection open and idle, and
    /// with every connection subscribed.
    pub rss_before_kb: u64,
    pub rss_connected_kb: u64,
    pub rss_subscribed_kb: u64,
    pub settled: [bool; 3],
    /// (connected − before) / connections still open.
    pub kb_per_connection: f64,
    /// (subscribed − before) / connections still open.
    pub kb_per_subscribed_connection: f64,
    /// Mosquitto's own heap count (`$SYS/broker/heap/current`) at the same three points.
    pub heap_kb: [Option<u64>; 3],
    pub heap_kb_per_connection: Option<f64>,
    pub heap_kb_per_subscribed_connection: Option<f64>,
    /// Connections the broker closed while idle.
    pub disconnects: u64,
    pub disconnect_samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    pub store: Option<StoreSetup>,
    pub measurements: Vec<MemoryMeasurement>,
    pub kb_thingline_over_mosquitto: Option<f64>,
    pub kb_subscribed_thingline_over_mosquitto: Option<f64>,
    /// Thingline's VmRSS figures over Mosquitto's own heap count (which leaves out the
    /// allocator's overhead: in Mosquitto's favour).
    pub kb_thingline_over_mosquitto_heap: Option<f64>,
    pub kb_subscribed_thingline_over_mosquitto_heap: Option<f64>,
}

impl MemoryReport {
    pub fn new(params: Value, store: Option<StoreSetup>, measurements: Vec<MemoryMeasurement>) -> Self {
        let find = |t: &str| measurements.iter().find(|m| m.target == t);
        let ratio_of = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let ratio = |f: fn(&MemoryMeasurement) -> f64| ratio_of(find("thingline").map(f), find("mosquitto").map(f));
        let heap_ratio = |f: fn(&MemoryMeasurement) -> f64, heap: fn(&MemoryMeasurement) -> Option<f64>| {
            ratio_of(find("thingline").map(f), find("mosquitto").and_then(heap))
        };
        Self {
            scenario: "mqtt-memory".into(),
            params,
            generated_at: crate::report::now(),
            cpus: cpus(),
            store,
            kb_thingline_over_mosquitto: ratio(|m| m.kb_per_connection),
            kb_subscribed_thingline_over_mosquitto: ratio(|m| m.kb_per_subscribed_connection),
            kb_thingline_over_mosquitto_heap: heap_ratio(|m| m.kb_per_connection, |m| m.heap_kb_per_connection),
            kb_subscribed_thingline_over_mosquitto_heap: heap_ratio(
                |m| m.kb_per_subscribed_connection,
                |m| m.heap_kb_per_subscribed_connection,
            ),
            measurements,
        }
    }
}

pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

/// thingline / mosquitto of (throughput, p50, p99), each on the medians over rounds.
fn compare(thingline: &[(f64, f64, f64)], mosquitto: &[(f64, f64, f64)]) -> Option<[f64; 3]> {
    if thingline.is_empty() || mosquitto.is_empty() {
        return None;
    }
    let med = |of: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| median(&of.iter().map(f).collect::<Vec<_>>());
    let ratio = |f: fn(&(f64, f64, f64)) -> f64| {
        let b = med(mosquitto, f);
        if b > 0.0 { med(thingline, f) / b } else { f64::NAN }
    };
    Some([ratio(|v| v.0), ratio(|v| v.1), ratio(|v| v.2)])
}

/// thingline / mosquitto of the medians of quiet-seconds rates, when both have some.
fn quiet_ratio(thingline: &[f64], mosquitto: &[f64]) -> Option<f64> {
    if thingline.is_empty() || mosquitto.is_empty() {
        return None;
    }
    let b = median(mosquitto);
    (b > 0.0).then(|| median(thingline) / b)
}

fn print_store(store: Option<&StoreSetup>) {
    println!("{}", store_line(store));
}

pub(crate) fn latency_line(name: &str, l: &LatencySummary) -> String {
    format!(
        "{name} p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms ({} samples)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

pub fn print_publish(report: &PublishReport) {
    println!();
    println!("scenario mqtt-publish  {}", report.params);
    print_store(report.store.as_ref());
    for m in &report.measurements {
        let (lo, hi) = (m.seconds.counts.iter().min().copied(), m.seconds.counts.iter().max().copied());
        println!(
            "{:<10} round {} inflight {}: {:.0} PUBACKs/s ({} in {:.2} s; per second {}–{}), {} cores",
            m.target,
            m.round,
            m.inflight,
            m.acks_per_s,
            m.acked_in_window,
            m.window_seconds,
            lo.unwrap_or(0),
            hi.unwrap_or(0),
            report.cpus
        );
        println!("  {}", m.clients.line("clients"));
        for line in m.seconds.lines() {
            println!("  {line}");
        }
        println!("  {}", latency_line("publish→PUBACK", &m.latency));
        println!(
            "  messages     sent {}  acked {}  unacked {}  unexpected PUBACKs {}  clients dropped {}",
            m.sent, m.acked, m.unacked, m.unexpected_acks, m.client_errors
        );
        println!("  {}", m.cpu.line(m.acked_in_window));
        for sample in m.clients.samples.iter().chain(&m.client_error_samples) {
            println!("  ! {sample}");
        }
    }
    for r in &report.thingline_over_mosquitto {
        println!(
            "thingline/mosquitto inflight {} (medians): PUBACKs/s {:.3} (quiet seconds {})  p50 {:.2}x  p99 {:.2}x",
            r.inflight,
            r.throughput,
            r.throughput_quiet.map_or_else(|| "?".to_string(), |q| format!("{q:.3}")),
            r.p50,
            r.p99
        );
    }
}

pub fn print_relay(report: &RelayReport) {
    println!();
    println!("scenario mqtt-relay  {}", report.params);
    print_store(report.store.as_ref());
    for m in &report.measurements {
        println!(
            "{:<10} round {} {} pairs, {}: {:.0} delivered/s ({} in {:.2} s), publishers {:.0}/s, {} cores",
            m.target,
            m.round,
            m.pairs,
            m.mode,
            m.delivered_per_s,
            m.delivered_in_window,
            m.window_seconds,
            m.publish_per_s,
            report.cpus
        );
        println!("  {}; {}", m.subscribers.line("subscribers"), m.publishers.line("publishers"));
        for line in m.seconds.lines() {
            println!("  {line}");
        }
        println!(
            "  messages     published {}  expected {}  received {}  MISSING {} (in {} pairs)  duplicates {}  unexpected {}  ({} PUBLISH packets, {} error payloads, {} unacked, {} clients dropped)",
            m.published,
            m.expected,
            m.received,
            m.missing,
            m.missing_pairs,
            m.duplicates,
            m.unexpected,
            m.packets,
            m.topic_errors,
            m.unacked,
            m.client_errors
        );
        println!("  {}", latency_line("send→receipt  ", &m.delivery_latency));
        if m.puback_latency.count > 0 {
            println!("  {}", latency_line("publish→PUBACK", &m.puback_latency));
        }
        println!("  {}", m.cpu.line(m.delivered_in_window));
        for sample in m
            .subscribers
            .samples
            .iter()
            .chain(&m.publishers.samples)
            .chain(&m.missing_samples)
            .chain(&m.topic_error_samples)
            .chain(&m.client_error_samples)
        {
            println!("  ! {sample}");
        }
    }
    if let Some(r) = &report.thingline_over_mosquitto {
        println!(
            "thingline/mosquitto (medians): delivered/s {:.3} (quiet seconds {})  send→receipt p50 {:.2}x  p99 {:.2}x",
            r.throughput,
            r.throughput_quiet.map_or_else(|| "?".to_string(), |q| format!("{q:.3}")),
            r.p50,
            r.p99
        );
    }
}

pub fn print_memory(report: &MemoryReport) {
    println!();
    println!("scenario mqtt-memory  {}", report.params);
    print_store(report.store.as_ref());
    let flag = |settled: bool| if settled { "" } else { " (not settled)" };
    for m in &report.measurements {
        println!(
            "{:<10} {:.1} KB per idle connection, {:.1} KB per subscribed one ({}; {} subscribed over {} things, {} failed; VmRSS {} KB{} → {} KB{} → {} KB{}; {} disconnects)",
            m.target,
            m.kb_per_connection,
            m.kb_per_subscribed_connection,
            m.connections.line("connections"),
            m.subscribed,
            m.things,
            m.subscribe_failures,
            m.rss_before_kb,
            flag(m.settled[0]),
            m.rss_connected_kb,
            flag(m.settled[1]),
            m.rss_subscribed_kb,
            flag(m.settled[2]),
            m.disconnects
        );
        let reused = m.heap_kb_per_connection.is_some_and(|heap| heap > m.kb_per_connection * 1.2 + 0.05);
        if reused {
            println!(
                "  note: its VmRSS figures are lower bounds: it reuses memory it kept from earlier connections (its heap count is higher)"
            );
        } else if let Some(peak) = m.rss_peak_before_kb.filter(|peak| *peak > m.rss_before_kb + 1024) {
            println!(
                "  note: peak VmRSS before opening {peak} KB (setup): memory the allocator kept from then may be reused, so these may be lower bounds"
            );
        }
        if let (Some(idle), Some(subscribed)) = (m.heap_kb_per_connection, m.heap_kb_per_subscribed_connection) {
            let kb = |h: Option<u64>| h.map_or_else(|| "?".to_string(), |h| h.to_string());
            println!(
                "  its own heap count ($SYS/broker/heap/current): {idle:.2} KB per idle connection, {subscribed:.2} KB per subscribed one ({} → {} → {} KB)",
                kb(m.heap_kb[0]),
                kb(m.heap_kb[1]),
                kb(m.heap_kb[2])
            );
        }
        for sample in m.connections.samples.iter().chain(&m.subscribe_failure_samples).chain(&m.disconnect_samples) {
            println!("  ! {sample}");
        }
    }
    if let (Some(idle), Some(subscribed)) =
        (report.kb_thingline_over_mosquitto, report.kb_subscribed_thingline_over_mosquitto)
    {
        println!("thingline/mosquitto KB per connection: idle {idle:.2}, subscribed {subscribed:.2}");
    }
}

/// Fail when a publish measurement lost more than 0.1 % of its PUBLISHes (unacknowledged), had a
/// client dropped, or acknowledged nothing.
pub fn check_publish(measurements: &[PublishMeasurement]) -> Result<()> {
    let bad: Vec<String> = measurements
        .iter()
        .filter(|m| m.unacked as f64 > m.sent as f64 * MAX_ERROR_RATE || m.client_errors > 0 || m.acked_in_window == 0)
        .map(|m| {
            format!(
                "{} round {} inflight {}: {} unacked of {}, {} clients dropped, {} acked in the window",
                m.target, m.round, m.inflight, m.unacked, m.sent, m.client_errors, m.acked_in_window
            )
        })
        .collect();
    if bad.is_empty() { Ok(()) } else { bail!("mqtt-publish: {}", bad.join("; ")) }
}

/// Fail when a relay measurement missed more than 0.1 % of its expected deliveries or
/// delivered nothing.
pub fn check_relay(measurements: &[RelayMeasurement]) -> Result<()> {
    let bad: Vec<String> = measurements
        .iter()
        .filter(|m| m.missing as f64 > m.expected as f64 * MAX_ERROR_RATE || m.received == 0)
        .map(|m| format!("{} round {}: {} of {} expected deliveries missing", m.target, m.round, m.missing, m.expected))
        .collect();
    if bad.is_empty() { Ok(()) } else { bail!("mqtt-relay: more than 0.1 % lost: {}", bad.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_use_medians_and_need_both_targets() {
        let thingline = [(100.0, 2.0, 4.0), (300.0, 2.0, 8.0), (200.0, 2.0, 6.0)];
        let mosquitto = [(400.0, 1.0, 2.0)];
        let [throughput, p50, p99] = compare(&thingline, &mosquitto).expect("both");
        assert!((throughput - 0.5).abs() < 1e-9);
        assert!((p50 - 2.0).abs() < 1e-9);
        assert!((p99 - 3.0).abs() < 1e-9);
        assert!(compare(&thingline, &[]).is_none());
    }
}
