//! One CoAP observer of `coap-observe`: its own UDP socket, a registration as the official SDK
//! sends it (CON GET, Observe=0, `v2`/`things`/`{token}?keepAlive=…`), then, until told to stop,
//! every notification recorded as (value, receipt time) like a Socket.IO client's data frame, each
//! confirmable one acknowledged with an empty ACK; at the stop, a deregistration (GET with
//! Observe=1, RFC 7641 §3.6) so that the server stops notifying before the next measurement.
//!
//! A confirmable notification seen again (the same message id: the server did not get the ACK
//! and retransmitted it) is acknowledged again and counted, not recorded twice.
//!
//! The registration's answer is a 2.05 with an Observe option carrying
//! `{"status":"success","message":"subscribed"}` (piggybacked, or after an empty ACK); it is
//! retransmitted after 2 s of silence (the timeout doubling), within `--open-timeout` per
//! attempt, and tried once more with a new message id and token on failure.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc, watch};

use super::codec::{self, Datagram, Kind, Template};
use super::connected_socket;
use super::mids::Mids;
use super::report::ObserverStats;
use crate::mqtt::conn::Opened;
use crate::realtime::client::{Shared, SocketOutput, clip};

/// Retransmission timeout of a registration or deregistration (doubled each time).
const RETRANSMIT_AFTER: Duration = Duration::from_secs(2);
/// How long a deregistration may take (then it counts as failed).
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer (a notification of one value is ~100 bytes; block-wise starts at 1,024).
const BUFFER: usize = 2048;
/// Samples kept per observer.
const SAMPLES: usize = 1;
/// Confirmable notifications remembered by message id.
const RECENT_CON: usize = 8;

/// What every observer of a measurement has in common.
pub struct ObserverPlan {
    pub addr: SocketAddr,
    pub register: Template,
    pub deregister: Template,
    /// One registration attempt within this.
    pub open_timeout: Duration,
    /// Registrations in progress at once.
    pub gate: Arc<Semaphore>,
    /// Records kept per observer before growing.
    pub capacity: usize,
}

/// One observer: register (reported on `opened`), record until `stop`, deregister.
pub async fn observer_task(
    plan: Arc<ObserverPlan>,
    index: usize,
    shared: Arc<Shared>,
    opened: mpsc::UnboundedSender<Opened>,
    mut stop: watch::Receiver<bool>,
) -> (SocketOutput, ObserverStats) {
    let mut o = Observer {
        plan: &plan,
        shared: &shared,
        socket: None,
        mids: None,
        mid: 0,
        token: (index as u32) << 8,
        rx: vec![0; BUFFER],
        tx: Vec::with_capacity(128),
        last_observe: None,
        output: SocketOutput::default(),
        stats: ObserverStats::default(),
        deregistering: false,
        con_mids: VecDeque::new(),
        values: Vec::new(),
    };
    {
        let Ok(_permit) = plan.gate.acquire().await else {
            let _ = opened.send(Opened::Failed("the registration gate closed".into()));
            return (o.output, o.stats);
        };
        let mut retried = None;
        let mut registered = false;
        for attempt in 0..2 {
            let tried = tokio::time::timeout(plan.open_timeout, o.register()).await;
            match tried.unwrap_or_else(|_| Err(format!("no answer to the registration within {:?}", plan.open_timeout)))
            {
                Ok(()) => {
                    registered = true;
                    break;
                }
                Err(err) if attempt == 0 => retried = Some(format!("observer {index}: {err}")),
                Err(err) => {
                    let _ = opened.send(Opened::Failed(format!("observer {index}: {err}")));
                }
            }
        }
        if !registered {
            return (o.output, o.stats);
        }
        let _ = opened.send(Opened::Ok { retried });
    }
    drop(opened);
    o.output.records.reserve(plan.capacity);
    o.record_until(&mut stop).await;
    {
        // At most `--connect-concurrency` at once, as the registrations: a burst of 1,000
        // datagrams overflows the server socket's receive buffer (208 KB by default).
        let _permit = plan.gate.acquire().await;
        o.deregister().await;
    }
    let seen = o.output.records.len();
    let mut seqs: Vec<u64> = o.output.records.iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    o.stats.duplicates = (seen - seqs.len()) as u64;
    (o.output, o.stats)
}

struct Observer<'a> {
    plan: &'a ObserverPlan,
    shared: &'a Shared,
    /// Message ids of the socket's port (declared before the socket: dropped, so handed back,
    /// while the port is still bound).
    mids: Option<Mids>,
    socket: Option<UdpSocket>,
    /// The id of the exchange awaited.
    mid: u16,
    token: u32,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// The Observe number of the last notification.
    last_observe: Option<u32>,
    output: SocketOutput,
    stats: ObserverStats,
    /// Scratch for a notification's values.
    values: Vec<u64>,
    /// The exchange awaited is the deregistration.
    deregistering: bool,
    /// Message ids of the last confirmable notifications (to recognise a retransmission).
    con_mids: VecDeque<u16>,
}

