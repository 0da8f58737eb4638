//! Observability of the realtime paths: the counters snapshot (for the metrics endpoint) and a
//! periodic info line when anything is live or moved since the last line.

use std::sync::Arc;
use std::time::Duration;

use thingline_bus::StatsSnapshot;

use crate::platform::Platform;

/// How often the realtime counters are logged (when non-zero).
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Logs the counters every [`LOG_INTERVAL`] at info while anything is connected or moved, until
/// the server shuts down.
pub fn spawn_stats_logger(platform: Arc<Platform>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
    handle.spawn(async move {
        let shutdown = platform.shutdown_signal().clone();
        let mut last = StatsSnapshot::default();
        let mut tick = tokio::time::interval(LOG_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let s = platform.realtime_snapshot();
            let moved = s.delivered != last.delivered
                || s.dropped_slow != last.dropped_slow
                || s.dropped_lagged != last.dropped_lagged;
            if s.connections > 0 || s.subscriptions > 0 || moved {
                tracing::info!(
                    connections = s.connections,
                    subscriptions = s.subscriptions,
                    groups = s.groups,
                    delivered = s.delivered,
                    delivered_since_last = s.delivered - last.delivered,
                    dropped_slow = s.dropped_slow,
                    dropped_lagged = s.dropped_lagged,
                    published = s.published,
                    "realtime"
                );
            }
            last = s;
        }
    });
}
