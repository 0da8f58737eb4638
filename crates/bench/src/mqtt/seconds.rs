//! The measured window second by second: a counter's increase (PUBACKs, deliveries) and the CPU
//! others used in each second, and from them the rate over the quiet seconds only. The machine
//! is shared with other people's builds and tests: a second in which others kept a core busy is
//! not a second of this measurement's own, and the quiet-seconds rate says what the target does
//! when it has the machine (with the clients).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::report::Cpu;
use super::{CLIENT_THREAD, Clock, Window};
use crate::realtime::cpu::CpuSnapshot;

/// A second is quiet when others (and interrupts charged to no process) used less CPU than this.
pub const QUIET_OTHERS_SECONDS: f64 = 0.25;
/// The quiet-seconds rate needs at least this many quiet seconds.
const MIN_QUIET_SECONDS: usize = 3;

/// The window second by second.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seconds {
    /// The counter's increase in each whole second of the window.
    pub counts: Vec<u64>,
    /// CPU seconds of other processes and interrupts in each of those seconds.
    pub others: Vec<f64>,
    /// Seconds with others below [`QUIET_OTHERS_SECONDS`].
    pub quiet: usize,
    /// The counter's rate over those seconds (when there are at least 3).
    pub quiet_rate: Option<f64>,
}

impl Seconds {
    fn new(counts: Vec<u64>, others: Vec<f64>) -> Self {
        let quiet: Vec<u64> =
            counts.iter().zip(&others).filter(|(_, o)| **o < QUIET_OTHERS_SECONDS).map(|(c, _)| *c).collect();
        let quiet_rate =
            (quiet.len() >= MIN_QUIET_SECONDS).then(|| quiet.iter().sum::<u64>() as f64 / quiet.len() as f64);
        Self { counts, others, quiet: quiet.len(), quiet_rate }
    }

    pub fn lines(&self) -> [String; 2] {
        let counts: Vec<String> = self.counts.iter().map(u64::to_string).collect();
        let others: Vec<String> = self.others.iter().map(|s| format!("{s:.2}")).collect();
        [
            format!(
                "per second   {}  (quiet seconds {}/{}: {}/s)",
                counts.join(" "),
                self.quiet,
                self.counts.len(),
                self.quiet_rate.map_or_else(|| "too few".to_string(), |r| format!("{r:.0}"))
            ),
            format!("others+irq   {} (CPU s in each second)", others.join(" ")),
        ]
    }
}

/// Sleep through the window, sampling `counter` and the CPU every second; returns the samples
/// and the CPU used over the whole window (the client threads: the MQTT clients').
pub async fn sample(clock: &Clock, window: Window, counter: &AtomicU64, server: Option<u32>) -> (Seconds, Cpu) {
    sample_threads(clock, window, counter, server, CLIENT_THREAD).await
}

/// [`sample`], with the client threads those named `client_thread`.
pub async fn sample_threads(
    clock: &Clock,
    window: Window,
    counter: &AtomicU64,
    server: Option<u32>,
    client_thread: &str,
) -> (Seconds, Cpu) {
    tokio::time::sleep_until(clock.instant(window.from)).await;
    let start = CpuSnapshot::of(server, client_thread);
    let (mut counts, mut others) = (Vec::new(), Vec::new());
    let mut last = counter.load(Ordering::Relaxed);
    let mut last_cpu = start;
    let mut second = window.from + 1_000_000_000;
    while second <= window.to {
        tokio::time::sleep_until(clock.instant(second)).await;
        let now = counter.load(Ordering::Relaxed);
        let cpu = CpuSnapshot::of(server, client_thread);
        counts.push(now - last);
        others.push(Cpu::new(cpu.since(&last_cpu)).others().unwrap_or(f64::NAN));
        last = now;
        last_cpu = cpu;
        second += 1_000_000_000;
    }
    tokio::time::sleep_until(clock.instant(window.to)).await;
    let used = CpuSnapshot::of(server, client_thread).since(&start);
    (Seconds::new(counts, others), Cpu::new(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_rate_leaves_out_busy_seconds() {
        let seconds = Seconds::new(vec![100, 50, 110, 90, 40], vec![0.0, 1.0, 0.1, -0.05, 0.9]);
        assert_eq!(seconds.quiet, 3);
        assert_eq!(seconds.quiet_rate, Some(100.0));
        assert_eq!(Seconds::new(vec![1, 2], vec![0.0, 0.0]).quiet_rate, None);
        assert_eq!(Seconds::new(vec![1, 2, 3], vec![f64::NAN, 0.0, 0.0]).quiet, 2);
    }
}
