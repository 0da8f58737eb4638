//! The paced writer of `realtime-latency`: one write per tick of a `1/rate` interval, the value a
//! sequence number; the time just before sending and at the 201 of each.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::client::{Shared, clip};
use super::cpu::CpuSnapshot;
use crate::driver::https_client;

/// Per-write timeout (the reqwest client's).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Writes in flight at most; the writer waits (and counts late ticks) beyond.
const MAX_INFLIGHT: usize = 64;

pub struct WriteSample {
    pub seq: u64,
    pub send_ns: u64,
    /// When the 201 arrived (None: another status or a transport error).
    pub ack_ns: Option<u64>,
    pub error: Option<String>,
}

pub struct WriterOutput {
    pub samples: Vec<WriteSample>,
    pub late: u64,
    pub max_inflight: usize,
    /// Taken just before the first measured write.
    pub cpu_start: CpuSnapshot,
}

/// `total` writes, one per tick of a `1/rate` interval (Burst: a late tick is caught up, the
/// schedule does not drift), value = sequence number 1..=total; each write is its own task,
/// at most [`MAX_INFLIGHT`] in flight.
pub async fn write_loop(
    url: &str,
    rate: f64,
    warmup_writes: u64,
    total: u64,
    shared: &Arc<Shared>,
    server_pid: u32,
) -> Result<WriterOutput> {
    let client = https_client(16, WRITE_TIMEOUT)?;
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT));
    let mut tasks = JoinSet::new();
    let mut late = 0u64;
    let mut max_inflight = 0usize;
    let mut cpu_start = CpuSnapshot::default();
    for k in 0..total {
        let due = interval.tick().await;
        if k == warmup_writes {
            cpu_start = CpuSnapshot::take(server_pid);
        }
        let permit = tokio::time::timeout(WRITE_TIMEOUT, inflight.clone().acquire_owned())
            .await
            .map_err(|_| anyhow!("{MAX_INFLIGHT} writes still in flight after {WRITE_TIMEOUT:?}"))?
            .context("writer semaphore closed")?;
        max_inflight = max_inflight.max(MAX_INFLIGHT - inflight.available_permits());
        if due.elapsed() > period {
            late += 1;
        }
        let seq = k + 1;
        let client = client.clone();
        let url = url.to_string();
        let shared = shared.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let body = format!(r#"{{"values":[{{"key":"temperature","value":{seq}}}]}}"#);
            let send_ns = shared.now_ns();
            let sent =
                client.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body).send().await;
            match sent {
                Ok(response) => {
                    let at = shared.now_ns();
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status == StatusCode::CREATED {
                        WriteSample { seq, send_ns, ack_ns: Some(at), error: None }
                    } else {
                        WriteSample { seq, send_ns, ack_ns: None, error: Some(format!("{status}: {}", clip(&text))) }
                    }
                }
                Err(err) => WriteSample { seq, send_ns, ack_ns: None, error: Some(format!("{err}")) },
            }
        });
    }
    let mut samples = Vec::with_capacity(total as usize);
    let join_by = tokio::time::Instant::now() + WRITE_TIMEOUT + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(join_by, tasks.join_next()).await {
            Ok(Some(Ok(sample))) => samples.push(sample),
            Ok(Some(Err(err))) => bail!("a write task failed: {err}"),
            Ok(None) => break,
            Err(_) => bail!("{} writes did not finish within {WRITE_TIMEOUT:?}", tasks.len()),
        }
    }
    Ok(WriterOutput { samples, late, max_inflight, cpu_start })
}

impl WriterOutput {
    /// Sends per second between the first and the last send.
    pub fn achieved_rate(&self) -> f64 {
        let first = self.samples.iter().map(|s| s.send_ns).min().unwrap_or(0);
        let last = self.samples.iter().map(|s| s.send_ns).max().unwrap_or(0);
        if last > first { (self.samples.len() - 1) as f64 / ((last - first) as f64 / 1e9) } else { 0.0 }
    }
}
