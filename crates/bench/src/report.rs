//! Results: the human table, the thingline/reference ratios, the JSON file, and the
//! error-rate check that fails the run loudly; and how Thingline kept its data
//! ([`StoreSetup`]), which every report records.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::driver::{RunStats, median};

/// Above this error rate (0.1 %) a run fails.
pub const MAX_ERROR_RATE: f64 = 0.001;

/// How Thingline kept its data during a run: the figures depend on it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSetup {
    /// `thingline serve --durability`: `full` or `normal`.
    pub durability: String,
    pub data_dir: String,
    /// Filesystem type of the data dir: `ext4`, `xfs`, `btrfs`, `tmpfs`, `overlay`, …
    pub filesystem: String,
    /// What that filesystem is mounted from (a device, `tmpfs`, …).
    pub mount_source: String,
    /// `--allow-tmpfs` was given (a data dir in memory is refused without it).
    pub allow_tmpfs: bool,
    /// THINGLINE_STORE_URL when not SQLite in the data dir (`postgres://…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_url: Option<String>,
    /// THINGLINE_BUS_URL, when there is a bus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_url: Option<String>,
}

/// The line every printed report starts with: `store` is that of the Thingline the bench
/// spawned, `None` when it spawned none.
pub fn store_line(store: Option<&StoreSetup>) -> String {
    match store {
        Some(s) => format!(
            "thingline store: durability {}, data dir {} on {} ({}){}{}{}",
            s.durability,
            s.data_dir,
            s.filesystem,
            s.mount_source,
            if crate::filesystem::in_memory(&s.filesystem) && s.store_url.is_none() {
                ", IN MEMORY (allowed by --allow-tmpfs): not a disk measurement"
            } else {
                ""
            },
            s.store_url.as_ref().map_or_else(String::new, |url| format!(", store {url}")),
            s.bus_url.as_ref().map_or_else(String::new, |url| format!(", bus {url}")),
        ),
        None => "thingline store: not spawned by the bench (durability and filesystem unknown)".to_string(),
    }
}

/// One target measured once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub target: String,
    pub round: usize,
    pub stats: RunStats,
    /// Resident memory of the server right after the measurement.
    pub rss_mb: Option<f64>,
}

/// thingline / reference, on the medians over rounds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub requests_per_s: f64,
    pub values_per_s: f64,
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputReport {
    pub scenario: String,
    pub params: serde_json::Value,
    pub generated_at: String,
    /// Thingline's store, when the bench spawned it.
    pub store: Option<StoreSetup>,
    pub measurements: Vec<Measurement>,
    /// Present when both the reference and Thingline were measured.
    pub thingline_over_reference: Option<Comparison>,
}

impl ThroughputReport {
    pub fn new(
        scenario: &str,
        params: serde_json::Value,
        store: Option<StoreSetup>,
        measurements: Vec<Measurement>,
    ) -> Self {
        let comparison = compare(&measurements);
        Self {
            scenario: scenario.to_string(),
            params,
            generated_at: now(),
            store,
            measurements,
            thingline_over_reference: comparison,
        }
    }
}

/// Medians over the rounds of one target.
struct Medians {
    rps: f64,
    vps: f64,
    p50: f64,
    p99: f64,
}

