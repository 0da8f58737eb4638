//! Test support for the CoAP side: a small CoAP peer on a tokio UDP socket that builds and
//! parses its datagrams with coap-lite (not with the server's own message crate, so that the two
//! cannot share a mistake). It sends confirmable and non-confirmable requests, waits for their
//! answers by message id and token within a deadline (a piggybacked answer, or an empty ACK and
//! then a separate response, which it acknowledges), follows Observe notifications (acknowledged
//! automatically or on demand, or answered with a Reset), and runs block-wise transfers in both
//! directions (RFC 7959). Every wait is bounded by a deadline; nothing sleeps.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// How long any one expected CoAP message may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// Request methods and response codes (`class << 5 | detail`).
pub mod code {
    pub const GET: u8 = 1;
    pub const POST: u8 = 2;
    pub const PUT: u8 = 3;
    pub const DELETE: u8 = 4;
    pub const CREATED: u8 = 0x41;
    pub const CHANGED: u8 = 0x44;
    pub const CONTENT: u8 = 0x45;
    pub const CONTINUE: u8 = 0x5F;
    pub const BAD_REQUEST: u8 = 0x80;
    pub const UNAUTHORIZED: u8 = 0x81;
    pub const BAD_OPTION: u8 = 0x82;
    pub const NOT_FOUND: u8 = 0x84;
    pub const METHOD_NOT_ALLOWED: u8 = 0x85;
    pub const NOT_ACCEPTABLE: u8 = 0x86;
    pub const REQUEST_ENTITY_INCOMPLETE: u8 = 0x88;
    pub const CONFLICT: u8 = 0x89;
    pub const REQUEST_ENTITY_TOO_LARGE: u8 = 0x8D;
    pub const UNSUPPORTED_CONTENT_FORMAT: u8 = 0x8F;
    pub const TOO_MANY_REQUESTS: u8 = 0x9D;
    pub const SERVICE_UNAVAILABLE: u8 = 0xA3;

    /// `c.dd`, as RFC 7252 writes codes.
    pub fn dotted(code: u8) -> String {
        format!("{}.{:02}", code >> 5, code & 0x1F)
    }
}

/// Option numbers.
pub mod opt {
    pub const ETAG: u16 = 4;
    pub const OBSERVE: u16 = 6;
    pub const URI_PATH: u16 = 11;
    pub const CONTENT_FORMAT: u16 = 12;
    pub const URI_QUERY: u16 = 15;
    pub const ACCEPT: u16 = 17;
    pub const BLOCK2: u16 = 23;
    pub const BLOCK1: u16 = 27;
    pub const SIZE2: u16 = 28;
    pub const SIZE1: u16 = 60;
}

/// A message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Con,
    Non,
    Ack,
    Rst,
}

impl Kind {
    fn to_lite(self) -> MessageType {
        match self {
            Kind::Con => MessageType::Confirmable,
            Kind::Non => MessageType::NonConfirmable,
            Kind::Ack => MessageType::Acknowledgement,
            Kind::Rst => MessageType::Reset,
        }
    }

    fn of(t: MessageType) -> Kind {
        match t {
            MessageType::Confirmable => Kind::Con,
            MessageType::NonConfirmable => Kind::Non,
            MessageType::Acknowledgement => Kind::Ack,
            MessageType::Reset => Kind::Rst,
        }
    }
}

/// A Block1/Block2 option value (RFC 7959 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub num: u32,
    pub more: bool,
    /// The block holds `2^(szx+4)` bytes.
    pub szx: u8,
}

impl Block {
    pub fn new(num: u32, more: bool, szx: u8) -> Block {
        Block { num, more, szx }
    }

    pub fn size(self) -> usize {
        1 << (self.szx + 4)
    }

    pub fn encode(self) -> Vec<u8> {
        uint_bytes((self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx))
    }

