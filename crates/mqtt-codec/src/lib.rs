//! The MQTT frame layer: turns bytes into the packets a broker receives and the packets it sends
//! into bytes, for MQTT 3.1.1 (protocol level 4, and level 3 "MQIsdp") and MQTT 5. No I/O and no
//! state beyond the protocol version, so that it can be fuzzed alone (`fuzz/`). The broker
//! (`thingline::mqtt`) uses it as `mqtt::codec`.
//!
//! Decoding is incremental ([`decode`] answers `Ok(None)` until a whole packet has arrived) and
//! bounded: a packet whose announced length exceeds the limit is refused from its fixed header,
//! before its body is read. Every length inside a packet is checked against what is left, strings
//! must be UTF-8 without U+0000, and anything the protocol forbids (reserved flags, QoS 3, a
//! packet id of 0, an unknown property) is an error: the caller closes that connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Most bytes a fixed header's remaining length can announce (the varint's 4-byte maximum).
pub const MAX_REMAINING: usize = 268_435_455;

/// The protocol version a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (level 4) and MQTT 3.1 (level 3): the same packets for what a broker needs.
    V311,
    /// MQTT 5 (level 5): reason codes and properties.
    V5,
}

/// A quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    fn from_bits(bits: u8) -> Result<QoS, DecodeError> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::Malformed("QoS 3 is reserved")),
        }
    }
}

/// Why bytes are not a packet. Each one closes the connection that sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a well-formed packet (MQTT 5 reason 0x81).
    Malformed(&'static str),
    /// Well formed but forbidden here (MQTT 5 reason 0x82).
    Protocol(&'static str),
    /// Longer than the limit (MQTT 5 reason 0x95).
    TooLarge { announced: usize, limit: usize },
    /// A CONNECT with a protocol name or level this broker does not speak.
    UnsupportedVersion(u8),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Malformed(m) => write!(f, "malformed packet: {m}"),
            DecodeError::Protocol(m) => write!(f, "protocol error: {m}"),
            DecodeError::TooLarge { announced, limit } => {
                write!(f, "packet of {announced} bytes exceeds the limit of {limit}")
            }
            DecodeError::UnsupportedVersion(l) => write!(f, "unsupported protocol level {l}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The will of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// A CONNECT, with the MQTT 5 properties a broker acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    /// Clean session (3.1.1) or clean start (5).
    pub clean_start: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// MQTT 5 Session Expiry Interval, seconds (absent: 0).
    pub session_expiry: u32,
    /// MQTT 5 Receive Maximum: QoS 1/2 publishes the client accepts unacknowledged.
    pub receive_maximum: u16,
    /// MQTT 5 Maximum Packet Size the client accepts.
    pub max_packet_size: Option<u32>,
}

/// A PUBLISH, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    /// 0 for QoS 0.
    pub pid: u16,
    pub payload: Bytes,
    /// MQTT 5 Topic Alias (this broker allows none).
    pub topic_alias: Option<u16>,
}

/// One topic filter of a SUBSCRIBE and its options byte (QoS in the low two bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub filter: String,
    pub qos: QoS,
}

/// A packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    Publish(Publish),
    PubAck {
        pid: u16,
    },
    PubRec {
        pid: u16,
    },
    PubRel {
        pid: u16,
    },
    PubComp {
        pid: u16,
    },
    Subscribe {
        pid: u16,
        filters: Vec<Filter>,
    },
    Unsubscribe {
        pid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// `reason` 0 when absent (3.1.1); 0x04 asks for the will to be published.
    Disconnect {
        reason: u8,
        session_expiry: Option<u32>,
    },
    /// An MQTT 5 AUTH (enhanced authentication, which this broker does not offer).
    Auth,
}

/// The properties of a CONNACK this broker sends (MQTT 5 only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProps {
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub max_packet_size: Option<u32>,
    pub assigned_client_id: Option<String>,
    pub retain_available: bool,
    pub wildcards_available: bool,
    pub subscription_ids_available: bool,
    pub shared_available: bool,
    pub reason_string: Option<String>,
}

