//! What the CoAP commands report: per target and round (`coap-write`) or per round
//! (`coap-observe`), the ratios on the medians, the printed form, and the checks that fail a run.

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::Value;

use super::udpstat::UdpCounters;
use super::verify::Verification;
use crate::driver::{LatencySummary, median};
use crate::mqtt::report::{Cpu, Opening, cpus, latency_line};
use crate::mqtt::seconds::Seconds;
use crate::realtime::report::{TargetReport, print_target};
use crate::report::{MAX_ERROR_RATE, StoreSetup, store_line};

/// `coap-write`: one target, one round.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteMeasurement {
    pub target: String,
    pub round: usize,
    pub clients: Opening,
    pub window_seconds: f64,
    /// Answers (2.01, or echoes) that arrived in the window.
    pub answered_in_window: u64,
    pub answers_per_s: f64,
    /// Answers in each whole second of the window, others' CPU in each, the quiet-seconds rate.
    pub seconds: Seconds,
    /// Writes sent (first transmissions), warm-up and drain included.
    pub sent: u64,
    pub answered: u64,
    /// Answered with another code than 2.01 (or a Reset).
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Never answered (after 4 retransmissions, or by the end of the drain).
    pub unanswered: u64,
    pub retransmissions: u64,
    /// Answered with an empty ACK first and the response separately.
    pub separate: u64,
    /// Datagrams for an earlier exchange (a second answer to one write, a late one).
    pub late: u64,
    /// Datagrams that were not CoAP or matched nothing.
    pub unexpected: u64,
    /// New sockets taken because message ids would have repeated.
    pub socket_renewals: u64,
    /// Clients that stopped early (a socket error), or never finished.
    pub client_errors: u64,
    pub client_error_samples: Vec<String>,
    /// Send → answer of the answers in the window.
    pub latency: LatencySummary,
    pub cpu: Cpu,
    /// The kernel's UDP drops over the measurement (sockets opened to clients joined).
    pub udp: UdpCounters,
    /// Of those, at the server's (or the echo's) socket: requests it never saw.
    pub server_socket_drops: Option<u64>,
}

/// Thingline's CoAP over the echo, on the medians over rounds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteRatios {
    pub throughput: f64,
    /// Of the quiet-seconds rates (medians over the rounds that have one).
    pub throughput_quiet: Option<f64>,
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    pub store: Option<StoreSetup>,
    pub measurements: Vec<WriteMeasurement>,
    pub thingline_over_echo: Option<WriteRatios>,
    /// The values read back at the end (when Thingline was measured).
    pub verification: Option<Verification>,
}

impl WriteReport {
    pub fn new(
        params: Value,
        store: Option<StoreSetup>,
        measurements: Vec<WriteMeasurement>,
        verification: Option<Verification>,
    ) -> Self {
        let of = |target: &str, f: fn(&WriteMeasurement) -> Option<f64>| -> Vec<f64> {
            measurements.iter().filter(|m| m.target == target).filter_map(f).collect()
        };
        let ratio = |f: fn(&WriteMeasurement) -> Option<f64>| {
            let (a, b) = (of("thingline", f), of("echo", f));
            (!a.is_empty() && !b.is_empty() && median(&b) > 0.0).then(|| median(&a) / median(&b))
        };
        let ratios = ratio(|m| Some(m.answers_per_s)).map(|throughput| WriteRatios {
            throughput,
            throughput_quiet: ratio(|m| m.seconds.quiet_rate),
            p50: ratio(|m| Some(m.latency.p50_ms)).unwrap_or(f64::NAN),
            p99: ratio(|m| Some(m.latency.p99_ms)).unwrap_or(f64::NAN),
        });
        Self {
            scenario: "coap-write".into(),
            params,
            generated_at: crate::report::now(),
            cpus: cpus(),
            store,
            measurements,
            thingline_over_echo: ratios,
            verification,
        }
    }
}

