//! Helpers shared by the App API tests (get, grant; registering, logging in, linking and
//! authenticated requests are in `common`), and a tiny SMTP sink that speaks a real SMTP
//! conversation and keeps what it receives.
#![allow(dead_code)]

use std::sync::Arc;

use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::common::{TestServer, json_of};

pub async fn get(s: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    json_of(s.req(Method::GET, path, token).send().await.expect("get")).await
}

pub async fn grant(s: &TestServer, token: &str, email: &str, permissions: Value) -> (StatusCode, Value) {
    let r = s
        .req(Method::PUT, "/v2/me/grant", token)
        .json(&json!({"email": email, "permissions": permissions}))
        .send()
        .await
        .expect("grant");
    json_of(r).await
}

/// One mail as the sink received it.
#[derive(Debug, Clone)]
pub struct SinkMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1 (port 0): answers EHLO/HELO, MAIL, RCPT, DATA, RSET,
/// NOOP, QUIT like a real relay and records each message.
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<SinkMail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp sink");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&mails);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let _ = session(sock, store).await;
                });
            }
        });
        SmtpSink { port, mails }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

async fn session(sock: tokio::net::TcpStream, store: Arc<Mutex<Vec<SinkMail>>>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink ESMTP ready\r\n").await?;
    let mut current = SinkMail { from: String::new(), to: Vec::new(), data: String::new() };
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 sink\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            current.from = cmd[10..].trim().to_owned();
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            current.to.push(cmd[8..].trim().to_owned());
            w.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(&line);
            }
            current.data = data;
            store.lock().push(current.clone());
            current = SinkMail { from: String::new(), to: Vec::new(), data: String::new() };
            w.write_all(b"250 OK: queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n").await?;
        } else {
            w.write_all(b"502 Command not implemented\r\n").await?;
        }
    }
}
