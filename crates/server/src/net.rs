//! Listeners, whatever protocol they serve: bind with a clear error; [`Listener`] accepts with
//! a connection limit, arms dead-peer detection (TCP keepalive and `TCP_USER_TIMEOUT`) on every
//! accepted connection, terminates TLS within a handshake timeout, logs accept failures without
//! flooding the log, and stops at the shutdown signal, yielding a [`Conn`]: a stream that holds
//! its connection permit, and the [`ConnInfo`]. [`serve_http`] serves HTTP/1.1 and HTTP/2 on it
//! with hyper, bounds how long a request body may take ([`BodyTimeout`]), and drains gracefully
//! at shutdown. Another protocol (MQTT over TCP and TLS) needs only
//! `while let Some(conn) = listener.accept().await { tokio::spawn(handle(conn.stream, conn.info)); }`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Facts about the connection a request came on, inserted into every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// Whether the request came over TLS (the app and panel APIs require it).
    pub tls: bool,
}

/// How long a client may take for the TLS handshake, and for sending request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish at shutdown before connections are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What every accepted connection of a listener gets.
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// Most concurrent connections; one more is closed at once.
    pub max_connections: usize,
    /// Dead-peer detection (see [`PeerTimeout`]).
    pub peer_timeout: PeerTimeout,
}

/// How long a peer may stay silent while the server waits for it, from which the socket options
/// of every accepted connection are derived. A peer that vanished without FIN or RST (power loss,
/// cut network) is otherwise found only when the kernel gives up retransmitting (~15 min with
/// Linux defaults), or never when the connection has nothing to send.
/// - `TCP_USER_TIMEOUT` = T (Linux, Android): data written but not acknowledged for T closes the
///   connection (a subscription stream's `{}` keep-alive, any response).
/// - keepalive: the first probe after T without any packet from the peer, then one every T/6
///   (at least 1 s), 5 probes. On Linux the user timeout ends it at the first unanswered probe
///   that comes T or more after the last packet received: ~T + T/6 for an idle connection. Elsewhere
///   the 5 probes: ~T + 5·T/6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTimeout(Duration);

impl PeerTimeout {
    /// Unanswered keepalive probes before the connection is closed (where the user timeout does
    /// not end it first).
    pub const KEEPALIVE_PROBES: u32 = 5;
    /// Linux refuses keepalive idle times above this (`MAX_TCP_KEEPIDLE`).
    pub const MAX_SECS: u64 = 32_767;

    /// `secs` in `1..=MAX_SECS`; `None` outside that range.
    pub fn from_secs(secs: u64) -> Option<PeerTimeout> {
        (1..=Self::MAX_SECS).contains(&secs).then(|| PeerTimeout(Duration::from_secs(secs)))
    }

    pub fn timeout(self) -> Duration {
        self.0
    }

    /// Keepalive idle time, probe interval, probe count.
    pub fn keepalive(self) -> (Duration, Duration, u32) {
        let interval = Duration::from_secs((self.0.as_secs() / 6).max(1));
        (self.0, interval, Self::KEEPALIVE_PROBES)
    }

    /// Sets the options on an accepted connection.
    fn apply(self, stream: &TcpStream) -> std::io::Result<()> {
        let sock = socket2::SockRef::from(stream);
        // Interval and count are not settable everywhere; there the system defaults apply.
        let (idle, _interval, _probes) = self.keepalive();
        let keepalive = socket2::TcpKeepalive::new().with_time(idle);
        #[cfg(any(
            target_os = "linux",
            target_os = "android",
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "windows"
        ))]
        let keepalive = keepalive.with_interval(_interval).with_retries(_probes);
        sock.set_tcp_keepalive(&keepalive)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        sock.set_tcp_user_timeout(Some(self.0))?;
        Ok(())
    }
}

impl Default for PeerTimeout {
    /// 60 s (see docs/configuration.md for the reasoning).
    fn default() -> Self {
        PeerTimeout(Duration::from_secs(60))
    }
}

/// Binds a TCP listener, or fails with one line naming the address and the setting to change.
pub async fn bind(addr: SocketAddr, what: &str, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {what}: {e} (change it with {setting}, or `off`)"))
}

