//! One writing client of `coap-write`: its own UDP socket (connected to the target), its own
//! thing, one confirmable write outstanding at a time, as a device running the official SDK. From
//! the go signal to the window's end it sends the next write as soon as the previous one is
//! answered; after the window it waits for the answer of the one outstanding (at most
//! [`DRAIN`]).
//!
//! An answer is, from Thingline, a piggybacked ACK of the request's message id carrying 2.01 (or
//! another code: an error), or an empty ACK followed by the response as a separate message with
//! the request's token (acknowledged with an empty ACK when confirmable); from the echo, the
//! request itself coming back. A request unanswered after `retransmit_after` is sent again,
//! unchanged (same message id and token: a retransmission the server must deduplicate), the
//! timeout doubling each time, at most [`MAX_RETRANSMIT`] times (RFC 7252 §4.2). An empty ACK
//! stops the retransmissions.
//!
//! Message ids count up per local port from a random start, continued by a later socket that
//! gets the same port (module `mids`); before one would repeat (65,536 requests on a port) the
//! client moves to a new socket, so that a (port, message id) pair never repeats within a run
//! and a new write is never taken for a retransmission. Tokens are 4 bytes,
//! distinct per client. The value written is a sequence number per thing, continued across the
//! measurements of a run, so that the values read back at the end can be checked one by one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::codec::{self, Kind, Template};
use super::connected_socket;
use super::mids::Mids;
use crate::mqtt::conn::Opened;
use crate::mqtt::{Clock, Window};

/// After the window: how long a client waits for the answer of its last write.
pub const DRAIN: Duration = Duration::from_secs(15);
/// Retransmissions of one request at most (RFC 7252's MAX_RETRANSMIT).
const MAX_RETRANSMIT: u32 = 4;
/// Error answers kept per client as samples.
const ERROR_SAMPLES: usize = 2;
/// Receive buffer (the answers are tens of bytes).
const BUFFER: usize = 2048;

/// Who answers the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// Thingline: 2.01 piggybacked, or an empty ACK and a separate response.
    Coap,
    /// The UDP echo: the request itself comes back.
    Echo,
}

/// What every client of one measurement has in common.
pub struct ClientPlan {
    pub addr: SocketAddr,
    pub answerer: Answerer,
    pub retransmit_after: Duration,
}

/// What the clients of one measurement share.
pub struct WriteShared {
    pub clock: Clock,
    /// Final answers (2.01 or echo) received by all of them, sampled every second.
    pub answers: AtomicU64,
}

/// What one client hands back.
#[derive(Debug, Default)]
pub struct ClientOutput {
    /// Writes sent (first transmissions).
    pub sent: u64,
    /// Writes answered 2.01 (Thingline) or echoed.
    pub answered: u64,
    /// Of those, answered within the window: the throughput.
    pub answered_in_window: u64,
    /// Send (first transmission) → answer of those answered within the window.
    pub latencies_ns: Vec<u64>,
    /// Retransmissions sent.
    pub retransmissions: u64,
    /// Writes whose answer came as an empty ACK and a separate response.
    pub separate: u64,
    /// Writes answered with another code than 2.01 (or a Reset).
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Writes never answered (after every retransmission, or by the end of the drain).
    pub unanswered: u64,
    /// Datagrams for an earlier exchange (a second answer, a late one).
    pub late: u64,
    /// Datagrams that were not CoAP, or matched nothing.
    pub unexpected: u64,
    /// The sequence numbers answered 2.01, in order (Thingline only).
    pub acked_values: Vec<u64>,
    /// The sequence numbers sent but not answered 2.01 (errors, unanswered): stored or not.
    pub uncertain_values: Vec<u64>,
    /// The last sequence number sent.
    pub last_seq: u64,
    /// Sockets used (a new one when message ids would repeat).
    pub sockets: u32,
    /// Why the client stopped early (a socket error).
    pub error: Option<String>,
}

/// How a write ended.
enum Outcome {
    /// `detail`: the code and payload of an answer other than 2.01 (Thingline).
    Answered {
        code: u8,
        at: u64,
        separate: bool,
        detail: Option<String>,
    },
    Unanswered,
}

