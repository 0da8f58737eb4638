//! Readiness: whether this node should be sent traffic now. It is when the store answers a
//! trivial query within a bound, the bus reaches the other nodes (always, in process), and the
//! node is not stopping (a stopping node drains: a load balancer that polls readiness takes it
//! out before its listeners close, which is what makes rolling restarts lose nothing).

use std::time::{Duration, Instant};

use serde::Serialize;
use thingline_bus::BusStatus;

use super::Platform;

/// How long the store may take to answer the readiness query.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Whether every part is ready.
    pub ready: bool,
    pub stopping: bool,
    pub store: StoreReadiness,
    pub bus: BusStatus,
}

#[derive(Debug, Serialize)]
pub struct StoreReadiness {
    pub backend: &'static str,
    pub ok: bool,
    /// How long the probe took, ms.
    pub latency_ms: f64,
    /// Why it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Platform {
    /// Probes the store and the bus.
    pub async fn readiness(&self) -> Readiness {
        let started = Instant::now();
        let probe = tokio::time::timeout(STORE_PROBE_TIMEOUT, self.store.ping()).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let error = match probe {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.public_message()),
            Err(_) => Some(format!("no answer within {} s", STORE_PROBE_TIMEOUT.as_secs())),
        };
        let store = StoreReadiness { backend: self.store.backend(), ok: error.is_none(), latency_ms, error };
        let bus = self.bus.status();
        let stopping = self.shutdown.is_cancelled();
        Readiness { ready: store.ok && bus.connected && !stopping, stopping, store, bus }
    }
}
