//! `floor-server`: the least work a server can do to deliver a write to N Socket.IO subscribers
//! over rustls TLS, on this machine. It is the "floor" target of `realtime-latency` and
//! `realtime-memory`: what is physically attainable with the same clients and writer.
//!
//! It speaks exactly the wire the bench's clients and writer use, and nothing more:
//! - WebSocket upgrade at `/socket.io/…` (Engine.IO v4 open packet, pings every 25 s, a missing
//!   pong within 20 s closes), Socket.IO connect to `/v2`, `authenticate` (always success) and
//!   `subscribe`/`unsubscribe` (event and ack, like Thingline);
//! - HTTP/1.1 keep-alive `POST /v2/things/{token}` `{"values":[{"key","value"[,"datetime"]}]}`,
//!   answered 201 `{"status":"created"}` after the delivery is handed to the broadcast threads.
//!
//! No store, no authentication, no per-socket channel or writer task. Per write, the Socket.IO
//! event packet and its WebSocket frame are built once (server frames are unmasked, so the bytes
//! are the same for every socket); `--broadcast-threads` OS threads each own a share of the
//! subscribers (assigned round-robin at connect) and, per subscriber, encrypt the frame with the
//! socket's rustls connection and write it with one non-blocking `writev`. Bytes the kernel does
//! not take stay in rustls's buffer and the socket's reader task is woken to flush them. One reader
//! task per connection reads, answers the setup messages, sends pings and closes.
//!
//! A connection is a `tokio::net::TcpStream` and a `rustls::ServerConnection` behind a mutex
//! (taken by the reader task and the broadcast thread, each for one read or one write); the TLS
//! handshake and the HTTP head go through tokio-rustls, whose stream is then taken apart.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::ServerConnection;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::cli::FloorArgs;

/// The Socket.IO namespace of the API.
const NSP: &str = "/v2";
/// Engine.IO heartbeat, as Thingline's.
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// TLS handshake and the first request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest HTTP request head and body.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
/// Largest WebSocket message from a client (they only send small control messages).
const MAX_FRAME: usize = 64 * 1024;

/// Serve until SIGTERM/SIGINT. Prints `listening addr=<ip:port>` once bound.
pub async fn serve(args: &FloorArgs) -> Result<()> {
    let floor = Floor::bind(args).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening addr={}", floor.addr).context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    floor
        .run(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await;
    Ok(())
}

/// A bound floor server (its broadcast threads started).
pub struct Floor {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    hub: Arc<Hub>,
    pub addr: std::net::SocketAddr,
}

impl Floor {
    pub async fn bind(args: &FloorArgs) -> Result<Self> {
        if args.broadcast_threads == 0 || args.broadcast_threads > 64 {
            bail!("--broadcast-threads must be in 1..=64");
        }
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(&args.cert, &args.key)?));
        let listener = TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding the floor listener on {}", args.addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let hub = Hub::start(args.broadcast_threads)?;
        Ok(Self { listener, acceptor, hub, addr })
    }

    /// Accept connections until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (tcp, _peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: keep serving the others.
                        eprintln!("floor: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return,
            };
            let acceptor = self.acceptor.clone();
            let hub = self.hub.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
                    return;
                };
                match serve_connection(tls, &hub).await {
                    // A task of its own: this one is sized for the TLS handshake's state.
                    Ok(Some(socket)) => {
                        tokio::spawn(socket.run(hub));
                    }
                    Ok(None) => {}
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {}
                    Err(err) => eprintln!("floor: connection: {err}"),
                }
            });
        }
    }
}

/// The certificate chain and key of PEM files (Thingline's, so that the clients trust it).
fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
    let certs = crate::tls::read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("building the rustls server config")
}

// ---------------------------------------------------------------------------------------------
// Subscribers and the broadcast threads.

/// One delivery: the topic and the WebSocket frame carrying its Socket.IO event.
struct Delivery {
    topic: String,
    frame: Vec<u8>,
}

/// A broadcast thread's subscribers, by topic.
#[derive(Default)]
struct Shard {
    topics: Mutex<HashMap<String, Vec<Arc<Conn>>>>,
}

struct Hub {
    shards: Vec<Arc<Shard>>,
    senders: Vec<mpsc::Sender<Arc<Delivery>>>,
    next_shard: AtomicUsize,
    next_sid: AtomicU64,
}

