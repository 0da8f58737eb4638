//! The MQTT 3.1.1 wire, by hand: the packets the bench's clients send (CONNECT, PUBLISH,
//! SUBSCRIBE, PUBACK, PINGREQ, DISCONNECT) appended to a buffer, and the packets they read
//! (CONNACK, PUBACK, SUBACK, PUBLISH, PINGRESP) parsed in place from a read buffer, with no
//! allocation per packet. Also the one payload shape every command publishes and its reading.

use anyhow::{Result, bail};

/// Packet types (the high nibble of the first byte).
const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// Largest remaining length MQTT can encode (four bytes of seven bits).
const MAX_REMAINING: usize = 268_435_455;

/// The payload is `{"values":[{"key":"temp","value":N}]}`; these are its two ends.
const PAYLOAD_HEAD: &[u8] = br#"{"values":[{"key":"temp","value":"#;
const PAYLOAD_TAIL: &[u8] = b"}]}";
/// What precedes a value in both payload shapes the subscribers receive: the published JSON as
/// is (Mosquitto) and Thingline's array of value items `[{"key":"temp","value":N,"datetime":…}]`.
const VALUE_MARK: &[u8] = br#""value":"#;

/// A packet read from the server; slices borrow the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    ConnAck {
        session_present: bool,
        code: u8,
    },
    PubAck {
        pid: u16,
    },
    SubAck {
        pid: u16,
        codes: &'a [u8],
    },
    Publish {
        qos: u8,
        pid: Option<u16>,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    PingResp,
    /// Any other packet type (the clients never expect one): its first byte.
    Other(u8),
}

fn push_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn push_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// CONNECT, MQTT 3.1.1 (level 4), clean session, no will, no user name or password.
pub fn connect(out: &mut Vec<u8>, client_id: &str, keepalive_secs: u16) {
    let remaining = 10 + 2 + client_id.len();
    out.push(CONNECT << 4);
    push_remaining_length(out, remaining);
    push_str(out, b"MQTT");
    out.push(4); // protocol level 3.1.1
    out.push(0x02); // clean session
    out.extend_from_slice(&keepalive_secs.to_be_bytes());
    push_str(out, client_id.as_bytes());
}

/// PUBLISH of `payload` on `topic`; `pid` is required for QoS 1 and ignored for QoS 0 (tests:
/// the clients publish with [`publish_value`]).
#[cfg(test)]
pub fn publish(out: &mut Vec<u8>, topic: &[u8], qos: u8, pid: u16, payload: &[u8]) {
    let id_len = if qos > 0 { 2 } else { 0 };
    out.push((PUBLISH << 4) | (qos << 1));
    push_remaining_length(out, 2 + topic.len() + id_len + payload.len());
    push_str(out, topic);
    if qos > 0 {
        out.extend_from_slice(&pid.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// PUBLISH of the bench's payload with value `value`: `{"values":[{"key":"temp","value":N}]}`.
pub fn publish_value(out: &mut Vec<u8>, topic: &[u8], qos: u8, pid: u16, value: u64) {
    let mut digits = [0u8; 20];
    let digits = format_u64(value, &mut digits);
    let id_len = if qos > 0 { 2 } else { 0 };
    let payload_len = PAYLOAD_HEAD.len() + digits.len() + PAYLOAD_TAIL.len();
    out.push((PUBLISH << 4) | (qos << 1));
    push_remaining_length(out, 2 + topic.len() + id_len + payload_len);
    push_str(out, topic);
    if qos > 0 {
        out.extend_from_slice(&pid.to_be_bytes());
    }
    out.extend_from_slice(PAYLOAD_HEAD);
    out.extend_from_slice(digits);
    out.extend_from_slice(PAYLOAD_TAIL);
}

/// The bench's payload with value `value` (tests and docs).
#[cfg(test)]
pub fn payload(value: u64) -> Vec<u8> {
    let mut digits = [0u8; 20];
    [PAYLOAD_HEAD, format_u64(value, &mut digits), PAYLOAD_TAIL].concat()
}

/// SUBSCRIBE to one topic filter at `qos`.
pub fn subscribe(out: &mut Vec<u8>, pid: u16, topic: &[u8], qos: u8) {
    out.push((SUBSCRIBE << 4) | 0x02);
    push_remaining_length(out, 2 + 2 + topic.len() + 1);
    out.extend_from_slice(&pid.to_be_bytes());
    push_str(out, topic);
    out.push(qos);
}

/// PUBACK (the clients answer a QoS 1 PUBLISH the server sends them).
pub fn puback(out: &mut Vec<u8>, pid: u16) {
    out.push(PUBACK << 4);
    out.push(2);
    out.extend_from_slice(&pid.to_be_bytes());
}

pub fn pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[PINGREQ << 4, 0]);
}

pub fn disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[DISCONNECT << 4, 0]);
}

