//! Fuzzes the MQTT frame decoder (`thingline-mqtt-codec`, the broker's `mqtt::codec`) the way a connection uses it: the
//! first bytes go to `peek_connect_version`, then `decode` runs until it needs more bytes or
//! fails, in both protocol versions and under several size limits. Invariants beyond "no
//! panic": a decoded packet consumes exactly the bytes its fixed header announced (at least
//! two, never more than the limit); "more bytes needed" consumes nothing and is never said of a
//! packet that has arrived whole; a CONNECT decodes in the version `peek_connect_version` read.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use thingline_mqtt_codec::{self as codec, MAX_REMAINING, Packet, Version};

/// The whole length of the packet at the front of `buf` as its fixed header announces it.
fn announced(buf: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    for i in 1..=4 {
        let b = *buf.get(i)?;
        len |= usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some(i + 1 + len);
        }
    }
    None
}

fn drain(data: &[u8], version: Version, max: usize) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec::decode(&mut buf, version, max) {
            Ok(Some(packet)) => {
                let used = before - buf.len();
                let start = data.len() - before;
                assert!(used >= 2, "a decoded packet consumed {used} bytes");
                assert!(used <= max, "a packet of {used} bytes passed the limit {max}");
                assert_eq!(Some(used), announced(&data[start..]), "consumed what the header announced");
                assert_eq!(&buf[..], &data[start + used..], "only the packet was consumed");
                if let Packet::Connect(c) = &packet
                    && start == 0
                    && let Ok(Some(v)) = codec::peek_connect_version(data, max)
                {
                    assert_eq!(c.version, v, "the CONNECT decodes in the version peek read");
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "`more bytes needed` consumed bytes");
                let start = data.len() - before;
                if let Some(total) = announced(&data[start..]) {
                    assert!(total > before, "`more bytes needed` with the whole packet there");
                }
                return;
            }
            Err(_) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for max in [16, 1024, 1 << 20, MAX_REMAINING, usize::MAX] {
        let _ = codec::peek_connect_version(data, max);
        drain(data, Version::V311, max);
        drain(data, Version::V5, max);
    }
});
