//! One MQTT network connection, from its CONNECT to its end: the session it binds, keep-alive
//! (a connection silent for 1.5 times its keep-alive ends), the authorization of every PUBLISH
//! and SUBSCRIBE (a thing reaches only its own topic, see [`super::topic`]), the publish pipeline
//! ([`super::writes`]), deliveries from its mailbox within the client's window, and the Last
//! Will when the connection ends without a DISCONNECT.
//!
//! Reading stops while the client has as many publishes in flight as `THINGLINE_MQTT_MAX_INFLIGHT`
//! allows (TCP then holds the client back); writing to a client that does not read ends the
//! connection after the write timeout. Any malformed or oversized packet closes this connection
//! only.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use thingline_core::Error;
use thingline_core::model::Thing;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{Duration, Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::Broker;
use super::codec::{self, ConnAckProps, Connect, DecodeError, Filter, Outgoing, Packet, Publish, QoS, Version, Will};
use super::session::{Delivery, Held, SessionData, SubEntry, TableError, Unacked};
use super::topic::{self, FilterTopic, PublishTopic};
use super::writes::{Ack, Done, Writes, reason_of};
use crate::platform::{
    Ended, Outlet, Platform, Target, WriteFlags, WriteItem, metrics, parse_write_items, thing_channel,
};

/// Smallest read; a read that fills its room makes the next one this big.
const READ_SMALL: usize = 512;
const READ_LARGE: usize = 16 * 1024;
/// Buffers larger than this are given back once empty.
const KEEP_BUFFER: usize = 64 * 1024;
/// Refusals logged at info per connection; later ones at debug.
const LOGGED_REFUSALS: u32 = 3;
/// The longest client id accepted.
const MAX_CLIENT_ID: usize = 256;

/// How a connection ended, for its will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The client sent DISCONNECT: the will is discarded.
    Clean,
    /// The connection broke or was closed for a fault: the will is published.
    WithWill,
    /// Taken over by a newer connection, or the server is stopping: no will.
    Quiet,
    /// The store failed a write a 3.1.1 client waits for: closed without its acknowledgement (it
    /// sends again), nothing more is written for it, no will.
    Abort,
}

/// The session a connection works in.
enum Session {
    Clean(Box<SessionData>),
    Persistent(Held),
}

impl Session {
    fn data(&mut self) -> &mut SessionData {
        match self {
            Session::Clean(d) => d,
            Session::Persistent(h) => &mut h.data,
        }
    }
}

struct Connection<S> {
    broker: Arc<Broker>,
    platform: Arc<Platform>,
    version: Version,
    client_id: Arc<str>,
    remote: SocketAddr,
    writer: WriteHalf<S>,
    out: BytesMut,
    will: Option<Will>,
    session: Session,
    writes: Writes,
    /// QoS 1 messages the client takes unacknowledged (its Receive Maximum, within ours).
    window: usize,
    /// The largest packet the client takes.
    client_max_packet: usize,
    refusals: u32,
}

/// Serves one connection until it ends.
pub async fn serve<S>(broker: Arc<Broker>, stream: S, remote: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let _live = metrics::connection(metrics::Protocol::Mqtt);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::new();
    let settings = &broker.settings;
    let connect =
        match timeout(settings.connect_timeout, read_connect(&mut reader, &mut buf, settings.max_packet)).await {
            Ok(Ok(c)) => c,
            Ok(Err(DecodeError::UnsupportedVersion(level))) => {
                tracing::debug!(%remote, level, "MQTT CONNECT with an unsupported protocol level");
                // The 3.1.1 CONNACK "unacceptable protocol version", which every version reads.
                let _ = timeout(settings.write_timeout, writer.write_all(&[0x20, 2, 0, 1])).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "MQTT connection closed before a valid CONNECT");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "MQTT connection sent no CONNECT in time");
                return;
            }
        };
    let leave = CancellationToken::new();
    let ka = (connect.keep_alive > 0).then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let Some(mut conn) = Connection::open(&broker, *connect, writer, remote, &leave).await else { return };
    let close = conn.run(&mut reader, &mut buf, ka, &leave).await;
    conn.end(close).await;
}