/// The first complete packet at the start of `buf` and its length, `None` when more bytes are
/// needed; an error for a packet that breaks the protocol.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let mut remaining = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else { return Ok(None) };
        remaining |= usize::from(byte & 0x7f) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            bail!("remaining length longer than 4 bytes (first byte {first:#04x})");
        }
    }
    if remaining > MAX_REMAINING {
        bail!("remaining length {remaining} too long");
    }
    let total = header + remaining;
    let Some(body) = buf.get(header..total) else { return Ok(None) };
    let u16_at = |at: usize| body.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let packet = match first >> 4 {
        CONNACK => match body {
            [flags, code] => Packet::ConnAck { session_present: flags & 1 == 1, code: *code },
            _ => bail!("CONNACK with {} bytes", body.len()),
        },
        PUBACK => match u16_at(0) {
            Some(pid) if body.len() == 2 => Packet::PubAck { pid },
            _ => bail!("PUBACK with {} bytes", body.len()),
        },
        SUBACK => match u16_at(0) {
            Some(pid) if body.len() > 2 => Packet::SubAck { pid, codes: &body[2..] },
            _ => bail!("SUBACK with {} bytes", body.len()),
        },
        PUBLISH => {
            let qos = (first >> 1) & 3;
            if qos == 3 {
                bail!("PUBLISH with QoS 3");
            }
            let topic_len = usize::from(u16_at(0).ok_or_else(|| anyhow::anyhow!("PUBLISH without a topic"))?);
            let Some(topic) = body.get(2..2 + topic_len) else { bail!("PUBLISH topic past the packet's end") };
            let mut at = 2 + topic_len;
            let pid = if qos > 0 {
                let pid = u16_at(at).ok_or_else(|| anyhow::anyhow!("PUBLISH QoS {qos} without a packet id"))?;
                at += 2;
                Some(pid)
            } else {
                None
            };
            Packet::Publish { qos, pid, topic, payload: &body[at..] }
        }
        PINGRESP => Packet::PingResp,
        _ => Packet::Other(first),
    };
    Ok(Some((packet, total)))
}

