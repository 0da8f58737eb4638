//! The CoAP message layer of Thingline's CoAP adapter: a datagram in, a [`Message`] out (a
//! request already split into path, query and the options the server acts on), and a
//! [`Response`] or an empty message back into a datagram. No I/O and no platform: a crate of its
//! own so that it is fuzzed alone (`fuzz/fuzz_targets/coap_parse.rs`).
//!
//! Decoding is coap-lite's ([`coap_lite::Packet::from_bytes`]) with the checks RFC 7252 asks of
//! a server on top: version 1, no payload marker without a payload, empty messages without
//! token or options, known critical options only (4.02 otherwise), UTF-8 Uri-Path and Uri-Query
//! values, well-formed Observe and Block values (RFC 7641, RFC 7959).
//!
//! The official thethings.iO CoAP SDK puts the query string inside the last Uri-Path option
//! (`voltage?limit=15`, `<token>?`): [`Request::path`] is that segment up to the first `?`, and
//! [`Request::query`] holds the pairs after it (percent-decoded, as an HTTP query) followed by the
//! real Uri-Query options.

mod block;
mod encode;

pub use block::Block;
pub use encode::{Response, empty_ack, reset};

use coap_lite::{MessageClass, MessageType, Packet};

/// Content-Format `application/json`.
pub const JSON: u16 = 50;
/// Content-Format `text/plain; charset=utf-8`.
pub const TEXT: u16 = 0;
/// The most Uri-Path segments a request may have.
pub const MAX_SEGMENTS: usize = 16;
/// The most query parameters a request may have (in-path and Uri-Query together).
pub const MAX_QUERY: usize = 32;

/// Response codes (`class << 5 | detail`).
pub mod code {
    pub const CREATED: u8 = 0x41;
    pub const CHANGED: u8 = 0x44;
    pub const CONTENT: u8 = 0x45;
    pub const CONTINUE: u8 = 0x5F;
    pub const BAD_REQUEST: u8 = 0x80;
    pub const UNAUTHORIZED: u8 = 0x81;
    pub const BAD_OPTION: u8 = 0x82;
    pub const FORBIDDEN: u8 = 0x83;
    pub const NOT_FOUND: u8 = 0x84;
    pub const METHOD_NOT_ALLOWED: u8 = 0x85;
    pub const NOT_ACCEPTABLE: u8 = 0x86;
    pub const REQUEST_ENTITY_INCOMPLETE: u8 = 0x88;
    pub const CONFLICT: u8 = 0x89;
    pub const REQUEST_ENTITY_TOO_LARGE: u8 = 0x8D;
    pub const UNSUPPORTED_CONTENT_FORMAT: u8 = 0x8F;
    pub const TOO_MANY_REQUESTS: u8 = 0x9D;
    pub const INTERNAL_SERVER_ERROR: u8 = 0xA0;
    pub const NOT_IMPLEMENTED: u8 = 0xA1;
    pub const SERVICE_UNAVAILABLE: u8 = 0xA3;

    /// The CoAP code of an HTTP status the platform answers with.
    pub fn from_http(status: u16) -> u8 {
        match status {
            201 => CREATED,
            200 => CONTENT,
            400 => BAD_REQUEST,
            401 => UNAUTHORIZED,
            403 => FORBIDDEN,
            404 => NOT_FOUND,
            405 => METHOD_NOT_ALLOWED,
            406 => NOT_ACCEPTABLE,
            409 => CONFLICT,
            413 => REQUEST_ENTITY_TOO_LARGE,
            415 => UNSUPPORTED_CONTENT_FORMAT,
            429 => TOO_MANY_REQUESTS,
            503 | 507 => SERVICE_UNAVAILABLE,
            _ if status < 500 => BAD_REQUEST,
            _ => INTERNAL_SERVER_ERROR,
        }
    }

    /// `c.dd`, as RFC 7252 writes codes.
    pub fn dotted(code: u8) -> String {
        format!("{}.{:02}", code >> 5, code & 0x1F)
    }
}