/// A packet this broker sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    ConnAck { session_present: bool, code: u8, props: ConnAckProps },
    Publish { dup: bool, qos: QoS, pid: u16, topic: std::sync::Arc<str>, payload: Bytes },
    PubAck { pid: u16, reason: u8 },
    PubRec { pid: u16, reason: u8 },
    PubComp { pid: u16 },
    SubAck { pid: u16, codes: Vec<u8> },
    UnsubAck { pid: u16, codes: Vec<u8> },
    PingResp,
    Disconnect { reason: u8 },
}

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// The protocol level of the CONNECT at the front of `buf`, once enough of it has arrived:
/// which version to [`decode`] it with. `Ok(None)`: not enough bytes yet.
pub fn peek_connect_version(buf: &[u8], max_packet: usize) -> Result<Option<Version>, DecodeError> {
    let Some((first, len, header)) = fixed_header(buf, max_packet)? else { return Ok(None) };
    if first >> 4 != CONNECT {
        return Err(DecodeError::Protocol("the first packet must be CONNECT"));
    }
    // What has arrived of the body; once all of it is here, too short is malformed, not "wait".
    let complete = buf.len() >= header + len;
    let short = || if complete { Err(DecodeError::Malformed("CONNECT shorter than its fields")) } else { Ok(None) };
    let mut body = &buf[header..(header + len).min(buf.len())];
    if body.len() < 2 {
        return short();
    }
    let name_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    body = &body[2..];
    if body.len() < name_len + 1 {
        return short();
    }
    let (name, level) = (&body[..name_len], body[name_len]);
    match (name, level) {
        (b"MQTT", 4) | (b"MQIsdp", 3) => Ok(Some(Version::V311)),
        (b"MQTT", 5) => Ok(Some(Version::V5)),
        (b"MQTT" | b"MQIsdp", l) => Err(DecodeError::UnsupportedVersion(l)),
        _ => Err(DecodeError::Protocol("unknown protocol name")),
    }
}

/// Takes one whole packet off the front of `buf`. `Ok(None)`: more bytes are needed (nothing is
/// consumed). `version` is the connection's (the CONNECT carries its own).
pub fn decode(buf: &mut BytesMut, version: Version, max_packet: usize) -> Result<Option<Packet>, DecodeError> {
    let Some((first, len, header)) = fixed_header(buf, max_packet)? else { return Ok(None) };
    if buf.len() < header + len {
        return Ok(None);
    }
    buf.advance(header);
    let body = buf.split_to(len).freeze();
    let mut r = Reader { buf: body };
    let packet = parse(first, version, &mut r)?;
    Ok(Some(packet))
}

/// The fixed header at the front of `buf`: (first byte, remaining length, header length).
fn fixed_header(buf: &[u8], max_packet: usize) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let mut len = 0usize;
    let mut shift = 0;
    for i in 1..=4 {
        let Some(&b) = buf.get(i) else { return Ok(None) };
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let total = i + 1 + len;
            if total > max_packet {
                return Err(DecodeError::TooLarge { announced: total, limit: max_packet });
            }
            return Ok(Some((first, len, i + 1)));
        }
        shift += 7;
    }
    Err(DecodeError::Malformed("remaining length longer than 4 bytes"))
}

