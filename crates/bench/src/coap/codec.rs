//! The CoAP wire (RFC 7252, 7641) as the bench's clients need it, by hand: the requests they send
//! (a confirmable POST write with the SDK's in-path empty query, a confirmable GET registering or
//! deregistering an observation, empty ACKs) built into a buffer, and the datagrams they read
//! parsed in place into a [`Datagram`] (type, code, message id, token, Observe, payload) with no
//! allocation. `thingline-coap-message` is the server's side (requests in, responses out); the
//! tests check that each side reads what the other writes.

/// Message types (the two bits after the version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Con,
    Non,
    Ack,
    Rst,
}

impl Kind {
    fn bits(self) -> u8 {
        match self {
            Kind::Con => 0,
            Kind::Non => 1,
            Kind::Ack => 2,
            Kind::Rst => 3,
        }
    }

    fn of(bits: u8) -> Kind {
        match bits & 3 {
            0 => Kind::Con,
            1 => Kind::Non,
            2 => Kind::Ack,
            _ => Kind::Rst,
        }
    }
}

/// Request codes (`class << 5 | detail`); the response codes are the server's crate's.
pub const GET: u8 = 0x01;
pub const POST: u8 = 0x02;
pub use thingline_coap_message::code::{CONTENT, CREATED, dotted};

/// Option numbers.
const OBSERVE: u16 = 6;
const URI_PATH: u16 = 11;

/// The write payload is `{"values":[{"key":"t","value":N}]}`; these are its two ends.
const PAYLOAD_HEAD: &[u8] = br#"{"values":[{"key":"t","value":"#;
const PAYLOAD_TAIL: &[u8] = b"}]}";
/// What precedes a value in a notification's array of value items.
const VALUE_MARK: &[u8] = br#""value":"#;

/// A request's fixed part after the header and token: its options (and, for a write, the
/// payload up to the value), built once per client.
#[derive(Debug, Clone)]
pub struct Template {
    code: u8,
    /// Options, then for a write the payload marker and [`PAYLOAD_HEAD`].
    middle: Vec<u8>,
    /// Whether a value and [`PAYLOAD_TAIL`] follow.
    write: bool,
}

impl Template {
    /// CON POST `v2`/`things`/`{token}?` with no Content-Format: the official SDK's write.
    pub fn write(thing_token: &str) -> Self {
        let mut middle = Vec::with_capacity(64);
        path_options(&mut middle, 0, &["v2", "things", &format!("{thing_token}?")]);
        middle.push(0xFF);
        middle.extend_from_slice(PAYLOAD_HEAD);
        Self { code: POST, middle, write: true }
    }

    /// CON GET with Observe `observe` (0 registers, 1 deregisters) on
    /// `v2`/`things`/`{token}?keepAlive={keep_alive_ms}`: the official SDK's subscription.
    pub fn observe(thing_token: &str, keep_alive_ms: u64, observe: u32) -> Self {
        let mut middle = Vec::with_capacity(64);
        let value = uint_bytes(observe);
        option(&mut middle, OBSERVE, &value);
        path_options(&mut middle, OBSERVE, &["v2", "things", &format!("{thing_token}?keepAlive={keep_alive_ms}")]);
        Self { code: GET, middle, write: false }
    }

    /// The datagram of this request into `out` (cleared): CON, `mid`, `token`, and for a write
    /// the value `value`.
    pub fn encode(&self, out: &mut Vec<u8>, mid: u16, token: u32, value: u64) {
        out.clear();
        out.push(0x40 | (Kind::Con.bits() << 4) | 4);
        out.push(self.code);
        out.extend_from_slice(&mid.to_be_bytes());
        out.extend_from_slice(&token.to_be_bytes());
        out.extend_from_slice(&self.middle);
        if self.write {
            let mut digits = itoa_buf();
            out.extend_from_slice(fmt_u64(value, &mut digits));
            out.extend_from_slice(PAYLOAD_TAIL);
        }
    }
}

/// An empty ACK of `mid`.
pub fn empty_ack(mid: u16) -> [u8; 4] {
    let m = mid.to_be_bytes();
    [0x40 | (Kind::Ack.bits() << 4), 0, m[0], m[1]]
}

/// A Reset of `mid`.
#[cfg(test)]
pub fn reset(mid: u16) -> [u8; 4] {
    let m = mid.to_be_bytes();
    [0x40 | (Kind::Rst.bits() << 4), 0, m[0], m[1]]
}

