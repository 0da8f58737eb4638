//! The `realtime-memory` measurement of one target: the server's VmRSS once settled, `--conns`
//! sockets opened and left idle, VmRSS settled again; (after − before) per socket.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::report::MemoryTargetReport;
use super::sockets::{close_sockets, open_sockets};
use super::{Fixture, TargetSpec};
use crate::cli::{RealtimeMemoryArgs, secs};
use crate::server::rss_bytes_of;

/// VmRSS samples this far apart while waiting for it to settle.
const SETTLE_STEP: Duration = Duration::from_millis(250);
/// VmRSS is settled when the samples of this long a window stay within [`SETTLE_BAND`].
const SETTLE_WINDOW: Duration = Duration::from_secs(2);
const SETTLE_BAND: u64 = 256 * 1024;

/// The server's VmRSS once it stops moving: at least `min_wait`, then until the samples of the
/// last [`SETTLE_WINDOW`] stay within [`SETTLE_BAND`], or `timeout` (then the last sample, and
/// `false`).
pub(crate) async fn settled_rss(pid: u32, min_wait: Duration, timeout: Duration) -> Result<(u64, bool)> {
    let started = Instant::now();
    tokio::time::sleep(min_wait).await;
    let keep = (SETTLE_WINDOW.as_millis() / SETTLE_STEP.as_millis()) as usize + 1;
    let mut window = std::collections::VecDeque::with_capacity(keep);
    loop {
        let rss = rss_bytes_of(pid)?;
        if window.len() == keep {
            window.pop_front();
        }
        window.push_back(rss);
        let spread = window.iter().max().unwrap_or(&0) - window.iter().min().unwrap_or(&0);
        if window.len() == keep && spread <= SETTLE_BAND {
            return Ok((rss, true));
        }
        if started.elapsed() >= timeout {
            return Ok((rss, false));
        }
        tokio::time::sleep(SETTLE_STEP).await;
    }
}

/// Idle memory of one target: settled VmRSS, `--conns` sockets opened (authenticated and
/// subscribed, then idle), settled VmRSS again; (after − before) / opened.
pub async fn measure_memory(
    args: &RealtimeMemoryArgs,
    target: &TargetSpec<'_>,
    fixture: &Fixture,
    clients: &tokio::runtime::Handle,
) -> Result<MemoryTargetReport> {
    let label = target.label;
    let min_wait = secs(args.settle_secs);
    let timeout = secs(args.settle_timeout).max(min_wait);
    let (before, settled_before) = settled_rss(target.pid, min_wait, timeout).await?;
    eprintln!(
        "{label}: VmRSS {} KB before opening{}",
        before / 1024,
        if settled_before { "" } else { " (not settled)" }
    );
    let sockets = open_sockets(&args.common, target, fixture, clients, args.conns, 0).await?;
    let measured = settled_rss(target.pid, min_wait, timeout).await;
    let disconnects = sockets.shared.disconnects.load(Ordering::Relaxed);
    let (opened, retries, failures, open_seconds) =
        (sockets.opened, sockets.retries.len(), sockets.failures.clone(), sockets.open_seconds);
    close_sockets(sockets, label).await;
    let (after, settled_after) = measured?;
    // Sockets the server closed meanwhile are not in `after`.
    let open_at_the_end = (opened as u64).saturating_sub(disconnects).max(1);
    let kb_per_connection = (after as f64 - before as f64) / 1024.0 / open_at_the_end as f64;
    eprintln!(
        "{label}: VmRSS {} KB with {opened} sockets open{}: {kb_per_connection:.1} KB each",
        after / 1024,
        if settled_after { "" } else { " (not settled)" }
    );
    Ok(MemoryTargetReport {
        target: label.to_string(),
        conns: args.conns,
        opened,
        open_retries: retries,
        open_failures: failures.len(),
        open_failure_samples: failures.into_iter().take(3).collect(),
        open_seconds,
        rss_before_kb: before / 1024,
        rss_after_kb: after / 1024,
        kb_per_connection,
        settled_before,
        settled_after,
        disconnects,
    })
}
