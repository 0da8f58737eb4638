//! One subscribing client of `mqtt-relay`: reads the PUBLISHes of its topic until told to stop
//! and keeps (value, receipt time) of every value item in them: one item per message in
//! Mosquitto's payload (the published JSON as is) and in each item of Thingline's array. A
//! payload with no value is counted (and one kept) as an error on the topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use tokio::sync::watch;

use super::Clock;
use super::codec::{self, Packet};
use super::conn::Conn;

/// Payload bytes kept of an unexpected payload.
const SAMPLE_BYTES: usize = 200;

/// Counters shared by the subscribers of one measurement.
pub struct SubscriberShared {
    pub clock: Clock,
    /// Value items received by all of them (to see the deliveries drain).
    pub items: AtomicU64,
}

/// What one subscriber hands back.
#[derive(Debug, Default)]
pub struct SubscriberOutput {
    /// (value, receipt ns) of every value item received.
    pub records: Vec<(u64, u64)>,
    /// PUBLISH packets received.
    pub packets: u64,
    /// PUBLISHes whose payload held no value item.
    pub topic_errors: u64,
    pub topic_error_sample: Option<String>,
    /// Why it stopped before being told to (the server closed the connection, …).
    pub error: Option<String>,
}

/// Read and record until `stop` turns true (or its sender goes), then DISCONNECT.
pub async fn run(
    mut conn: Conn,
    shared: Arc<SubscriberShared>,
    mut stop: watch::Receiver<bool>,
    capacity: usize,
) -> SubscriberOutput {
    let mut out = SubscriberOutput { records: Vec::with_capacity(capacity), ..SubscriberOutput::default() };
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow_and_update() {
                    break;
                }
            }
            read = conn.rx.fill(&mut conn.stream) => {
                let recorded = read.and_then(|_| record(&mut conn, &shared, &mut out));
                // PUBACKs of QoS 1 deliveries (none from a broker that keeps the QoS 0 asked for).
                let answered = match recorded {
                    Ok(()) => conn.flush().await,
                    Err(err) => Err(err),
                };
                if let Err(err) = answered {
                    out.error = Some(format!("{err:#}"));
                    break;
                }
            }
        }
    }
    conn.close().await;
    out
}

/// Everything complete in the read buffer: values recorded, QoS 1 PUBLISHes acknowledged.
fn record(conn: &mut Conn, shared: &SubscriberShared, out: &mut SubscriberOutput) -> Result<()> {
    let at = shared.clock.now_ns();
    let mut items = 0u64;
    while let Some(packet) = conn.rx.next()? {
        if let Packet::Publish { qos, pid, payload, .. } = packet {
            out.packets += 1;
            let records = &mut out.records;
            match codec::values(payload, |value| records.push((value, at))) {
                Some(found) => items += found as u64,
                None => {
                    out.topic_errors += 1;
                    if out.topic_error_sample.is_none() {
                        let end = payload.len().min(SAMPLE_BYTES);
                        out.topic_error_sample = Some(String::from_utf8_lossy(&payload[..end]).into_owned());
                    }
                }
            }
            if let (1, Some(pid)) = (qos, pid) {
                codec::puback(&mut conn.tx, pid);
            }
        }
    }
    shared.items.fetch_add(items, Ordering::Relaxed);
    Ok(())
}