/// Uri-Path options after option number `last`.
fn path_options(out: &mut Vec<u8>, last: u16, segments: &[&str]) {
    let mut last = last;
    for segment in segments {
        option(out, URI_PATH - last, segment.as_bytes());
        last = URI_PATH;
    }
}

/// One option with delta `delta` (the caller passes number − previous number).
fn option(out: &mut Vec<u8>, delta: u16, value: &[u8]) {
    let (d, dext) = nibble(usize::from(delta));
    let (l, lext) = nibble(value.len());
    out.push((d << 4) | l);
    out.extend_from_slice(&dext);
    out.extend_from_slice(&lext);
    out.extend_from_slice(value);
}

fn nibble(n: usize) -> (u8, Vec<u8>) {
    match n {
        0..=12 => (n as u8, Vec::new()),
        13..=268 => (13, vec![(n - 13) as u8]),
        _ => (14, ((n - 269) as u16).to_be_bytes().to_vec()),
    }
}

/// The shortest big-endian bytes of `n` (none for 0).
fn uint_bytes(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Decimal digits of `n` in `buf`.
fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A datagram read by a client; slices borrow the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub kind: Kind,
    pub code: u8,
    pub mid: u16,
    pub token: &'a [u8],
    /// The Observe option's value, when present.
    pub observe: Option<u32>,
    pub payload: &'a [u8],
}

impl Datagram<'_> {
    /// The token as the clients make them (4 bytes), `None` for another length.
    pub fn token_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.token).ok().map(u32::from_be_bytes)
    }
}

/// Parses a datagram (`None`: not a well-formed CoAP message).
pub fn parse(data: &[u8]) -> Option<Datagram<'_>> {
    if data.len() < 4 || data[0] >> 6 != 1 {
        return None;
    }
    let kind = Kind::of(data[0] >> 4);
    let tkl = usize::from(data[0] & 0x0F);
    if tkl > 8 || data.len() < 4 + tkl {
        return None;
    }
    let code = data[1];
    let mid = u16::from_be_bytes([data[2], data[3]]);
    let token = &data[4..4 + tkl];
    let mut at = 4 + tkl;
    let mut number = 0u16;
    let mut observe = None;
    let mut payload: &[u8] = &[];
    while at < data.len() {
        let byte = data[at];
        at += 1;
        if byte == 0xFF {
            if at == data.len() {
                return None; // a payload marker with no payload
            }
            payload = &data[at..];
            break;
        }
        let delta = extended(byte >> 4, data, &mut at)?;
        let len = usize::from(extended(byte & 0x0F, data, &mut at)?);
        number = number.checked_add(delta)?;
        let value = data.get(at..at + len)?;
        at += len;
        if number == OBSERVE {
            if len > 3 {
                return None;
            }
            observe = Some(value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)));
        }
    }
    Some(Datagram { kind, code, mid, token, observe, payload })
}

/// An option delta or length nibble with its extension bytes.
fn extended(nibble: u8, data: &[u8], at: &mut usize) -> Option<u16> {
    match nibble {
        0..=12 => Some(u16::from(nibble)),
        13 => {
            let b = *data.get(*at)?;
            *at += 1;
            Some(u16::from(b) + 13)
        }
        14 => {
            let b = data.get(*at..*at + 2)?;
            *at += 2;
            u16::from_be_bytes([b[0], b[1]]).checked_add(269)
        }
        _ => None,
    }
}

