//! `pg-write`: batched writes into two Thingline nodes on one PostgreSQL schema and one NATS
//! prefix, against PostgreSQL's own `COPY` into the same `points` table, in the same run.
//!
//! Two nodes (`node-a`, `node-b`) are spawned on the run's scratch schema and NATS prefix
//! (default durability: an acknowledged write is committed) and `--clients` things activated
//! through node A. Each round measures, alternating which goes first:
//!
//! - Thingline: `--clients` HTTPS clients, each with one keep-alive connection and its own thing,
//!   client i on node A when i is even and on node B when odd, each writing `--batch` values per
//!   request (one request outstanding) for `--warmup` + `--seconds`; committed values/s are the
//!   values of the 201s of requests sent in the measured window, over the window. The values
//!   are the thing's sequence numbers (request k carries k·batch+1 ..= (k+1)·batch), so that
//!   each can be found again;
//! - COPY: `--copy-streams` connections of this process to the same schema, each repeating
//!   `COPY points (thing_seq, timeline_id, ts, value) FROM STDIN` of `--copy-rows` rows (its own
//!   committed transaction) for the same warm-up and window; the rows are those Thingline
//!   writes (per pseudo-thing `--batch` rows in a row, datetimes 1 ms apart from now, the value
//!   a sequence number of the same magnitude as Thingline's), on thing_seq/timeline_id far above
//!   the real ones (no thing owns them; `points` has no foreign key).
//!
//! The ratio is Thingline's committed values/s over COPY's rows/s (medians over rounds). Then
//! every thing's stored values are read with SQL and checked: every value of an acknowledged
//! request stored exactly once, none of a request that failed or timed out stored twice, none
//! that was never sent.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use tokio::task::JoinSet;

use super::{Backing, CpuSample, CpuUse, Node, Scratch, check_rounds, finish, ratio};
use crate::api::Api;
use crate::cli::{PgWriteArgs, secs};
use crate::driver::{LatencySummary, https_client, median, summarize};
use crate::report::StoreSetup;
use crate::server::DataDir;

/// Per-request timeout of the writers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two measurements.
const SETTLE: Duration = Duration::from_secs(1);
/// The COPY rows' thing_seq and timeline_id start here (no real thing comes near).
const COPY_SEQ_BASE: i64 = 1_000_000_000_000;
/// The key Thingline's writes use.
const KEY: &str = "temperature";

/// One Thingline measurement.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinglineWrite {
    pub round: usize,
    /// Requests sent in the window (any outcome).
    pub requests: u64,
    pub acked_requests: u64,
    pub failed_requests: u64,
    pub error_samples: Vec<String>,
    pub window_seconds: f64,
    pub values_per_s: f64,
    /// Of those, through node A and through node B.
    pub values_per_s_by_node: [f64; 2],
    /// Send → 201 of the window's requests.
    pub latency: LatencySummary,
    pub cpu: CpuUse,
}

/// One COPY measurement.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyWrite {
    pub round: usize,
    pub streams: usize,
    pub rows_per_statement: usize,
    /// Statements begun in the window and committed.
    pub statements: u64,
    pub rows: u64,
    pub window_seconds: f64,
    pub rows_per_s: f64,
    /// One statement: begin → committed.
    pub statement_latency: LatencySummary,
    /// Bytes of COPY text per row (what the value and the keys weigh on the wire).
    pub bytes_per_row: f64,
    pub cpu: CpuUse,
}

/// What the stored values say.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub things: usize,
    /// Values of acknowledged requests.
    pub acked_values: u64,
    /// Rows of the things in `points`.
    pub stored_rows: u64,
    /// Acknowledged values not stored.
    pub missing: u64,
    /// Values stored more than once (each extra copy counted).
    pub duplicates: u64,
    /// Stored values no request carried.
    pub unexpected: u64,
    /// Requests without a 201 (error, timeout): their values may or may not be stored.
    pub uncertain_requests: u64,
    /// Of those, the ones stored in full / partly (a request is all or nothing).
    pub uncertain_stored: u64,
    pub uncertain_partial: u64,
    /// Mean length of the stored value texts.
    pub mean_value_len: f64,
    pub samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PgWriteReport {
    pub scenario: String,
    pub params: serde_json::Value,
    pub generated_at: String,
    pub schema: String,
    pub bus_prefix: String,
    pub store: Option<StoreSetup>,
    pub thingline: Vec<ThinglineWrite>,
    pub copy: Vec<CopyWrite>,
    /// Median Thingline values/s over median COPY rows/s.
    pub thingline_over_copy: f64,
    pub verification: Verification,
}