impl Hub {
    fn start(threads: usize) -> Result<Arc<Self>> {
        let mut shards = Vec::with_capacity(threads);
        let mut senders = Vec::with_capacity(threads);
        for i in 0..threads {
            let shard = Arc::new(Shard::default());
            let (tx, rx) = mpsc::channel::<Arc<Delivery>>();
            let owned = shard.clone();
            std::thread::Builder::new()
                .name(format!("broadcast-{i}"))
                .spawn(move || broadcast_loop(&owned, &rx))
                .context("spawning a broadcast thread")?;
            shards.push(shard);
            senders.push(tx);
        }
        Ok(Arc::new(Self { shards, senders, next_shard: AtomicUsize::new(0), next_sid: AtomicU64::new(1) }))
    }

    fn shard_of(&self, conn: &Conn) -> &Shard {
        &self.shards[conn.shard % self.shards.len()]
    }

    fn subscribe(&self, conn: &Arc<Conn>, topic: &str) {
        let mut topics = lock(&self.shard_of(conn).topics);
        let subs = topics.entry(topic.to_string()).or_default();
        if !subs.iter().any(|c| Arc::ptr_eq(c, conn)) {
            subs.push(conn.clone());
        }
    }

    fn unsubscribe(&self, conn: &Arc<Conn>, topic: &str) {
        let mut topics = lock(&self.shard_of(conn).topics);
        if let Some(subs) = topics.get_mut(topic) {
            subs.retain(|c| !Arc::ptr_eq(c, conn));
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// Hand one delivery to every broadcast thread (no waiting).
    fn publish(&self, delivery: Delivery) {
        let delivery = Arc::new(delivery);
        for sender in &self.senders {
            let _ = sender.send(delivery.clone());
        }
    }
}

/// Per delivery: for each subscriber of the topic in this shard, encrypt + one write.
fn broadcast_loop(shard: &Shard, jobs: &mpsc::Receiver<Arc<Delivery>>) {
    while let Ok(job) = jobs.recv() {
        let mut topics = lock(&shard.topics);
        let Some(subs) = topics.get_mut(&job.topic) else { continue };
        let mut dead = false;
        for conn in subs.iter() {
            if conn.closed.load(Ordering::Relaxed) {
                dead = true;
                continue;
            }
            match conn.send(&job.frame) {
                Ok(true) => {}
                // The kernel did not take it all: the reader task writes the rest when writable.
                Ok(false) => conn.wake.notify_one(),
                Err(_) => {
                    conn.closed.store(true, Ordering::Relaxed);
                    conn.wake.notify_one();
                    dead = true;
                }
            }
        }
        if dead {
            subs.retain(|c| !c.closed.load(Ordering::Relaxed));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// A WebSocket connection.

struct Conn {
    tcp: TcpStream,
    tls: Mutex<ServerConnection>,
    /// Wakes the reader task: bytes left in rustls's buffer, or the connection was closed.
    wake: Notify,
    closed: AtomicBool,
    /// Which broadcast thread owns this connection.
    shard: usize,
}

/// `io::Read`/`io::Write` over a tokio socket without waiting (for rustls's `read_tls`/`write_tls`).
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    /// Encrypt `plain` and write what rustls has to send, without waiting. `Ok(false)`: part of
    /// it is still in rustls's buffer (the socket is full).
    fn send(&self, plain: &[u8]) -> io::Result<bool> {
        let mut tls = lock(&self.tls);
        tls.writer().write_all(plain)?;
        push(&self.tcp, &mut tls)
    }

    /// Write what rustls holds, without waiting; `Ok(true)` when nothing is left.
    fn try_flush(&self) -> io::Result<bool> {
        push(&self.tcp, &mut lock(&self.tls))
    }

    /// Write what rustls holds, waiting for the socket as needed.
    async fn flush(&self) -> io::Result<()> {
        while !self.try_flush()? {
            self.tcp.writable().await?;
        }
        Ok(())
    }

    /// Read and decrypt what the socket has, appending the plaintext to `out`. `Ok(false)`: the
    /// peer closed.
    fn read_available(&self, out: &mut Vec<u8>) -> io::Result<bool> {
        let mut tls = lock(&self.tls);
        let mut open = true;
        loop {
            let drained = match tls.read_tls(&mut TryIo(&self.tcp)) {
                Ok(0) => {
                    open = false;
                    true
                }
                Ok(_) => false,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => true,
                Err(err) => return Err(err),
            };
            if let Err(err) = tls.process_new_packets() {
                // rustls queued an alert; send it and give up on the connection.
                let _ = push(&self.tcp, &mut tls);
                return Err(io::Error::other(err));
            }
            let mut chunk = [0u8; 1024];
            loop {
                match tls.reader().read(&mut chunk) {
                    Ok(0) => return Ok(false),
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                    Err(err) => return Err(err),
                }
            }
            if drained {
                break;
            }
        }
        if tls.wants_write() {
            push(&self.tcp, &mut tls)?;
        }
        Ok(open)
    }
}

/// `write_tls` until rustls has nothing left or the socket would block (one `writev` when the
/// kernel takes it all).
fn push(tcp: &TcpStream, tls: &mut ServerConnection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut TryIo(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

/// A server WebSocket frame (FIN, unmasked) around `payload`.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn text_frame(text: &str) -> Vec<u8> {
    frame(0x1, text.as_bytes())
}

/// One client frame at the start of `buf` (unmasked in place): `(opcode, payload range, length
/// of the frame)`, or `None` when incomplete.
fn parse_frame(buf: &mut [u8]) -> io::Result<Option<(u8, std::ops::Range<usize>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0F;
    if buf[0] & 0x80 == 0 || opcode == 0 {
        return Err(io::Error::other("fragmented WebSocket messages are not supported"));
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (usize::try_from(u64::from_be_bytes(raw)).unwrap_or(usize::MAX), 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > MAX_FRAME {
        return Err(io::Error::other("WebSocket message too large"));
    }
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(mask)
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    if let Some(mask) = mask {
        for (i, byte) in buf[at..at + len].iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
    }
    Ok(Some((opcode, at..at + len, at + len)))
}

/// What the reader task keeps besides the connection.
struct Session {
    conn: Arc<Conn>,
    hub: Arc<Hub>,
    sid: String,
    topics: Vec<String>,
    /// A ping is unanswered until then.
    pong_deadline: Option<Instant>,
    next_ping: Instant,
}

impl Session {
    /// Handle every complete frame of `input` (consumed), appending answers to `out`. `true`:
    /// close the connection.
    fn on_input(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<bool> {
        let mut start = 0;
        let mut close = false;
        while let Some((opcode, payload, len)) = parse_frame(&mut input[start..])? {
            let payload = start + payload.start..start + payload.end;
            match opcode {
                0x1 => {
                    let text = std::str::from_utf8(&input[payload]).map_err(io::Error::other)?;
                    if self.on_engine_packet(text, out) {
                        close = true;
                    }
                }
                0x8 => {
                    out.extend_from_slice(&frame(0x8, &1000u16.to_be_bytes()));
                    close = true;
                }
                0x9 => out.extend_from_slice(&frame(0xA, &input[payload])),
                _ => {}
            }
            start += len;
            if close {
                break;
            }
        }
        if start == input.len() {
            // Release what a large message grew the buffer to.
            *input = Vec::new();
        } else {
            input.drain(..start);
        }
        Ok(close)
    }

    /// An Engine.IO packet; `true`: close.
    fn on_engine_packet(&mut self, text: &str, out: &mut Vec<u8>) -> bool {
        match text.as_bytes().first() {
            Some(b'3') => self.pong_deadline = None,
            Some(b'2') => out.extend_from_slice(&text_frame(&format!("3{}", &text[1..]))),
            Some(b'1') => return true,
            Some(b'4') => self.on_socketio_packet(&text[1..], out),
            _ => {}
        }
        false
    }

    /// A Socket.IO packet: connect, disconnect, or an event.
    fn on_socketio_packet(&mut self, packet: &str, out: &mut Vec<u8>) {
        let Some(kind) = packet.chars().next() else { return };
        let rest = &packet[kind.len_utf8()..];
        let (nsp, rest) = if rest.starts_with('/') {
            match rest.find(',') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            }
        } else {
            ("/", rest)
        };
        match kind {
            '0' if nsp == NSP => {
                out.extend_from_slice(&text_frame(&format!(r#"40{NSP},{{"sid":"{}"}}"#, self.sid)));
            }
            '0' => out.extend_from_slice(&text_frame(&format!(r#"44{nsp},{{"message":"Invalid namespace"}}"#))),
            '1' => self.leave_all(),
            '2' if nsp == NSP => {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let (ack_id, json) = rest.split_at(digits);
                if let Ok(Value::Array(args)) = serde_json::from_str::<Value>(json) {
                    self.on_event(&args, ack_id, out);
                }
            }
            _ => {}
        }
    }

    /// `authenticate` (always success), `subscribe`, `unsubscribe`: the event, then the ack.
    fn on_event(&mut self, args: &[Value], ack_id: &str, out: &mut Vec<u8>) {
        let Some(name) = args.first().and_then(Value::as_str) else { return };
        let resource = || {
            let raw = args.get(1).and_then(|d| d.get("resource")).and_then(Value::as_str).unwrap_or_default();
            if raw.starts_with('/') { raw.to_string() } else { format!("/{raw}") }
        };
        let body = match name {
            "authenticate" => r#"{"status":"success"}"#.to_string(),
            "subscribe" => {
                let topic = resource();
                self.hub.subscribe(&self.conn, &topic);
                let body = success_with(&topic);
                if !self.topics.contains(&topic) {
                    self.topics.push(topic);
                }
                body
            }
            "unsubscribe" => {
                let topic = resource();
                self.hub.unsubscribe(&self.conn, &topic);
                self.topics.retain(|t| *t != topic);
                success_with(&topic)
            }
            _ => return,
        };
        out.extend_from_slice(&text_frame(&format!(r#"42{NSP},["{name}",{body}]"#)));
        if !ack_id.is_empty() {
            out.extend_from_slice(&text_frame(&format!("43{NSP},{ack_id}[{body}]")));
        }
    }

    fn leave_all(&mut self) {
        for topic in std::mem::take(&mut self.topics) {
            self.hub.unsubscribe(&self.conn, &topic);
        }
    }
}

fn success_with(resource: &str) -> String {
    format!(r#"{{"status":"success","resource":{}}}"#, Value::from(resource))
}

/// The reader task of one WebSocket: read and answer, ping, flush what a broadcast left behind.
async fn run_socket(conn: Arc<Conn>, hub: Arc<Hub>, sid: String, mut input: Vec<u8>) -> io::Result<()> {
    let mut session = Session {
        conn: conn.clone(),
        hub,
        sid,
        topics: Vec::new(),
        pong_deadline: None,
        next_ping: Instant::now() + PING_INTERVAL,
    };
    let result = async {
        loop {
            let open = conn.read_available(&mut input)?;
            let mut out = Vec::new();
            let close = session.on_input(&mut input, &mut out)?;
            if !out.is_empty() && !conn.send(&out)? {
                conn.flush().await?;
            }
            if close || !open || conn.closed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let deadline = session.pong_deadline.unwrap_or(session.next_ping);
            tokio::select! {
                ready = conn.tcp.readable() => ready?,
                _ = conn.wake.notified() => {
                    if conn.closed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    conn.flush().await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if session.pong_deadline.is_some() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no pong"));
                    }
                    let now = Instant::now();
                    session.pong_deadline = Some(now + PING_TIMEOUT);
                    session.next_ping = now + PING_INTERVAL;
                    if !conn.send(&text_frame("2"))? {
                        conn.flush().await?;
                    }
                }
            }
        }
    }
    .await;
    conn.closed.store(true, Ordering::Relaxed);
    session.leave_all();
    {
        let mut tls = lock(&conn.tls);
        tls.send_close_notify();
        let _ = push(&conn.tcp, &mut tls);
    }
    match result {
        Err(err) if err.kind() == io::ErrorKind::TimedOut => Ok(()),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 before the upgrade: the write endpoint and the WebSocket handshake.

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(raw).map_err(io::Error::other)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return Err(io::Error::other("bad request line"));
    };
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
        .collect();
    Ok(Head { method: method.to_string(), path: path.to_string(), headers })
}

async fn read_more(tls: &mut TlsStream<TcpStream>, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.reserve(4096);
    if tls.read_buf(buf).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A connection upgraded to a WebSocket, its 101 and Engine.IO open packet sent.
struct Upgraded {
    conn: Arc<Conn>,
    sid: String,
    /// Bytes read after the upgrade request's head.
    leftover: Vec<u8>,
}

impl Upgraded {
    async fn run(self, hub: Arc<Hub>) {
        if let Err(err) = run_socket(self.conn, hub, self.sid, self.leftover).await
            && err.kind() != io::ErrorKind::UnexpectedEof
        {
            eprintln!("floor: socket: {err}");
        }
    }
}

/// Requests until the connection closes (`None`) or upgrades to a WebSocket.
async fn serve_connection(mut tls: TlsStream<TcpStream>, hub: &Hub) -> io::Result<Option<Upgraded>> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_len = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(io::Error::other("request head too large"));
            }
            match read_more(&mut tls, &mut buf).await {
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof && buf.is_empty() => return Ok(None),
                other => other?,
            }
        };
        let head = parse_head(&buf[..head_len])?;
        let upgrade = head.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if head.method == "GET" && head.path.starts_with("/socket.io/") && upgrade {
            let Some(key) = head.header("sec-websocket-key") else {
                return Err(io::Error::other("no Sec-WebSocket-Key"));
            };
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let leftover = buf.split_off(head_len);
            drop(buf);
            let (tcp, connection) = tls.into_inner();
            let sid_n = hub.next_sid.fetch_add(1, Ordering::Relaxed);
            let conn = Arc::new(Conn {
                tcp,
                tls: Mutex::new(connection),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
                shard: hub.next_shard.fetch_add(1, Ordering::Relaxed),
            });
            let sid = format!("floor{sid_n:015}");
            let mut hello = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            hello.extend_from_slice(&text_frame(&format!(
                r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":{},"pingTimeout":{},"maxPayload":1000000}}"#,
                PING_INTERVAL.as_millis(),
                PING_TIMEOUT.as_millis()
            )));
            if !conn.send(&hello)? {
                conn.flush().await?;
            }
            return Ok(Some(Upgraded { conn, sid, leftover }));
        }
        let body_len: usize = head.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if body_len > MAX_BODY {
            return Err(io::Error::other("body too large"));
        }
        while buf.len() < head_len + body_len {
            read_more(&mut tls, &mut buf).await?;
        }
        let (status, body) = route(hub, &head, &buf[head_len..head_len + body_len]);
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(response.as_bytes()).await?;
        tls.flush().await?;
        buf.drain(..head_len + body_len);
    }
}

/// `POST /v2/things/{token}`: publish, then 201. `GET /v2/health`: 200. Anything else: 404.
fn route(hub: &Hub, head: &Head, body: &[u8]) -> (&'static str, &'static str) {
    let path = head.path.split('?').next().unwrap_or_default();
    if head.method == "GET" && path == "/v2/health" {
        return ("200 OK", r#"{"status":"ok"}"#);
    }
    let token = match path.strip_prefix("/v2/things/") {
        Some(token) if head.method == "POST" && !token.is_empty() && !token.contains('/') => token,
        _ => return ("404 Not Found", r#"{"status":"error","message":"not found"}"#),
    };
    match delivery(token, body) {
        Some(delivery) => {
            hub.publish(delivery);
            ("201 Created", r#"{"status":"created"}"#)
        }
        None => ("400 Bad Request", r#"{"status":"error","message":"bad values"}"#),
    }
}

/// The one frame of a write: `42/v2,["/things/TOKEN",[{"key","value","datetime"},…]]`, in
/// Thingline's thing item shape (a value without `datetime` gets the time of the write).
fn delivery(token: &str, body: &[u8]) -> Option<Delivery> {
    let parsed: Value = serde_json::from_slice(body).ok()?;
    let values = parsed.get("values")?.as_array()?;
    if values.is_empty() {
        return None;
    }
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut items = Vec::with_capacity(values.len());
    for value in values {
        let key = value.get("key")?.as_str()?;
        let datetime = value.get("datetime").and_then(Value::as_str).unwrap_or(&now);
        items.push(format!(
            r#"{{"key":{},"value":{},"datetime":{}}}"#,
            Value::from(key),
            value.get("value")?,
            Value::from(datetime)
        ));
    }
    let topic = format!("/things/{token}");
    let packet = format!("42{NSP},[{},[{}]]", Value::from(topic.as_str()), items.join(","));
    Some(Delivery { topic, frame: text_frame(&packet) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_right_length_header() {
        assert_eq!(text_frame("2"), vec![0x81, 1, b'2']);
        let medium = "x".repeat(300);
        let f = text_frame(&medium);
        assert_eq!(&f[..4], &[0x81, 126, 0x01, 0x2C]);
        assert_eq!(f.len(), 304);
        let large = "x".repeat(70_000);
        let f = text_frame(&large);
        assert_eq!(f[1], 127);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn parses_masked_client_frames() {
        let mask = [1u8, 2, 3, 4];
        let payload = b"40/v2,";
        let mut raw = vec![0x81, 0x80 | payload.len() as u8];
        raw.extend_from_slice(&mask);
        raw.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let whole = raw.len();
        // Incomplete: nothing yet.
        assert!(parse_frame(&mut raw[..whole - 1].to_vec()).unwrap().is_none());
        let (opcode, range, len) = parse_frame(&mut raw).unwrap().unwrap();
        assert_eq!((opcode, len), (1, whole));
        assert_eq!(&raw[range], payload);
    }

    #[test]
    fn builds_the_thing_item_frame_once() {
        let d = delivery("TOK", br#"{"values":[{"key":"temperature","value":42}]}"#).unwrap();
        assert_eq!(d.topic, "/things/TOK");
        let text = std::str::from_utf8(&d.frame[2..]).unwrap();
        assert!(text.starts_with(r#"42/v2,["/things/TOK",[{"key":"temperature","value":42,"datetime":""#), "{text}");
        assert!(text.ends_with(r#"Z"}]]"#), "{text}");
        assert!(delivery("TOK", br#"{"values":[]}"#).is_none());
        assert!(delivery("TOK", b"nope").is_none());
    }
}
