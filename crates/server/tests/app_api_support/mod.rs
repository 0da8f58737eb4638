//! Helpers shared by the App API tests: register, login, link, authenticated requests, and a
//! tiny SMTP sink that speaks a real SMTP conversation and keeps what it receives.
#![allow(dead_code)]

use std::sync::Arc;

use parking_lot::Mutex;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::common::TestServer;

pub const PASSWORD: &str = "a hard to guess password";

/// An authenticated request to the HTTPS listener.
pub fn req(s: &TestServer, method: Method, path: &str, token: &str) -> RequestBuilder {
    s.client.request(method, s.url(path)).header("Authorization", token)
}

pub async fn json_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Registers a user; returns (status, body).
pub async fn register(s: &TestServer, app: &str, email: &str) -> (StatusCode, Value) {
    let r = s
        .client
        .post(s.url("/v2/register"))
        .json(&json!({"email": email, "password": PASSWORD, "app": app}))
        .send()
        .await
        .expect("register");
    json_of(r).await
}

/// Registers a user and returns its session token.
pub async fn user(s: &TestServer, app: &str, email: &str) -> String {
    let (status, v) = register(s, app, email).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["token"].as_str().expect("token").to_owned()
}

pub async fn login(s: &TestServer, app: &str, email: &str, password: &str) -> (StatusCode, Value) {
    let r = s
        .client
        .post(s.url("/v2/login"))
        .json(&json!({"email": email, "password": password, "app": app}))
        .send()
        .await
        .expect("login");
    json_of(r).await
}

/// Links a thing by token; returns the thingId.
pub async fn link(s: &TestServer, token: &str, thing_token: &str) -> String {
    let r = req(s, Method::POST, "/v2/me/things", token)
        .json(&json!({"thingToken": thing_token}))
        .send()
        .await
        .expect("link");
    let (status, v) = json_of(r).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["thingId"].as_str().expect("thingId").to_owned()
}

pub async fn get(s: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    json_of(req(s, Method::GET, path, token).send().await.expect("get")).await
}

pub async fn post_values(s: &TestServer, path: &str, token: &str, values: Value) -> (StatusCode, Value) {
    json_of(req(s, Method::POST, path, token).json(&json!({ "values": values })).send().await.expect("post")).await
}

pub async fn grant(s: &TestServer, token: &str, email: &str, permissions: Value) -> (StatusCode, Value) {
    let r = req(s, Method::PUT, "/v2/me/grant", token)
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