pub fn print_write(report: &WriteReport) {
    println!();
    println!("scenario coap-write  {}", report.params);
    println!("{}", store_line(report.store.as_ref()));
    for m in &report.measurements {
        let (lo, hi) = (m.seconds.counts.iter().min().copied(), m.seconds.counts.iter().max().copied());
        let what = if m.target == "echo" { "echoes" } else { "2.01s" };
        println!(
            "{:<10} round {}: {:.0} {what}/s ({} in {:.2} s; per second {}–{}), {} cores",
            m.target,
            m.round,
            m.answers_per_s,
            m.answered_in_window,
            m.window_seconds,
            lo.unwrap_or(0),
            hi.unwrap_or(0),
            report.cpus
        );
        println!("  {}", m.clients.line("sockets"));
        for line in m.seconds.lines() {
            println!("  {line}");
        }
        println!("  {}", latency_line("send→answer ", &m.latency));
        println!(
            "  writes       sent {}  answered {}  errors {}  unanswered {}  RETRANSMISSIONS {}  separate {}  late {}  unexpected {}  socket renewals {}  clients dropped {}",
            m.sent,
            m.answered,
            m.errors,
            m.unanswered,
            m.retransmissions,
            m.separate,
            m.late,
            m.unexpected,
            m.socket_renewals,
            m.client_errors
        );
        let server = if m.target == "echo" { "echo" } else { "server" };
        println!("  {}", m.cpu.line_named(server, m.answered_in_window));
        println!("  {}; at the {server}'s socket {}", m.udp.line(), opt_u64(m.server_socket_drops));
        for sample in m.clients.samples.iter().chain(&m.error_samples).chain(&m.client_error_samples) {
            println!("  ! {sample}");
        }
    }
    if let Some(r) = &report.thingline_over_echo {
        println!(
            "thingline/echo (medians): answers/s {:.3} (quiet seconds {})  p50 {:.2}x  p99 {:.2}x  (target ≥ 0.40)",
            r.throughput,
            r.throughput_quiet.map_or_else(|| "?".to_string(), |q| format!("{q:.3}")),
            r.p50,
            r.p99
        );
    }
    if let Some(v) = &report.verification {
        println!(
            "values read back ({} things, {:.1} s): stored {}  answered 2.01 {}  LOST {}  DUPLICATED {}  UNKNOWN {}  (unanswered or errors: {} stored, {} not)",
            v.things,
            v.seconds,
            v.stored,
            v.acked,
            v.lost,
            v.duplicated,
            v.unknown,
            v.uncertain_stored,
            v.uncertain_not_stored
        );
        for sample in &v.samples {
            println!("  ! {sample}");
        }
    }
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

/// Fail when the values read back do not match the 2.01s, when more than 0.1 % of the writes
/// were not answered 2.01, when a client dropped, or when nothing was answered.
pub fn check_write(report: &WriteReport) -> Result<()> {
    let mut bad: Vec<String> = report
        .measurements
        .iter()
        .filter(|m| {
            (m.errors + m.unanswered) as f64 > m.sent as f64 * MAX_ERROR_RATE
                || m.client_errors > 0
                || m.answered_in_window == 0
        })
        .map(|m| {
            format!(
                "{} round {}: {} errors and {} unanswered of {} writes, {} clients dropped, {} answered in the window",
                m.target, m.round, m.errors, m.unanswered, m.sent, m.client_errors, m.answered_in_window
            )
        })
        .collect();
    if let Some(v) = &report.verification
        && !v.ok()
    {
        bad.push(format!(
            "the values read back do not match the 2.01s: {} lost, {} duplicated, {} unknown ({})",
            v.lost,
            v.duplicated,
            v.unknown,
            v.samples.join("; ")
        ));
    }
    let retransmitted: u64 = report.measurements.iter().map(|m| m.retransmissions).sum();
    if retransmitted > 0 {
        eprintln!("WARNING: {retransmitted} retransmissions (a write unanswered for 2 s on loopback)");
    }
    if bad.is_empty() { Ok(()) } else { bail!("coap-write: {}", bad.join("; ")) }
}

/// What the CoAP observers of one measurement saw beyond the deliveries.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserverStats {
    /// Registrations retransmitted (unanswered for 2 s).
    pub registration_retransmissions: u64,
    /// Deregistrations retransmitted.
    pub deregistration_retransmissions: u64,
    /// Notifications (2.05 with Observe after the registration's answer).
    pub notifications: u64,
    /// Of those, confirmable (each acknowledged with an empty ACK).
    pub confirmable: u64,
    /// Confirmable notifications received again (same message id: the server retransmitted
    /// them, its ACK lost), acknowledged again and not counted above.
    pub retransmitted_notifications: u64,
    /// `{}` keep-alives.
    pub keepalives: u64,
    /// Notifications whose Observe number was not newer than the previous one's (RFC 7641 §3.4).
    pub out_of_order: u64,
    /// Values an observer received more than once.
    pub duplicates: u64,
    /// Observations the server ended (a response without Observe, an error code, a Reset).
    pub ended: u64,
    pub ended_samples: Vec<String>,
    /// Datagrams with another token, or not CoAP.
    pub unexpected: u64,
    /// Deregistrations (GET with Observe=1) answered, and not.
    pub deregistered: u64,
    pub deregister_failures: u64,
    pub deregister_samples: Vec<String>,
    /// The kernel's UDP drops over the measurement (registration to deregistration).
    pub udp: UdpCounters,
    /// Of those, at the server's CoAP socket (ACKs, registrations it never saw).
    pub server_socket_drops: Option<u64>,
}