/// Reads until a whole CONNECT has arrived.
async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Box<Connect>, DecodeError> {
    loop {
        if let Some(version) = codec::peek_connect_version(buf, max_packet)? {
            match codec::decode(buf, version, max_packet)? {
                Some(Packet::Connect(c)) => return Ok(c),
                Some(_) => return Err(DecodeError::Protocol("the first packet must be CONNECT")),
                None => {}
            }
        }
        buf.reserve(READ_SMALL);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(DecodeError::Malformed("connection closed")),
            Ok(_) => {}
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection<S> {
    /// Binds the session and answers the CONNECT; `None` when the connection is refused (the
    /// CONNACK saying why has been sent).
    async fn open(
        broker: &Arc<Broker>,
        connect: Connect,
        writer: WriteHalf<S>,
        remote: SocketAddr,
        leave: &CancellationToken,
    ) -> Option<Connection<S>> {
        let settings = &broker.settings;
        let version = connect.version;
        let mut conn = Connection {
            broker: Arc::clone(broker),
            platform: Arc::clone(&broker.platform),
            version,
            client_id: Arc::from(connect.client_id.as_str()),
            remote,
            writer,
            out: BytesMut::new(),
            will: connect.will,
            session: Session::Clean(Box::new(SessionData::new(
                false,
                broker.platform.realtime_limits().queue_capacity(),
            ))),
            writes: Writes::new(broker.platform.limits().max_values_per_write),
            window: usize::from(connect.receive_maximum).min(settings.max_inflight),
            client_max_packet: connect.max_packet_size.map_or(usize::MAX, |m| m as usize),
            refusals: 0,
        };
        let mut props = ConnAckProps {
            receive_maximum: Some(u16::try_from(settings.max_inflight).unwrap_or(u16::MAX)),
            max_packet_size: Some(u32::try_from(settings.max_packet).unwrap_or(u32::MAX)),
            ..ConnAckProps::default()
        };
        let refuse = |conn: &mut Connection<S>, v311: u8, v5: u8| {
            let code = if version == Version::V5 { v5 } else { v311 };
            codec::encode(
                &Outgoing::ConnAck { session_present: false, code, props: ConnAckProps::default() },
                version,
                &mut conn.out,
            );
        };
        if connect.client_id.len() > MAX_CLIENT_ID
            || (version == Version::V311 && connect.client_id.is_empty() && !connect.clean_start)
        {
            refuse(&mut conn, 0x02, 0x85);
            let _ = conn.flush().await;
            return None;
        }
        if connect.client_id.is_empty() {
            let id = format!("thingline-{}", thingline_core::ids::new_id());
            conn.client_id = Arc::from(id.as_str());
            props.assigned_client_id = (version == Version::V5).then_some(id);
        }
        let (persistent, fresh, expiry) = match version {
            Version::V311 => (!connect.clean_start, false, settings.session_expiry),
            Version::V5 => {
                let asked = Duration::from_secs(u64::from(connect.session_expiry));
                let expiry = asked.min(settings.session_expiry);
                if asked > expiry {
                    props.session_expiry = Some(u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX));
                }
                (connect.session_expiry > 0 || !connect.clean_start, connect.clean_start, expiry)
            }
        };
        let mut present = false;
        if persistent {
            match broker.sessions.take(&conn.client_id, fresh, expiry, leave.clone()).await {
                Ok(held) => {
                    present = held.present;
                    conn.session = Session::Persistent(held);
                }
                Err(e) => {
                    tracing::info!(client_id = %conn.client_id, %remote, error = ?e, "MQTT persistent session refused");
                    match e {
                        TableError::Full => refuse(&mut conn, 0x03, 0x97),
                        TableError::Busy => refuse(&mut conn, 0x03, 0x89),
                    }
                    let _ = conn.flush().await;
                    return None;
                }
            }
        } else {
            conn.session.data().mailbox.set_online(true);
        }
        codec::encode(&Outgoing::ConnAck { session_present: present, code: 0, props }, version, &mut conn.out);
        if present {
            conn.resume();
        }
        tracing::debug!(client_id = %conn.client_id, %remote, ?version, persistent, "MQTT client connected");
        Some(conn)
    }

    /// A persistent session resumed: subscriptions the platform ended while the client was away
    /// are forgotten, and QoS 1 messages not acknowledged are sent again (DUP set).
    fn resume(&mut self) {
        let version = self.version;
        let data = self.session.data();
        for (channel, why) in data.mailbox.take_ended() {
            tracing::debug!(client_id = %self.client_id, %channel, ?why, "a subscription of an offline MQTT session ended");
            data.forget(&channel);
        }
        for u in &data.unacked {
            encode_delivery(&mut self.out, version, &u.delivery, u.pid, true);
        }
    }

    async fn run(
        &mut self,
        reader: &mut ReadHalf<S>,
        buf: &mut BytesMut,
        keep_alive: Option<Duration>,
        leave: &CancellationToken,
    ) -> Close {
        let shutdown = self.platform.shutdown_signal().clone();
        let mailbox = Arc::clone(&self.session.data().mailbox);
        let max_inflight = self.broker.settings.max_inflight;
        // The keep-alive timer fires at most once per keep-alive period: activity only moves
        // `last_heard`, and a timer that fires early is set again from it (no timer work per
        // packet).
        let mut last_heard = Instant::now();
        let keep_alive_timer = tokio::time::sleep(keep_alive.unwrap_or(Duration::MAX / 4));
        tokio::pin!(keep_alive_timer);
        let mut large_reads = false;
        loop {
            if let Err(close) = self.process(buf).await {
                return close;
            }
            self.start_writes();
            if let Err(close) = self.take_mail() {
                return close;
            }
            if self.flush().await.is_err() {
                return Close::WithWill;
            }
            if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
                *buf = BytesMut::new();
            }
            let reading = self.writes.len() < max_inflight;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Publishes already read are written and acknowledged before the goodbye.
                    self.drain_writes().await;
                    self.disconnect(0x8b);
                    return Close::Quiet;
                }
                _ = leave.cancelled() => {
                    self.disconnect(0x8e);
                    return Close::Quiet;
                }
                done = self.writes.finished(), if self.writes.busy() => {
                    if let Err(close) = self.written(done) {
                        return close;
                    }
                    // Reading may have paused for this write: the client is not silent.
                    last_heard = Instant::now();
                }
                _ = mailbox.wait() => {}
                () = &mut keep_alive_timer, if keep_alive.is_some() => {
                    let due = last_heard + keep_alive.unwrap_or_default();
                    if due > Instant::now() {
                        keep_alive_timer.as_mut().reset(due);
                        continue;
                    }
                    tracing::debug!(client_id = %self.client_id, remote = %self.remote, "MQTT keep-alive expired");
                    self.disconnect(0x8d);
                    return Close::WithWill;
                }
                read = read_some(reader, buf, large_reads), if reading => match read {
                    Ok((0, _)) | Err(_) => return self.finish_buffer(buf).await,
                    Ok((_, filled)) => {
                        large_reads = filled;
                        last_heard = Instant::now();
                    }
                },
            }
        }
    }

    /// The client closed its side: what it sent before is handled all the same (publishes, and a
    /// DISCONNECT that makes the end clean), the in-flight limit kept by writing as it goes.
    async fn finish_buffer(&mut self, buf: &mut BytesMut) -> Close {
        loop {
            if let Err(close) = self.process(buf).await {
                return close;
            }
            if self.writes.len() < self.broker.settings.max_inflight {
                // Nothing whole is left: the connection broke without DISCONNECT.
                return Close::WithWill;
            }
            self.drain_writes().await;
            if self.writes.len() >= self.broker.settings.max_inflight {
                // The store did not keep up within the drain timeout: give up on the rest.
                return Close::Abort;
            }
        }
    }

    /// Handles the packets already buffered, while the client's publishes in flight allow.
    async fn process(&mut self, buf: &mut BytesMut) -> Result<(), Close> {
        let max_packet = self.broker.settings.max_packet;
        while self.writes.len() < self.broker.settings.max_inflight {
            let packet = match codec::decode(buf, self.version, max_packet) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(client_id = %self.client_id, remote = %self.remote, error = %e, "MQTT connection closed");
                    self.disconnect(match e {
                        DecodeError::TooLarge { .. } => 0x95,
                        DecodeError::Malformed(_) => 0x81,
                        _ => 0x82,
                    });
                    return Err(Close::WithWill);
                }
            };
            self.handle(packet).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => return self.publish(p).await,
            Packet::PubAck { pid } => {
                let unacked = &mut self.session.data().unacked;
                if let Some(i) = unacked.iter().position(|u| u.pid == pid) {
                    unacked.remove(i);
                }
            }
            Packet::PubRel { pid } => {
                self.session.data().awaiting_rel.remove(&pid);
                self.send(&Outgoing::PubComp { pid });
            }
            // This broker sends no QoS 2 messages.
            Packet::PubRec { .. } | Packet::PubComp { .. } => {}
            Packet::Subscribe { pid, filters } => self.subscribe(pid, filters).await,
            Packet::Unsubscribe { pid, filters } => self.unsubscribe(pid, filters).await,
            Packet::PingReq => self.send(&Outgoing::PingResp),
            Packet::Disconnect { reason, session_expiry } => {
                if let (Some(secs), Session::Persistent(held)) = (session_expiry, &mut self.session) {
                    held.expiry = Duration::from_secs(u64::from(secs)).min(self.broker.settings.session_expiry);
                }
                return Err(if reason == 0x04 { Close::WithWill } else { Close::Clean });
            }
            Packet::Connect(_) | Packet::Auth => {
                tracing::info!(client_id = %self.client_id, "MQTT protocol error: a second CONNECT, or AUTH");
                self.disconnect(0x82);
                return Err(Close::WithWill);
            }
        }
        Ok(())
    }

    async fn publish(&mut self, p: Publish) -> Result<(), Close> {
        if p.topic_alias.is_some() {
            self.disconnect(0x94);
            return Err(Close::WithWill);
        }
        if p.retain && self.version == Version::V5 {
            // CONNACK said Retain Available 0.
            self.disconnect(0x9a);
            return Err(Close::WithWill);
        }
        if !topic::valid_topic_name(&p.topic) {
            tracing::info!(client_id = %self.client_id, topic = %p.topic, "MQTT PUBLISH to an invalid topic name");
            self.disconnect(0x90);
            return Err(Close::WithWill);
        }
        let ack = match p.qos {
            QoS::AtMostOnce => Ack::None,
            QoS::AtLeastOnce => Ack::Puback(p.pid),
            QoS::ExactlyOnce => {
                let data = self.session.data();
                if data.awaiting_rel.contains(&p.pid) {
                    // Sent again before its PUBREL: already stored (or being stored), acknowledge
                    // again in turn.
                    self.writes.refuse(0, Ack::Pubrec(p.pid));
                    return Ok(());
                }
                if data.awaiting_rel.len() >= self.broker.settings.max_inflight {
                    self.disconnect(0x93);
                    return Err(Close::WithWill);
                }
                // Taken from now on; given back if it is not stored.
                data.awaiting_rel.insert(p.pid);
                Ack::Pubrec(p.pid)
            }
        };
        match prepare(&self.platform, &p.topic, &p.payload).await {
            Ok((thing, items, flags)) => self.writes.push(thing, items, flags, ack),
            Err(Refused { reason, error }) => {
                if self.version == Version::V311 && server_fault(&error) && ack != Ack::None {
                    // 3.1.1 cannot say "not stored": no acknowledgement, the client sends again.
                    tracing::warn!(client_id = %self.client_id, error = %error.public_message(), "MQTT publish not stored");
                    return Err(Close::Abort);
                }
                self.log_refusal(&p.topic, &error);
                self.writes.refuse(reason, ack);
            }
        }
        Ok(())
    }

    /// Writes and acknowledges every publish already read (bounded by the in-flight limit and
    /// the drain timeout).
    async fn drain_writes(&mut self) {
        let drain = async {
            loop {
                self.start_writes();
                if !self.writes.busy() {
                    return;
                }
                let done = self.writes.finished().await;
                if self.written(done).is_err() {
                    return;
                }
            }
        };
        let _ = timeout(crate::net::DRAIN_TIMEOUT, drain).await;
    }

    /// Answers refused publishes in turn and starts the next store write.
    fn start_writes(&mut self) {
        let mut due = Vec::new();
        self.writes.start(&self.platform, &mut due);
        for (ack, reason) in due {
            self.ack(ack, reason);
        }
    }

    /// A store write finished: acknowledge what it committed.
    fn written(&mut self, done: Done) -> Result<(), Close> {
        match done.result {
            Ok(()) => {
                for ack in done.acks {
                    self.ack(ack, 0);
                }
            }
            Err(e) => {
                let needs_ack = done.acks.iter().any(|a| *a != Ack::None);
                if self.version == Version::V311 && server_fault(&e) && needs_ack {
                    tracing::warn!(client_id = %self.client_id, error = %e.public_message(), "MQTT publishes not stored");
                    return Err(Close::Abort);
                }
                tracing::info!(client_id = %self.client_id, error = %e.public_message(), "MQTT publish not stored");
                let reason = reason_of(&e);
                for ack in done.acks {
                    self.ack(ack, reason);
                }
            }
        }
        Ok(())
    }

    fn ack(&mut self, ack: Ack, reason: u8) {
        match ack {
            Ack::None => {}
            Ack::Puback(pid) => self.send(&Outgoing::PubAck { pid, reason }),
            Ack::Pubrec(pid) => {
                if reason >= 0x80 {
                    self.session.data().awaiting_rel.remove(&pid);
                }
                self.send(&Outgoing::PubRec { pid, reason });
            }
        }
    }

    async fn subscribe(&mut self, pid: u16, filters: Vec<Filter>) {
        let v5 = self.version == Version::V5;
        let mut codes = Vec::with_capacity(filters.len());
        let mut activations = Vec::new();
        for f in filters {
            let granted = f.qos.min(QoS::AtLeastOnce);
            let code = match topic::filter_topic(&f.filter) {
                FilterTopic::Thing { token } => match self.subscribe_thing(&f.filter, token, granted).await {
                    Ok(()) => granted as u8,
                    Err(e) => {
                        self.log_refusal(&f.filter, &e);
                        if v5 { reason_of(&e) } else { 0x80 }
                    }
                },
                FilterTopic::Activation { code } => {
                    activations.push((Arc::<str>::from(f.filter.as_str()), code.to_owned()));
                    granted as u8
                }
                FilterTopic::Refused(why) => {
                    self.log_refusal(&f.filter, &Error::Forbidden(format!("{why:?}")));
                    if v5 { why.reason_code() } else { 0x80 }
                }
            };
            codes.push(code);
        }
        self.send(&Outgoing::SubAck { pid, codes });
        for (topic, code) in activations {
            self.activate(topic, &code).await;
        }
    }

    /// Subscribes the session to a thing's channel. Routed before it is live, so that nothing
    /// delivered between the two is missed.
    async fn subscribe_thing(&mut self, filter: &str, token: &str, qos: QoS) -> thingline_core::Result<()> {
        let platform = Arc::clone(&self.platform);
        let data = self.session.data();
        let channel = thing_channel(token);
        let held = data.subs.iter().any(|s| s.channel == channel);
        data.mailbox.route(Arc::clone(&channel), Arc::from(filter), qos);
        let mailbox: Arc<dyn Outlet> = data.mailbox.clone();
        let subscriber =
            data.subscriber.get_or_insert_with(|| platform.open_subscriber_for(metrics::Protocol::Mqtt, mailbox));
        match subscriber.subscribe(Target::Thing { token: token.to_owned() }).await {
            Ok(_) => {
                if !held {
                    data.subs.push(SubEntry { filter: filter.to_owned(), channel });
                }
                Ok(())
            }
            Err(e) => {
                if !held {
                    data.mailbox.unroute(&channel);
                }
                Err(e)
            }
        }
    }

    async fn unsubscribe(&mut self, pid: u16, filters: Vec<String>) {
        let mut codes = Vec::with_capacity(filters.len());
        let data = self.session.data();
        for f in filters {
            let channel = data.subs.iter().find(|s| s.filter == f).map(|s| Arc::clone(&s.channel));
            codes.push(match channel {
                Some(channel) => {
                    if let Some(s) = &data.subscriber {
                        s.unsubscribe(&channel).await;
                    }
                    data.forget(&channel);
                    0x00
                }
                None => 0x11,
            });
        }
        self.send(&Outgoing::UnsubAck { pid, codes });
    }

    /// Activates a thing for a subscription to `v2/activations/{code}/{nonce}` and publishes the
    /// answer on that topic: `{"status":"created","thingToken":…}` or the error envelope.
    async fn activate(&mut self, topic: Arc<str>, code: &str) {
        let body = match self.platform.activate(code, None, self.remote.ip()).await {
            Ok(thing) => serde_json::json!({
                "status": "created",
                "message": "thing activated",
                "thingToken": thing.token,
                "thingId": thing.id,
            }),
            Err(e) => {
                tracing::info!(client_id = %self.client_id, remote = %self.remote, error = %e.public_message(), "MQTT activation refused");
                e.envelope()
            }
        };
        let payload = Bytes::from(body.to_string());
        self.send(&Outgoing::Publish { dup: false, qos: QoS::AtMostOnce, pid: 0, topic, payload });
    }

    /// Moves mail into the output: ended subscriptions first, then deliveries within the window.
    fn take_mail(&mut self) -> Result<(), Close> {
        let version = self.version;
        let data = self.session.data();
        let room = self.window.saturating_sub(data.unacked.len());
        let mail = data.mailbox.take(room);
        for (channel, _) in &mail.ended {
            data.forget(channel);
        }
        if let Some((channel, why)) = mail.ended.first() {
            tracing::info!(client_id = %self.client_id, %channel, ?why, "MQTT subscription ended by the platform");
            self.disconnect(match why {
                Ended::ThingGone | Ended::AccessRemoved | Ended::SessionEnded => 0x87,
                Ended::SlowConsumer | Ended::Lagged => 0x97,
                Ended::Unverified => 0x80,
            });
            return Err(Close::WithWill);
        }
        if mail.kick {
            tracing::info!(client_id = %self.client_id, dropped = data.mailbox.dropped(), "MQTT client too slow: its session queue was full");
            self.disconnect(0x97);
            return Err(Close::WithWill);
        }
        for d in mail.deliveries {
            if codec::publish_size(&d.topic, d.payload.as_str().len(), d.qos, version) > self.client_max_packet {
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                encode_delivery(&mut self.out, version, &d, 0, false);
                continue;
            }
            let data = self.session.data();
            let pid = data.next_pid();
            encode_delivery(&mut self.out, version, &d, pid, false);
            data.unacked.push_back(Unacked { pid, delivery: d });
        }
        Ok(())
    }

    fn send(&mut self, packet: &Outgoing) {
        codec::encode(packet, self.version, &mut self.out);
    }

    /// Sends an MQTT 5 DISCONNECT with `reason` (3.1.1 has none: the connection just closes).
    fn disconnect(&mut self, reason: u8) {
        self.send(&Outgoing::Disconnect { reason });
    }

    async fn flush(&mut self) -> Result<(), ()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.writer.write_all(&self.out).await?;
            self.writer.flush().await
        };
        match timeout(self.broker.settings.write_timeout, write).await {
            Ok(Ok(())) => {
                self.out.clear();
                if self.out.capacity() > KEEP_BUFFER {
                    self.out = BytesMut::new();
                }
                Ok(())
            }
            _ => {
                tracing::debug!(client_id = %self.client_id, remote = %self.remote, "MQTT client not reading: closed");
                Err(())
            }
        }
    }

    fn log_refusal(&mut self, topic: &str, error: &Error) {
        self.refusals += 1;
        let msg = error.public_message();
        if self.refusals <= LOGGED_REFUSALS {
            tracing::info!(client_id = %self.client_id, remote = %self.remote, %topic, error = %msg, "MQTT packet refused");
        } else {
            tracing::debug!(client_id = %self.client_id, remote = %self.remote, %topic, error = %msg, "MQTT packet refused");
        }
    }

    /// The connection is over: last words, the will, the session.
    async fn end(mut self, close: Close) {
        // Every publish read before the end is written (a client may publish and DISCONNECT in
        // one breath), and acknowledged if the client is still there; a QoS 2 publish stored is
        // then not stored again when a persistent session's client sends it again.
        if close != Close::Abort {
            self.drain_writes().await;
        }
        // QoS 2 publishes never stored are not "already received" when sent again.
        for pid in self.writes.unfinished_pubrecs() {
            self.session.data().awaiting_rel.remove(&pid);
        }
        let _ = timeout(Duration::from_secs(1), self.flush()).await;
        let _ = self.writer.shutdown().await;
        if close == Close::WithWill
            && let Some(will) = self.will.take()
        {
            let platform = Arc::clone(&self.platform);
            let client_id = Arc::clone(&self.client_id);
            tokio::spawn(async move { publish_will(platform, will, client_id).await });
        }
        tracing::debug!(client_id = %self.client_id, remote = %self.remote, ?close, "MQTT client disconnected");
        match self.session {
            Session::Clean(mut data) => data.close().await,
            Session::Persistent(held) => drop(held),
        }
    }
}

