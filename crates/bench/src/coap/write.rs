//! `coap-write`: confirmable single-value writes. Thingline is spawned with its CoAP listener on
//! and `--clients` things activated through its API; the echo (`udp-echo`) is spawned next to
//! it. Per round and target (alternating which goes first): `--clients` clients, each on its own
//! socket and writing to its own thing, one write outstanding, for `--warmup` + `--seconds`; the
//! answers of the window per second (and per whole second, with the machine's CPU), send→answer
//! latency, retransmissions and errors. Thingline answers a write once its value is committed
//! (with `--durability full`, on disk); the echo at once, with the request itself. At the end
//! every thing's values are read back through the HTTPS API and checked against the 2.01s.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::codec::Template;
use super::report::{self, WriteMeasurement, WriteReport};
use super::thingline::CoapThingline;
use super::verify::{self, Expected};
use super::writer::{self, Answerer, ClientOutput, ClientPlan, DRAIN, WriteShared};
use super::{CLIENT_THREAD, client_runtime};
use crate::cli::{CoapWriteArgs, CoapWriteTarget, secs};
use crate::driver::summarize;
use crate::mqtt::conn::{OpenTally, samples};
use crate::mqtt::report::Opening;
use crate::mqtt::{Clock, Window, join, seconds};
use crate::server::{ServerProcess, spawn_udp_echo};

/// Pause between two measurements.
const SETTLE: Duration = Duration::from_secs(1);

/// One target of a round.
struct Target {
    kind: CoapWriteTarget,
    label: &'static str,
    addr: std::net::SocketAddr,
    pid: u32,
}

/// `thingline-bench coap-write`.
pub async fn run(args: &CoapWriteArgs) -> Result<()> {
    if args.clients == 0 || args.rounds == 0 || args.client_threads == 0 {
        bail!("--clients, --rounds and --client-threads must be at least 1");
    }
    if args.seconds <= 0.0 || args.retransmit_after <= 0.0 {
        bail!("--seconds and --retransmit-after must be positive");
    }
    let selected = args.selected();
    if selected.is_empty() {
        bail!("no target selected (--targets thingline,echo)");
    }
    // Thingline is spawned even when only the echo is measured: its things' tokens are in the
    // datagrams, so that both get the same ones.
    let env = vec![
        ("THINGLINE_COAP_RATE".to_string(), "10000000".to_string()),
        ("THINGLINE_COAP_MAX_EXCHANGES".to_string(), args.max_exchanges.to_string()),
    ];
    let thingline = CoapThingline::start(&args.server, env, Vec::new()).await?;
    let store = thingline.store.clone();
    let clients = client_runtime(args.client_threads)?;
    let measured = measure_all(args, &selected, &thingline, clients.handle()).await;
    clients.shutdown_background();
    thingline.finish().await;
    let (measurements, verification) = measured?;
    let params = json!({
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "clientThreads": args.client_threads,
        "retransmitAfter": args.retransmit_after,
        "echoWorkers": args.echo_workers,
        "echoSocketBuffer": args.echo_socket_buffer,
        "maxExchanges": args.max_exchanges,
        "request": "CON POST v2/things/{token}? (no Content-Format)",
        "payload": r#"{"values":[{"key":"t","value":N}]}"#,
    });
    let report = WriteReport::new(params, Some(store), measurements, verification);
    report::print_write(&report);
    if let Some(path) = &args.json {
        crate::report::write_json(path, &report)?;
    }
    report::check_write(&report)
}