/// What a client sent, across rounds.
#[derive(Debug, Default, Clone)]
struct ClientLog {
    /// The next request's index.
    next: u64,
    acked: Vec<u64>,
    uncertain: Vec<u64>,
}

/// `thingline-bench pg-write`.
pub async fn run(args: &PgWriteArgs) -> Result<()> {
    check_rounds(&args.common)?;
    if args.clients == 0 || args.batch == 0 || args.copy_streams == 0 || args.copy_rows == 0 {
        bail!("--clients, --batch, --copy-streams and --copy-rows must be at least 1");
    }
    if args.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let scratch = Scratch::create(&args.common).await?;
    let data_dir = match DataDir::from_args(&args.common.server) {
        Ok(dir) => dir,
        Err(err) => {
            scratch.drop_schema().await;
            return Err(err);
        }
    };
    let mut nodes = Vec::new();
    let outcome = measure_all(args, &scratch, &data_dir.path, &mut nodes).await;
    let (schema, prefix) = (scratch.schema.clone(), scratch.bus_prefix.clone());
    let store = nodes.first().map(|n: &Node| n.store.clone());
    finish(nodes, scratch, data_dir).await;
    let (thingline, copy, verification) = outcome?;
    let thingline_median = median(&thingline.iter().map(|m| m.values_per_s).collect::<Vec<_>>());
    let copy_median = median(&copy.iter().map(|m| m.rows_per_s).collect::<Vec<_>>());
    let report = PgWriteReport {
        scenario: "pg-write".into(),
        params: json!({
            "nodes": 2,
            "clients": args.clients,
            "batch": args.batch,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rounds": args.common.rounds,
            "copyStreams": args.copy_streams,
            "copyRows": args.copy_rows,
            "durability": args.common.server.durability.as_str(),
        }),
        generated_at: crate::report::now(),
        schema,
        bus_prefix: prefix,
        store,
        thingline,
        copy,
        thingline_over_copy: ratio(thingline_median, copy_median),
        verification,
    };
    print(&report);
    if let Some(path) = &args.common.json {
        crate::report::write_json(path, &report)?;
    }
    check(&report)
}

async fn measure_all(
    args: &PgWriteArgs,
    scratch: &Scratch,
    run_dir: &std::path::Path,
    nodes: &mut Vec<Node>,
) -> Result<(Vec<ThinglineWrite>, Vec<CopyWrite>, Verification)> {
    let common = &args.common;
    let max_connections = vec!["--max-connections".to_string(), (args.clients + 1_000).max(10_000).to_string()];
    nodes.push(Node::start(common, scratch, run_dir, "node-a", Backing::Cluster, max_connections.clone()).await?);
    nodes.push(Node::start(common, scratch, run_dir, "node-b", Backing::Cluster, max_connections).await?);
    let setup_client = https_client(16, Duration::from_secs(120))?;
    let api = Api::new(setup_client, &nodes[0].process.base_url);
    let started = Instant::now();
    let server = &common.server;
    let provisioned = api
        .provision(&server.panel_email, &server.panel_password, "pg-write", args.clients)
        .await
        .context("activating the things through node A")?;
    eprintln!("{} things activated through node-a in {:.1} s", args.clients, started.elapsed().as_secs_f64());
    let tokens: Vec<String> = provisioned.things.into_iter().map(|t| t.thing_token).collect();
    let bases: [String; 2] = [nodes[0].process.base_url.clone(), nodes[1].process.base_url.clone()];
    let pids: Vec<u32> = nodes.iter().map(|n| n.process.pid).collect();

    let mut logs = vec![ClientLog::default(); tokens.len()];
    let mut thingline = Vec::new();
    let mut copy = Vec::new();
    for round in 1..=common.rounds {
        let thingline_first = round % 2 == 1;
        for step in 0..2 {
            if (step == 0) == thingline_first {
                let measured = write_thingline(args, round, &bases, &tokens, &mut logs, &pids).await?;
                eprintln!(
                    "thingline round {round}: {:.0} values/s committed (node-a {:.0}, node-b {:.0}), p50 {:.1} ms, p99 {:.1} ms, {} failed; {}",
                    measured.values_per_s,
                    measured.values_per_s_by_node[0],
                    measured.values_per_s_by_node[1],
                    measured.latency.p50_ms,
                    measured.latency.p99_ms,
                    measured.failed_requests,
                    measured.cpu.per_second()
                );
                thingline.push(measured);
            } else {
                let measured = write_copy(args, round, scratch, &pids).await?;
                eprintln!(
                    "copy round {round}: {:.0} rows/s committed ({} statements of {} rows, p50 {:.1} ms); {}",
                    measured.rows_per_s,
                    measured.statements,
                    measured.rows_per_statement,
                    measured.statement_latency.p50_ms,
                    measured.cpu.per_second()
                );
                copy.push(measured);
            }
            tokio::time::sleep(SETTLE).await;
        }
    }
    eprintln!("reading the values of {} things back (SQL)", tokens.len());
    let verification = verify(scratch, &tokens, &logs, args.batch as u64).await.context("reading the values back")?;
    Ok((thingline, copy, verification))
}