/// Option numbers this server reads.
mod opt {
    pub const URI_HOST: u16 = 3;
    pub const ETAG: u16 = 4;
    pub const OBSERVE: u16 = 6;
    pub const URI_PORT: u16 = 7;
    pub const URI_PATH: u16 = 11;
    pub const CONTENT_FORMAT: u16 = 12;
    pub const MAX_AGE: u16 = 14;
    pub const URI_QUERY: u16 = 15;
    pub const ACCEPT: u16 = 17;
    pub const BLOCK2: u16 = 23;
    pub const BLOCK1: u16 = 27;
    pub const SIZE2: u16 = 28;
    pub const SIZE1: u16 = 60;
    pub const NO_RESPONSE: u16 = 258;
}

/// A message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Con,
    Non,
    Ack,
    Rst,
}

impl Kind {
    fn of(t: MessageType) -> Kind {
        match t {
            MessageType::Confirmable => Kind::Con,
            MessageType::NonConfirmable => Kind::Non,
            MessageType::Acknowledgement => Kind::Ack,
            MessageType::Reset => Kind::Rst,
        }
    }

    pub(crate) fn bits(self) -> u8 {
        match self {
            Kind::Con => 0,
            Kind::Non => 1,
            Kind::Ack => 2,
            Kind::Rst => 3,
        }
    }
}

/// A request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    /// FETCH, PATCH, iPATCH or an unassigned request code: 4.05 Method Not Allowed.
    Other(u8),
}

/// A request, as the server acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Con or Non.
    pub kind: Kind,
    pub mid: u16,
    pub token: Vec<u8>,
    pub method: Method,
    /// Uri-Path segments, the last one cut at its first `?`; an empty last segment is dropped
    /// (`v2/things/` is `v2/things`).
    pub path: Vec<String>,
    /// The query of the last path segment, then the Uri-Query options, in order.
    pub query: Vec<(String, String)>,
    pub observe: Option<u32>,
    pub block1: Option<Block>,
    pub block2: Option<Block>,
    pub size1: Option<u32>,
    pub content_format: Option<u16>,
    pub accept: Option<u16>,
    pub payload: Vec<u8>,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The path and query, as a key for the transfers of one resource (`a/b?x=1&y=2`).
    pub fn resource_key(&self) -> String {
        let mut s = self.path.join("/");
        for (i, (k, v)) in self.query.iter().enumerate() {
            s.push(if i == 0 { '?' } else { '&' });
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }
}

/// What a datagram is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    /// An empty Confirmable message ("CoAP ping"): answered with a Reset.
    Ping {
        mid: u16,
    },
    /// An Acknowledgement (empty, or carrying a response the server does not expect).
    Ack {
        mid: u16,
    },
    /// A Reset.
    Reset {
        mid: u16,
    },
    /// A response sent to the server (it sends no requests): rejected if Confirmable.
    Response {
        kind: Kind,
        mid: u16,
    },
}

/// A datagram the server cannot act on, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a CoAP message (too short, wrong version, bad token length): ignored silently.
    Ignore,
    /// A message format error (RFC 7252 §4.2, §4.3): a Confirmable one is rejected with a
    /// Reset, anything else ignored.
    Reject { kind: Kind, mid: u16 },
    /// A well-formed request the server refuses before acting: answered with `code` (4.00,
    /// 4.02, 4.15) and `message`.
    Answer { kind: Kind, mid: u16, token: Vec<u8>, code: u8, message: String },
}

