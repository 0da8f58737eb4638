//! The reference server: the least an axum + rustls HTTPS endpoint can do.
//!
//! Every request (any method, any path) has its body read and discarded and is answered
//! 201 `{"status":"created"}`. It uses the same stack Thingline is built on (tokio
//! multi-thread runtime, rustls with aws-lc-rs, hyper-util's auto connection builder,
//! HTTP/1.1 keep-alive), so the ratio thingline/reference shows what Thingline's own work
//! costs. It runs as a child process of the bench, so that both servers are separate
//! processes driven by the same generator.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Largest body the reference reads (the bench's seed batches are well below this).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Serve until SIGTERM/SIGINT. Prints `listening addr=<ip:port>` once bound.
pub async fn serve(addr: SocketAddr) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config()?));
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("binding the reference listener on {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening addr={local}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }

    let app = Router::new().fallback(created).layer(DefaultBodyLimit::max(BODY_LIMIT));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the others.
                    eprintln!("reference: accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// The one handler: the `Bytes` extractor reads the whole body, which is then dropped.
async fn created(_body: Bytes) -> impl IntoResponse {
    (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"created"}"#)
}

/// A fresh self-signed certificate for localhost / 127.0.0.1.
fn tls_config() -> Result<rustls::ServerConfig> {
    let certified = crate::tls::self_signed()?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("building the rustls server config")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