/// The things, the echo, every round, and the values read back.
async fn measure_all(
    args: &CoapWriteArgs,
    selected: &[CoapWriteTarget],
    thingline: &CoapThingline,
    clients: &tokio::runtime::Handle,
) -> Result<(Vec<WriteMeasurement>, Option<verify::Verification>)> {
    let server = &args.server;
    let started = std::time::Instant::now();
    let provisioned = thingline
        .api
        .provision(&server.panel_email, &server.panel_password, "coap-bench", args.clients)
        .await
        .context("activating the things through Thingline's API")?;
    eprintln!(
        "thingline: product {}, {} things activated in {:.1} s",
        provisioned.product_id,
        args.clients,
        started.elapsed().as_secs_f64()
    );
    let tokens: Vec<String> = provisioned.things.into_iter().map(|t| t.thing_token).collect();
    let echo = if selected.contains(&CoapWriteTarget::Echo) {
        let echo =
            spawn_udp_echo(args.echo_workers, args.echo_socket_buffer, server.server_log, server.start_timeout())
                .await?;
        eprintln!("echo: {} (pid {})", echo.addr, echo.pid);
        Some(echo)
    } else {
        None
    };
    let outcome = rounds(args, selected, thingline, echo.as_ref(), &tokens, clients).await;
    if let Some(echo) = echo
        && let Err(err) = echo.stop().await
    {
        eprintln!("note: stopping the echo: {err:#}");
    }
    let (measurements, expected) = outcome?;
    let verification = if selected.contains(&CoapWriteTarget::Thingline) {
        eprintln!("thingline: reading the values of {} things back", tokens.len());
        Some(verify::verify(&thingline.api, &tokens, &expected).await.context("reading the values back")?)
    } else {
        None
    };
    Ok((measurements, verification))
}

async fn rounds(
    args: &CoapWriteArgs,
    selected: &[CoapWriteTarget],
    thingline: &CoapThingline,
    echo: Option<&ServerProcess>,
    tokens: &[String],
    clients: &tokio::runtime::Handle,
) -> Result<(Vec<WriteMeasurement>, Vec<Expected>)> {
    let mut targets = Vec::new();
    for kind in selected {
        targets.push(match kind {
            CoapWriteTarget::Thingline => {
                Target { kind: *kind, label: "thingline", addr: thingline.coap, pid: thingline.process.pid }
            }
            CoapWriteTarget::Echo => {
                let echo = echo.context("the echo is not running")?;
                Target { kind: *kind, label: "echo", addr: echo.addr, pid: echo.pid }
            }
        });
    }
    let mut expected = vec![Expected::default(); tokens.len()];
    let mut measurements = Vec::new();
    for round in 0..args.rounds {
        let mut order: Vec<&Target> = targets.iter().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for target in order {
            let (measurement, outputs) = measure(args, target, tokens, &expected, round + 1, clients).await?;
            if target.kind == CoapWriteTarget::Thingline {
                for output in outputs {
                    let e = &mut expected[output.client];
                    e.acked.extend_from_slice(&output.out.acked_values);
                    e.uncertain.extend_from_slice(&output.out.uncertain_values);
                    e.last = e.last.max(output.out.last_seq);
                }
            }
            measurements.push(measurement);
            tokio::time::sleep(SETTLE).await;
        }
    }
    Ok((measurements, expected))
}

/// A client's output and which client it was.
struct Indexed {
    client: usize,
    out: ClientOutput,
}