/// Decodes one datagram.
pub fn parse(datagram: &[u8]) -> Result<Message, Refusal> {
    if datagram.len() < 4 || datagram[0] >> 6 != 1 {
        return Err(Refusal::Ignore);
    }
    let kind = Kind::of(match (datagram[0] >> 4) & 3 {
        0 => MessageType::Confirmable,
        1 => MessageType::NonConfirmable,
        2 => MessageType::Acknowledgement,
        _ => MessageType::Reset,
    });
    let mid = u16::from_be_bytes([datagram[2], datagram[3]]);
    let tkl = usize::from(datagram[0] & 0x0F);
    let reject = Refusal::Reject { kind, mid };
    if tkl > 8 {
        return Err(reject);
    }
    let code = datagram[1];
    if code == 0 {
        // An empty message is the 4-byte header alone (RFC 7252 §4.1).
        if datagram.len() != 4 {
            return Err(reject);
        }
        return Ok(match kind {
            Kind::Con => Message::Ping { mid },
            Kind::Non => return Err(Refusal::Ignore),
            Kind::Ack => Message::Ack { mid },
            Kind::Rst => Message::Reset { mid },
        });
    }
    let packet = Packet::from_bytes(datagram).map_err(|_| reject.clone())?;
    // coap-lite accepts a payload marker with nothing after it: a format error.
    if packet.payload.is_empty() && datagram.len() > 4 + tkl && datagram[datagram.len() - 1] == 0xFF {
        let without = &datagram[..datagram.len() - 1];
        if Packet::from_bytes(without).map(|p| p.options().eq(packet.options())).unwrap_or(false) {
            return Err(reject);
        }
    }
    match packet.header.code {
        MessageClass::Request(_) => {}
        MessageClass::Response(_) | MessageClass::Reserved(_) if code >> 5 >= 2 && code >> 5 <= 5 => {
            return Ok(if kind == Kind::Ack { Message::Ack { mid } } else { Message::Response { kind, mid } });
        }
        _ => return Err(reject),
    }
    let method = match code {
        1 => Method::Get,
        2 => Method::Post,
        3 => Method::Put,
        4 => Method::Delete,
        other if other >> 5 == 0 => Method::Other(other),
        _ => return Err(reject),
    };
    if matches!(kind, Kind::Ack | Kind::Rst) {
        return Err(reject);
    }
    request(kind, mid, packet, method)
}

fn request(kind: Kind, mid: u16, packet: Packet, method: Method) -> Result<Message, Refusal> {
    let token = packet.get_token().to_vec();
    let answer = |code: u8, message: String| Refusal::Answer { kind, mid, token: token.clone(), code, message };
    let mut path: Vec<String> = Vec::new();
    let mut in_path_query = None;
    let mut uri_query: Vec<String> = Vec::new();
    let mut r = Request {
        kind,
        mid,
        token: token.clone(),
        method,
        path: Vec::new(),
        query: Vec::new(),
        observe: None,
        block1: None,
        block2: None,
        size1: None,
        content_format: None,
        accept: None,
        payload: Vec::new(),
    };
    for (&number, values) in packet.options() {
        let critical = number & 1 == 1;
        let once = |values: &std::collections::LinkedList<Vec<u8>>| -> Result<Option<Vec<u8>>, Refusal> {
            if values.len() > 1 && critical {
                return Err(answer(code::BAD_OPTION, format!("option {number} is repeated")));
            }
            Ok(values.front().cloned())
        };
        match number {
            opt::URI_PATH => {
                for v in values {
                    if path.len() >= MAX_SEGMENTS {
                        return Err(answer(code::BAD_REQUEST, "too many Uri-Path segments".into()));
                    }
                    let s = utf8(v, "Uri-Path").map_err(|m| answer(code::BAD_REQUEST, m))?;
                    path.push(s);
                }
            }
            opt::URI_QUERY => {
                for v in values {
                    uri_query.push(utf8(v, "Uri-Query").map_err(|m| answer(code::BAD_REQUEST, m))?);
                }
            }
            opt::OBSERVE => {
                if let Some(v) = once(values)? {
                    r.observe = Some(uint(&v, 3).ok_or_else(|| answer(code::BAD_REQUEST, "bad Observe value".into()))?);
                }
            }
            opt::BLOCK1 | opt::BLOCK2 => {
                if let Some(v) = once(values)? {
                    let b = Block::decode(&v).ok_or_else(|| {
                        answer(
                            code::BAD_OPTION,
                            format!("bad Block{} value", if number == opt::BLOCK1 { 1 } else { 2 }),
                        )
                    })?;
                    if number == opt::BLOCK1 {
                        r.block1 = Some(b);
                    } else {
                        r.block2 = Some(b);
                    }
                }
            }
            opt::SIZE1 => {
                if let Some(v) = once(values)? {
                    r.size1 = uint(&v, 4);
                }
            }
            opt::CONTENT_FORMAT => {
                if let Some(v) = once(values)? {
                    r.content_format =
                        Some(uint(&v, 2).ok_or_else(|| answer(code::BAD_REQUEST, "bad Content-Format".into()))? as u16);
                }
            }
            opt::ACCEPT => {
                if let Some(v) = once(values)? {
                    r.accept = Some(uint(&v, 2).ok_or_else(|| answer(code::BAD_REQUEST, "bad Accept".into()))? as u16);
                }
            }
            // Read and ignored: virtual hosting is not used; the other elective options are
            // not acted on. Uri-Host and Uri-Port are critical but carry nothing to check.
            opt::URI_HOST | opt::URI_PORT => {
                once(values)?;
            }
            opt::ETAG | opt::MAX_AGE | opt::SIZE2 | opt::NO_RESPONSE => {}
            _ if critical => {
                return Err(answer(code::BAD_OPTION, format!("option {number} is not supported")));
            }
            _ => {}
        }
    }
    // The SDK's query inside the last segment.
    if let Some(last) = path.last_mut()
        && let Some(at) = last.find('?')
    {
        in_path_query = Some(last[at + 1..].to_owned());
        last.truncate(at);
    }
    if path.last().is_some_and(|s| s.is_empty()) {
        path.pop();
    }
    if let Some(q) = in_path_query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            r.query.push((decode(k), decode(v)));
        }
    }
    for q in uri_query {
        let (k, v) = q.split_once('=').unwrap_or((q.as_str(), ""));
        r.query.push((k.to_owned(), v.to_owned()));
    }
    if r.query.len() > MAX_QUERY {
        return Err(answer(code::BAD_REQUEST, "too many query parameters".into()));
    }
    r.path = path;
    r.payload = packet.payload;
    Ok(Message::Request(r))
}