/// One client: open its socket (reported on `opened`), wait for the go signal, write until the
/// window ends. `first_seq` is the last value written to its thing before; `token_base` makes its
/// tokens distinct from the other clients'.
pub async fn run(
    plan: Arc<ClientPlan>,
    template: Template,
    first_seq: u64,
    token_base: u32,
    shared: Arc<WriteShared>,
    mut go: watch::Receiver<Option<Window>>,
    opened: mpsc::UnboundedSender<Opened>,
) -> Option<ClientOutput> {
    let (socket, mids) = match connected_socket(plan.addr).await {
        Ok(opened_socket) => {
            let _ = opened.send(Opened::Ok { retried: None });
            opened_socket
        }
        Err(err) => {
            let _ = opened.send(Opened::Failed(format!("{err:#}")));
            return None;
        }
    };
    drop(opened);
    let window = go.wait_for(Option::is_some).await.ok().and_then(|window| *window)?;
    let mut client = Client {
        plan: &plan,
        shared: &shared,
        socket,
        mids,
        mid: 0,
        token: token_base,
        tx: Vec::with_capacity(128),
        rx: vec![0; BUFFER],
        out: ClientOutput { last_seq: first_seq, sockets: 1, ..Default::default() },
    };
    if let Err(err) = client.write_until(&template, window).await {
        client.out.error = Some(err);
    }
    Some(client.out)
}

struct Client<'a> {
    plan: &'a ClientPlan,
    shared: &'a WriteShared,
    /// Message ids of this socket's port (declared before the socket: dropped, so handed back,
    /// while the port is still bound).
    mids: Mids,
    socket: UdpSocket,
    /// The id of the request in flight.
    mid: u16,
    token: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
    out: ClientOutput,
}