/// The address a per-client limit counts under: an IPv4 address as it is (also when mapped into
/// IPv6), an IPv6 address by its /64 (a host usually holds a whole /64, so counting single IPv6
/// addresses would let one host take 2^64 shares).
pub fn client_subnet(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// Socket buffers asked for a UDP listener: one socket takes every client's datagrams, and a
/// burst beyond the kernel's default (about 200 KiB) would be dropped before it is read. The
/// kernel caps the size at `net.core.rmem_max` / `wmem_max`.
pub const UDP_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with [`UDP_BUFFER`]-sized buffers, with the same clear message as [`bind`]
/// when it cannot.
pub async fn bind_udp(addr: SocketAddr, what: &str, setting: &str) -> anyhow::Result<tokio::net::UdpSocket> {
    let fail = |e: std::io::Error| {
        anyhow::anyhow!("cannot listen on {addr} (UDP) for {what}: {e} (change it with {setting}, or `off`)")
    };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None).map_err(fail)?;
    for (which, result) in
        [("receive", socket.set_recv_buffer_size(UDP_BUFFER)), ("send", socket.set_send_buffer_size(UDP_BUFFER))]
    {
        if let Err(e) = result {
            tracing::warn!(%addr, error = %e, "could not size the UDP {which} buffer");
        }
    }
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < UDP_BUFFER {
        tracing::info!(
            %addr,
            bytes = got,
            "the UDP receive buffer is smaller than asked: raise net.core.rmem_max for bursts of datagrams"
        );
    }
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    tokio::net::UdpSocket::from_std(socket.into()).map_err(fail)
}

/// Back-off after a failed accept (out of file descriptors and similar), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one log line per this long about failing accepts.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A bound listener that yields ready connections: the connection limit, the socket options and
/// (on a TLS listener) the handshake are done. Handshakes run concurrently, each within
/// [`HANDSHAKE_TIMEOUT`], so a slow client never holds up the others.
pub struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    settings: ConnSettings,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// TLS handshakes in progress; aborted when the listener is dropped.
    handshakes: JoinSet<Option<Conn>>,
    accept_errors: AcceptErrors,
}

/// An accepted connection, ready for the protocol.
pub struct Conn {
    /// The byte stream (plain TCP or TLS). It holds the connection's permit: the connection
    /// counts against `max_connections` until the stream is dropped, whoever owns it by then
    /// (a protocol task, a WebSocket taken over from HTTP).
    pub stream: Stream,
    pub info: ConnInfo,
}

impl Listener {
    /// Accepts on `tcp` (TLS when `tls` is set; the same acceptor may serve several listeners)
    /// until `shutdown` fires.
    pub fn new(
        tcp: TcpListener,
        tls: Option<TlsAcceptor>,
        settings: ConnSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Listener> {
        let addr = local_addr(&tcp)?;
        Ok(Listener {
            tcp,
            addr,
            tls,
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            shutdown,
            handshakes: JoinSet::new(),
            accept_errors: AcceptErrors::default(),
        })
    }

    /// The address bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle on this listener's count of open connections, valid after the listener moved
    /// into its serving task (the metrics endpoint reads it at scrape time).
    pub fn connection_count(&self) -> ConnectionCount {
        ConnectionCount { permits: Arc::clone(&self.permits), max: self.settings.max_connections }
    }

    /// The next ready connection; `None` once the shutdown signal fired. Cancel-safe: dropping
    /// the future loses no connection.
    ///
    /// Over the connection limit a new connection is closed at once. A failed accept (out of file
    /// descriptors, …) is retried after [`ACCEPT_BACKOFF`]; see [`AcceptErrors`] for its logging.
    pub async fn accept(&mut self) -> Option<Conn> {
        loop {
            tokio::select! {
                // Shutdown first; finished handshakes before new connections.
                biased;
                _ = self.shutdown.cancelled() => return None,
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return Some(conn);
                    }
                }
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, remote)) => {
                        self.accept_errors.succeeded();
                        if let Some(conn) = self.admit(stream, remote) {
                            return Some(conn);
                        }
                    }
                    Err(e) => {
                        self.accept_errors.failed(&e);
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        }
                    }
                },
            }
        }
    }

    /// Takes a permit and sets the socket options; a plain connection is ready at once, a TLS one
    /// goes to the handshakes.
    fn admit(&mut self, stream: TcpStream, remote: SocketAddr) -> Option<Conn> {
        let max_connections = self.settings.max_connections;
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            tracing::warn!(%remote, max_connections, "connection limit reached; refusing connection");
            return None;
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = self.settings.peer_timeout.apply(&stream) {
            // Not fatal: the connection is served, only a vanished peer is found later.
            tracing::warn!(%remote, error = %e, "cannot set TCP keepalive / user timeout");
        }
        let info = ConnInfo { remote, tls: self.tls.is_some() };
        let Some(acceptor) = self.tls.clone() else {
            return Some(Conn { stream: Stream { io: Io::Plain(stream), _permit: permit }, info });
        };
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(Conn { stream: Stream { io: Io::Tls(Box::new(tls)), _permit: permit }, info }),
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    None
                }
            }
        });
        None
    }
}