/// What one client task brings back.
struct ClientRun {
    client: usize,
    log: ClientLog,
    latencies_ns: Vec<u64>,
    acked_in_window: u64,
    requests_in_window: u64,
    failed_in_window: u64,
    last_done: Option<Instant>,
    errors: Vec<String>,
}

/// One Thingline measurement: every client writes until the end of the window.
async fn write_thingline(
    args: &PgWriteArgs,
    round: usize,
    bases: &[String; 2],
    tokens: &[String],
    logs: &mut [ClientLog],
    pids: &[u32],
) -> Result<ThinglineWrite> {
    eprintln!(
        "thingline round {round}: {} clients x {} values per request, {:.0}+{:.0} s",
        tokens.len(),
        args.batch,
        args.warmup,
        args.seconds
    );
    let batch = args.batch as u64;
    let start = Instant::now();
    let measure_start = start + secs(args.warmup);
    let end = measure_start + secs(args.seconds);
    let cpu_start = Arc::new(std::sync::Mutex::new(None::<(Instant, CpuSample)>));
    let mut tasks = JoinSet::new();
    for (client, token) in tokens.iter().enumerate() {
        let url = format!("{}/v2/things/{token}", bases[client % 2]);
        let http = https_client(1, REQUEST_TIMEOUT)?;
        let mut log = std::mem::take(&mut logs[client]);
        tasks.spawn(async move {
            let mut run = ClientRun {
                client,
                log: ClientLog::default(),
                latencies_ns: Vec::new(),
                acked_in_window: 0,
                requests_in_window: 0,
                failed_in_window: 0,
                last_done: None,
                errors: Vec::new(),
            };
            loop {
                let sent_at = Instant::now();
                if sent_at >= end {
                    break;
                }
                let k = log.next;
                log.next += 1;
                let body = body(k, batch);
                let outcome = match http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        if status == StatusCode::CREATED { Ok(()) } else { Err(format!("HTTP {status}: {text}")) }
                    }
                    Err(err) => Err(format!("transport: {err}")),
                };
                let done = Instant::now();
                let measuring = sent_at >= measure_start;
                match outcome {
                    Ok(()) => {
                        log.acked.push(k);
                        if measuring {
                            run.acked_in_window += 1;
                        }
                    }
                    Err(err) => {
                        log.uncertain.push(k);
                        if measuring {
                            run.failed_in_window += 1;
                        }
                        if run.errors.len() < 3 {
                            run.errors.push(err.chars().take(200).collect());
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                if measuring {
                    run.requests_in_window += 1;
                    run.latencies_ns.push(done.duration_since(sent_at).as_nanos() as u64);
                    run.last_done = Some(done);
                }
            }
            run.log = log;
            run
        });
    }
    // The CPU over the window: sampled at its start, and when the last request is in.
    let sampler = {
        let cpu_start = cpu_start.clone();
        let pids = pids.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_start.into()).await;
            if let Ok(mut slot) = cpu_start.lock() {
                *slot = Some((Instant::now(), CpuSample::take(&pids)));
            }
        })
    };
    let mut latencies = Vec::new();
    let mut acked = [0u64; 2];
    let (mut requests, mut failed) = (0u64, 0u64);
    let mut last_done = measure_start;
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let run = joined.context("a writer task panicked")?;
        latencies.extend_from_slice(&run.latencies_ns);
        acked[run.client % 2] += run.acked_in_window;
        requests += run.requests_in_window;
        failed += run.failed_in_window;
        if let Some(done) = run.last_done {
            last_done = last_done.max(done);
        }
        for err in run.errors {
            if errors.len() < 5 && !errors.contains(&err) {
                errors.push(err);
            }
        }
        logs[run.client] = run.log;
    }
    let _ = sampler.await;
    let end_sample = CpuSample::take(pids);
    let window = last_done.duration_since(measure_start).as_secs_f64().max(1e-9);
    let cpu = cpu_start
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
        .map(|(at, sample)| end_sample.since(&sample, at.elapsed().as_secs_f64()))
        .unwrap_or_default();
    let per_s = |requests: u64| (requests * batch) as f64 / window;
    Ok(ThinglineWrite {
        round,
        requests,
        acked_requests: acked[0] + acked[1],
        failed_requests: failed,
        error_samples: errors,
        window_seconds: window,
        values_per_s: per_s(acked[0] + acked[1]),
        values_per_s_by_node: [per_s(acked[0]), per_s(acked[1])],
        latency: summarize(&mut latencies),
        cpu,
    })
}

