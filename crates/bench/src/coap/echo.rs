//! `udp-echo`: the reference of `coap-write`, the least a tokio UDP server can do per request:
//! every datagram is sent back as is to where it came from. One socket, read and written by
//! `--tasks` tasks on a runtime of `--workers` worker threads (Thingline's runtime has one per
//! core, the default here too). It runs as a child process of the bench (like `reference`), so
//! that both servers are separate processes driven by the same clients; it prints
//! `listening addr=<ip:port>` once bound and serves until SIGTERM or SIGINT.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use tokio::net::UdpSocket;

use crate::cli::UdpEchoArgs;

/// Largest datagram read (the bench's are well below 100 bytes).
const MAX_DATAGRAM: usize = 2048;

/// `thingline-bench udp-echo`.
pub async fn serve(args: &UdpEchoArgs) -> Result<()> {
    let workers = args.workers.unwrap_or_else(default_workers).max(1);
    let tasks = args.tasks.unwrap_or(workers).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("udp-echo")
        .enable_all()
        .build()
        .context("building the echo runtime")?;
    let socket = {
        let _entered = runtime.enter();
        UdpSocket::from_std(bind_std(args.addr, args.socket_buffer)?).context("registering the socket")?
    };
    let local = socket.local_addr().context("reading the bound address")?;
    let socket = Arc::new(socket);
    let echoed = Arc::new(AtomicU64::new(0));
    for _ in 0..tasks {
        let (socket, echoed) = (socket.clone(), echoed.clone());
        runtime.spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    // ICMP errors of earlier sends (a client gone) and the like: keep serving.
                    continue;
                };
                if socket.send_to(&buf[..len], peer).await.is_ok() {
                    echoed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening addr={local}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    eprintln!("udp-echo: {workers} workers, {tasks} tasks on one socket");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("udp-echo: {} datagrams echoed", echoed.load(Ordering::Relaxed));
    runtime.shutdown_background();
    Ok(())
}

/// Thingline's runtime default: one worker per core.
fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A non-blocking std socket bound to `addr`, with SO_RCVBUF and SO_SNDBUF of `buffer` bytes
/// asked before binding, as Thingline's `bind_udp` does (0: the kernel's defaults).
fn bind_std(addr: std::net::SocketAddr, buffer: usize) -> Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)
        .context("creating the echo socket")?;
    if buffer > 0 {
        socket.set_recv_buffer_size(buffer).context("sizing the echo socket's receive buffer")?;
        socket.set_send_buffer_size(buffer).context("sizing the echo socket's send buffer")?;
    }
    socket.set_nonblocking(true).context("making the socket non-blocking")?;
    socket.bind(&addr.into()).with_context(|| format!("binding the echo socket on {addr}"))?;
    eprintln!(
        "udp-echo: socket buffers {buffer} bytes asked (0: the kernel's defaults), receive buffer {} bytes given",
        socket.recv_buffer_size().unwrap_or(0)
    );
    Ok(socket.into())
}