fn utf8(v: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(v.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// An unsigned option value of at most `max` bytes (big-endian, leading zeros allowed).
pub(crate) fn uint(v: &[u8], max: usize) -> Option<u32> {
    if v.len() > max {
        return None;
    }
    Some(v.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: Kind, code: u8, mid: u16, token: &[u8], options: &[(u16, &[u8])], payload: &[u8]) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_type(match kind {
            Kind::Con => MessageType::Confirmable,
            Kind::Non => MessageType::NonConfirmable,
            Kind::Ack => MessageType::Acknowledgement,
            Kind::Rst => MessageType::Reset,
        });
        p.header.code = MessageClass::from(code);
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        for (n, v) in options {
            p.add_option(coap_lite::CoapOption::from(*n), v.to_vec());
        }
        p.payload = payload.to_vec();
        p.to_bytes().expect("encode")
    }

    fn parse_req(bytes: &[u8]) -> Request {
        match parse(bytes) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn the_sdk_query_inside_the_last_segment_is_split() {
        let b = req(
            Kind::Con,
            1,
            7,
            b"tk",
            &[
                (11, b"v2"),
                (11, b"things"),
                (11, b"T"),
                (11, b"resources"),
                (11, b"voltage?limit=3&endDate=20150401000000"),
            ],
            b"",
        );
        let r = parse_req(&b);
        assert_eq!(r.path, ["v2", "things", "T", "resources", "voltage"]);
        assert_eq!(r.param("limit"), Some("3"));
        assert_eq!(r.param("endDate"), Some("20150401000000"));
        assert_eq!(r.token, b"tk");
        assert_eq!(r.mid, 7);
        assert_eq!(r.method, Method::Get);
        let w = req(Kind::Con, 2, 8, b"", &[(11, b"v2"), (11, b"things"), (11, b"TOKEN?")], b"{}");
        let r = parse_req(&w);
        assert_eq!(r.path, ["v2", "things", "TOKEN"]);
        assert!(r.query.is_empty());
        assert_eq!(r.payload, b"{}");
    }

    #[test]
    fn real_uri_query_options_and_a_trailing_slash() {
        let b = req(
            Kind::Non,
            1,
            1,
            b"",
            &[(11, b"v2"), (11, b"things"), (11, b""), (15, b"keepAlive=10000"), (15, b"store")],
            b"",
        );
        let r = parse_req(&b);
        assert_eq!(r.kind, Kind::Non);
        assert_eq!(r.path, ["v2", "things"]);
        assert_eq!(r.param("keepAlive"), Some("10000"));
        assert_eq!(r.param("store"), Some(""));
    }

    #[test]
    fn observe_and_blocks_are_read() {
        let b = req(Kind::Con, 1, 1, b"a", &[(6, &[]), (11, b"x"), (23, &[0x16])], b"");
        let r = parse_req(&b);
        assert_eq!(r.observe, Some(0));
        assert_eq!(r.block2, Some(Block { num: 1, more: false, szx: 6 }));
        let b = req(Kind::Con, 2, 1, b"a", &[(11, b"x"), (27, &[0x0A, 0x3E]), (60, &[0x01, 0x00])], b"x");
        let r = parse_req(&b);
        assert_eq!(r.block1, Some(Block { num: 0xA3, more: true, szx: 6 }));
        assert_eq!(r.size1, Some(256));
    }

    #[test]
    fn an_unknown_critical_option_is_4_02_and_an_elective_one_is_ignored() {
        let b = req(Kind::Con, 1, 9, b"t", &[(9, b"x")], b"");
        assert!(matches!(parse(&b), Err(Refusal::Answer { code: code::BAD_OPTION, mid: 9, .. })));
        let b = req(Kind::Con, 1, 9, b"t", &[(11, b"v2"), (2048, b"x")], b"");
        assert_eq!(parse_req(&b).path, ["v2"]);
        let b = req(Kind::Con, 1, 9, b"t", &[(27, &[1]), (27, &[2])], b"");
        assert!(matches!(parse(&b), Err(Refusal::Answer { code: code::BAD_OPTION, .. })));
        // BERT (SZX 7) is reserved over UDP.
        let b = req(Kind::Con, 2, 9, b"t", &[(27, &[0x07])], b"x");
        assert!(matches!(parse(&b), Err(Refusal::Answer { code: code::BAD_OPTION, .. })));
    }

    #[test]
    fn empty_messages_and_format_errors() {
        assert_eq!(parse(&[0x40, 0, 0, 5]), Ok(Message::Ping { mid: 5 }));
        assert_eq!(parse(&[0x60, 0, 0, 5]), Ok(Message::Ack { mid: 5 }));
        assert_eq!(parse(&[0x70, 0, 0, 5]), Ok(Message::Reset { mid: 5 }));
        // An empty message with a token.
        assert_eq!(parse(&[0x41, 0, 0, 5, 1]), Err(Refusal::Reject { kind: Kind::Con, mid: 5 }));
        // Version 2, too short, token length 9.
        assert_eq!(parse(&[0x80, 1, 0, 5]), Err(Refusal::Ignore));
        assert_eq!(parse(&[0x40, 1, 0]), Err(Refusal::Ignore));
        assert_eq!(
            parse(&[0x49, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Refusal::Reject { kind: Kind::Con, mid: 5 })
        );
        // A payload marker with no payload.
        assert_eq!(parse(&[0x40, 1, 0, 6, 0xFF]), Err(Refusal::Reject { kind: Kind::Con, mid: 6 }));
        // An option running past the end.
        assert_eq!(parse(&[0x40, 1, 0, 6, 0xB5, b'a']), Err(Refusal::Reject { kind: Kind::Con, mid: 6 }));
        // A response sent to the server.
        assert_eq!(parse(&[0x40, 0x45, 0, 6]), Ok(Message::Response { kind: Kind::Con, mid: 6 }));
        assert_eq!(parse(&[0x60, 0x45, 0, 6]), Ok(Message::Ack { mid: 6 }));
    }

    #[test]
    fn non_utf8_path_is_4_00() {
        let b = req(Kind::Con, 1, 1, b"", &[(11, &[0xFF, 0xFE])], b"");
        assert!(matches!(parse(&b), Err(Refusal::Answer { code: code::BAD_REQUEST, .. })));
    }
}
