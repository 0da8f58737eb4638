//! MQTT over WebSocket: `GET /mqtt` with the `mqtt` subprotocol on the HTTPS listener (what
//! browsers and mqtt.js `wss://` clients use). Binary WebSocket messages carry the MQTT byte
//! stream; a pipe turns them back into a stream for the same connection code as TCP.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Broker, connection};
use crate::net::ConnInfo;

/// The pipe between the WebSocket and the connection, each way.
const PIPE: usize = 16 * 1024;

/// The `/mqtt` route.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new().route("/mqtt", get(upgrade)).with_state(broker)
}

async fn upgrade(
    State(broker): State<Arc<Broker>>,
    info: Option<Extension<ConnInfo>>,
    ws: WebSocketUpgrade,
) -> Response {
    let remote = info.map_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |Extension(i)| i.remote);
    let max = broker.settings.max_packet.saturating_add(16);
    ws.protocols(["mqtt"])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| bridge(broker, socket, remote))
}

/// Runs the MQTT connection over the WebSocket until either side ends.
async fn bridge(broker: Arc<Broker>, socket: WebSocket, remote: std::net::SocketAddr) {
    let (mqtt_side, ws_side) = tokio::io::duplex(PIPE);
    let (mut from_mqtt, mut to_mqtt) = tokio::io::split(ws_side);
    let (mut ws_tx, mut ws_rx) = socket.split();
    // The connection's end ends the reading side too (the client may never answer our Close).
    let done = tokio_util::sync::CancellationToken::new();
    let stop = done.clone();
    let inbound = async move {
        while let Some(Ok(msg)) = tokio::select! { m = ws_rx.next() => m, _ = stop.cancelled() => None } {
            match msg {
                Message::Binary(bytes) if to_mqtt.write_all(&bytes).await.is_ok() => {}
                // Text frames are not MQTT; pings are answered by the WebSocket layer.
                Message::Ping(_) | Message::Pong(_) => {}
                _ => break,
            }
        }
        let _ = to_mqtt.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; PIPE];
        loop {
            match from_mqtt.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx.send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
        done.cancel();
    };
    let conn = connection::serve(broker, mqtt_side, remote);
    tokio::join!(inbound, outbound, conn);
}
