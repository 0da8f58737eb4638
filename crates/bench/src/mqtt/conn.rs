//! One raw MQTT connection on tokio, the same for every target: plain TCP (Nagle off), the
//! CONNECT→CONNACK and SUBSCRIBE→SUBACK handshakes within a deadline, a read buffer the
//! packets are parsed from in place ([`ReadBuf`]) and a write buffer sent with one
//! `write_all`; and opening many of them (at most `--connect-concurrency` in their handshakes
//! at once, one retry each) with the tally of how that went.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use super::codec::{self, Packet};

/// Keepalive announced in CONNECT; the clients that idle send PINGREQ at half of it.
pub const KEEPALIVE_SECS: u16 = 60;
/// The packet id of the one SUBSCRIBE a client sends.
const SUBSCRIBE_PID: u16 = 1;

/// Bytes read from a socket, parsed in place; grows only when a packet does not fit.
pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { data: vec![0; capacity.max(16)], start: 0, end: 0 }
    }

    /// One `read` from `stream` into the free end of the buffer; an error at end of stream.
    /// Cancel-safe (a dropped read loses no bytes), so it can be a `select!` branch.
    pub async fn fill(&mut self, stream: &mut TcpStream) -> Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.data.len() * 2;
                self.data.resize(len, 0);
            }
        }
        let read = stream.read(&mut self.data[self.end..]).await.context("reading")?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        self.end += read;
        Ok(read)
    }

    /// The next complete packet in the buffer, if any.
    pub fn next(&mut self) -> Result<Option<Packet<'_>>> {
        let data = &self.data[self.start..self.end];
        match codec::decode(data)? {
            Some((packet, used)) => {
                self.start += used;
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }
}

/// An open MQTT session: the socket, what was read and not parsed yet, what is to be written.
pub struct Conn {
    pub stream: TcpStream,
    pub rx: ReadBuf,
    pub tx: Vec<u8>,
}

