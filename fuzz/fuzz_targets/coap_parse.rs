//! Fuzzes the CoAP message layer (`thingline-coap-message`) the way the server's UDP loop uses
//! it: every datagram goes to `parse`; a request (or a refusal the server answers) is answered
//! with a `Response` echoing its message id and token, as the adapter does. Invariants beyond
//! "no panic": a request carries the datagram's message id, a token of at most 8 bytes, at most
//! `MAX_SEGMENTS` path segments and `MAX_QUERY` query pairs, and a payload that ends the
//! datagram; a ping is the 4-byte header alone; every response encoded decodes again, with
//! coap-lite and with `parse` itself, to the same message id, token, code, options and payload.
#![no_main]

use coap_lite::{CoapOption, Packet};
use libfuzzer_sys::fuzz_target;
use thingline_coap_message::{self as coap, Block, Kind, Message, Refusal, Response, code};

/// Encodes `r` and checks what two decoders read from it.
fn check_response(r: &Response) {
    let bytes = r.encode();
    let p = Packet::from_bytes(&bytes).unwrap_or_else(|e| panic!("coap-lite cannot decode our response ({e:?}): {bytes:02x?}"));
    assert_eq!(p.header.message_id, r.mid);
    assert_eq!(p.get_token(), &r.token[..r.token.len().min(8)]);
    assert_eq!(u8::from(p.header.code), r.code);
    assert_eq!(p.payload, r.payload);
    let observe = p.get_first_option(CoapOption::Observe).map(|v| v.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)));
    assert_eq!(observe, r.observe.map(|n| n & 0xFF_FFFF));
    let block = |o: CoapOption| p.get_first_option(o).map(|v| Block::decode(v).expect("a block option we encoded"));
    assert_eq!(block(CoapOption::Block1), r.block1);
    assert_eq!(block(CoapOption::Block2), r.block2);
    // The server's own parser sees an answer, not a request.
    match (coap::parse(&bytes), r.kind.unwrap_or(Kind::Ack)) {
        (Ok(Message::Ack { mid }), Kind::Ack) => assert_eq!(mid, r.mid),
        (Ok(Message::Response { kind, mid }), k) => assert_eq!((kind, mid), (k, r.mid)),
        (other, k) => panic!("our {k:?} response parses as {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    match coap::parse(data) {
        Ok(Message::Request(req)) => {
            assert!(matches!(req.kind, Kind::Con | Kind::Non));
            assert_eq!(req.mid, u16::from_be_bytes([data[2], data[3]]));
            assert!(req.token.len() <= 8);
            assert_eq!(req.token, data[4..4 + req.token.len()]);
            assert!(req.path.len() <= coap::MAX_SEGMENTS);
            assert!(req.query.len() <= coap::MAX_QUERY);
            assert!(data.ends_with(&req.payload));
            let _ = req.resource_key();
            let _ = req.param("keepAlive");
            let kind = if req.kind == Kind::Con { Kind::Ack } else { Kind::Non };
            check_response(&Response {
                kind: Some(kind),
                mid: req.mid,
                token: req.token.clone(),
                code: code::CONTENT,
                etag: Some(req.token.clone()),
                observe: req.observe,
                content_format: Some(coap::JSON),
                max_age: None,
                block2: req.block2,
                block1: req.block1,
                size2: Some(req.payload.len() as u32),
                size1: req.size1,
                payload: req.payload.clone(),
            });
            // A separate response (CON) with a new message id.
            check_response(&Response {
                kind: Some(Kind::Con),
                mid: req.mid.wrapping_add(1),
                token: req.token.clone(),
                code: code::CREATED,
                payload: b"{\"status\":\"created\"}".to_vec(),
                ..Response::default()
            });
        }
        Ok(Message::Ping { mid }) => {
            assert_eq!(data.len(), 4);
            assert_eq!(mid, u16::from_be_bytes([data[2], data[3]]));
            assert_eq!(coap::reset(mid), [0x70, 0, data[2], data[3]]);
        }
        Ok(Message::Ack { mid } | Message::Reset { mid } | Message::Response { mid, .. }) => {
            assert_eq!(mid, u16::from_be_bytes([data[2], data[3]]));
        }
        Err(Refusal::Answer { kind, mid, token, code, message }) => {
            assert!(matches!(kind, Kind::Con | Kind::Non));
            assert_eq!(mid, u16::from_be_bytes([data[2], data[3]]));
            assert!(code >> 5 == 4 || code >> 5 == 5, "refused with {}", code::dotted(code));
            let kind = if kind == Kind::Con { Kind::Ack } else { Kind::Non };
            let payload = format!("{{\"status\":\"error\",\"message\":{message:?}}}").into_bytes();
            check_response(&Response { kind: Some(kind), mid, token, code, payload, ..Response::default() });
        }
        Err(Refusal::Reject { mid, .. }) => {
            assert!(data.len() >= 4);
            assert_eq!(mid, u16::from_be_bytes([data[2], data[3]]));
        }
        Err(Refusal::Ignore) => {}
    }
});