fn encode_delivery(out: &mut BytesMut, version: Version, d: &Delivery, pid: u16, dup: bool) {
    codec::encode_publish(out, version, dup, d.qos, pid, &d.topic, d.payload.as_str().as_bytes());
}

/// A publish that reaches nothing: its MQTT 5 reason code and the error behind it.
struct Refused {
    reason: u8,
    error: Error,
}

/// What a PUBLISH (or a will) writes: its thing, values and flags, all checked.
async fn prepare(
    platform: &Platform,
    topic_name: &str,
    payload: &[u8],
) -> Result<(Arc<Thing>, Vec<WriteItem>, WriteFlags), Refused> {
    let refused = |reason, error| Refused { reason, error };
    let PublishTopic::Thing { token, query } = topic::publish_topic(topic_name) else {
        return Err(refused(0x87, Error::Forbidden("not a thing topic".into())));
    };
    let flags = topic::write_flags(query).map_err(|e| refused(0x90, e))?;
    let thing = platform.thing_by_token(token).await.map_err(|e| refused(reason_of(&e), e))?;
    let text =
        std::str::from_utf8(payload).map_err(|_| refused(0x99, Error::bad_request("the payload is not UTF-8 JSON")))?;
    let items =
        parse_write_items(text, None, platform.limits().max_values_per_write).map_err(|e| refused(reason_of(&e), e))?;
    Ok((thing, items, flags))
}

