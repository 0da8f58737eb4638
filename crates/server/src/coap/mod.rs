//! The CoAP adapter (RFC 7252 over UDP, `THINGLINE_COAP_ADDR`): the constrained-device side of
//! the Thing API, a thin adapter over the platform on our own tokio UDP loop. The message codec
//! is `thingline-coap-message` (on coap-lite), fuzzed alone.
//!
//! - [`routes`]: requests to platform calls and answers;
//! - [`observe`]: Observe (RFC 7641) over the platform's subscription service;
//! - [`blocks`]: block-wise transfers (RFC 7959) both ways;
//! - [`exchanges`]: deduplication of retransmitted requests;
//! - [`outbox`]: separate responses and notifications, retransmitted until acknowledged;
//! - [`rate`]: per-address request rate limits.
//!
//! A request is answered in the ACK that acknowledges it (piggybacked) when its answer is ready
//! within `THINGLINE_COAP_SEPARATE_AFTER`; otherwise an empty ACK goes first and the answer
//! follows as a confirmable separate response. A write is answered only after its commit.
//! Non-confirmable requests get non-confirmable answers.
//!
//! Against amplification and spoofing: an answer to a request that did not name a valid
//! thingToken (activation, errors) is at most [`max_unauthenticated`] bytes (the payload is
//! left out beyond it); an authenticated answer is at most one 1,024-byte block per request;
//! each client address gets `THINGLINE_COAP_RATE` requests a second and `THINGLINE_COAP_
//! OBSERVERS_PER_ADDRESS` observations; over the rate requests are dropped unanswered.

mod blocks;
mod exchanges;
mod observe;
mod outbox;
mod rate;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use thingline_coap_message::{self as message, Block, JSON, Kind, Message, Method, Refusal, Request, Response, code};
use thingline_core::Error;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::CoapSettings;
use crate::platform::Platform;
use blocks::{Blocks, Put};
use exchanges::{Begin, Exchanges};
use observe::Observers;
use outbox::Outbox;
use rate::RateLimit;
use routes::Answer;

/// The largest datagram read (a UDP datagram's maximum).
const MAX_DATAGRAM: usize = 65_535;
/// Requests being answered at once; beyond, requests are dropped (their clients retransmit).
const MAX_IN_FLIGHT: usize = 16_384;
/// How often the endpoint logs what it dropped, when it dropped something.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The most bytes sent in answer to a request of `request_len` bytes that did not name a valid
/// thingToken: three times the request, and at least 256 (an error envelope or an activation).
pub fn max_unauthenticated(request_len: usize) -> usize {
    (request_len * 3).max(256)
}

/// What framing an answer needs to know of its request's block-wise transfer.
struct Transfer<'a> {
    peer: SocketAddr,
    /// The resource (path and query): the key of the answer kept for its next blocks.
    resource: &'a str,
    /// The request's last Block1 block, echoed.
    block1: Option<Block>,
    /// The Block2 block the request asked for.
    block2: Option<Block>,
}