fn parse(first: u8, version: Version, r: &mut Reader) -> Result<Packet, DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0f;
    let expect_flags = |want: u8| {
        if flags == want { Ok(()) } else { Err(DecodeError::Malformed("reserved fixed-header flags")) }
    };
    let packet = match kind {
        CONNECT => {
            expect_flags(0)?;
            Packet::Connect(Box::new(parse_connect(r)?))
        }
        PUBLISH => Packet::Publish(parse_publish(flags, version, r)?),
        PUBACK | PUBREC | PUBCOMP => {
            expect_flags(0)?;
            let pid = parse_ack(version, r)?;
            match kind {
                PUBACK => Packet::PubAck { pid },
                PUBREC => Packet::PubRec { pid },
                _ => Packet::PubComp { pid },
            }
        }
        PUBREL => {
            expect_flags(2)?;
            Packet::PubRel { pid: parse_ack(version, r)? }
        }
        SUBSCRIBE => {
            expect_flags(2)?;
            let pid = r.pid()?;
            if version == Version::V5 {
                r.properties(|_, _| Ok(()))?;
            }
            let mut filters = Vec::new();
            while r.has_remaining() {
                let filter = r.string()?;
                let options = r.u8()?;
                let reserved = if version == Version::V5 { 0xc0 } else { 0xfc };
                if options & reserved != 0 {
                    return Err(DecodeError::Malformed("reserved subscription option bits"));
                }
                if version == Version::V5 && (options >> 4) & 3 == 3 {
                    return Err(DecodeError::Protocol("Retain Handling 3 is reserved"));
                }
                filters.push(Filter { filter, qos: QoS::from_bits(options & 3)? });
            }
            if filters.is_empty() {
                return Err(DecodeError::Protocol("SUBSCRIBE without a topic filter"));
            }
            Packet::Subscribe { pid, filters }
        }
        UNSUBSCRIBE => {
            expect_flags(2)?;
            let pid = r.pid()?;
            if version == Version::V5 {
                r.properties(|_, _| Ok(()))?;
            }
            let mut filters = Vec::new();
            while r.has_remaining() {
                filters.push(r.string()?);
            }
            if filters.is_empty() {
                return Err(DecodeError::Protocol("UNSUBSCRIBE without a topic filter"));
            }
            Packet::Unsubscribe { pid, filters }
        }
        PINGREQ => {
            expect_flags(0)?;
            Packet::PingReq
        }
        DISCONNECT => {
            expect_flags(0)?;
            let mut reason = 0;
            let mut session_expiry = None;
            if version == Version::V5 && r.has_remaining() {
                reason = r.u8()?;
                if r.has_remaining() {
                    r.properties(|id, p| {
                        if let (0x11, Prop::U32(v)) = (id, p) {
                            session_expiry = Some(v);
                        }
                        Ok(())
                    })?;
                }
            }
            Packet::Disconnect { reason, session_expiry }
        }
        AUTH if version == Version::V5 => {
            expect_flags(0)?;
            r.buf.clear();
            Packet::Auth
        }
        CONNACK | SUBACK | UNSUBACK | PINGRESP => return Err(DecodeError::Protocol("a packet only a server sends")),
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    };
    if r.has_remaining() {
        return Err(DecodeError::Malformed("bytes left after the packet"));
    }
    Ok(packet)
}

fn parse_connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.string()?;
    let level = r.u8()?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) | ("MQIsdp", 3) => Version::V311,
        ("MQTT", 5) => Version::V5,
        ("MQTT" | "MQIsdp", l) => return Err(DecodeError::UnsupportedVersion(l)),
        _ => return Err(DecodeError::Protocol("unknown protocol name")),
    };
    let flags = r.u8()?;
    if flags & 1 != 0 {
        return Err(DecodeError::Malformed("reserved CONNECT flag"));
    }
    let clean_start = flags & 0x02 != 0;
    let has_will = flags & 0x04 != 0;
    let will_qos = QoS::from_bits((flags >> 3) & 3)?;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain without a will"));
    }
    if version == Version::V311 && has_password && !has_username {
        return Err(DecodeError::Malformed("a password without a user name"));
    }
    let keep_alive = r.u16()?;
    let mut connect = Connect {
        version,
        client_id: String::new(),
        clean_start,
        keep_alive,
        will: None,
        username: None,
        password: None,
        session_expiry: 0,
        receive_maximum: u16::MAX,
        max_packet_size: None,
    };
    if version == Version::V5 {
        r.properties(|id, p| {
            match (id, p) {
                (0x11, Prop::U32(v)) => connect.session_expiry = v,
                (0x21, Prop::U16(0)) => return Err(DecodeError::Protocol("Receive Maximum of 0")),
                (0x21, Prop::U16(v)) => connect.receive_maximum = v,
                (0x27, Prop::U32(0)) => return Err(DecodeError::Protocol("Maximum Packet Size of 0")),
                (0x27, Prop::U32(v)) => connect.max_packet_size = Some(v),
                _ => {}
            }
            Ok(())
        })?;
    }
    connect.client_id = r.string()?;
    if has_will {
        if version == Version::V5 {
            r.properties(|_, _| Ok(()))?;
        }
        let topic = r.string()?;
        let payload = r.binary()?;
        connect.will = Some(Will { topic, payload, qos: will_qos, retain: will_retain });
    }
    if has_username {
        connect.username = Some(r.string()?);
    }
    if has_password {
        connect.password = Some(r.binary()?);
    }
    Ok(connect)
}