/// Publishes a will as the client's publish: stored and delivered like any write.
async fn publish_will(platform: Arc<Platform>, will: Will, client_id: Arc<str>) {
    let result = match prepare(&platform, &will.topic, &will.payload).await {
        Ok((thing, items, flags)) => platform.write_values(&thing, items, flags).await,
        Err(Refused { error, .. }) => Err(error),
    };
    match result {
        Ok(()) => tracing::debug!(%client_id, topic = %will.topic, "MQTT will published"),
        Err(e) => tracing::info!(%client_id, topic = %will.topic, error = %e.public_message(), "MQTT will refused"),
    }
}

/// Whether a failure is the server's (the store), not the client's.
fn server_fault(e: &Error) -> bool {
    matches!(e, Error::Internal(_) | Error::Unavailable(_) | Error::InsufficientStorage(_) | Error::RequestTimeout(_))
}

/// Reads what has arrived; whether the read filled its room (more is likely waiting).
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    large: bool,
) -> std::io::Result<(usize, bool)> {
    let room = if large { READ_LARGE } else { READ_SMALL };
    if buf.capacity() - buf.len() < room {
        buf.reserve(room);
    }
    let spare = buf.capacity() - buf.len();
    let n = reader.read_buf(buf).await?;
    Ok((n, n == spare))
}
