//! Microcontroller HTTP clients on the plain device listener, byte for byte over raw TCP:
//! bare-LF line endings, no `Connection` header, and a stray `\n` after a body of exact
//! Content-Length, several requests on one connection.

mod common;

use std::time::Duration;

use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads responses until `n` complete ones (by Content-Length) have arrived.
async fn read_responses(stream: &mut TcpStream, n: usize) -> Vec<(u16, String)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Parse as many complete responses as the buffer holds.
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            let Some(head_end) = text.find("\r\n\r\n") else { break };
            let head = &text[..head_end];
            let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().expect("len"))
                })
                .expect("content-length");
            if buf.len() < head_end + 4 + len {
                break;
            }
            let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).to_string();
            buf.drain(..head_end + 4 + len);
            out.push((status, body));
        }
        if out.len() >= n {
            return out;
        }
        let mut chunk = [0u8; 4096];
        let read =
            tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await.expect("responses in time").expect("read");
        assert!(read > 0, "connection closed early; got {out:?}");
        buf.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn bare_lf_no_connection_header_and_stray_newline() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let t = s.thing(&panel, &[("temperature", true)]).await;
    let addr = s.http.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let body = r#"{"values":[{"key":"temperature","value":"21.5"}]}"#;
    let mut wire = String::new();
    // Request 1: write, bare LF everywhere, then a stray "\n" after the exact-length body.
    wire.push_str(&format!(
        "POST /v2/things/{} HTTP/1.1\nHost: {addr}\nContent-Type: application/json\nContent-Length: {}\n\n{body}\n",
        t.token,
        body.len()
    ));
    // Request 2 on the same connection: a read, trailing slash, bare LF.
    wire.push_str(&format!("GET /v2/things/{}/resources/temperature/ HTTP/1.1\nHost: {addr}\n\n", t.token));
    stream.write_all(wire.as_bytes()).await.expect("write");
    let responses = read_responses(&mut stream, 2).await;
    assert_eq!(responses[0].0, 201, "{responses:?}");
    assert_eq!(responses[0].1, r#"{"status":"created"}"#);
    assert_eq!(responses[1].0, 200, "{responses:?}");
    let items: serde_json::Value = serde_json::from_str(&responses[1].1).expect("json");
    assert_eq!(items[0]["value"], "21.5");

    // HTTP/1.0-style client that closes after one request.
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream.write_all(format!("GET /v2/things/{}/resources HTTP/1.0\n\n", t.token).as_bytes()).await.expect("write");
    let responses = read_responses(&mut stream, 1).await;
    assert_eq!(responses[0].0, 200);
    assert_eq!(responses[0].1, r#"{"resources":["temperature"]}"#);
    s.stop().await;
}