impl Client<'_> {
    async fn write_until(&mut self, template: &Template, window: Window) -> Result<(), String> {
        let clock = self.shared.clock;
        let give_up_at = window.to + DRAIN.as_nanos() as u64;
        while clock.now_ns() < window.to {
            self.mid = match self.mids.next() {
                Some(mid) => mid,
                None => {
                    let (socket, mut mids) = connected_socket(self.plan.addr).await.map_err(|e| format!("{e:#}"))?;
                    self.mid = mids.next().ok_or("a new socket's port has no message id left")?;
                    // The old port's ids are handed back before its socket closes.
                    (self.mids, self.socket) = (mids, socket);
                    self.out.sockets += 1;
                    self.mid
                }
            };
            self.token = self.token.wrapping_add(1);
            let seq = self.out.last_seq + 1;
            self.out.last_seq = seq;
            template.encode(&mut self.tx, self.mid, self.token, seq);
            let sent_at = clock.now_ns();
            self.out.sent += 1;
            match self.exchange(give_up_at).await? {
                Outcome::Answered { code, at, separate, detail } => {
                    self.out.separate += u64::from(separate);
                    let good = match self.plan.answerer {
                        Answerer::Coap => code == codec::CREATED,
                        Answerer::Echo => true,
                    };
                    if good {
                        self.out.answered += 1;
                        self.shared.answers.fetch_add(1, Ordering::Relaxed);
                        if window.contains(at) {
                            self.out.answered_in_window += 1;
                            self.out.latencies_ns.push(at.saturating_sub(sent_at));
                        }
                        if self.plan.answerer == Answerer::Coap {
                            self.out.acked_values.push(seq);
                        }
                    } else {
                        self.out.errors += 1;
                        self.out.uncertain_values.push(seq);
                        if self.out.error_samples.len() < ERROR_SAMPLES {
                            self.out.error_samples.push(detail.unwrap_or_else(|| codec::dotted(code)));
                        }
                    }
                }
                Outcome::Unanswered => {
                    self.out.unanswered += 1;
                    self.out.uncertain_values.push(seq);
                }
            }
        }
        Ok(())
    }

    /// Send the request in `tx` and wait for its answer, retransmitting on silence; gives up
    /// after [`MAX_RETRANSMIT`] retransmissions or at `give_up_at` (clock ns).
    async fn exchange(&mut self, give_up_at: u64) -> Result<Outcome, String> {
        let clock = self.shared.clock;
        self.send_request().await?;
        let mut timeout = self.plan.retransmit_after;
        let mut retransmissions = 0;
        let mut deadline = clock.now_ns() + timeout.as_nanos() as u64;
        // After an empty ACK: the separate response is awaited until `give_up_at`.
        let mut acked_empty = false;
        loop {
            let until = deadline.min(give_up_at);
            let received = tokio::time::timeout_at(clock.instant(until), self.socket.recv(&mut self.rx)).await;
            let len = match received {
                Err(_) => {
                    if acked_empty || clock.now_ns() >= give_up_at || retransmissions == MAX_RETRANSMIT {
                        return Ok(Outcome::Unanswered);
                    }
                    retransmissions += 1;
                    self.out.retransmissions += 1;
                    self.send_request().await?;
                    timeout *= 2;
                    deadline = clock.now_ns() + timeout.as_nanos() as u64;
                    continue;
                }
                // ICMP port unreachable of an earlier send (the server is gone) and the like: the
                // retransmissions and the deadline decide.
                Ok(Err(_)) => continue,
                Ok(Ok(len)) => len,
            };
            let at = clock.now_ns();
            if self.plan.answerer == Answerer::Echo {
                if self.rx[..len] == self.tx[..] {
                    return Ok(Outcome::Answered { code: 0, at, separate: false, detail: None });
                }
                self.out.late += 1;
                continue;
            }
            let Some(d) = codec::parse(&self.rx[..len]) else {
                self.out.unexpected += 1;
                continue;
            };
            let (kind, code, mid) = (d.kind, d.code, d.mid);
            let ours = d.token_u32() == Some(self.token);
            let detail = (code != codec::CREATED)
                .then(|| format!("{} {}", codec::dotted(code), String::from_utf8_lossy(d.payload)));
            if kind == Kind::Con {
                // A separate response (or a retransmission of one): acknowledge it whatever it is.
                self.send(&codec::empty_ack(mid)).await?;
            }
            match kind {
                Kind::Ack if mid == self.mid && code == 0 => acked_empty = true,
                Kind::Ack if mid == self.mid => return Ok(Outcome::Answered { code, at, separate: false, detail }),
                Kind::Con | Kind::Non if ours && code != 0 => {
                    return Ok(Outcome::Answered { code, at, separate: true, detail });
                }
                Kind::Rst if mid == self.mid => {
                    let detail = Some("a Reset".to_string());
                    return Ok(Outcome::Answered { code: 0, at, separate: acked_empty, detail });
                }
                _ => self.out.late += 1,
            }
        }
    }

    async fn send_request(&mut self) -> Result<(), String> {
        self.socket.send(&self.tx).await.map(|_| ()).map_err(|e| format!("sending: {e}"))
    }

    async fn send(&self, datagram: &[u8]) -> Result<(), String> {
        self.socket.send(datagram).await.map(|_| ()).map_err(|e| format!("sending: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use thingline_coap_message as server;

    use super::*;

    /// A CoAP server in a task answering writes as Thingline may: the 1st piggybacked, the 2nd
    /// with an empty ACK and a confirmable separate response (whose ACK it expects), the 3rd's
    /// first transmission ignored (a retransmission follows), the 4th with an error; every
    /// further one piggybacked. Returns its address and the (mid, value) of each write it saw.
    async fn fake_server() -> (SocketAddr, tokio::task::JoinHandle<Vec<(u16, String)>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bound");
        let addr = socket.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 2048];
            let mut separate_mid = None;
            let mut dropped_once = false;
            let mut writes = 0;
            loop {
                let Ok(Ok((len, peer))) =
                    tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buf)).await
                else {
                    return seen;
                };
                let request = match server::parse(&buf[..len]) {
                    Ok(server::Message::Request(request)) => request,
                    Ok(server::Message::Ack { mid }) => {
                        assert_eq!(Some(mid), separate_mid.take(), "the ACK of the separate response");
                        continue;
                    }
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(request.path, ["v2", "things", "tok"]);
                let body = String::from_utf8(request.payload.clone()).expect("utf-8");
                if seen.last().is_none_or(|(mid, _)| *mid != request.mid) {
                    writes += 1;
                }
                let nth = writes;
                seen.push((request.mid, body));
                let answer = |code: u8, kind: Option<server::Kind>, mid: u16| {
                    server::Response {
                        kind,
                        mid,
                        token: request.token.clone(),
                        code,
                        payload: br#"{"status":"created"}"#.to_vec(),
                        ..Default::default()
                    }
                    .encode()
                };
                let out = match nth {
                    2 => {
                        socket.send_to(&server::empty_ack(request.mid), peer).await.expect("sent");
                        separate_mid = Some(0x7777);
                        answer(server::code::CREATED, Some(server::Kind::Con), 0x7777)
                    }
                    3 if !dropped_once => {
                        dropped_once = true;
                        continue;
                    }
                    4 => answer(server::code::SERVICE_UNAVAILABLE, None, request.mid),
                    _ => answer(server::code::CREATED, None, request.mid),
                };
                socket.send_to(&out, peer).await.expect("sent");
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn piggybacked_separate_retransmitted_and_refused_writes() {
        let (addr, server) = fake_server().await;
        let plan =
            Arc::new(ClientPlan { addr, answerer: Answerer::Coap, retransmit_after: Duration::from_millis(100) });
        let clock = Clock::start();
        let shared = Arc::new(WriteShared { clock, answers: AtomicU64::new(0) });
        let (go_tx, go_rx) = watch::channel(None);
        let (opened_tx, mut opened_rx) = mpsc::unbounded_channel();
        let client = tokio::spawn(run(plan, Template::write("tok"), 10, 0, shared.clone(), go_rx, opened_tx));
        assert!(matches!(opened_rx.recv().await, Some(Opened::Ok { .. })));
        let now = clock.now_ns();
        let _ = go_tx.send(Some(Window { from: now, to: now + 400_000_000 }));
        let out = client.await.expect("joined").expect("ran");
        let seen = server.await.expect("server");
        assert!(out.sent >= 5, "sent {}", out.sent);
        assert_eq!(out.retransmissions, 1);
        assert_eq!(out.separate, 1);
        assert_eq!(out.errors, 1);
        assert_eq!(out.unanswered, 0);
        assert_eq!(out.error_samples[0], r#"5.03 {"status":"created"}"#);
        assert_eq!(out.uncertain_values, [14]);
        assert_eq!(out.acked_values[..4], [11, 12, 13, 15]);
        assert_eq!(out.answered + out.errors, out.sent);
        assert_eq!(out.last_seq, 10 + out.sent);
        assert_eq!(out.late, 0);
        // The retransmission is the same datagram (same mid, same value).
        assert_eq!(seen[2], seen[3]);
        assert_eq!(seen[0].1, r#"{"values":[{"key":"t","value":11}]}"#);
        let mids: Vec<u16> = seen.iter().map(|(mid, _)| *mid).collect();
        assert_eq!(mids[1], mids[0].wrapping_add(1));
    }

    #[tokio::test]
    async fn the_echo_answers_with_the_request() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bound");
        let addr = socket.local_addr().expect("address");
        let echo = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(Ok((len, peer))) =
                tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
            {
                socket.send_to(&buf[..len], peer).await.expect("sent");
            }
        });
        let plan = Arc::new(ClientPlan { addr, answerer: Answerer::Echo, retransmit_after: Duration::from_secs(2) });
        let clock = Clock::start();
        let shared = Arc::new(WriteShared { clock, answers: AtomicU64::new(0) });
        let (go_tx, go_rx) = watch::channel(None);
        let (opened_tx, _opened_rx) = mpsc::unbounded_channel();
        let client = tokio::spawn(run(plan, Template::write("tok"), 0, 0, shared.clone(), go_rx, opened_tx));
        let now = clock.now_ns();
        let _ = go_tx.send(Some(Window { from: now, to: now + 100_000_000 }));
        let out = client.await.expect("joined").expect("ran");
        echo.await.expect("echo");
        assert!(out.answered > 10);
        assert_eq!(out.answered, out.sent);
        assert_eq!(shared.answers.load(Ordering::Relaxed), out.answered);
        assert!(out.acked_values.is_empty());
        assert_eq!((out.retransmissions, out.errors, out.late), (0, 0, 0));
    }
}
