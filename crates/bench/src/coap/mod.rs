//! `coap-write`, `coap-observe` and `udp-echo`: the speed figures of Thingline's CoAP adapter
//! (issue #12), with clients of our own on tokio UDP.
//!
//! - `coap-write`: N clients, each with its own UDP socket and its own thing, keep one
//!   confirmable single-value write outstanding (the official SDK's shape: POST
//!   `v2`/`things`/`{token}?`, no Content-Format), retransmitting after 2 s like a device; the
//!   reference in the same run is a bare tokio UDP echo (`udp-echo`, a child process like the
//!   HTTP `reference`) answering the same datagrams from the same clients. At the end every
//!   thing's values are read back through the HTTPS API: every value answered 2.01 must be there
//!   exactly once.
//! - `coap-observe`: N observers of one thing (GET with Observe=0, the SDK's
//!   `{token}?keepAlive=…` path), paced writes through HTTPS with the realtime bench's writer, and
//!   its latency definition (the write's 201 → receipt); in the same run, the same with N
//!   Socket.IO subscribers (the realtime bench's clients).
//!
//! Modules: `codec` (the CoAP wire, by hand), `thingline` (Thingline spawned with its CoAP
//! listener on, and its things), `writer` (one writing client), `write` (the command), `verify`
//! (the values read back), `udpstat` (the kernel's UDP drop counters),
//! `mids` (message ids that never repeat on a local port within a run), `observer` (one observer), `observe` (the command), `echo` (the
//! reference server), `report` (what the commands print and check). The clock, the measured
//! window and the per-second series with the machine's CPU are the MQTT bench's
//! (`crate::mqtt`), the Socket.IO side and the writer the realtime bench's (`crate::realtime`).

mod codec;
pub mod echo;
mod mids;
pub mod observe;
mod observer;
mod report;
mod thingline;
mod udpstat;
mod verify;
pub mod write;
mod writer;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;

/// Name of the `coap-write` client runtime's threads (their CPU time is read from /proc/self/task).
pub const CLIENT_THREAD: &str = "coap-client";

/// The runtime of the `coap-write` clients: `threads` workers named [`CLIENT_THREAD`].
fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .context("building the CoAP clients' runtime")
}

/// A UDP socket of its own (an ephemeral port on loopback), connected to `server`: it sends
/// there and receives only from there; with the message ids of its port.
async fn connected_socket(server: SocketAddr) -> Result<(UdpSocket, mids::Mids)> {
    let local: SocketAddr =
        if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().context("local address")?;
    let socket = UdpSocket::bind(local).await.context("binding a UDP socket")?;
    socket.connect(server).await.with_context(|| format!("connecting the UDP socket to {server}"))?;
    let port = socket.local_addr().context("reading the socket's address")?.port();
    Ok((socket, mids::Mids::claim(port)))
}