impl Conn {
    /// TCP connect, CONNECT (clean session, keepalive [`KEEPALIVE_SECS`]), CONNACK accepted.
    pub async fn connect(addr: SocketAddr, client_id: &str, read_capacity: usize) -> Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let mut conn = Self { stream, rx: ReadBuf::with_capacity(read_capacity), tx: Vec::with_capacity(64) };
        codec::connect(&mut conn.tx, client_id, KEEPALIVE_SECS);
        conn.flush().await?;
        loop {
            conn.rx.fill(&mut conn.stream).await.context("waiting for CONNACK")?;
            match conn.rx.next()? {
                Some(Packet::ConnAck { code: 0, .. }) => return Ok(conn),
                Some(Packet::ConnAck { code, .. }) => bail!("CONNACK refused the connection (return code {code})"),
                Some(other) => bail!("expected CONNACK, got {other:?}"),
                None => {}
            }
        }
    }

    /// SUBSCRIBE to `topic` at QoS 0 and wait for its SUBACK (granted, not 0x80). A PUBLISH
    /// arriving before it is an error: nothing is published to the topic yet.
    pub async fn subscribe(&mut self, topic: &[u8]) -> Result<()> {
        codec::subscribe(&mut self.tx, SUBSCRIBE_PID, topic, 0);
        self.flush().await?;
        loop {
            self.rx.fill(&mut self.stream).await.context("waiting for SUBACK")?;
            while let Some(packet) = self.rx.next()? {
                match packet {
                    Packet::SubAck { pid: SUBSCRIBE_PID, codes: [0] } => return Ok(()),
                    Packet::SubAck { codes, .. } => bail!("SUBACK refused the subscription: {codes:02x?}"),
                    Packet::PingResp => {}
                    other => bail!("expected SUBACK, got {other:?}"),
                }
            }
        }
    }

    /// Write the whole write buffer and clear it.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.tx.is_empty() {
            self.stream.write_all(&self.tx).await.context("writing")?;
            self.tx.clear();
        }
        Ok(())
    }

    /// DISCONNECT and close, best effort.
    pub async fn close(mut self) {
        codec::disconnect(&mut self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// How the clients of one measurement open their connections.
pub struct OpenPlan {
    pub addr: SocketAddr,
    /// Handshakes in progress at once (`--connect-concurrency`).
    pub gate: Arc<Semaphore>,
    /// One attempt (connect, CONNECT, SUBSCRIBE when asked) within this.
    pub timeout: Duration,
    /// Read buffer of each connection.
    pub read_capacity: usize,
}

impl OpenPlan {
    /// Open one connection (subscribed to `subscribe` when given), one retry after a failed
    /// attempt; reports how it went on `opened` and returns the connection.
    pub async fn open(
        &self,
        client_id: &str,
        subscribe: Option<&[u8]>,
        opened: &mpsc::UnboundedSender<Opened>,
    ) -> Option<Conn> {
        let Ok(_permit) = self.gate.acquire().await else {
            let _ = opened.send(Opened::Failed("the open gate closed".into()));
            return None;
        };
        let mut retried = None;
        for attempt in 0..2 {
            let tried = tokio::time::timeout(self.timeout, async {
                let mut conn = Conn::connect(self.addr, client_id, self.read_capacity).await?;
                if let Some(topic) = subscribe {
                    conn.subscribe(topic).await?;
                }
                anyhow::Ok(conn)
            })
            .await
            .map_err(|_| anyhow!("no CONNACK/SUBACK within {:?}", self.timeout))
            .and_then(|done| done);
            match tried {
                Ok(conn) => {
                    let _ = opened.send(Opened::Ok { retried });
                    return Some(conn);
                }
                Err(err) if attempt == 0 => retried = Some(format!("{client_id}: {err:#}")),
                Err(err) => {
                    let _ = opened.send(Opened::Failed(format!("{client_id}: {err:#}")));
                }
            }
        }
        None
    }
}

/// How one connection's opening went.
pub enum Opened {
    Ok { retried: Option<String> },
    Failed(String),
}

/// What opening the connections of a measurement came to.
#[derive(Debug, Default, Clone)]
pub struct OpenTally {
    pub opened: usize,
    pub retries: Vec<String>,
    pub failures: Vec<String>,
    pub seconds: f64,
}

impl OpenTally {
    /// Wait for `n` reports on `rx`, at most until `deadline` (then the silent ones count as
    /// failures).
    pub async fn collect(label: &str, what: &str, rx: &mut mpsc::UnboundedReceiver<Opened>, n: usize) -> Self {
        let started = Instant::now();
        let mut tally = Self::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while tally.opened + tally.failures.len() < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Opened::Ok { retried })) => {
                    tally.opened += 1;
                    tally.retries.extend(retried);
                }
                Ok(Some(Opened::Failed(err))) => tally.failures.push(err),
                Ok(None) | Err(_) => {
                    let silent = n - tally.opened - tally.failures.len();
                    tally.failures.push(format!("{silent} connections did not report"));
                    break;
                }
            }
        }
        tally.seconds = started.elapsed().as_secs_f64();
        if !tally.retries.is_empty() {
            eprintln!("{label}: RETRIED {} {what}: {}", tally.retries.len(), samples(&tally.retries));
        }
        if !tally.failures.is_empty() {
            eprintln!("{label}: FAILED to open {} {what}: {}", tally.failures.len(), samples(&tally.failures));
        }
        eprintln!("{label}: {}/{n} {what} open in {:.1} s", tally.opened, tally.seconds);
        tally
    }

    /// Fails when fewer than 99 % opened.
    pub fn check(&self, label: &str, n: usize) -> Result<()> {
        if (self.opened as f64) < n as f64 * 0.99 {
            bail!("{label}: only {}/{n} connections opened: {}", self.opened, samples(&self.failures));
        }
        Ok(())
    }
}

pub fn samples(errors: &[String]) -> String {
    errors.iter().take(3).cloned().collect::<Vec<_>>().join(" | ")
}
