//! The listener layer of the real `thingline` binary, with raw sockets that misbehave as clients:
//! a request body that stalls or trickles ends with 408 (the envelope, `Connection: close`) and
//! its connection is closed within `--body-timeout`, so 50 such sockets do not hold a
//! `--max-connections 50` listener; and failing accepts (the process is out of file descriptors)
//! are logged at most once per 10 s, with the count of failures not logged, while the accept
//! loop keeps retrying with a back-off.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use common::spawned::{Proc, spawn, spawn_with};

/// `--body-timeout` of the server under test, seconds.
const BODY_TIMEOUT: u64 = 2;
/// Longest wait for the 408 and the close: the timeout and slack for a loaded machine. Without
/// the timeout the server waits for the body for ever.
const DEADLINE: Duration = Duration::from_secs(BODY_TIMEOUT + 10);

/// A response read to the end of the connection.
struct RawResponse {
    status: u16,
    /// Header lines, lowercased.
    head: String,
    body: String,
    /// The server closed the connection (EOF or a reset) after the response.
    closed: bool,
}

/// Reads until the server closes the connection (or `deadline` passes), then parses one HTTP/1.1
/// response from what arrived. A reset after the response counts as closed: a server that closes
/// with unread bytes of the client (a trickled body) resets the connection.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S, deadline: Duration) -> RawResponse {
    let until = tokio::time::Instant::now() + deadline;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    RawResponse { status, head: head.to_ascii_lowercase(), body: body.to_owned(), closed }
}

/// Asserts a 408 with the envelope and `Connection: close`, and the connection closed after it.
fn assert_408_and_closed(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 408, "{what}: {}\n{}", r.head, r.body);
    assert!(r.head.contains("\r\nconnection: close"), "{what}: Connection: close in\n{}", r.head);
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: envelope ({e}): {}", r.body));
    assert_eq!(v["status"], "error", "{what}: {v}");
    assert_eq!(v["code"], 408, "{what}: {v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("did not arrive within 2 s")), "{what}: {v}");
    assert!(r.closed, "{what}: the connection is closed after the 408");
}

/// The head of a POST that announces a 100-byte JSON body.
fn post_head(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: thingline\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
}

/// Sends the head, then (when `trickle`) one byte of the body every 500 ms, well within the
/// timeout each time, so that only a bound on the whole body ends it; reads the response.
async fn stall<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    path: &str,
    trickle: bool,
) -> RawResponse {
    let (mut rd, mut wr) = tokio::io::split(stream);
    wr.write_all(post_head(path).as_bytes()).await.expect("send head");
    let trickler = tokio::spawn(async move {
        if trickle {
            for _ in 0..99 {
                if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Kept open (silent) until the test is done with the connection.
        wr
    });
    let r = read_until_closed(&mut rd, DEADLINE).await;
    trickler.abort();
    r
}

fn plain_addr(p: &Proc) -> String {
    p.http.trim_start_matches("http://").to_owned()
}

/// A TLS client connection to the HTTPS listener, trusting the generated certificate.
async fn tls_connect(dir: &std::path::Path, p: &Proc) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    thingline::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_file(dir.join("tls/cert.pem")).expect("generated certificate");
    roots.add(cert).expect("root");
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(p.https.trim_start_matches("https://")).await.expect("connect https");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

#[tokio::test]
async fn stalled_and_trickling_bodies_end_with_408_and_free_the_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The timeout by its environment variable: an older binary without the setting starts too
    // (and shows the listener held for good).
    let timeout = BODY_TIMEOUT.to_string();
    let p = spawn_with(dir.path(), &["--max-connections", "50"], &[("THINGLINE_BODY_TIMEOUT", &timeout)]);
    let addr = plain_addr(&p);

    // 50 sockets on the plain listener (its whole limit): thing writes whose body never comes
    // (25) or trickles in (25).
    let mut tasks = Vec::new();
    for i in 0..50 {
        let stream = TcpStream::connect(&addr).await.expect("connect");
        tasks.push(tokio::spawn(async move { stall(stream, "/v2/things/some-thing-token", i % 2 == 1).await }));
    }
    // The listener is full meanwhile: one more connection is closed at once, unserved.
    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    let _ = extra.write_all(b"GET /v2/health HTTP/1.1\r\nHost: thingline\r\n\r\n").await;
    let r = read_until_closed(&mut extra, DEADLINE).await;
    assert!(r.closed && r.status == 0, "over the limit: closed unserved, got {} {}", r.status, r.head);

    let started = Instant::now();
    for (i, task) in tasks.into_iter().enumerate() {
        let r = task.await.expect("socket task");
        assert_408_and_closed(&r, &format!("socket {i} ({})", if i % 2 == 1 { "trickling" } else { "silent" }));
    }
    assert!(started.elapsed() < DEADLINE, "all within the deadline");

    // The listener serves again.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"GET /v2/health HTTP/1.1\r\nHost: thingline\r\nConnection: close\r\n\r\n").await.expect("send");
    let r = read_until_closed(&mut s, DEADLINE).await;
    assert_eq!(r.status, 200, "health after the stalled bodies: {}", r.head);

    // The same on the HTTPS listener (app API), silent and trickling.
    for trickle in [false, true] {
        let tls = tls_connect(dir.path(), &p).await;
        let r = stall(tls, "/v2/login", trickle).await;
        assert_408_and_closed(&r, &format!("HTTPS, trickle: {trickle}"));
    }

    // A declared body that the route never reads does not hold the connection either: the
    // response comes at once and the connection is closed after it (its unread body would
    // otherwise be taken for the next request).
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"GET /v2/health HTTP/1.1\r\nHost: thingline\r\nContent-Length: 100\r\n\r\n").await.expect("send");
    let r = read_until_closed(&mut s, DEADLINE).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.closed, "closed after answering a request whose body was not read");
    stop(p);
}