    pub fn decode(v: &[u8]) -> Block {
        assert!(v.len() <= 3, "a block option of {} bytes", v.len());
        let n = uint(v);
        Block { num: n >> 4, more: n & 8 != 0, szx: (n & 7) as u8 }
    }
}

/// The shortest big-endian bytes of `n` (none for 0), as CoAP encodes uint options.
pub fn uint_bytes(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

fn uint(v: &[u8]) -> u32 {
    v.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b))
}

/// A request to send. Paths are split at `/` and sent as given: `voltage?limit=3` stays one
/// Uri-Path option with the query inside, as the official SDK sends it; real Uri-Query options
/// are added with [`Req::query`].
#[derive(Debug, Clone)]
pub struct Req {
    pub kind: Kind,
    pub code: u8,
    pub path: Vec<String>,
    pub query: Vec<String>,
    /// Further options (number, value), in any order.
    pub options: Vec<(u16, Vec<u8>)>,
    pub payload: Vec<u8>,
    /// Drawn by the peer when unset.
    pub token: Option<Vec<u8>>,
    pub mid: Option<u16>,
}

impl Req {
    pub fn new(code: u8, path: &str) -> Req {
        let path = if path.is_empty() { Vec::new() } else { path.split('/').map(str::to_owned).collect() };
        Req {
            kind: Kind::Con,
            code,
            path,
            query: Vec::new(),
            options: Vec::new(),
            payload: Vec::new(),
            token: None,
            mid: None,
        }
    }

    pub fn get(path: &str) -> Req {
        Req::new(code::GET, path)
    }

    pub fn post(path: &str, payload: impl Into<Vec<u8>>) -> Req {
        Req::new(code::POST, path).payload(payload)
    }

    pub fn put(path: &str, payload: impl Into<Vec<u8>>) -> Req {
        Req::new(code::PUT, path).payload(payload)
    }

    /// Non-confirmable.
    pub fn non(mut self) -> Req {
        self.kind = Kind::Non;
        self
    }

    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Req {
        self.payload = payload.into();
        self
    }

    /// A Uri-Query option (`limit=3`).
    pub fn query(mut self, q: &str) -> Req {
        self.query.push(q.to_owned());
        self
    }

    pub fn option(mut self, number: u16, value: impl Into<Vec<u8>>) -> Req {
        self.options.push((number, value.into()));
        self
    }

    pub fn uint_option(self, number: u16, n: u32) -> Req {
        self.option(number, uint_bytes(n))
    }

    pub fn content_format(self, cf: u16) -> Req {
        self.uint_option(opt::CONTENT_FORMAT, u32::from(cf))
    }

    pub fn observe(self, n: u32) -> Req {
        self.uint_option(opt::OBSERVE, n)
    }

    pub fn block1(self, b: Block) -> Req {
        self.option(opt::BLOCK1, b.encode())
    }

    pub fn block2(self, b: Block) -> Req {
        self.option(opt::BLOCK2, b.encode())
    }

    pub fn token(mut self, token: &[u8]) -> Req {
        self.token = Some(token.to_vec());
        self
    }

    pub fn mid(mut self, mid: u16) -> Req {
        self.mid = Some(mid);
        self
    }

    /// The datagram, with this message id and token.
    pub fn encode(&self, mid: u16, token: &[u8]) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_type(self.kind.to_lite());
        p.header.code = MessageClass::from(self.code);
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        for s in &self.path {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        for q in &self.query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        for (n, v) in &self.options {
            p.add_option(CoapOption::from(*n), v.clone());
        }
        p.payload = self.payload.clone();
        p.to_bytes_unlimited().expect("encode the request")
    }
}

/// A message from the server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: Kind,
    pub mid: u16,
    pub token: Vec<u8>,
    pub code: u8,
    pub packet: Packet,
    /// The datagram's size in bytes.
    pub len: usize,
    /// An empty ACK came before this (separate) response.
    pub separate: bool,
    pub at: Instant,
}