fn medians(measurements: &[Measurement], target: &str) -> Option<Medians> {
    let of: Vec<&RunStats> = measurements.iter().filter(|m| m.target == target).map(|m| &m.stats).collect();
    if of.is_empty() {
        return None;
    }
    let pick = |f: fn(&RunStats) -> f64| median(&of.iter().map(|s| f(s)).collect::<Vec<_>>());
    Some(Medians {
        rps: pick(|s| s.requests_per_s),
        vps: pick(|s| s.values_per_s),
        p50: pick(|s| s.latency.p50_ms),
        p99: pick(|s| s.latency.p99_ms),
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn compare(measurements: &[Measurement]) -> Option<Comparison> {
    let reference = medians(measurements, "reference")?;
    let thingline = medians(measurements, "thingline")?;
    Some(Comparison {
        requests_per_s: ratio(thingline.rps, reference.rps),
        values_per_s: ratio(thingline.vps, reference.vps),
        p50: ratio(thingline.p50, reference.p50),
        p99: ratio(thingline.p99, reference.p99),
    })
}

/// A one-line summary printed as each measurement ends.
pub fn one_line(m: &Measurement) -> String {
    let s = &m.stats;
    format!(
        "{} round {}: {} req in {:.1} s, {:.0} req/s, {:.0} values/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {}",
        m.target,
        m.round,
        s.requests,
        s.elapsed_s,
        s.requests_per_s,
        s.values_per_s,
        s.latency.p50_ms,
        s.latency.p99_ms,
        s.latency.max_ms,
        s.errors()
    )
}

/// The time a report is made, to the second (RFC 3339, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn print_throughput(report: &ThroughputReport) {
    println!();
    println!("scenario {}  {}", report.scenario, report.params);
    if report.measurements.iter().any(|m| m.target == "thingline") {
        println!("{}", store_line(report.store.as_ref()));
    }
    println!(
        "{:<10} {:>5} {:>10} {:>11} {:>12} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "target", "round", "requests", "req/s", "values/s", "p50 ms", "p99 ms", "max ms", "errors", "RSS MB"
    );
    for m in &report.measurements {
        let s = &m.stats;
        println!(
            "{:<10} {:>5} {:>10} {:>11.0} {:>12.0} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>7}",
            m.target,
            m.round,
            s.requests,
            s.requests_per_s,
            s.values_per_s,
            s.latency.p50_ms,
            s.latency.p99_ms,
            s.latency.max_ms,
            s.errors(),
            m.rss_mb.map_or_else(|| "-".to_string(), |mb| format!("{mb:.1}"))
        );
    }
    if let Some(c) = &report.thingline_over_reference {
        println!(
            "thingline/reference (medians): req/s {:.3}  values/s {:.3}  p50 {:.2}x  p99 {:.2}x",
            c.requests_per_s, c.values_per_s, c.p50, c.p99
        );
    }
    for m in &report.measurements {
        if m.stats.errors() > 0 {
            println!("{} round {}: status counts {:?}", m.target, m.round, m.stats.status_counts);
            for sample in &m.stats.error_samples {
                println!("  {sample}");
            }
        }
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serializing the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

/// Fail when a measurement had more than 0.1 % errors (or completed nothing).
pub fn check_errors(measurements: &[Measurement]) -> Result<()> {
    let bad: Vec<String> = measurements
        .iter()
        .filter(|m| m.stats.error_rate() > MAX_ERROR_RATE)
        .map(|m| {
            format!(
                "{} round {}: {} errors of {} requests ({:.3} %)",
                m.target,
                m.round,
                m.stats.errors(),
                m.stats.requests,
                m.stats.error_rate() * 100.0
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        eprintln!("\n!!! ERROR RATE ABOVE {} % !!!", MAX_ERROR_RATE * 100.0);
        for line in &bad {
            eprintln!("!!! {line}");
        }
        bail!("error rate above 0.1 %: {}", bad.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(target: &str, rps: f64, requests: u64, errors: u64) -> Measurement {
        Measurement {
            target: target.into(),
            round: 1,
            stats: RunStats { requests, status_errors: errors, requests_per_s: rps, ..RunStats::default() },
            rss_mb: None,
        }
    }

    #[test]
    fn ratio_uses_medians() {
        let ms = vec![
            measurement("reference", 1000.0, 10, 0),
            measurement("thingline", 500.0, 10, 0),
            measurement("reference", 3000.0, 10, 0),
            measurement("thingline", 700.0, 10, 0),
        ];
        let c = compare(&ms).expect("both measured");
        assert!((c.requests_per_s - 0.3).abs() < 1e-9);
    }

    #[test]
    fn error_threshold() {
        assert!(check_errors(&[measurement("t", 1.0, 10_000, 10)]).is_ok());
        assert!(check_errors(&[measurement("t", 1.0, 10_000, 11)]).is_err());
        assert!(check_errors(&[measurement("t", 1.0, 0, 0)]).is_err());
    }
}