/// Request `k`'s body: the values k·batch+1 ..= (k+1)·batch.
fn body(k: u64, batch: u64) -> String {
    let mut body = String::with_capacity(16 + batch as usize * 40);
    body.push_str(r#"{"values":["#);
    for i in 0..batch {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(body, r#"{{"key":"{KEY}","value":{}}}"#, k * batch + i + 1);
    }
    body.push_str("]}");
    body
}

/// What one COPY stream brings back.
#[derive(Default)]
struct StreamRun {
    statements: u64,
    rows: u64,
    latencies_ns: Vec<u64>,
    last_done: Option<Instant>,
    bytes: u64,
    sent_rows: u64,
}

/// One COPY measurement: every stream repeats its statement until the end of the window.
async fn write_copy(args: &PgWriteArgs, round: usize, scratch: &Scratch, pids: &[u32]) -> Result<CopyWrite> {
    eprintln!(
        "copy round {round}: {} streams x {} rows per statement, {:.0}+{:.0} s",
        args.copy_streams, args.copy_rows, args.warmup, args.seconds
    );
    let mut conns = Vec::with_capacity(args.copy_streams);
    for _ in 0..args.copy_streams {
        conns.push(scratch.connect().await?);
    }
    let start = Instant::now();
    let measure_start = start + secs(args.warmup);
    let end = measure_start + secs(args.seconds);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let pseudo_things = args.clients.max(1) as i64;
    let mut tasks = JoinSet::new();
    for (stream, mut conn) in conns.into_iter().enumerate() {
        let rows_per_statement = args.copy_rows;
        let batch = args.batch as i64;
        // Each stream has its own pseudo-things (thing_seq = timeline_id), `--clients` of them
        // over all streams, `batch` rows of one in a row as a request would bring them.
        let first = COPY_SEQ_BASE + stream as i64 * pseudo_things + (round as i64) * 1_000_000;
        tasks.spawn(async move {
            let mut run = StreamRun::default();
            let mut next_ts: HashMap<i64, i64> = HashMap::new();
            let mut row = 0i64;
            let mut text = String::with_capacity(rows_per_statement * 48);
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                text.clear();
                for _ in 0..rows_per_statement {
                    let thing = first + (row / batch) % pseudo_things;
                    let ts = next_ts.entry(thing).or_insert(now_ms);
                    // The value: a sequence number as Thingline's writes carry.
                    let _ = writeln!(text, "{thing}\t{thing}\t{}\t{}", *ts, row / pseudo_things + 1);
                    *ts += 1;
                    row += 1;
                }
                run.bytes += text.len() as u64;
                run.sent_rows += rows_per_statement as u64;
                let copied = async {
                    let mut copy =
                        conn.copy_in_raw("COPY points (thing_seq, timeline_id, ts, value) FROM STDIN").await?;
                    copy.send(text.as_bytes()).await?;
                    copy.finish().await
                }
                .await
                .context("COPY into points")?;
                let done = Instant::now();
                if began >= measure_start {
                    run.statements += 1;
                    run.rows += copied;
                    run.latencies_ns.push(done.duration_since(began).as_nanos() as u64);
                    run.last_done = Some(done);
                }
            }
            // The connection is handed back, so that its backend still runs (its CPU time still
            // counted) when the window's last CPU sample is taken.
            anyhow::Ok((run, conn))
        });
    }
    tokio::time::sleep_until(measure_start.into()).await;
    let cpu_start = (Instant::now(), CpuSample::take(pids));
    let mut latencies = Vec::new();
    let (mut statements, mut rows, mut bytes, mut sent_rows) = (0u64, 0u64, 0u64, 0u64);
    let mut last_done = measure_start;
    let mut open = Vec::with_capacity(args.copy_streams);
    while let Some(joined) = tasks.join_next().await {
        let (run, conn) = joined.context("a COPY task panicked")??;
        open.push(conn);
        statements += run.statements;
        rows += run.rows;
        bytes += run.bytes;
        sent_rows += run.sent_rows;
        latencies.extend_from_slice(&run.latencies_ns);
        if let Some(done) = run.last_done {
            last_done = last_done.max(done);
        }
    }
    let cpu = CpuSample::take(pids).since(&cpu_start.1, cpu_start.0.elapsed().as_secs_f64());
    for conn in open {
        let _ = sqlx::Connection::close(conn).await;
    }
    let window = last_done.duration_since(measure_start).as_secs_f64().max(1e-9);
    Ok(CopyWrite {
        round,
        streams: args.copy_streams,
        rows_per_statement: args.copy_rows,
        statements,
        rows,
        window_seconds: window,
        rows_per_s: rows as f64 / window,
        statement_latency: summarize(&mut latencies),
        bytes_per_row: if sent_rows > 0 { bytes as f64 / sent_rows as f64 } else { 0.0 },
        cpu,
    })
}

/// Every thing's rows in `points`, against what its client sent.
async fn verify(scratch: &Scratch, tokens: &[String], logs: &[ClientLog], batch: u64) -> Result<Verification> {
    let mut conn = scratch.connect().await?;
    let rows = sqlx::query(
        "SELECT t.token, p.value FROM points p JOIN things t ON t.seq = p.thing_seq \
         JOIN timelines tl ON tl.thing_seq = p.thing_seq AND tl.id = p.timeline_id \
         WHERE t.token = ANY($1) AND tl.key = $2",
    )
    .bind(tokens.to_vec())
    .bind(KEY)
    .fetch_all(&mut conn)
    .await
    .context("reading the stored values")?;
    let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut stored: Vec<HashMap<u64, u32>> = vec![HashMap::new(); tokens.len()];
    let mut report = Verification { things: tokens.len(), stored_rows: rows.len() as u64, ..Verification::default() };
    let mut value_len = 0u64;
    for row in &rows {
        let token: String = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        value_len += value.len() as u64;
        let Some(&client) = index.get(token.as_str()) else { continue };
        match value.trim().parse::<f64>() {
            Ok(number) if number >= 1.0 && number.fract() == 0.0 => {
                *stored[client].entry(number as u64).or_default() += 1;
            }
            _ => {
                report.unexpected += 1;
                if report.samples.len() < 5 {
                    report.samples.push(format!("thing {client}: a stored value {value:?} no request carried"));
                }
            }
        }
    }
    report.mean_value_len = if rows.is_empty() { 0.0 } else { value_len as f64 / rows.len() as f64 };
    for (client, log) in logs.iter().enumerate() {
        let counts = &mut stored[client];
        for &k in &log.acked {
            for value in k * batch + 1..=(k + 1) * batch {
                report.acked_values += 1;
                match counts.remove(&value) {
                    None | Some(0) => {
                        report.missing += 1;
                        if report.samples.len() < 5 {
                            report.samples.push(format!("thing {client}: acknowledged value {value} not stored"));
                        }
                    }
                    Some(1) => {}
                    Some(n) => {
                        report.duplicates += u64::from(n - 1);
                        if report.samples.len() < 5 {
                            report.samples.push(format!("thing {client}: value {value} stored {n} times"));
                        }
                    }
                }
            }
        }
        for &k in &log.uncertain {
            report.uncertain_requests += 1;
            let mut found = 0u64;
            for value in k * batch + 1..=(k + 1) * batch {
                if let Some(n) = counts.remove(&value) {
                    found += 1;
                    report.duplicates += u64::from(n.saturating_sub(1));
                }
            }
            if found == batch {
                report.uncertain_stored += 1;
            } else if found > 0 {
                report.uncertain_partial += 1;
            }
        }
        for (value, n) in counts.drain() {
            report.unexpected += u64::from(n);
            if report.samples.len() < 5 {
                report.samples.push(format!("thing {client}: value {value} stored {n} times, never sent"));
            }
        }
    }
    Ok(report)
}

fn print(report: &PgWriteReport) {
    println!();
    println!("scenario pg-write  {}", report.params);
    println!("{}", crate::report::store_line(report.store.as_ref()));
    println!("schema {}, NATS prefix {}", report.schema, report.bus_prefix);
    println!(
        "{:<10} {:>5} {:>12} {:>10} {:>9} {:>9} {:>8}  cpu",
        "target", "round", "values/s", "window s", "p50 ms", "p99 ms", "errors"
    );
    for m in &report.thingline {
        println!(
            "{:<10} {:>5} {:>12.0} {:>10.1} {:>9.2} {:>9.2} {:>8}  {}",
            "thingline",
            m.round,
            m.values_per_s,
            m.window_seconds,
            m.latency.p50_ms,
            m.latency.p99_ms,
            m.failed_requests,
            m.cpu.per_second()
        );
    }
    for m in &report.copy {
        println!(
            "{:<10} {:>5} {:>12.0} {:>10.1} {:>9.2} {:>9.2} {:>8}  {}",
            "copy",
            m.round,
            m.rows_per_s,
            m.window_seconds,
            m.statement_latency.p50_ms,
            m.statement_latency.p99_ms,
            0,
            m.cpu.per_second()
        );
    }
    println!("thingline (2 nodes) / COPY (medians): {:.3}", report.thingline_over_copy);
    let v = &report.verification;
    println!(
        "stored values: {} things, {} acknowledged values, {} rows; missing {}, duplicates {}, unexpected {}; \
         {} requests unanswered ({} stored in full, {} partly); mean value length {:.1}",
        v.things,
        v.acked_values,
        v.stored_rows,
        v.missing,
        v.duplicates,
        v.unexpected,
        v.uncertain_requests,
        v.uncertain_stored,
        v.uncertain_partial,
        v.mean_value_len
    );
    for sample in &v.samples {
        println!("  {sample}");
    }
    for m in &report.thingline {
        for sample in &m.error_samples {
            println!("  thingline round {}: {sample}", m.round);
        }
    }
}

/// Fails on a lost, doubled or invented value, or a half-stored request.
fn check(report: &PgWriteReport) -> Result<()> {
    let v = &report.verification;
    if v.missing > 0 || v.duplicates > 0 || v.unexpected > 0 || v.uncertain_partial > 0 {
        bail!(
            "stored values wrong: {} missing, {} duplicates, {} unexpected, {} requests stored in part",
            v.missing,
            v.duplicates,
            v.unexpected,
            v.uncertain_partial
        );
    }
    let failed: u64 = report.thingline.iter().map(|m| m.failed_requests).sum();
    let requests: u64 = report.thingline.iter().map(|m| m.requests).sum();
    if requests == 0 || failed as f64 > requests as f64 * crate::report::MAX_ERROR_RATE {
        bail!("{failed} of {requests} write requests failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_consecutive_values() {
        let text = body(2, 3);
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let values: Vec<u64> =
            parsed["values"].as_array().expect("values").iter().map(|v| v["value"].as_u64().expect("n")).collect();
        assert_eq!(values, vec![7, 8, 9]);
        assert_eq!(parsed["values"][0]["key"], KEY);
    }
}
