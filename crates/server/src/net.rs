//! Listeners: bind with a clear error, accept with a connection limit, arm dead-peer detection
//! (TCP keepalive and `TCP_USER_TIMEOUT`) on every accepted connection, terminate TLS, serve
//! HTTP/1.1 and HTTP/2 with hyper, and drain gracefully on the shutdown signal.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
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

/// Serves `router` on `listener` until `shutdown` fires, then drains open connections.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: CancellationToken,
    settings: ConnSettings,
) {
    let ConnSettings { max_connections, peer_timeout } = settings;
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%remote, max_connections, "connection limit reached; refusing connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = peer_timeout.apply(&stream) {
            // Not fatal: the connection is served, only a vanished peer is found later.
            tracing::warn!(%remote, error = %e, "cannot set TCP keepalive / user timeout");
        }
        let info = ConnInfo { remote, tls: tls.is_some() };
        let router = router.clone();
        let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(info);
            normalize_path(&mut req);
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
        });
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    log_end(remote, watcher.watch(conn.into_owned()).await);
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    log_end(remote, watcher.watch(conn.into_owned()).await);
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within the drain timeout");
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

/// `/v2/things/` is `/v2/things`: firmware sends trailing slashes.
fn normalize_path<B>(req: &mut http::Request<B>) {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
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