impl Reply {
    fn parse(datagram: &[u8]) -> Reply {
        let packet = Packet::from_bytes(datagram)
            .unwrap_or_else(|e| panic!("the server sent a datagram coap-lite cannot decode ({e:?}): {datagram:02x?}"));
        Reply {
            kind: Kind::of(packet.header.get_type()),
            mid: packet.header.message_id,
            token: packet.get_token().to_vec(),
            code: u8::from(packet.header.code),
            len: datagram.len(),
            packet,
            separate: false,
            at: Instant::now(),
        }
    }

    /// `2.05`, `4.04`, …
    pub fn code_str(&self) -> String {
        code::dotted(self.code)
    }

    pub fn is_empty(&self) -> bool {
        self.code == 0
    }

    pub fn payload(&self) -> &[u8] {
        &self.packet.payload
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.packet.payload).into_owned()
    }

    /// The payload as JSON; panics with the message when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.packet.payload)
            .unwrap_or_else(|e| panic!("{} payload is not JSON ({e}): {:?}", self.code_str(), self.text()))
    }

    pub fn option(&self, number: u16) -> Option<&Vec<u8>> {
        self.packet.get_first_option(CoapOption::from(number))
    }

    pub fn has(&self, number: u16) -> bool {
        self.option(number).is_some()
    }

    pub fn uint_option(&self, number: u16) -> Option<u32> {
        self.option(number).map(|v| {
            assert!(v.len() <= 4, "option {number} of {} bytes", v.len());
            uint(v)
        })
    }

    pub fn observe(&self) -> Option<u32> {
        self.uint_option(opt::OBSERVE)
    }

    pub fn content_format(&self) -> Option<u32> {
        self.uint_option(opt::CONTENT_FORMAT)
    }

    pub fn block1(&self) -> Option<Block> {
        self.option(opt::BLOCK1).map(|v| Block::decode(v))
    }

    pub fn block2(&self) -> Option<Block> {
        self.option(opt::BLOCK2).map(|v| Block::decode(v))
    }

    pub fn etag(&self) -> Option<Vec<u8>> {
        self.option(opt::ETAG).cloned()
    }

    pub fn size1(&self) -> Option<u32> {
        self.uint_option(opt::SIZE1)
    }

    pub fn size2(&self) -> Option<u32> {
        self.uint_option(opt::SIZE2)
    }

    /// Asserts this code and the thethings.iO error envelope with `http` as its `code`; returns
    /// the envelope.
    #[track_caller]
    pub fn assert_error(&self, coap: u8, http: u16) -> Value {
        assert_eq!(self.code_str(), code::dotted(coap), "payload {:?}", self.text());
        let v = self.json();
        assert_eq!(v["status"], "error", "{v}");
        assert_eq!(v["code"], http, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    /// Asserts this code and a JSON payload; returns it.
    #[track_caller]
    pub fn assert_json(&self, coap: u8) -> Value {
        assert_eq!(self.code_str(), code::dotted(coap), "payload {:?}", self.text());
        self.json()
    }
}

/// What [`Peer::send`] sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub mid: u16,
    pub token: Vec<u8>,
    pub bytes: Vec<u8>,
}

/// How a block-wise request body went: the 2.31 Continue answers, then the answer that ended
/// the transfer (the final one, or the first that was not 2.31).
#[derive(Debug)]
pub struct Block1Outcome {
    pub continues: Vec<Reply>,
    pub last: Reply,
    /// The number of the block `last` answered.
    pub last_num: u32,
}

/// A CoAP client endpoint.
pub struct Peer {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    next_mid: u16,
    next_token: u64,
    /// Messages read and not yet claimed by a wait.
    pending: VecDeque<Reply>,
    /// Acknowledge every Confirmable message from the server as it is read (on by default).
    pub auto_ack: bool,
}

