//! One Socket.IO client: a bare Engine.IO v4 / Socket.IO v5 client on tokio-tungstenite over
//! tokio-rustls, one task per socket. It opens its socket (TCP, TLS, WebSocket upgrade,
//! Engine.IO open, connect to `/v2`, `authenticate`, `subscribe`), each attempt within a
//! deadline and with one retry, then records (value, receipt time) of every data frame and
//! answers pings until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::NSP;

/// Counters shared by every client task of one target.
pub struct Shared {
    pub base: Instant,
    pub deliveries: AtomicU64,
    pub topic_errors: AtomicU64,
    pub disconnects: AtomicU64,
}

impl Shared {
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// What every socket of a target has in common.
pub struct SocketPlan {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub connector: TlsConnector,
    pub url: String,
    /// `42/v2,["/things/TOKEN",` — the start of a data frame.
    pub data_prefix: String,
    /// `42/v2,2["subscribe",{"resource":"/things/TOKEN"}]`
    pub subscribe_frame: String,
    /// Records kept per socket before growing.
    pub capacity: usize,
    /// One attempt to open a socket (TCP, TLS, WebSocket, connect, authenticate, subscribe).
    pub open_timeout: Duration,
}

/// How a socket's setup went.
pub enum Opened {
    Ok { retried: Option<String> },
    Failed(String),
}

/// What a socket task hands back.
#[derive(Default)]
pub struct SocketOutput {
    /// (sequence number, receipt ns) of every data frame.
    pub records: Vec<(u64, u64)>,
    pub topic_error_sample: Option<String>,
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;

pub async fn socket_task(
    plan: Arc<SocketPlan>,
    auth_frame: String,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    opened: mpsc::UnboundedSender<Opened>,
    mut stop: watch::Receiver<bool>,
) -> SocketOutput {
    let mut output = SocketOutput::default();
    let ws = {
        let Ok(_permit) = gate.acquire().await else {
            let _ = opened.send(Opened::Failed("setup gate closed".into()));
            return output;
        };
        match open_with_deadline(&plan, &auth_frame).await {
            Ok(ws) => {
                let _ = opened.send(Opened::Ok { retried: None });
                ws
            }
            Err(first_err) => match open_with_deadline(&plan, &auth_frame).await {
                Ok(ws) => {
                    let _ = opened.send(Opened::Ok { retried: Some(first_err) });
                    ws
                }
                Err(err) => {
                    let _ = opened.send(Opened::Failed(format!("{err} (first attempt: {first_err})")));
                    return output;
                }
            },
        }
    };
    output.records.reserve(plan.capacity);
    read_loop(ws, &plan, &shared, &mut stop, &mut output).await;
    output
}

/// Where an opening socket is, for the timeout message.
#[derive(Default)]
struct Progress {
    stage: &'static str,
    /// The last few frames received during setup (clipped).
    frames: Vec<String>,
}

/// One attempt of [`open_socket`] within the plan's deadline; a timeout says at which stage.
async fn open_with_deadline(plan: &SocketPlan, auth_frame: &str) -> Result<Ws, String> {
    let mut progress = Progress::default();
    match tokio::time::timeout(plan.open_timeout, open_socket(plan, auth_frame, &mut progress)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timeout after {:?} at {} (frames: {})",
            plan.open_timeout,
            progress.stage,
            progress.frames.join(" ")
        )),
    }
}