/// The CoAP endpoint: what every request and observation shares.
pub struct Endpoint {
    platform: Arc<Platform>,
    settings: CoapSettings,
    outbox: Outbox,
    exchanges: Exchanges,
    rate: RateLimit,
    observers: Observers,
    blocks: Blocks,
    in_flight: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Endpoint {
    /// An endpoint on `socket` over `platform`.
    pub fn new(platform: Arc<Platform>, settings: CoapSettings, socket: Arc<UdpSocket>) -> Arc<Endpoint> {
        let shutdown = platform.shutdown_signal().clone();
        Arc::new(Endpoint {
            outbox: Outbox::new(socket, shutdown),
            exchanges: Exchanges::new(settings.max_exchanges),
            rate: RateLimit::new(settings.rate),
            observers: Observers::new(settings.observers_per_address, settings.max_observers),
            blocks: Blocks::new(settings.body_limit),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            tracker: TaskTracker::new(),
            platform,
            settings,
        })
    }

    /// One datagram from `peer`: answered at once when that needs no platform call, otherwise
    /// handed to a task.
    fn datagram(self: &Arc<Self>, bytes: &[u8], peer: SocketAddr) {
        let request = match message::parse(bytes) {
            Ok(Message::Request(r)) => r,
            Ok(Message::Ack { mid }) => return self.outbox.acked(peer, mid),
            Ok(Message::Reset { mid }) => return self.outbox.reset(peer, mid),
            Ok(Message::Ping { mid }) | Ok(Message::Response { kind: Kind::Con, mid }) => {
                if self.rate.allow(peer.ip()) {
                    self.outbox.send(&message::reset(mid), peer);
                }
                return;
            }
            Ok(Message::Response { .. }) | Err(Refusal::Ignore) => return,
            Err(Refusal::Reject { kind, mid }) => {
                if kind == Kind::Con && self.rate.allow(peer.ip()) {
                    self.outbox.send(&message::reset(mid), peer);
                }
                return;
            }
            Err(Refusal::Answer { kind, mid, token, code, message }) => {
                if self.rate.allow(peer.ip()) {
                    // 4.02 and 4.00 both say "bad request" in the envelope (HTTP has no 4.02).
                    let a = Answer::error(&Error::bad_request(message)).with_code(code);
                    let (kind, mid) = self.reply_to(kind, mid);
                    let answer = self.frame(kind, mid, token, a, bytes.len(), None);
                    self.outbox.send(&answer, peer);
                }
                return;
            }
        };
        if !self.rate.allow(peer.ip()) {
            return;
        }
        // Requests that change something, and Observe registrations, are deduplicated; a
        // repeated read is simply answered again.
        let dedup = matches!(request.method, Method::Post | Method::Put) || request.observe.is_some();
        if dedup {
            match self.exchanges.begin(peer, request.mid) {
                Begin::New => {}
                Begin::Running { separate } => {
                    if separate {
                        self.outbox.send(&message::empty_ack(request.mid), peer);
                    }
                    return;
                }
                Begin::Replay(bytes) => return self.outbox.send(&bytes, peer),
                Begin::Full => {
                    let e = Error::Unavailable("Too many exchanges in progress; retry later".into());
                    let (kind, mid) = self.reply_to(request.kind, request.mid);
                    let answer = self.frame(kind, mid, request.token, Answer::error(&e), bytes.len(), None);
                    return self.outbox.send(&answer, peer);
                }
            }
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            if dedup {
                self.exchanges.abandon(peer, request.mid);
            }
            return;
        };
        let ep = Arc::clone(self);
        let len = bytes.len();
        self.tracker.spawn(async move {
            ep.handle(peer, request, len, dedup).await;
            drop(permit);
        });
    }

    /// Answers one request: piggybacked when the answer is ready in time, otherwise an empty ACK
    /// and a separate confirmable response.
    async fn handle(self: Arc<Self>, peer: SocketAddr, req: Request, request_len: usize, dedup: bool) {
        let (kind, mid, token) = (req.kind, req.mid, req.token.clone());
        let resource = req.resource_key();
        let block2 = req.block2;
        let work = self.answer(peer, req, &resource);
        tokio::pin!(work);
        let answer = match kind {
            Kind::Con if self.settings.separate_after.is_zero() => None,
            Kind::Con => tokio::select! {
                a = &mut work => Some(a),
                _ = tokio::time::sleep(self.settings.separate_after) => None,
            },
            _ => Some(work.as_mut().await),
        };
        match answer {
            Some((mut a, block1)) => {
                let registered = a.registered.take();
                let (kind, mid_out) = self.reply_to(kind, mid);
                let bytes = self.frame(
                    kind,
                    mid_out,
                    token,
                    a,
                    request_len,
                    Some(Transfer { peer, resource: &resource, block1, block2 }),
                );
                if dedup {
                    self.exchanges.finish(peer, mid, Arc::from(&bytes[..]));
                }
                self.outbox.send(&bytes, peer);
                if let Some(r) = registered {
                    let _ = r.sent.send(());
                }
            }
            None => {
                let ack = message::empty_ack(mid);
                self.outbox.send(&ack, peer);
                if dedup {
                    self.exchanges.separate(peer, mid);
                }
                let (mut a, block1) = work.await;
                let registered = a.registered.take();
                let own_mid = self.outbox.next_mid();
                let bytes = self.frame(
                    Kind::Con,
                    own_mid,
                    token,
                    a,
                    request_len,
                    Some(Transfer { peer, resource: &resource, block1, block2 }),
                );
                if dedup {
                    // A retransmission of the request now gets the empty ACK again.
                    self.exchanges.finish(peer, mid, Arc::from(&ack[..]));
                }
                // The observation starts once the registration's answer is on its way.
                let started = registered.map(|r| r.sent);
                self.outbox
                    .send_con_then(Arc::from(bytes), own_mid, peer, move || {
                        if let Some(sent) = started {
                            let _ = sent.send(());
                        }
                    })
                    .await;
            }
        }
    }

    /// The answer to `req`, after the checks every request gets and its Block1 transfer; with
    /// the Block1 option to echo.
    async fn answer(self: &Arc<Self>, peer: SocketAddr, mut req: Request, resource: &str) -> (Answer, Option<Block>) {
        if !matches!(req.content_format, None | Some(JSON) | Some(message::TEXT)) {
            let e = Error::UnsupportedMediaType("Content-Format must be application/json (50) or none".into());
            return (Answer::error(&e), None);
        }
        if !matches!(req.accept, None | Some(JSON) | Some(message::TEXT)) {
            let e = Error::NotAcceptable("Answers are application/json (50): Accept that or nothing".into());
            return (Answer::error(&e), None);
        }
        if let Method::Other(_) = req.method {
            return (Answer::error(&Error::MethodNotAllowed("Method not allowed".into())), None);
        }
        let limit = self.settings.body_limit;
        let too_large = || Answer::error(&Error::PayloadTooLarge(format!("Request body is larger than {limit} bytes")));
        let mut block1 = None;
        if let Some(b) = req.block1 {
            // Bodies are kept between blocks only for a thing's own requests (a valid thingToken),
            // so a spoofed source cannot fill the transfer buffers.
            let token = match req.path.as_slice() {
                [v2, things, token, ..] if v2 == "v2" && things == "things" => token,
                _ => return (Answer::error(&Error::not_found("Not found")), None),
            };
            if let Err(e) = self.platform.thing_by_token(token).await {
                return (Answer::error(&e), None);
            }
            let key = (peer, format!("{:?} {resource}", req.method));
            match self.blocks.put(key, b, &req.payload, req.size1) {
                Put::Continue => return (Answer::ok(code::CONTINUE, Vec::new()), Some(b)),
                Put::Complete(body) => {
                    req.payload = body;
                    block1 = Some(b);
                }
                Put::TooLarge => return (too_large(), None),
                Put::Incomplete => {
                    let e =
                        Error::bad_request("Block1 blocks must arrive in order, each but the last of the full size");
                    return (Answer::error(&e).with_code(code::REQUEST_ENTITY_INCOMPLETE), None);
                }
                Put::Busy => {
                    let e = Error::Unavailable("Too many block-wise transfers in progress; retry later".into());
                    return (Answer::error(&e), None);
                }
            }
        } else if req.payload.len() > limit {
            return (too_large(), None);
        }
        // The next block of an answer being fetched block-wise.
        if let Some(b2) = req.block2
            && b2.num > 0
            && req.observe.is_none()
            && let Some(slice) = self.blocks.cached(&(peer, resource.to_owned()), b2)
        {
            let a = Answer {
                slice: Some((slice.block, slice.total, slice.etag)),
                ..Answer::ok(code::CONTENT, slice.payload)
            };
            return (a, None);
        }
        (self.route(peer, &req).await, block1)
    }

    /// The type and message id of the answer to a request of `kind` and `mid` sent right away:
    /// piggybacked in the ACK of a confirmable one, a non-confirmable message of its own for a
    /// non-confirmable one.
    fn reply_to(&self, kind: Kind, mid: u16) -> (Kind, u16) {
        match kind {
            Kind::Non => (Kind::Non, self.outbox.next_mid()),
            _ => (Kind::Ack, mid),
        }
    }

    /// Frames an answer (of type `kind`, message id `mid`) as the datagram to send, applying the amplification bound and serving
    /// a large authenticated answer block-wise (`transfer`).
    fn frame(
        &self,
        kind: Kind,
        mid: u16,
        token: Vec<u8>,
        a: Answer,
        request_len: usize,
        transfer: Option<Transfer<'_>>,
    ) -> Vec<u8> {
        let mut r = Response {
            kind: Some(kind),
            mid,
            token,
            code: a.code,
            observe: a.observe,
            content_format: (!a.body.is_empty()).then_some(JSON),
            ..Response::default()
        };
        if let Some(slice) = a.slice {
            r.block2 = Some(slice.0);
            r.size2 = Some(slice.1 as u32);
            r.etag = Some(slice.2.to_vec());
        }
        if let Some(t) = transfer {
            r.block1 = t.block1.map(|b| Block { more: a.code == code::CONTINUE, ..b });
            let asked =
                t.block2.map_or(Block { num: 0, more: false, szx: Block::MAX_SZX }, |b| Block { more: false, ..b });
            if r.block2.is_none() && a.authenticated && (a.body.len() > asked.size() || asked.num > 0) {
                match self.blocks.serve((t.peer, t.resource.to_owned()), a.body, asked) {
                    Some(slice) => {
                        r.block2 = Some(slice.block);
                        r.size2 = Some(slice.total as u32);
                        r.etag = Some(slice.etag.to_vec());
                        r.payload = slice.payload;
                    }
                    None => {
                        let err = Answer::error(&Error::bad_request(
                            "Block2 past the end of the answer, or too many block-wise transfers in progress",
                        ));
                        r.code = err.code;
                        r.payload = err.body;
                    }
                }
                return r.encode();
            }
        }
        if a.code == code::REQUEST_ENTITY_TOO_LARGE {
            r.size1 = Some(self.settings.body_limit as u32);
        }
        r.payload = a.body;
        let mut bytes = r.encode();
        if !a.authenticated && bytes.len() > max_unauthenticated(request_len) {
            r.payload = Vec::new();
            r.content_format = None;
            bytes = r.encode();
        }
        bytes
    }
}

/// Serves the endpoint on `socket` until shutdown, then lets the observations say goodbye and
/// waits (bounded) for the requests being answered.
pub async fn serve(socket: Arc<UdpSocket>, endpoint: Arc<Endpoint>) {
    let shutdown = endpoint.platform.shutdown_signal().clone();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let socket = Arc::clone(&socket);
        let ep = Arc::clone(&endpoint);
        let shutdown = shutdown.clone();
        set.spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let received = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    r = socket.recv_from(&mut buf) => r,
                };
                match received {
                    Ok((n, peer)) => ep.datagram(&buf[..n], peer),
                    Err(e) => {
                        tracing::debug!(error = %e, "CoAP receive failed");
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        });
    }
    let report = {
        let ep = Arc::clone(&endpoint);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REPORT_EVERY);
            let (mut dropped, mut evicted) = (0, 0);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                let d = ep.rate.dropped.load(Ordering::Relaxed);
                let e = ep.exchanges.evicted_early.load(Ordering::Relaxed);
                if d > dropped {
                    tracing::warn!(dropped = d - dropped, "CoAP requests over THINGLINE_COAP_RATE dropped");
                }
                if e > evicted {
                    tracing::warn!(
                        forgotten = e - evicted,
                        remembered = ep.exchanges.len(),
                        "CoAP exchanges forgotten before their lifetime (the dedup table was full): raise THINGLINE_COAP_MAX_EXCHANGES"
                    );
                }
                (dropped, evicted) = (d, e);
                tracing::debug!(observers = ep.observers.len(), "CoAP");
            }
        })
    };
    while set.join_next().await.is_some() {}
    report.abort();
    endpoint.tracker.close();
    if tokio::time::timeout(crate::net::DRAIN_TIMEOUT, endpoint.tracker.wait()).await.is_err() {
        tracing::warn!("some CoAP requests did not finish within the drain timeout");
    }
}