impl Peer {
    /// A peer on 127.0.0.1, a free port.
    pub async fn new(server: SocketAddr) -> Peer {
        Peer::bind("127.0.0.1", server).await
    }

    /// A peer on `ip` (another loopback address is another client address to the server).
    pub async fn bind(ip: &str, server: SocketAddr) -> Peer {
        let sock = UdpSocket::bind((ip, 0)).await.unwrap_or_else(|e| panic!("bind a UDP socket on {ip}: {e}"));
        let seed = u64::from(sock.local_addr().expect("local addr").port());
        Peer {
            sock,
            server,
            next_mid: (seed.wrapping_mul(7919) & 0xFFFF) as u16,
            next_token: seed << 16,
            pending: VecDeque::new(),
            auto_ack: true,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    pub fn new_mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    pub fn new_token(&mut self) -> Vec<u8> {
        self.next_token += 1;
        self.next_token.to_be_bytes()[2..].to_vec()
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.expect("send a datagram");
    }

    /// Sends `req`, drawing its message id and token when it has none.
    pub async fn send(&mut self, req: &Req) -> Sent {
        let mid = match req.mid {
            Some(m) => m,
            None => self.new_mid(),
        };
        let token = match &req.token {
            Some(t) => t.clone(),
            None => self.new_token(),
        };
        let bytes = req.encode(mid, &token);
        self.send_raw(&bytes).await;
        Sent { mid, token, bytes }
    }

    /// An empty ACK of `mid`.
    pub async fn ack(&self, mid: u16) {
        let m = mid.to_be_bytes();
        self.send_raw(&[0x60, 0, m[0], m[1]]).await;
    }

    /// A Reset of `mid`.
    pub async fn rst(&self, mid: u16) {
        let m = mid.to_be_bytes();
        self.send_raw(&[0x70, 0, m[0], m[1]]).await;
    }

    /// The next datagram from the server, None at `deadline`. Confirmable messages are
    /// acknowledged as they are read when [`Self::auto_ack`] is on.
    async fn read(&mut self, deadline: Instant) -> Option<Reply> {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = match tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await {
                Err(_) => return None,
                Ok(r) => r.expect("receive a datagram"),
            };
            if from != self.server {
                continue;
            }
            let reply = Reply::parse(&buf[..n]);
            if self.auto_ack && reply.kind == Kind::Con {
                self.ack(reply.mid).await;
            }
            return Some(reply);
        }
    }

    /// The first message (already read, or arriving before `deadline`) that `want` accepts;
    /// the others stay for later waits.
    pub async fn wait_until(&mut self, deadline: Instant, mut want: impl FnMut(&Reply) -> bool) -> Option<Reply> {
        if let Some(i) = self.pending.iter().position(&mut want) {
            return self.pending.remove(i);
        }
        loop {
            let r = self.read(deadline).await?;
            if want(&r) {
                return Some(r);
            }
            self.pending.push_back(r);
        }
    }

    /// [`Self::wait_until`] within `within`.
    pub async fn wait(&mut self, within: Duration, want: impl FnMut(&Reply) -> bool) -> Option<Reply> {
        self.wait_until(Instant::now() + within, want).await
    }

    /// Forgets the messages read and not claimed.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Reads everything the server sends until it has been quiet for `quiet` (or `limit` has
    /// passed); returns it, with whatever was pending.
    pub async fn drain(&mut self, quiet: Duration, limit: Duration) -> Vec<Reply> {
        let end = Instant::now() + limit;
        let mut all: Vec<Reply> = self.pending.drain(..).collect();
        loop {
            let until = (Instant::now() + quiet).min(end);
            match self.read(until).await {
                Some(r) => all.push(r),
                None => return all,
            }
        }
    }

    /// The answer to a request sent as `sent`: a piggybacked ACK, a Reset, or, after an empty
    /// ACK, the separate response carrying its token (acknowledged if Confirmable). None when
    /// nothing came by `deadline`.
    pub async fn answer_to(&mut self, sent: &Sent, kind: Kind, deadline: Instant) -> Option<Reply> {
        let mut separate = false;
        loop {
            let mid = sent.mid;
            let token = sent.token.clone();
            let r = self
                .wait_until(deadline, |r| {
                    (matches!(r.kind, Kind::Ack | Kind::Rst) && r.mid == mid)
                        || (matches!(r.kind, Kind::Con | Kind::Non) && r.code != 0 && r.token == token)
                })
                .await?;
            if r.kind == Kind::Ack && r.is_empty() {
                assert_eq!(kind, Kind::Con, "an empty ACK of a non-confirmable request");
                separate = true;
                continue;
            }
            if r.kind == Kind::Con && !self.auto_ack {
                self.ack(r.mid).await;
            }
            return Some(Reply { separate, ..r });
        }
    }

    /// Sends `req` and waits for its answer (within [`WAIT`]); panics without one.
    pub async fn request(&mut self, req: Req) -> Reply {
        self.exchange(req).await.1
    }

    /// [`Self::request`], returning what was sent too.
    pub async fn exchange(&mut self, req: Req) -> (Sent, Reply) {
        let sent = self.send(&req).await;
        let desc = describe(&req);
        let r = self
            .answer_to(&sent, req.kind, Instant::now() + WAIT)
            .await
            .unwrap_or_else(|| panic!("no answer within {WAIT:?} to {desc}"));
        assert_ne!(r.kind, Kind::Rst, "the server reset {desc}");
        (sent, r)
    }

    /// Sends `req` and waits up to `within` for an answer.
    pub async fn try_request(&mut self, req: Req, within: Duration) -> Option<Reply> {
        let sent = self.send(&req).await;
        self.answer_to(&sent, req.kind, Instant::now() + within).await
    }

    /// Registers an Observe on `path` (GET with Observe=0, confirmable); returns the token and
    /// the first answer.
    pub async fn observe(&mut self, path: &str) -> (Vec<u8>, Reply) {
        let (sent, r) = self.exchange(Req::get(path).observe(0)).await;
        (sent.token, r)
    }

    /// The next notification (a CON or NON response with `token`) within `within`; panics
    /// without one.
    pub async fn notification(&mut self, token: &[u8], within: Duration) -> Reply {
        self.try_notification(token, within)
            .await
            .unwrap_or_else(|| panic!("no notification for token {token:02x?} within {within:?}"))
    }

    /// The next notification with `token` within `within`, if any.
    pub async fn try_notification(&mut self, token: &[u8], within: Duration) -> Option<Reply> {
        self.wait(within, |r| matches!(r.kind, Kind::Con | Kind::Non) && r.code != 0 && r.token == token).await
    }

    /// The next notification with `token` that is not a keep-alive `{}`.
    pub async fn data_notification(&mut self, token: &[u8], within: Duration) -> Reply {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = self.notification(token, left).await;
            if n.payload() != b"{}" {
                return n;
            }
        }
    }

