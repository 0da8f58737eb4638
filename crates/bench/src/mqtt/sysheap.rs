//! Mosquitto's own count of the heap it has allocated, `$SYS/broker/heap/current` (published
//! every `sys_interval`, 10 s by default): a second memory figure for `mqtt-memory`, because the
//! running Mosquitto's VmRSS does not shrink when connections close (its allocator keeps the
//! memory and reuses it), so after an earlier run its VmRSS before/after difference is a lower
//! bound, down to 0. The heap count excludes the allocator's overhead and the kernel's socket
//! buffers but is not fooled by reuse. Thingline publishes no `$SYS`: no probe for it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;

use super::codec::{self, Packet};
use super::conn::{Conn, KEEPALIVE_SECS};

const TOPIC: &[u8] = b"$SYS/broker/heap/current";
/// How long to wait for a publication after a point in time (sys_interval 10 s, and margin).
const WAIT: Duration = Duration::from_secs(25);

/// A connection subscribed to `$SYS/broker/heap/current`, keeping every value with its arrival.
pub struct HeapProbe {
    seen: Arc<Mutex<Vec<(Instant, u64)>>>,
    task: JoinHandle<()>,
}

impl HeapProbe {
    /// Subscribe; an error when the broker does not accept or answer the subscription.
    pub async fn start(addr: SocketAddr) -> Result<Self> {
        let client_id = format!("tlb-sysheap-{}", std::process::id());
        let mut conn = tokio::time::timeout(Duration::from_secs(10), async {
            let mut conn = Conn::connect(addr, &client_id, 256).await?;
            conn.subscribe(TOPIC).await?;
            anyhow::Ok(conn)
        })
        .await
        .context("subscribing to $SYS/broker/heap/current")??;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        let task = tokio::spawn(async move {
            let half = Duration::from_secs(u64::from(KEEPALIVE_SECS) / 2);
            let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
            loop {
                // What came with the SUBACK (the retained value) first, stamped before any use.
                let at = Instant::now();
                while let Ok(Some(packet)) = conn.rx.next() {
                    if let Packet::Publish { payload, .. } = packet
                        && let Some(bytes) = std::str::from_utf8(payload).ok().and_then(|s| s.trim().parse().ok())
                        && let Ok(mut seen) = keep.lock()
                    {
                        seen.push((at, bytes));
                    }
                }
                let alive = tokio::select! {
                    read = conn.rx.fill(&mut conn.stream) => read.is_ok(),
                    _ = ping.tick() => {
                        codec::pingreq(&mut conn.tx);
                        conn.flush().await.is_ok()
                    }
                };
                if !alive {
                    break;
                }
            }
        });
        Ok(Self { seen, task })
    }

    /// The first value published after now (waits up to a publication interval and margin).
    pub async fn next_value(&self) -> Result<u64> {
        let after = Instant::now();
        while after.elapsed() < WAIT {
            let found = self.seen.lock().ok().and_then(|seen| seen.iter().find(|(at, _)| *at > after).map(|(_, v)| *v));
            if let Some(value) = found {
                return Ok(value);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no $SYS/broker/heap/current within {WAIT:?}")
    }
}

impl Drop for HeapProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