/// Sets the soft `RLIMIT_NOFILE` of process `pid`; returns the previous (soft, hard).
#[cfg(target_os = "linux")]
fn set_nofile(pid: u32, soft: Option<u64>) -> (u64, u64) {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit reads `new` and writes `old`, both valid for the call; `pid` is our child.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit read: {}", std::io::Error::last_os_error());
    if let Some(soft) = soft {
        let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
        // SAFETY: as above.
        let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "prlimit set: {}", std::io::Error::last_os_error());
    }
    (old.rlim_cur, old.rlim_max)
}

/// The number of `suppressed=N` in a log line.
fn suppressed(line: &str) -> u64 {
    line.split("suppressed=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no suppressed=N in {line:?}"))
}

/// The next log line containing `needle` within `deadline` (other lines are skipped).
fn next_line_with(p: &Proc, needle: &str, deadline: Duration) -> Option<String> {
    let until = Instant::now() + deadline;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        match p.lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn accept_failures_are_logged_at_most_once_per_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &[]);
    let addr = plain_addr(&p);
    let pid = p.child.id();
    // The limit at the lowest free descriptor number: the next accept fails with EMFILE, and
    // keeps failing while connections wait in the backlog.
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).expect("a free descriptor number");
    let (soft, _) = set_nofile(pid, Some(lowest_free));
    let mut waiting = Vec::new();
    for _ in 0..20 {
        waiting.push(TcpStream::connect(&addr).await.expect("connect (the kernel's backlog)"));
    }
    let first = next_line_with(&p, "accept failed", Duration::from_secs(10)).expect("a line about the failed accept");
    let first_at = Instant::now();
    assert!(first.contains("Too many open files"), "{first}");
    // Retried every 50 ms: the next line comes only after the 10 s interval, with the count.
    let second = next_line_with(&p, "accept failed", Duration::from_secs(20)).expect("a second line");
    let gap = first_at.elapsed();
    assert!(gap >= Duration::from_secs(9), "the second line came {gap:?} after the first: {second}");
    let n = suppressed(&second);
    // About 10 s / 50 ms = 200 retries: many (still retrying), not more (backing off).
    assert!((20..=250).contains(&n), "{n} failures not logged in {gap:?}: {second}");

    set_nofile(pid, Some(soft));
    // The waiting connections are accepted now and served.
    let mut s = waiting.pop().expect("a waiting connection");
    s.write_all(b"GET /v2/health HTTP/1.1\r\nHost: thingline\r\nConnection: close\r\n\r\n").await.expect("send");
    let r = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(r.status, 200, "served once descriptors are free: {}", r.head);
    drop(waiting);
    stop(p);
}

fn stop(p: Proc) {
    let status = p.stop();
    assert_eq!(status.code(), Some(0));
}
