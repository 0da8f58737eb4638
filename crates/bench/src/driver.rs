//! The load loop and its statistics.
//!
//! `concurrency` workers each own one keep-alive HTTPS client (HTTP/1.1 only, one
//! connection) and loop request → full response until the deadline: first a warm-up whose
//! requests are not recorded, then the measured window. Every loop is bounded in time
//! (deadline, per-request timeout) and in count (`max_requests` per phase). Latencies of
//! the measured window are kept exactly (one `u64` of nanoseconds per request) and sorted
//! at the end; non-2xx answers and transport failures are counted as errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::Method;
use serde::Serialize;

/// One request, as a scenario's generator produces it.
pub struct Req {
    pub method: Method,
    pub url: String,
    /// JSON body, sent with `Content-Type: application/json`.
    pub body: Option<String>,
    /// `Authorization` header (an app session token).
    pub auth: Option<String>,
}

/// Produces the next request of a worker. Called once per request, on the hot path.
pub type RequestGen = Arc<dyn Fn(&mut WorkerRng) -> Req + Send + Sync>;

/// What a scenario hands to the driver for one target.
#[derive(Clone)]
pub struct Workload {
    /// Values carried by one request (values/s = successful requests/s × this).
    pub values_per_request: u64,
    pub generator: RequestGen,
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Bound on requests per phase (warm-up and measured window each), all workers together.
    pub max_requests: u64,
    pub request_timeout: Duration,
}

/// Latency percentiles of the measured window, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStats {
    /// Requests completed in the measured window (any outcome).
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Non-2xx answers.
    pub status_errors: u64,
    /// Connection failures, timeouts, unreadable bodies.
    pub transport_errors: u64,
    /// Measured window in seconds (start of window to last completion).
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub values_per_s: f64,
    pub values_per_request: u64,
    pub latency: LatencySummary,
    /// Answers by HTTP status code.
    pub status_counts: BTreeMap<u16, u64>,
    /// A few examples of errors, for the report.
    pub error_samples: Vec<String>,
}

impl RunStats {
    pub fn errors(&self) -> u64 {
        self.status_errors + self.transport_errors
    }

    /// Errors as a fraction of requests (1.0 when nothing completed at all).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 1.0 } else { self.errors() as f64 / self.requests as f64 }
    }
}

/// A small fast PRNG (SplitMix64) for picking things and values; not for secrets.
#[derive(Debug, Clone)]
pub struct WorkerRng(u64);