/// Every `"value":<unsigned integer>` of a payload, in order: one per published message in both
/// shapes the subscribers receive. `None` when the payload holds no such value (an error
/// envelope or anything else unexpected).
pub fn values(payload: &[u8], mut each: impl FnMut(u64)) -> Option<usize> {
    let mut found = 0;
    let mut rest = payload;
    while let Some(at) = find(rest, VALUE_MARK) {
        rest = &rest[at + VALUE_MARK.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 {
            continue;
        }
        let mut value = 0u64;
        for &d in &rest[..digits] {
            value = value * 10 + u64::from(d - b'0');
        }
        each(value);
        found += 1;
        rest = &rest[digits..];
    }
    (found > 0).then_some(found)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decimal digits of `value` in `buf`, without going through `fmt`.
fn format_u64(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_is_mqtt_3_1_1() {
        let mut out = Vec::new();
        connect(&mut out, "c1", 60);
        assert_eq!(out, [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'c', b'1']);
    }

    #[test]
    fn remaining_length_uses_varints() {
        for (len, bytes) in [(0usize, vec![0u8]), (127, vec![0x7f]), (128, vec![0x80, 1]), (16_383, vec![0xff, 0x7f])] {
            let mut out = Vec::new();
            push_remaining_length(&mut out, len);
            assert_eq!(out, bytes, "{len}");
        }
        let mut long = vec![0x30, 0x80, 0x01];
        long.extend(std::iter::repeat_n(0, 128));
        assert!(matches!(decode(&long), Ok(Some((Packet::Publish { .. }, 131)))));
        assert!(decode(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }

    #[test]
    fn publish_value_round_trips() {
        let mut out = Vec::new();
        publish_value(&mut out, b"v2/things/abc", 1, 7, 12_345);
        let (packet, used) = decode(&out).expect("valid").expect("complete");
        assert_eq!(used, out.len());
        let Packet::Publish { qos, pid, topic, payload: body } = packet else { panic!("{packet:?}") };
        assert_eq!((qos, pid, topic), (1, Some(7), &b"v2/things/abc"[..]));
        assert_eq!(body, br#"{"values":[{"key":"temp","value":12345}]}"#);
        assert_eq!(body, payload(12_345).as_slice());
        let mut plain = Vec::new();
        publish(&mut plain, b"v2/things/abc", 1, 7, &payload(12_345));
        assert_eq!(plain, out);
        let mut qos0 = Vec::new();
        publish_value(&mut qos0, b"t", 0, 9, 0);
        assert_eq!(
            decode(&qos0).expect("valid").map(|(p, _)| p),
            Some(Packet::Publish {
                qos: 0,
                pid: None,
                topic: b"t",
                payload: br#"{"values":[{"key":"temp","value":0}]}"#
            })
        );
    }

    #[test]
    fn decodes_acks_and_waits_for_whole_packets() {
        assert_eq!(
            decode(&[0x20, 2, 0, 0]).expect("ok"),
            Some((Packet::ConnAck { session_present: false, code: 0 }, 4))
        );
        assert_eq!(decode(&[0x40, 2, 1, 2, 0xd0]).expect("ok"), Some((Packet::PubAck { pid: 258 }, 4)));
        assert_eq!(
            decode(&[0x90, 3, 0, 5, 0x80]).expect("ok").map(|(p, _)| p),
            Some(Packet::SubAck { pid: 5, codes: &[0x80] })
        );
        assert_eq!(decode(&[0xd0, 0]).expect("ok").map(|(p, _)| p), Some(Packet::PingResp));
        assert_eq!(decode(&[0x40, 2, 1]).expect("ok"), None);
        assert_eq!(decode(&[0x40]).expect("ok"), None);
        assert_eq!(decode(&[]).expect("ok"), None);
        assert!(decode(&[0x40, 3, 0, 1, 0]).is_err());
    }

    #[test]
    fn subscribe_and_small_packets() {
        let mut out = Vec::new();
        subscribe(&mut out, 1, b"a/b", 0);
        assert_eq!(out, [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'b', 0]);
        out.clear();
        puback(&mut out, 3);
        pingreq(&mut out);
        disconnect(&mut out);
        assert_eq!(out, [0x40, 2, 0, 3, 0xc0, 0, 0xe0, 0]);
    }

    #[test]
    fn reads_values_of_both_shapes() {
        let mut seen = Vec::new();
        assert_eq!(values(&payload(42), |v| seen.push(v)), Some(1));
        let thingline = br#"[{"key":"temp","value":7,"datetime":"2026-01-01T00:00:00.000Z"},{"key":"temp","value":8,"datetime":"x"}]"#;
        assert_eq!(values(thingline, |v| seen.push(v)), Some(2));
        assert_eq!(seen, [42, 7, 8]);
        assert_eq!(values(br#"{"status":"error","message":"x"}"#, |_| {}), None);
        assert_eq!(values(br#"[{"key":"temp","value":"text"}]"#, |_| {}), None);
    }

    #[test]
    fn formats_integers() {
        let mut buf = [0u8; 20];
        assert_eq!(format_u64(0, &mut buf), b"0");
        assert_eq!(format_u64(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }
}