fn parse_publish(flags: u8, version: Version, r: &mut Reader) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_bits((flags >> 1) & 3)?;
    let retain = flags & 1 != 0;
    if qos == QoS::AtMostOnce && dup {
        return Err(DecodeError::Malformed("DUP on a QoS 0 publish"));
    }
    let topic = r.string()?;
    let pid = if qos == QoS::AtMostOnce { 0 } else { r.pid()? };
    let mut topic_alias = None;
    if version == Version::V5 {
        r.properties(|id, p| {
            if let (0x23, Prop::U16(v)) = (id, p) {
                topic_alias = Some(v);
            }
            Ok(())
        })?;
    }
    let payload = r.rest();
    Ok(Publish { dup, qos, retain, topic, pid, payload, topic_alias })
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP: the packet id, then (MQTT 5) an optional reason and properties.
fn parse_ack(version: Version, r: &mut Reader) -> Result<u16, DecodeError> {
    let pid = r.pid()?;
    if version == Version::V5 && r.has_remaining() {
        r.u8()?;
        if r.has_remaining() {
            r.properties(|_, _| Ok(()))?;
        }
    }
    Ok(pid)
}

/// A decoded MQTT 5 property value.
#[derive(Debug, Clone, Copy)]
enum Prop {
    U16(u16),
    U32(u32),
    Other,
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn has_remaining(&self) -> bool {
        !self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n { Err(DecodeError::Malformed("packet shorter than its fields")) } else { Ok(()) }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    fn pid(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::Malformed("packet identifier 0")),
            pid => Ok(pid),
        }
    }

    fn varint(&mut self) -> Result<usize, DecodeError> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            value |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("variable byte integer longer than 4 bytes"))
    }

    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw).map_err(|_| DecodeError::Malformed("a string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(DecodeError::Malformed("a string holds U+0000"));
        }
        Ok(s.to_owned())
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Reads an MQTT 5 property block, handing each known property to `each`; an unknown
    /// identifier is malformed.
    fn properties(&mut self, mut each: impl FnMut(u8, Prop) -> Result<(), DecodeError>) -> Result<(), DecodeError> {
        let len = self.varint()?;
        self.need(len)?;
        let mut props = Reader { buf: self.buf.split_to(len) };
        while props.has_remaining() {
            let id = props.varint()?;
            let id = u8::try_from(id).map_err(|_| DecodeError::Malformed("unknown property"))?;
            let value = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => {
                    props.u8()?;
                    Prop::Other
                }
                0x13 | 0x21 | 0x22 | 0x23 => Prop::U16(props.u16()?),
                0x02 | 0x11 | 0x18 | 0x27 => Prop::U32(props.u32()?),
                0x0b => {
                    props.varint()?;
                    Prop::Other
                }
                0x03 | 0x08 | 0x12 | 0x15 | 0x1a | 0x1c | 0x1f => {
                    props.string()?;
                    Prop::Other
                }
                0x09 | 0x16 => {
                    props.binary()?;
                    Prop::Other
                }
                0x26 => {
                    props.string()?;
                    props.string()?;
                    Prop::Other
                }
                _ => return Err(DecodeError::Malformed("unknown property")),
            };
            each(id, value)?;
        }
        Ok(())
    }
}

