//! Test support for the MQTT side: real rumqttc clients (3.1.1 and 5) whose event loops run in
//! tasks and hand every event to the test, deadline-bounded waits on those events, and a raw TCP
//! peer for what no well-behaved client sends.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long any one expected MQTT event may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// What a client's event loop reported: an incoming packet, or the end of its connection.
#[derive(Debug)]
pub enum Seen<P> {
    Packet(P),
    Closed(String),
}

/// A 3.1.1 client (rumqttc) with its event loop in a task.
pub struct Client {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<Seen<Packet>>,
    task: JoinHandle<()>,
}

/// Options for [`Client::connect`].
pub struct Opts {
    pub id: String,
    pub clean: bool,
    pub keep_alive: Duration,
    pub will: Option<(String, String)>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Opts {
    pub fn new(id: &str) -> Opts {
        Opts { id: id.to_owned(), clean: true, keep_alive: Duration::from_secs(60), will: None, tls: None }
    }
}

impl Client {
    /// Connects and waits for the CONNACK; returns it with the client.
    pub async fn connect(addr: SocketAddr, opts: Opts) -> (Client, rumqttc::ConnAck) {
        let mut o = MqttOptions::new(opts.id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(opts.keep_alive).set_clean_session(opts.clean);
        if let Some((topic, payload)) = opts.will {
            o.set_last_will(LastWill::new(topic, payload, QoS::AtMostOnce, false));
        }
        if let Some(tls) = opts.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Seen::Packet(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Seen::Closed(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut c = Client { client, events, task };
        let ack = c.expect(|p| matches!(p, Packet::ConnAck(_))).await;
        let Packet::ConnAck(ack) = ack else { unreachable!() };
        (c, ack)
    }

    /// The next packet matching `pred` within [`WAIT`] (others are skipped); panics on a closed
    /// connection or the deadline.
    pub async fn expect(&mut self, pred: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Seen::Packet(p))) if pred(&p) => return p,
                Ok(Some(Seen::Packet(_))) => {}
                Ok(Some(Seen::Closed(e))) => panic!("connection closed while waiting: {e}"),
                Ok(None) => panic!("event loop gone"),
                Err(_) => panic!("no matching MQTT packet within {WAIT:?}"),
            }
        }
    }

    /// Waits for the connection to be closed by the server; returns the error seen.
    pub async fn expect_closed(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Seen::Closed(e))) => return e,
                Ok(Some(Seen::Packet(_))) => {}
                Ok(None) => return "event loop gone".into(),
                Err(_) => panic!("the connection was not closed within {WAIT:?}"),
            }
        }
    }

    /// Subscribes and returns the SUBACK's codes.
    pub async fn subscribe(&mut self, topic: &str, qos: QoS) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(topic, qos).await.expect("subscribe");
        match self.expect(|p| matches!(p, Packet::SubAck(_))).await {
            Packet::SubAck(s) => s.return_codes,
            _ => unreachable!(),
        }
    }

    /// Publishes at QoS 1 and waits for its PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.expect("publish");
        self.expect(|p| matches!(p, Packet::PubAck(_))).await;
    }

    /// The next PUBLISH, parsed as JSON.
    pub async fn next_json(&mut self) -> (String, Value) {
        match self.expect(|p| matches!(p, Packet::Publish(_))).await {
            Packet::Publish(p) => (p.topic.clone(), serde_json::from_slice(&p.payload).expect("a JSON payload")),
            _ => unreachable!(),
        }
    }

    /// Disconnects cleanly (DISCONNECT) and waits for the connection to end.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect");
        let _ = tokio::time::timeout(WAIT, async { while self.events.recv().await.is_some() {} }).await;
    }

    /// Drops the connection without DISCONNECT (as a device that loses power).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A rustls client configuration trusting the server's generated certificate.
pub fn tls_trusting(data_dir: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data_dir.join("tls/cert.pem")).expect("certificate") {
        roots.add(cert.expect("certificate")).expect("root");
    }
    Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// A thing's topic.
pub fn thing_topic(token: &str) -> String {
    format!("v2/things/{token}")
}

/// A raw TCP peer.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw { stream: TcpStream::connect(addr).await.expect("tcp connect") }
    }

    /// A peer whose receive buffer is as small as the kernel allows (a reader that falls behind
    /// at once).
    pub async fn connect_small(addr: SocketAddr) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        Raw { stream: socket.connect(addr).await.expect("tcp connect") }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads what the server sends until it closes the connection; panics if it stays open past
    /// `limit`.
    pub async fn until_closed(&mut self, limit: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return got,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the server kept the connection open past {limit:?}"),
            }
        }
    }

    /// Reads exactly `n` bytes within [`WAIT`].
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut buf)).await.expect("in time").expect("read");
        buf
    }
}

/// A 3.1.1 CONNECT: clean, `keep_alive` seconds, an optional will (topic, payload).
pub fn connect_packet(id: &str, keep_alive: u16, will: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
    body.push(if will.is_some() { 0x06 } else { 0x02 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    let mut strings = vec![id];
    if let Some((t, p)) = will {
        strings.push(t);
        strings.push(p);
    }
    for s in strings {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    framed(0x10, &body)
}

/// A QoS 0 PUBLISH.
pub fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload);
    framed(0x30, &body)
}

/// A QoS 2 PUBLISH with packet id `pid` (`dup` set on a resend).
pub fn publish_qos2_packet(topic: &str, pid: u16, dup: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&pid.to_be_bytes());
    body.extend_from_slice(payload);
    framed(if dup { 0x3c } else { 0x34 }, &body)
}

/// A PUBREL.
pub fn pubrel_packet(pid: u16) -> Vec<u8> {
    framed(0x62, &pid.to_be_bytes())
}

/// A SUBSCRIBE of one filter at QoS 0.
pub fn subscribe_packet(pid: u16, filter: &str) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.push(0);
    framed(0x82, &body)
}

fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}
