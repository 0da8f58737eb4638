//! Responses and empty messages into datagrams (RFC 7252 §3): header, token, options in
//! ascending order with delta encoding, payload marker and payload.

use crate::{Block, Kind, opt};

/// A response (piggybacked in an ACK, or a separate CON/NON response or notification).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub kind: Option<Kind>,
    pub mid: u16,
    pub token: Vec<u8>,
    pub code: u8,
    pub etag: Option<Vec<u8>>,
    pub observe: Option<u32>,
    pub content_format: Option<u16>,
    pub max_age: Option<u32>,
    pub block2: Option<Block>,
    pub block1: Option<Block>,
    pub size2: Option<u32>,
    pub size1: Option<u32>,
    pub payload: Vec<u8>,
}

impl Response {
    /// Encodes the response (an ACK unless `kind` says otherwise).
    pub fn encode(&self) -> Vec<u8> {
        let kind = self.kind.unwrap_or(Kind::Ack);
        let token = &self.token[..self.token.len().min(8)];
        let mut out = Vec::with_capacity(16 + token.len() + self.payload.len());
        out.push(0x40 | (kind.bits() << 4) | token.len() as u8);
        out.push(self.code);
        out.extend_from_slice(&self.mid.to_be_bytes());
        out.extend_from_slice(token);
        let mut last = 0u16;
        let mut put = |out: &mut Vec<u8>, number: u16, value: &[u8]| {
            option(out, number - last, value);
            last = number;
        };
        if let Some(etag) = &self.etag {
            put(&mut out, opt::ETAG, &etag[..etag.len().min(8)]);
        }
        if let Some(n) = self.observe {
            put(&mut out, opt::OBSERVE, &uint_bytes(n & 0xFF_FFFF));
        }
        if let Some(cf) = self.content_format {
            put(&mut out, opt::CONTENT_FORMAT, &uint_bytes(u32::from(cf)));
        }
        if let Some(n) = self.max_age {
            put(&mut out, opt::MAX_AGE, &uint_bytes(n));
        }
        if let Some(b) = self.block2 {
            put(&mut out, opt::BLOCK2, &b.encode());
        }
        if let Some(b) = self.block1 {
            put(&mut out, opt::BLOCK1, &b.encode());
        }
        if let Some(n) = self.size2 {
            put(&mut out, opt::SIZE2, &uint_bytes(n));
        }
        if let Some(n) = self.size1 {
            put(&mut out, opt::SIZE1, &uint_bytes(n));
        }
        if !self.payload.is_empty() {
            out.push(0xFF);
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// An empty Acknowledgement of `mid`.
pub fn empty_ack(mid: u16) -> [u8; 4] {
    let m = mid.to_be_bytes();
    [0x60, 0, m[0], m[1]]
}

/// A Reset of `mid`.
pub fn reset(mid: u16) -> [u8; 4] {
    let m = mid.to_be_bytes();
    [0x70, 0, m[0], m[1]]
}

/// The shortest big-endian bytes of `n` (none for 0).
pub(crate) fn uint_bytes(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{CoapOption, Packet};

    #[test]
    fn coap_lite_reads_what_is_encoded() {
        let r = Response {
            kind: Some(Kind::Con),
            mid: 0xBEEF,
            token: vec![1, 2, 3],
            code: crate::code::CONTENT,
            etag: Some(vec![9; 4]),
            observe: Some(70_000),
            content_format: Some(crate::JSON),
            max_age: None,
            block2: Some(Block { num: 2, more: true, szx: 6 }),
            block1: None,
            size2: Some(100_000),
            size1: Some(1 << 20),
            payload: vec![b'x'; 300],
        };
        let p = Packet::from_bytes(&r.encode()).expect("decodes");
        assert_eq!(p.header.message_id, 0xBEEF);
        assert_eq!(p.get_token(), &[1, 2, 3]);
        assert_eq!(p.header.get_type(), coap_lite::MessageType::Confirmable);
        assert_eq!(p.get_observe_value().and_then(Result::ok), Some(70_000));
        assert_eq!(p.get_first_option(CoapOption::ETag), Some(&vec![9; 4]));
        assert_eq!(p.get_first_option(CoapOption::ContentFormat), Some(&vec![50]));
        let b2 = p.get_first_option(CoapOption::Block2).expect("block2");
        assert_eq!(Block::decode(b2), Some(Block { num: 2, more: true, szx: 6 }));
        assert_eq!(p.get_first_option(CoapOption::Size2), Some(&vec![1, 0x86, 0xA0]));
        assert_eq!(p.get_first_option(CoapOption::Size1), Some(&vec![0x10, 0, 0]));
        assert_eq!(p.payload.len(), 300);
        assert_eq!(empty_ack(0x0102), [0x60, 0, 1, 2]);
        assert_eq!(reset(7), [0x70, 0, 0, 7]);
    }
}