/// Appends `packet` to `out`, in `version`'s format.
pub fn encode(packet: &Outgoing, version: Version, out: &mut BytesMut) {
    let v5 = version == Version::V5;
    match packet {
        Outgoing::ConnAck { session_present, code, props } => {
            let mut body = BytesMut::with_capacity(16);
            body.put_u8(u8::from(*session_present));
            body.put_u8(*code);
            if v5 {
                let mut p = BytesMut::new();
                if let Some(v) = props.session_expiry {
                    p.put_u8(0x11);
                    p.put_u32(v);
                }
                if let Some(v) = props.receive_maximum {
                    p.put_u8(0x21);
                    p.put_u16(v);
                }
                if let Some(v) = props.max_packet_size {
                    p.put_u8(0x27);
                    p.put_u32(v);
                }
                if let Some(id) = &props.assigned_client_id {
                    p.put_u8(0x12);
                    put_string(&mut p, id);
                }
                for (id, available) in [
                    (0x25, props.retain_available),
                    (0x28, props.wildcards_available),
                    (0x29, props.subscription_ids_available),
                    (0x2a, props.shared_available),
                ] {
                    if !available {
                        p.put_u8(id);
                        p.put_u8(0);
                    }
                }
                if let Some(s) = &props.reason_string {
                    p.put_u8(0x1f);
                    put_string(&mut p, s);
                }
                put_varint(&mut body, p.len());
                body.extend_from_slice(&p);
            }
            put_packet(out, CONNACK << 4, &body, &[]);
        }
        Outgoing::Publish { dup, qos, pid, topic, payload } => {
            encode_publish(out, version, *dup, *qos, *pid, topic, payload)
        }
        Outgoing::PubAck { pid, reason } => put_ack(out, PUBACK << 4, *pid, *reason, v5),
        Outgoing::PubRec { pid, reason } => put_ack(out, PUBREC << 4, *pid, *reason, v5),
        Outgoing::PubComp { pid } => put_ack(out, PUBCOMP << 4, *pid, 0, v5),
        Outgoing::SubAck { pid, codes } | Outgoing::UnsubAck { pid, codes } => {
            let suback = matches!(packet, Outgoing::SubAck { .. });
            let mut body = BytesMut::with_capacity(codes.len() + 3);
            body.put_u16(*pid);
            if v5 {
                body.put_u8(0);
            }
            if suback || v5 {
                body.extend_from_slice(codes);
            }
            put_packet(out, if suback { SUBACK << 4 } else { UNSUBACK << 4 }, &body, &[]);
        }
        Outgoing::PingResp => put_packet(out, PINGRESP << 4, &[], &[]),
        Outgoing::Disconnect { reason } => {
            // 3.1.1 has no server DISCONNECT: the server just closes.
            if v5 {
                put_packet(out, DISCONNECT << 4, &[*reason, 0], &[]);
            }
        }
    }
}

/// Appends a PUBLISH (what deliveries use, without building an [`Outgoing`]).
pub fn encode_publish(
    out: &mut BytesMut,
    version: Version,
    dup: bool,
    qos: QoS,
    pid: u16,
    topic: &str,
    payload: &[u8],
) {
    let topic = &topic.as_bytes()[..topic.len().min(usize::from(u16::MAX))];
    let with_pid = qos != QoS::AtMostOnce;
    let len = 2 + topic.len() + usize::from(with_pid) * 2 + usize::from(version == Version::V5) + payload.len();
    out.reserve(len + 5);
    out.put_u8((PUBLISH << 4) | (u8::from(dup) << 3) | ((qos as u8) << 1));
    put_varint(out, len);
    out.put_u16(topic.len() as u16);
    out.extend_from_slice(topic);
    if with_pid {
        out.put_u16(pid);
    }
    if version == Version::V5 {
        out.put_u8(0);
    }
    out.extend_from_slice(payload);
}

fn put_ack(out: &mut BytesMut, first: u8, pid: u16, reason: u8, v5: bool) {
    let pid = pid.to_be_bytes();
    if v5 && reason != 0 {
        put_packet(out, first, &[pid[0], pid[1], reason], &[]);
    } else {
        put_packet(out, first, &pid, &[]);
    }
}

fn put_packet(out: &mut BytesMut, first: u8, head: &[u8], payload: &[u8]) {
    let len = head.len() + payload.len();
    out.reserve(len + 5);
    out.put_u8(first);
    put_varint(out, len);
    out.extend_from_slice(head);
    out.extend_from_slice(payload);
}