impl ObserverStats {
    pub fn add(&mut self, other: &ObserverStats) {
        self.registration_retransmissions += other.registration_retransmissions;
        self.deregistration_retransmissions += other.deregistration_retransmissions;
        self.notifications += other.notifications;
        self.confirmable += other.confirmable;
        self.retransmitted_notifications += other.retransmitted_notifications;
        self.keepalives += other.keepalives;
        self.out_of_order += other.out_of_order;
        self.duplicates += other.duplicates;
        self.ended += other.ended;
        self.unexpected += other.unexpected;
        self.deregistered += other.deregistered;
        self.deregister_failures += other.deregister_failures;
        for (mine, theirs) in
            [(&mut self.ended_samples, &other.ended_samples), (&mut self.deregister_samples, &other.deregister_samples)]
        {
            mine.extend(theirs.iter().take(3usize.saturating_sub(mine.len())).cloned());
        }
    }
}

/// `coap-observe`: one round, CoAP and Socket.IO.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserveRound {
    pub round: usize,
    /// Which went first.
    pub first: String,
    pub coap: TargetReport,
    pub coap_observers: ObserverStats,
    pub socketio: TargetReport,
    /// p99 of 201→receipt, CoAP over Socket.IO (target ≤ 1.5).
    pub p99_from_201_coap_over_socketio: Option<f64>,
    /// p99 of send→receipt, CoAP over Socket.IO.
    pub p99_from_send_coap_over_socketio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserveReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub cpus: usize,
    pub store: Option<StoreSetup>,
    pub rounds: Vec<ObserveRound>,
    /// Of the medians over rounds.
    pub p99_from_201_coap_over_socketio: Option<f64>,
}

impl ObserveRound {
    pub fn new(
        round: usize,
        first: &str,
        coap: TargetReport,
        coap_observers: ObserverStats,
        socketio: TargetReport,
    ) -> Self {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        Self {
            round,
            first: first.to_string(),
            p99_from_201_coap_over_socketio: ratio(coap.latency_from_201.p99_ms, socketio.latency_from_201.p99_ms),
            p99_from_send_coap_over_socketio: ratio(coap.latency_from_send.p99_ms, socketio.latency_from_send.p99_ms),
            coap,
            coap_observers,
            socketio,
        }
    }
}

impl ObserveReport {
    pub fn new(params: Value, store: Option<StoreSetup>, rounds: Vec<ObserveRound>) -> Self {
        let coap: Vec<f64> = rounds.iter().map(|r| r.coap.latency_from_201.p99_ms).collect();
        let socketio: Vec<f64> = rounds.iter().map(|r| r.socketio.latency_from_201.p99_ms).collect();
        let ratio = (!rounds.is_empty() && median(&socketio) > 0.0).then(|| median(&coap) / median(&socketio));
        Self {
            scenario: "coap-observe".into(),
            params,
            generated_at: crate::report::now(),
            cpus: cpus(),
            store,
            rounds,
            p99_from_201_coap_over_socketio: ratio,
        }
    }
}

pub fn print_observe(report: &ObserveReport) {
    println!();
    println!("scenario coap-observe  {}", report.params);
    println!("{}", store_line(report.store.as_ref()));
    let opt = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:.2}"));
    for r in &report.rounds {
        println!("round {} ({} first)", r.round, r.first);
        print_target(&r.coap, report.cpus);
        let o = &r.coap_observers;
        println!(
            "  observers    notifications {} ({} confirmable, acknowledged; {} RETRANSMITTED by the server)  keep-alives {}  OUT OF ORDER {}  DUPLICATES {}  ENDED BY THE SERVER {}  unexpected {}",
            o.notifications,
            o.confirmable,
            o.retransmitted_notifications,
            o.keepalives,
            o.out_of_order,
            o.duplicates,
            o.ended,
            o.unexpected,
        );
        println!(
            "  observers    registrations retransmitted {}; deregistered {} ({} failed, {} retransmitted)",
            o.registration_retransmissions, o.deregistered, o.deregister_failures, o.deregistration_retransmissions
        );
        println!("  {}; at the server's socket {}", o.udp.line(), opt_u64(o.server_socket_drops));
        for sample in o.ended_samples.iter().chain(&o.deregister_samples) {
            println!("  ! {sample}");
        }
        print_target(&r.socketio, report.cpus);
        println!(
            "coap/socket.io round {}: 201→receipt p99 {}  send→receipt p99 {}",
            r.round,
            opt(r.p99_from_201_coap_over_socketio),
            opt(r.p99_from_send_coap_over_socketio)
        );
    }
    if let Some(ratio) = report.p99_from_201_coap_over_socketio {
        println!("coap/socket.io 201→receipt p99 (medians over rounds): {ratio:.2}  (target ≤ 1.5)");
    }
}

/// Fail when a measurement lost more than 0.1 % of its deliveries or writes (the realtime
/// check), or when the server ended CoAP observations.
pub fn check_observe(report: &ObserveReport) -> Result<()> {
    let targets: Vec<TargetReport> = report.rounds.iter().flat_map(|r| [r.coap.clone(), r.socketio.clone()]).collect();
    crate::realtime::report::check_loss(&targets)?;
    let ended: u64 = report.rounds.iter().map(|r| r.coap_observers.ended).sum();
    if ended > 0 {
        bail!("coap-observe: the server ended {ended} observations during the measurement");
    }
    Ok(())
}