    /// Reads a resource block by block (RFC 7959 §2.4): the first request asks for `szx` when
    /// given (early negotiation), later ones for the next block at the size the server chose.
    /// Checks that the blocks come in order, all of one size except the last, with one ETag
    /// and the Size2 the first announced. Returns the body and the answers.
    pub async fn get_blockwise(&mut self, req: Req, szx: Option<u8>) -> (Vec<u8>, Vec<Reply>) {
        let mut body = Vec::new();
        let mut replies: Vec<Reply> = Vec::new();
        let mut num = 0u32;
        let mut want_szx = szx;
        loop {
            let mut r = req.clone();
            if let Some(s) = want_szx {
                r = r.block2(Block::new(num, false, s));
            }
            let reply = self.request(r).await;
            assert_eq!(reply.code_str(), "2.05", "block {num}: {:?}", reply.text());
            let Some(b) = reply.block2() else {
                assert_eq!(num, 0, "block {num} came without a Block2 option");
                body.extend_from_slice(reply.payload());
                replies.push(reply);
                return (body, replies);
            };
            assert_eq!(b.num, num, "the server answered block {} to a request for block {num}", b.num);
            if let Some(s) = szx {
                assert!(b.szx <= s, "asked for blocks of {} bytes, got {}", 1 << (s + 4), b.size());
            }
            if let Some(first) = replies.first() {
                assert_eq!(reply.etag(), first.etag(), "the ETag changed at block {num}");
                assert_eq!(b.szx, first.block2().expect("block2").szx, "the block size changed at block {num}");
            } else {
                assert!(reply.etag().is_some(), "a block-wise answer without an ETag");
            }
            if b.more {
                assert_eq!(reply.payload().len(), b.size(), "block {num} is not full but more follow");
            } else {
                assert!(reply.payload().len() <= b.size(), "the last block is larger than the block size");
            }
            assert_eq!(body.len(), b.num as usize * b.size(), "block {num} starts where the last ended");
            body.extend_from_slice(reply.payload());
            let more = b.more;
            want_szx = Some(b.szx);
            replies.push(reply);
            if !more {
                if let Some(size) = replies[0].size2() {
                    assert_eq!(size as usize, body.len(), "Size2 announced {size} bytes");
                }
                return (body, replies);
            }
            num += 1;
        }
    }