fn put_varint(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

fn put_string(out: &mut BytesMut, s: &str) {
    // Topics and ids here are bounded by the packet limit; a string over 65,535 bytes is cut
    // rather than written with a wrong length.
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    out.put_u16(bytes.len() as u16);
    out.extend_from_slice(bytes);
}

/// The encoded size of a PUBLISH of `topic` and `payload_len` bytes (for a client's Maximum
/// Packet Size).
pub fn publish_size(topic: &str, payload_len: usize, qos: QoS, version: Version) -> usize {
    let len =
        2 + topic.len() + usize::from(qos != QoS::AtMostOnce) * 2 + usize::from(version == Version::V5) + payload_len;
    let varint = match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + varint + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], version: Version) -> Result<Option<Packet>, DecodeError> {
        decode(&mut BytesMut::from(bytes), version, 1 << 20)
    }

    #[test]
    fn a_311_connect_with_a_will() {
        // PubSubClient's CONNECT: "arduinoclient", clean, keepalive 15, will on the thing topic.
        let mut b = vec![0x10, 0];
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b0000_0110, 0, 15];
        for s in ["arduinoclient", "v2/things/T", "{\"values\":[]}"] {
            body.extend_from_slice(&(s.len() as u16).to_be_bytes());
            body.extend_from_slice(s.as_bytes());
        }
        b[1] = body.len() as u8;
        b.extend_from_slice(&body);
        assert_eq!(peek_connect_version(&b, 1024), Ok(Some(Version::V311)));
        let Some(Packet::Connect(c)) = decode_all(&b, Version::V311).expect("decodes") else { panic!("connect") };
        assert_eq!(c.client_id, "arduinoclient");
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 15);
        let will = c.will.expect("will");
        assert_eq!(will.topic, "v2/things/T");
        assert_eq!(&will.payload[..], b"{\"values\":[]}");
    }

    #[test]
    fn partial_packets_wait_and_oversized_ones_are_refused_from_the_header() {
        let publish = [0x30, 5, 0, 1, b't', b'h', b'i'];
        for cut in 0..publish.len() {
            let mut buf = BytesMut::from(&publish[..cut]);
            assert_eq!(decode(&mut buf, Version::V311, 100), Ok(None));
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
        // A 2 MB announcement is refused after 4 bytes, before its body.
        let mut buf = BytesMut::from(&[0x30u8, 0x80, 0x80, 0x01][..]);
        assert!(matches!(decode(&mut buf, Version::V311, 1024), Err(DecodeError::TooLarge { .. })));
        let mut buf = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert_eq!(
            decode(&mut buf, Version::V311, usize::MAX),
            Err(DecodeError::Malformed("remaining length longer than 4 bytes"))
        );
    }

    #[test]
    fn forbidden_shapes_are_errors() {
        // SUBSCRIBE with flags 0, QoS 3 publish, packet id 0, a string that is not UTF-8.
        assert!(decode_all(&[0x80, 6, 0, 1, 0, 1, b'a', 0], Version::V311).is_err());
        assert!(decode_all(&[0x36, 5, 0, 1, b'a', 0, 1], Version::V311).is_err());
        assert!(decode_all(&[0x32, 5, 0, 1, b'a', 0, 0], Version::V311).is_err());
        assert!(decode_all(&[0x30, 3, 0, 1, 0xff], Version::V311).is_err());
        assert!(decode_all(&[0x20, 2, 0, 0], Version::V311).is_err(), "CONNACK from a client");
    }

    #[test]
    fn v5_acks_carry_reasons_and_311_ones_do_not() {
        let mut out = BytesMut::new();
        encode(&Outgoing::PubAck { pid: 7, reason: 0x87 }, Version::V5, &mut out);
        assert_eq!(&out[..], &[0x40, 3, 0, 7, 0x87]);
        out.clear();
        encode(&Outgoing::PubAck { pid: 7, reason: 0x87 }, Version::V311, &mut out);
        assert_eq!(&out[..], &[0x40, 2, 0, 7]);
        out.clear();
        encode(&Outgoing::UnsubAck { pid: 9, codes: vec![0] }, Version::V311, &mut out);
        assert_eq!(&out[..], &[0xb0, 2, 0, 9]);
    }

    #[test]
    fn publish_size_matches_the_encoding() {
        for len in [0usize, 100, 127, 200, 20_000, 3_000_000] {
            for (qos, version) in [(QoS::AtMostOnce, Version::V311), (QoS::AtLeastOnce, Version::V5)] {
                let mut out = BytesMut::new();
                let payload = Bytes::from(vec![b'x'; len]);
                encode(
                    &Outgoing::Publish { dup: false, qos, pid: 1, topic: "v2/things/t".into(), payload },
                    version,
                    &mut out,
                );
                assert_eq!(publish_size("v2/things/t", len, qos, version), out.len());
            }
        }
    }
}
