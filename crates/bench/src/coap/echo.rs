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
        UdpSocket::from_std(bind_std(args.addr, args.recv_buffer)?).context("registering the socket")?
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

/// A non-blocking std socket bound to `addr`, with SO_RCVBUF `recv_buffer` when given.
fn bind_std(addr: std::net::SocketAddr, recv_buffer: Option<usize>) -> Result<std::net::UdpSocket> {
    use std::os::fd::AsRawFd;
    let socket = std::net::UdpSocket::bind(addr).with_context(|| format!("binding the echo socket on {addr}"))?;
    socket.set_nonblocking(true).context("making the socket non-blocking")?;
    if let Some(bytes) = recv_buffer {
        let value = libc::c_int::try_from(bytes).context("--recv-buffer out of range")?;
        // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            anyhow::bail!("setting SO_RCVBUF: {}", std::io::Error::last_os_error());
        }
        eprintln!("udp-echo: SO_RCVBUF {bytes} asked");
    }
    Ok(socket)
}