    /// Sends `body` block by block (Block1, blocks of `2^(szx+4)` bytes, Size1 on the first
    /// when `size1`), each block after the previous one's answer, until the server answers with
    /// anything but 2.31 Continue or the last block is answered.
    pub async fn post_block1(&mut self, req: Req, body: &[u8], szx: u8, size1: bool) -> Block1Outcome {
        let size = 1usize << (szx + 4);
        let count = body.len().div_ceil(size).max(1);
        let mut continues = Vec::new();
        for num in 0..count {
            let chunk = &body[num * size..((num + 1) * size).min(body.len())];
            let more = num + 1 < count;
            let mut r = req.clone().payload(chunk.to_vec()).block1(Block::new(num as u32, more, szx));
            if size1 && num == 0 {
                r = r.uint_option(opt::SIZE1, body.len() as u32);
            }
            let reply = self.request(r).await;
            if more && reply.code == code::CONTINUE {
                let b = reply.block1().unwrap_or_else(|| panic!("2.31 to block {num} without a Block1 option"));
                assert_eq!(b.num, num as u32, "2.31 acknowledges block {} for block {num}", b.num);
                assert!(b.more, "2.31 to block {num} says no more");
                assert_eq!(b.szx, szx, "the server changed the block size of a request body (not supported here)");
                continues.push(reply);
                continue;
            }
            return Block1Outcome { continues, last: reply, last_num: num as u32 };
        }
        unreachable!("a body has at least one block")
    }
}

/// `POST v2/things/… (CON, 12 bytes)`, for messages.
pub fn describe(req: &Req) -> String {
    let method = match req.code {
        code::GET => "GET",
        code::POST => "POST",
        code::PUT => "PUT",
        code::DELETE => "DELETE",
        _ => "request",
    };
    let mut path = req.path.join("/");
    for (i, q) in req.query.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(q);
    }
    format!("{method} {path} ({:?}, {} bytes of payload)", req.kind, req.payload.len())
}

/// `{"values":[…]}` as bytes.
pub fn values_body(values: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "values": values })).expect("json")
}

/// `n` printable characters that do not repeat in any short period (a block sent twice or out of
/// order shows), deterministic for a `seed`.
pub fn noise(n: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// RFC 7641 §3.4: whether Observe value `later` is newer than `earlier` (24-bit, wrapping).
pub fn observe_newer(earlier: u32, later: u32) -> bool {
    (earlier < later && later - earlier < (1 << 23)) || (earlier > later && earlier - later > (1 << 23))
}