impl WorkerRng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Seeded from the clock and a stream number, so workers differ.
    pub fn from_clock(stream: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::new(nanos.wrapping_add(stream.wrapping_mul(0xA076_1D64_78BD_642F)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; returns 0 for n == 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The HTTPS client used everywhere: self-signed certificates accepted, HTTP/1.1 only,
/// no proxy, keep-alive pool of `pool` idle connections.
pub fn https_client(pool: usize, timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(timeout)
        .build()
        .context("building the HTTPS client")
}

/// What one worker brings back.
#[derive(Default)]
struct WorkerResult {
    latencies_ns: Vec<u64>,
    ok: u64,
    status_errors: u64,
    transport_errors: u64,
    status_counts: BTreeMap<u16, u64>,
    last_done: Option<Instant>,
}

const MAX_ERROR_SAMPLES: usize = 8;

/// Drive `workload` with `config` and return the measured window's statistics.
pub async fn run_load(config: &DriverConfig, workload: &Workload) -> Result<RunStats> {
    let concurrency = config.concurrency.max(1);
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(https_client(1, config.request_timeout)?);
    }

    let start = Instant::now();
    let measure_start = start + config.warmup;
    let end = measure_start + config.duration;
    let warm_issued = Arc::new(AtomicU64::new(0));
    let measured_issued = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::<String>::new()));

    let mut tasks = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let generator = workload.generator.clone();
        let warm_issued = warm_issued.clone();
        let measured_issued = measured_issued.clone();
        let samples = samples.clone();
        let max = config.max_requests;
        tasks.spawn(async move {
            let mut rng = WorkerRng::from_clock(index as u64);
            let mut result = WorkerResult::default();
            loop {
                let sent_at = Instant::now();
                if sent_at >= end {
                    break;
                }
                let measuring = sent_at >= measure_start;
                let counter = if measuring { &measured_issued } else { &warm_issued };
                if counter.fetch_add(1, Ordering::Relaxed) >= max {
                    if measuring {
                        break;
                    }
                    // Warm-up budget spent: wait for the measured window.
                    tokio::time::sleep_until(measure_start.into()).await;
                    continue;
                }
                let req = generator(&mut rng);
                let mut builder = client.request(req.method, &req.url);
                if let Some(auth) = req.auth {
                    builder = builder.header(reqwest::header::AUTHORIZATION, auth);
                }
                if let Some(body) = req.body {
                    builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
                }
                let outcome = match builder.send().await {
                    Ok(response) => {
                        let status = response.status();
                        match response.bytes().await {
                            Ok(body) => Ok((status, body)),
                            Err(err) => Err(err),
                        }
                    }
                    Err(err) => Err(err),
                };
                let done = Instant::now();
                if !measuring {
                    if outcome.is_err() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    continue;
                }
                result.latencies_ns.push(done.duration_since(sent_at).as_nanos() as u64);
                result.last_done = Some(done);
                match outcome {
                    Ok((status, body)) => {
                        *result.status_counts.entry(status.as_u16()).or_default() += 1;
                        if status.is_success() {
                            result.ok += 1;
                        } else {
                            result.status_errors += 1;
                            let text = String::from_utf8_lossy(&body);
                            let snippet: String = text.chars().take(200).collect();
                            push_sample(&samples, format!("HTTP {status}: {snippet}"));
                        }
                    }
                    Err(err) => {
                        result.transport_errors += 1;
                        push_sample(&samples, format!("transport: {}", error_chain(&err)));
                        // A dead server fails fast; do not spin on it.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            result
        });
    }

    let mut merged = WorkerResult::default();
    let mut last_done = measure_start;
    while let Some(joined) = tasks.join_next().await {
        let worker = joined.context("a load worker panicked")?;
        merged.latencies_ns.extend_from_slice(&worker.latencies_ns);
        merged.ok += worker.ok;
        merged.status_errors += worker.status_errors;
        merged.transport_errors += worker.transport_errors;
        for (code, count) in worker.status_counts {
            *merged.status_counts.entry(code).or_default() += count;
        }
        if let Some(done) = worker.last_done {
            last_done = last_done.max(done);
        }
    }

    let elapsed_s = last_done.duration_since(measure_start).as_secs_f64().max(1e-9);
    let requests = merged.latencies_ns.len() as u64;
    let error_samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(RunStats {
        requests,
        ok: merged.ok,
        status_errors: merged.status_errors,
        transport_errors: merged.transport_errors,
        elapsed_s,
        requests_per_s: requests as f64 / elapsed_s,
        values_per_s: (merged.ok * workload.values_per_request) as f64 / elapsed_s,
        values_per_request: workload.values_per_request,
        latency: summarize(&mut merged.latencies_ns),
        status_counts: merged.status_counts,
        error_samples,
    })
}

/// Keep up to [`MAX_ERROR_SAMPLES`] distinct error texts.
fn push_sample(samples: &Mutex<Vec<String>>, text: String) {
    if let Ok(mut guard) = samples.lock()
        && guard.len() < MAX_ERROR_SAMPLES
        && !guard.contains(&text)
    {
        guard.push(text);
    }
}

/// An error with its sources (reqwest's Display shows only the outermost one), without
/// the URL, so that identical failures on different things read the same.
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Sort the latencies and read the percentiles (nearest rank).
pub fn summarize(latencies_ns: &mut [u64]) -> LatencySummary {
    if latencies_ns.is_empty() {
        return LatencySummary::default();
    }
    latencies_ns.sort_unstable();
    let n = latencies_ns.len();
    let ms = |ns: u64| ns as f64 / 1e6;
    let pct = |p: f64| {
        let rank = (p * n as f64).ceil() as usize;
        ms(latencies_ns[rank.clamp(1, n) - 1])
    };
    let sum: u128 = latencies_ns.iter().map(|&v| v as u128).sum();
    LatencySummary {
        count: n as u64,
        mean_ms: sum as f64 / n as f64 / 1e6,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: ms(latencies_ns[n - 1]),
    }
}

/// Median of a list of numbers (0 for an empty list).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut values: Vec<u64> = (1..=100).rev().map(|v| v * 1_000_000).collect();
        let summary = summarize(&mut values);
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
        assert!((summary.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn empty_summary() {
        assert_eq!(summarize(&mut []).count, 0);
    }

    #[test]
    fn median_even_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn rng_below_in_range() {
        let mut rng = WorkerRng::new(7);
        for n in [1usize, 2, 3, 100, 1000] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
        let u = rng.unit();
        assert!((0.0..1.0).contains(&u));
    }
}