/// The `"value":N` numbers of a notification's array of value items, as sequence numbers, in
/// order; `None` when the payload is not an array or an item's value is not a non-negative
/// number.
pub fn values(payload: &[u8], out: &mut Vec<u64>) -> Option<()> {
    out.clear();
    if payload.first() != Some(&b'[') {
        return None;
    }
    let mut rest = payload;
    while let Some(at) = find(rest, VALUE_MARK) {
        rest = &rest[at + VALUE_MARK.len()..];
        let end = rest.iter().position(|b| matches!(b, b',' | b'}' | b']')).unwrap_or(rest.len());
        let text = std::str::from_utf8(&rest[..end]).ok()?;
        let value: f64 = text.trim().parse().ok()?;
        if !(value.is_finite() && value >= 0.0) {
            return None;
        }
        out.push(value.round() as u64);
    }
    (!out.is_empty()).then_some(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use thingline_coap_message as server;

    use super::*;

    #[test]
    fn the_server_reads_the_sdk_write() {
        let mut out = Vec::new();
        Template::write("TOKEN-abc").encode(&mut out, 0xBEEF, 0x0102_0304, 1234);
        let server::Message::Request(request) = server::parse(&out).expect("parsed") else { panic!("a request") };
        assert_eq!(request.kind, server::Kind::Con);
        assert_eq!(request.mid, 0xBEEF);
        assert_eq!(request.token, vec![1, 2, 3, 4]);
        assert_eq!(request.method, server::Method::Post);
        assert_eq!(request.path, ["v2", "things", "TOKEN-abc"]);
        assert!(request.query.is_empty());
        assert_eq!(request.content_format, None);
        assert_eq!(request.payload, br#"{"values":[{"key":"t","value":1234}]}"#);
    }

    #[test]
    fn the_server_reads_the_sdk_observe() {
        let mut out = Vec::new();
        Template::observe("TOKEN-abc", 60_000, 0).encode(&mut out, 7, 9, 0);
        let server::Message::Request(request) = server::parse(&out).expect("parsed") else { panic!("a request") };
        assert_eq!(request.method, server::Method::Get);
        assert_eq!(request.observe, Some(0));
        assert_eq!(request.path, ["v2", "things", "TOKEN-abc"]);
        assert_eq!(request.param("keepAlive"), Some("60000"));
        assert!(request.payload.is_empty());
        Template::observe("TOKEN-abc", 60_000, 1).encode(&mut out, 8, 9, 0);
        let server::Message::Request(request) = server::parse(&out).expect("parsed") else { panic!("a request") };
        assert_eq!(request.observe, Some(1));
    }

    #[test]
    fn reads_what_the_server_writes() {
        let response = server::Response {
            kind: Some(server::Kind::Non),
            mid: 0x1234,
            token: vec![0, 0, 1, 2],
            code: server::code::CONTENT,
            observe: Some(70_000),
            content_format: Some(server::JSON),
            payload: br#"[{"key":"t","value":5,"datetime":"x"},{"key":"t","value":6}]"#.to_vec(),
            ..Default::default()
        };
        let bytes = response.encode();
        let d = parse(&bytes).expect("parsed");
        assert_eq!((d.kind, d.code, d.mid, d.token_u32()), (Kind::Non, CONTENT, 0x1234, Some(0x0102)));
        assert_eq!(d.observe, Some(70_000));
        let mut seqs = Vec::new();
        assert_eq!(values(d.payload, &mut seqs), Some(()));
        assert_eq!(seqs, [5, 6]);
        let ack =
            server::Response { mid: 3, token: vec![0, 0, 0, 3], code: server::code::CREATED, ..Default::default() };
        let bytes = ack.encode();
        let d = parse(&bytes).expect("parsed");
        assert_eq!((d.kind, d.code, d.observe, d.payload), (Kind::Ack, CREATED, None, &b""[..]));
        assert_eq!(parse(&server::empty_ack(9)).map(|d| (d.kind, d.code, d.mid)), Some((Kind::Ack, 0, 9)));
        assert_eq!(parse(&empty_ack(9)), parse(&server::empty_ack(9)));
        assert_eq!(parse(&reset(9)), parse(&server::reset(9)));
    }

    #[test]
    fn refuses_malformed_datagrams() {
        assert!(parse(&[0x40, 0x45]).is_none());
        assert!(parse(&[0x80, 0x45, 0, 1]).is_none(), "version 2");
        assert!(parse(&[0x49, 0x45, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_none(), "token length 9");
        assert!(parse(&[0x40, 0x45, 0, 1, 0xFF]).is_none(), "a marker without payload");
        assert!(parse(&[0x40, 0x45, 0, 1, 0x64, 1]).is_none(), "an option past the end");
    }

    #[test]
    fn values_of_payloads() {
        let mut seqs = Vec::new();
        assert_eq!(values(b"{}", &mut seqs), None);
        assert_eq!(values(br#"{"status":"success","message":"subscribed"}"#, &mut seqs), None);
        assert_eq!(values(br#"[{"key":"t","value":"x"}]"#, &mut seqs), None);
        assert_eq!(values(br#"[{"key":"t","value":7.0}]"#, &mut seqs), Some(()));
        assert_eq!(seqs, [7]);
        let mut digits = itoa_buf();
        assert_eq!(fmt_u64(0, &mut digits), b"0");
        assert_eq!(fmt_u64(u64::MAX, &mut digits), b"18446744073709551615");
    }
}