/// The open connections of a [`Listener`] (those holding one of its permits, a WebSocket taken
/// over from HTTP included).
#[derive(Clone)]
pub struct ConnectionCount {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConnectionCount {
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }
}

/// Logging of failed accepts. While the cause lasts (the process is out of file descriptors)
/// every retry fails, 20 times a second: the first failure is logged, then at most one line per
/// [`ACCEPT_ERROR_LOG_INTERVAL`], each saying how many failures since the previous line were not
/// logged; the first successful accept an interval or more after the last line reports the
/// failures not logged yet.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_line: Option<std::time::Instant>,
    not_logged: u64,
}

impl AcceptErrors {
    fn failed(&mut self, error: &io::Error) {
        let now = std::time::Instant::now();
        if self.last_line.is_some_and(|at| now.duration_since(at) < ACCEPT_ERROR_LOG_INTERVAL) {
            self.not_logged += 1;
            return;
        }
        tracing::warn!(
            %error,
            suppressed = self.not_logged,
            "accept failed; retrying every {} ms, logging at most once per {} s",
            ACCEPT_BACKOFF.as_millis(),
            ACCEPT_ERROR_LOG_INTERVAL.as_secs()
        );
        self.last_line = Some(now);
        self.not_logged = 0;
    }

    fn succeeded(&mut self) {
        let Some(at) = self.last_line else { return };
        if at.elapsed() < ACCEPT_ERROR_LOG_INTERVAL {
            return;
        }
        if self.not_logged > 0 {
            tracing::warn!(suppressed = self.not_logged, "accept works again");
        }
        self.last_line = None;
        self.not_logged = 0;
    }
}

/// The byte stream of an accepted connection, plain or TLS, holding its connection permit.
pub struct Stream {
    io: Io,
    _permit: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    /// Boxed: a TLS session is large and plain connections should not pay for it.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Serves `router` on `listener` until its shutdown signal fires, then drains open connections.
/// A request body must arrive in full within `body_timeout` of the request head ([`TimedBody`]).
pub async fn serve_http(mut listener: Listener, router: Router, body_timeout: Duration) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    while let Some(Conn { stream, info }) = listener.accept().await {
        let router = router.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut req = req.map(|body| TimedBody::new(body, body_timeout));
            req.extensions_mut().insert(info);
            normalize_path(&mut req);
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move { log_end(info.remote, conn.await) });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within the drain timeout");
    }
}

/// The error a request body ends with when it has not arrived in full within the body timeout
/// (`THINGLINE_BODY_TIMEOUT`). The body extractor answers it with a 408 and `Connection: close`.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} s", self.0.as_secs())
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that ends with [`BodyTimeout`] once `limit` has passed since the request head
/// arrived, however the bytes trickle in: the whole body is bounded, not the gap between bytes,
/// so a client sending a byte every few seconds cannot hold its connection (and the listener's
/// permit) for ever. Whoever reads the body gets the error (the body extractor, Socket.IO's
/// polling transport); a body nobody reads is never timed (hyper closes the connection after the
/// response instead of waiting for the rest). The timer is armed only when a read has to wait.
pub struct TimedBody<B> {
    inner: B,
    deadline: Instant,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limit: Duration) -> TimedBody<B> {
        TimedBody { inner, deadline: Instant::now() + limit, limit, timer: None }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One debug line per served connection when it ends, with the error's causes (a dead peer's:
/// `Connection timed out`).
fn log_end(remote: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    match result {
        Ok(()) => tracing::debug!(%remote, "connection closed (or handed to a WebSocket upgrade)"),
        Err(e) => {
            let mut error = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                error.push_str(": ");
                error.push_str(&c.to_string());
                cause = c.source();
            }
            tracing::debug!(%remote, %error, "connection ended with an error");
        }
    }
}

/// `/v2/things/` is `/v2/things`: firmware and the guide's examples send trailing slashes. Only
/// the API's paths (`/v2/…`) are trimmed: the pages served beside it keep theirs (Swagger UI's
/// files are relative to `/docs/`).
fn normalize_path<B>(req: &mut http::Request<B>) {
    let path = req.uri().path();
    if path.starts_with("/v2/") && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let new = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = new.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
}

/// The real address a listener bound to (port 0 resolves here).
pub fn local_addr(listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    listener.local_addr().context("reading the bound address")
}