/// TCP, TLS, WebSocket upgrade, Engine.IO open, Socket.IO connect to /v2, authenticate,
/// subscribe. Errors are strings (they are only reported).
async fn open_socket(plan: &SocketPlan, auth_frame: &str, progress: &mut Progress) -> Result<Ws, String> {
    progress.stage = "tcp connect";
    let tcp = TcpStream::connect(plan.addr).await.map_err(|e| format!("tcp connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    progress.stage = "tls handshake";
    let tls = plan.connector.connect(plan.server_name.clone(), tcp).await.map_err(|e| format!("tls: {e}"))?;
    progress.stage = "websocket handshake";
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(plan.url.as_str(), tls, Some(config))
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    // Engine.IO open, then connect to the namespace.
    progress.stage = "engine.io open";
    wait_for(&mut ws, progress, |t| t.starts_with('0')).await?;
    send(&mut ws, format!("40{NSP},")).await?;
    let connected = format!("40{NSP},");
    let refused = format!("44{NSP},");
    progress.stage = "namespace connect";
    let frame = wait_for(&mut ws, progress, |t| t.starts_with(&connected) || t.starts_with(&refused)).await?;
    if frame.starts_with(&refused) {
        return Err(format!("namespace connect refused: {}", clip(&frame)));
    }
    // authenticate → ack 1; the server's `authenticate` event is ignored.
    send(&mut ws, auth_frame.to_string()).await?;
    let ack1 = format!("43{NSP},1[");
    progress.stage = "authenticate ack";
    let frame = wait_for(&mut ws, progress, |t| t.starts_with(&ack1)).await?;
    if !frame.contains(r#""status":"success""#) {
        return Err(format!("authenticate: {}", clip(&frame)));
    }
    send(&mut ws, plan.subscribe_frame.clone()).await?;
    let ack2 = format!("43{NSP},2[");
    progress.stage = "subscribe ack";
    let frame = wait_for(&mut ws, progress, |t| t.starts_with(&ack2)).await?;
    if !frame.contains(r#""status":"success""#) {
        return Err(format!("subscribe: {}", clip(&frame)));
    }
    Ok(ws)
}

async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text)).await.map_err(|e| format!("send: {e}"))
}

/// Read text frames until `wanted` matches one (answering Engine.IO pings meanwhile). The
/// caller's timeout bounds the wait.
async fn wait_for(ws: &mut Ws, progress: &mut Progress, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
    let what = progress.stage;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let text = text.as_str();
                if progress.frames.len() == 4 {
                    progress.frames.remove(0);
                }
                progress.frames.push(text.chars().take(60).collect());
                if wanted(text) {
                    return Ok(text.to_string());
                }
                if let Some(probe) = text.strip_prefix('2') {
                    send(ws, format!("3{probe}")).await?;
                } else if text.starts_with('1') {
                    return Err(format!("engine.io close while waiting for {what}"));
                }
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("closed while waiting for {what}: {frame:?}")),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(format!("waiting for {what}: {err}")),
            None => return Err(format!("stream ended while waiting for {what}")),
        }
    }
}

/// Until told to stop: record data frames, answer pings. Per data frame: a prefix check, one
/// search for `"value":` and a number parse.
async fn read_loop(
    mut ws: Ws,
    plan: &SocketPlan,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    output: &mut SocketOutput,
) {
    // One waiter for the whole loop (not one registered and dropped per frame).
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let received = shared.now_ns();
                    let text = text.as_str();
                    match text.as_bytes().first() {
                        Some(b'4') if text.starts_with(plan.data_prefix.as_str()) => {
                            let rest = &text[plan.data_prefix.len()..];
                            match rest.starts_with('[').then(|| first_value(rest)).flatten() {
                                Some(seq) => {
                                    output.records.push((seq, received));
                                    shared.deliveries.fetch_add(1, Ordering::Relaxed);
                                }
                                None => {
                                    shared.topic_errors.fetch_add(1, Ordering::Relaxed);
                                    if output.topic_error_sample.is_none() {
                                        output.topic_error_sample = Some(clip(text));
                                    }
                                }
                            }
                        }
                        Some(b'2') => {
                            // Engine.IO ping: answer pong with the same payload.
                            let pong = ws.send(Message::text(format!("3{}", &text[1..]))).await;
                            if pong.is_err() {
                                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                        Some(b'1') => {
                            shared.disconnects.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
            // A send of `true` or the sender dropped: either way, stop.
            _ = &mut stopped => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return;
            }
        }
    }
}

/// The first `"value":N` of `[{"key":"temperature","value":N,…}]`, as the sequence number.
fn first_value(items: &str) -> Option<u64> {
    const KEY: &str = "\"value\":";
    let at = items.find(KEY)? + KEY.len();
    let rest = &items[at..];
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    let value: f64 = rest[..end].trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

pub fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_value() {
        let frame = r#"[{"key":"temperature","value":1234,"datetime":"2025-01-01T00:00:00.000Z"}]]"#;
        assert_eq!(first_value(frame), Some(1234));
        assert_eq!(first_value(r#"[{"key":"temperature","value":7}]]"#), Some(7));
        assert_eq!(first_value(r#"[{"key":"temperature","value":7.0}]]"#), Some(7));
        assert_eq!(first_value(r#"[{"key":"temperature","value":"x"}]]"#), None);
        assert_eq!(first_value(r#"{"status":"error"}]"#), None);
    }
}