/// One target in one round.
async fn measure(
    args: &CoapWriteArgs,
    target: &Target,
    tokens: &[String],
    expected: &[Expected],
    round: usize,
    clients: &tokio::runtime::Handle,
) -> Result<(WriteMeasurement, Vec<Indexed>)> {
    let label = target.label;
    let n = args.clients;
    eprintln!("{label}: round {round}, {n} clients");
    let clock = Clock::start();
    let shared = Arc::new(WriteShared { clock, answers: AtomicU64::new(0) });
    let plan = Arc::new(ClientPlan {
        addr: target.addr,
        answerer: if target.kind == CoapWriteTarget::Echo { Answerer::Echo } else { Answerer::Coap },
        retransmit_after: secs(args.retransmit_after),
    });
    let udp_start = super::udpstat::UdpCounters::now();
    let drops_start = super::udpstat::socket_drops(target.addr);
    let (go_tx, go_rx) = watch::channel(None::<Window>);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
    let mut handles = Vec::with_capacity(n);
    for (i, token) in tokens.iter().enumerate().take(n) {
        let template = Template::write(token);
        let (plan, shared, go, opened) = (plan.clone(), shared.clone(), go_rx.clone(), opened_tx.clone());
        let first_seq = expected[i].last;
        handles.push(clients.spawn(async move {
            let out = writer::run(plan, template, first_seq, (i as u32) << 16, shared, go, opened).await?;
            Some(Indexed { client: i, out })
        }));
    }
    drop(opened_tx);
    let tally = OpenTally::collect(label, "sockets", &mut opened_rx, n).await;
    if let Err(err) = tally.check(label, n) {
        drop(go_tx);
        join(handles, Duration::from_secs(30)).await;
        return Err(err);
    }

    let warmup = secs(args.warmup);
    let start = clock.now_ns();
    let window =
        Window { from: start + warmup.as_nanos() as u64, to: start + (warmup + secs(args.seconds)).as_nanos() as u64 };
    let _ = go_tx.send(Some(window));
    let (per_second, cpu) =
        seconds::sample_threads(&clock, window, &shared.answers, Some(target.pid), CLIENT_THREAD).await;
    let outputs = join(handles, DRAIN + Duration::from_secs(10)).await;

    let mut latencies = Vec::new();
    let mut client_errors = Vec::new();
    let mut error_samples = Vec::new();
    let mut m = WriteMeasurement {
        target: label.to_string(),
        round,
        clients: Opening::new(n, &tally),
        window_seconds: window.seconds(),
        answered_in_window: 0,
        answers_per_s: 0.0,
        seconds: per_second,
        sent: 0,
        answered: 0,
        errors: 0,
        error_samples: Vec::new(),
        unanswered: 0,
        retransmissions: 0,
        separate: 0,
        late: 0,
        unexpected: 0,
        socket_renewals: 0,
        client_errors: 0,
        client_error_samples: Vec::new(),
        latency: Default::default(),
        cpu,
        udp: super::udpstat::UdpCounters::now().since(&udp_start),
        server_socket_drops: super::udpstat::socket_drops(target.addr)
            .zip(drops_start)
            .map(|(end, start)| end.saturating_sub(start)),
    };
    for Indexed { out, .. } in &outputs {
        m.sent += out.sent;
        m.answered += out.answered;
        m.answered_in_window += out.answered_in_window;
        m.errors += out.errors;
        m.unanswered += out.unanswered;
        m.retransmissions += out.retransmissions;
        m.separate += out.separate;
        m.late += out.late;
        m.unexpected += out.unexpected;
        m.socket_renewals += u64::from(out.sockets.saturating_sub(1));
        latencies.extend_from_slice(&out.latencies_ns);
        client_errors.extend(out.error.clone());
        if error_samples.len() < 3 {
            error_samples.extend(out.error_samples.iter().take(3 - error_samples.len()).cloned());
        }
    }
    let missing = tally.opened.saturating_sub(outputs.len());
    if missing > 0 {
        client_errors.push(format!("{missing} clients did not finish"));
    }
    m.answers_per_s = m.answered_in_window as f64 / window.seconds();
    m.latency = summarize(&mut latencies);
    m.client_errors = client_errors.len() as u64;
    m.client_error_samples = client_errors.iter().take(3).cloned().collect();
    m.error_samples = error_samples;
    eprintln!(
        "{label}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} retransmissions, {} errors, {} unanswered{}",
        m.answers_per_s,
        m.latency.p50_ms,
        m.latency.p99_ms,
        m.retransmissions,
        m.errors,
        m.unanswered,
        if client_errors.is_empty() {
            String::new()
        } else {
            format!(", clients dropped: {}", samples(&client_errors))
        }
    );
    Ok((m, outputs))
}