/// How a datagram relates to the exchange awaited.
enum Reply {
    /// An empty ACK of the request: the answer comes separately.
    EmptyAck,
    /// The answer (piggybacked or separate): code, Observe, payload.
    Answer { code: u8, observe: Option<u32>, payload: String },
    /// Something else (a notification, another exchange's datagram).
    Other,
}

impl Observer<'_> {
    /// A new socket, a new message id and token, the registration sent and answered.
    async fn register(&mut self) -> Result<(), String> {
        let (socket, mids) = connected_socket(self.plan.addr).await.map_err(|e| format!("{e:#}"))?;
        // The old port's ids are handed back before its socket closes.
        self.mids = Some(mids);
        self.socket = Some(socket);
        self.mid = self.next_mid()?;
        self.token = self.token.wrapping_add(1);
        self.plan.register.encode(&mut self.tx, self.mid, self.token, 0);
        let (code, observe, payload) = self.exchange(None).await?;
        if code != codec::CONTENT {
            return Err(format!("registration answered {} {}", codec::dotted(code), clip(&payload)));
        }
        let Some(observe) = observe else {
            return Err(format!("registration answered 2.05 without Observe (not registered): {}", clip(&payload)));
        };
        if !payload.contains("subscribed") {
            return Err(format!("registration answered {}", clip(&payload)));
        }
        self.last_observe = Some(observe);
        Ok(())
    }

    /// Send the request in `tx` and wait for its answer, retransmitting it on silence; `until`
    /// bounds the wait (the caller's timeout does otherwise).
    async fn exchange(&mut self, until: Option<tokio::time::Instant>) -> Result<(u8, Option<u32>, String), String> {
        self.send_tx().await?;
        let mut timeout = RETRANSMIT_AFTER;
        let mut deadline = tokio::time::Instant::now() + timeout;
        let mut separate = false;
        loop {
            if let Some(until) = until
                && tokio::time::Instant::now() >= until
            {
                return Err("no answer in time".into());
            }
            let wake = until.map_or(deadline, |u| u.min(deadline));
            let len = match tokio::time::timeout_at(wake, self.recv()).await {
                Err(_) => {
                    if !separate && tokio::time::Instant::now() >= deadline {
                        if self.deregistering {
                            self.stats.deregistration_retransmissions += 1;
                        } else {
                            self.stats.registration_retransmissions += 1;
                        }
                        self.send_tx().await?;
                        timeout *= 2;
                        deadline = tokio::time::Instant::now() + timeout;
                    }
                    continue;
                }
                Ok(Err(_)) => continue, // an ICMP error of an earlier send
                Ok(Ok(len)) => len,
            };
            match self.classify(len).await? {
                Reply::EmptyAck => separate = true,
                Reply::Answer { code, observe, payload } => return Ok((code, observe, payload)),
                Reply::Other => {}
            }
        }
    }

    /// Acknowledge a confirmable datagram; an answer to the exchange awaited is returned, a
    /// notification is recorded.
    async fn classify(&mut self, len: usize) -> Result<Reply, String> {
        let received = self.shared.now_ns();
        // The buffer is lent out while the datagram borrows it.
        let rx = std::mem::take(&mut self.rx);
        let reply = match codec::parse(&rx[..len]) {
            Some(d) => self.classify_datagram(d, received).await,
            None => {
                self.stats.unexpected += 1;
                Ok(Reply::Other)
            }
        };
        self.rx = rx;
        reply
    }

    async fn classify_datagram(&mut self, d: Datagram<'_>, received: u64) -> Result<Reply, String> {
        if d.kind == Kind::Con {
            let ack = codec::empty_ack(d.mid);
            self.send(&ack).await?;
        }
        let ours = d.token_u32() == Some(self.token);
        if d.kind == Kind::Ack && d.mid == self.mid {
            if d.code == 0 {
                return Ok(Reply::EmptyAck);
            }
            return Ok(Reply::Answer {
                code: d.code,
                observe: d.observe,
                payload: String::from_utf8_lossy(d.payload).into_owned(),
            });
        }
        if !ours || d.code == 0 {
            if d.kind == Kind::Rst && d.mid == self.mid {
                return Ok(Reply::Answer { code: 0, observe: None, payload: "a Reset".into() });
            }
            self.stats.unexpected += 1;
            return Ok(Reply::Other);
        }
        // Our token: a notification, or the separate answer of the exchange awaited.
        if d.code == codec::CONTENT && d.observe.is_some() && self.last_observe.is_some() {
            if d.kind == Kind::Con {
                // A retransmission (our ACK was lost) is acknowledged again, not delivered twice
                // (RFC 7252 §4.5).
                if self.con_mids.contains(&d.mid) {
                    self.stats.retransmitted_notifications += 1;
                    return Ok(Reply::Other);
                }
                if self.con_mids.len() == RECENT_CON {
                    self.con_mids.pop_front();
                }
                self.con_mids.push_back(d.mid);
            }
            self.notification(d.kind, d.observe.unwrap_or(0), d.payload, received);
            return Ok(Reply::Other);
        }
        Ok(Reply::Answer { code: d.code, observe: d.observe, payload: String::from_utf8_lossy(d.payload).into_owned() })
    }

    /// A notification of the registered observation.
    fn notification(&mut self, kind: Kind, observe: u32, payload: &[u8], received: u64) {
        self.stats.notifications += 1;
        self.stats.confirmable += u64::from(kind == Kind::Con);
        if let Some(last) = self.last_observe
            && !newer(last, observe)
        {
            self.stats.out_of_order += 1;
        }
        self.last_observe = Some(observe);
        if payload == b"{}" {
            self.stats.keepalives += 1;
        } else if codec::values(payload, &mut self.values).is_some() {
            for &seq in &self.values {
                self.output.records.push((seq, received));
            }
            self.shared.deliveries.fetch_add(self.values.len() as u64, Ordering::Relaxed);
        } else {
            self.shared.topic_errors.fetch_add(1, Ordering::Relaxed);
            if self.output.topic_error_sample.is_none() {
                self.output.topic_error_sample = Some(clip(&String::from_utf8_lossy(payload)));
            }
        }
    }

    /// Record notifications until `stop` turns true (or its sender goes).
    async fn record_until(&mut self, stop: &mut watch::Receiver<bool>) {
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stopped);
        loop {
            let len = tokio::select! {
                biased;
                received = self.recv() => match received {
                    Ok(len) => len,
                    Err(_) => continue,
                },
                _ = &mut stopped => return,
            };
            match self.classify(len).await {
                Ok(Reply::Other) => {}
                Ok(Reply::EmptyAck) => self.stats.unexpected += 1,
                Ok(Reply::Answer { code, observe, payload }) => {
                    // A response of our token that is no notification: the server ended the
                    // observation (RFC 7641 §3.2: a response without Observe, or an error).
                    self.stats.ended += 1;
                    self.shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    if self.stats.ended_samples.len() < SAMPLES {
                        self.stats.ended_samples.push(format!(
                            "{} observe {observe:?} {}",
                            codec::dotted(code),
                            clip(&payload)
                        ));
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// GET with Observe=1 and the registration's token, answered (2.05 without Observe).
    async fn deregister(&mut self) {
        self.deregistering = true;
        self.mid = match self.next_mid() {
            Ok(mid) => mid,
            Err(err) => {
                self.stats.deregister_failures += 1;
                self.stats.deregister_samples.push(err);
                return;
            }
        };
        self.plan.deregister.encode(&mut self.tx, self.mid, self.token, 0);
        let until = tokio::time::Instant::now() + DEREGISTER_TIMEOUT;
        // Notifications still arriving are acknowledged and recorded meanwhile.
        let answered = self.exchange(Some(until)).await;
        match answered {
            Ok((code, None, _)) if code >> 5 == 2 => self.stats.deregistered += 1,
            Ok((code, observe, payload)) => {
                self.stats.deregister_failures += 1;
                if self.stats.deregister_samples.len() < SAMPLES {
                    self.stats.deregister_samples.push(format!(
                        "deregistration answered {} observe {observe:?} {}",
                        codec::dotted(code),
                        clip(&payload)
                    ));
                }
            }
            Err(err) => {
                self.stats.deregister_failures += 1;
                if self.stats.deregister_samples.len() < SAMPLES {
                    self.stats.deregister_samples.push(format!("deregistration: {err}"));
                }
            }
        }
    }

    /// The next message id of the socket's port.
    fn next_mid(&mut self) -> Result<u16, String> {
        self.mids.as_mut().and_then(Mids::next).ok_or_else(|| "no message id left on this port".to_string())
    }

    async fn recv(&mut self) -> std::io::Result<usize> {
        match &self.socket {
            Some(socket) => socket.recv(&mut self.rx).await,
            None => std::future::pending().await,
        }
    }

    async fn send_tx(&self) -> Result<(), String> {
        self.send(&self.tx).await
    }

    async fn send(&self, datagram: &[u8]) -> Result<(), String> {
        let socket = self.socket.as_ref().ok_or("no socket")?;
        socket.send(datagram).await.map(|_| ()).map_err(|e| format!("sending: {e}"))
    }
}

/// Whether Observe number `v2` is newer than `v1` (RFC 7641 §3.4, 24-bit serial arithmetic).
fn newer(v1: u32, v2: u32) -> bool {
    const HALF: u32 = 1 << 23;
    (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_numbers_wrap() {
        assert!(newer(1, 2));
        assert!(!newer(2, 2));
        assert!(!newer(3, 2));
        assert!(newer((1 << 24) - 1, 0));
        assert!(!newer(0, (1 << 24) - 1));
    }
}
