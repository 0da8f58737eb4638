//! Block-wise transfers (RFC 7959): request bodies arriving in Block1 blocks are put together
//! here until the last one, and answers too large for one block are kept here while the client
//! fetches them block by block with Block2.
//!
//! Keyed by endpoint and resource (path and query). Bounded: a body is at most the HTTP body
//! limit (4.13 beyond), all bodies and answers kept together at most [`MAX_BYTES`] (5.03 beyond),
//! and each is forgotten [`KEEP`] after its last block.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thingline_coap_message::Block;

/// How long a transfer is kept after its last block.
pub const KEEP: Duration = Duration::from_secs(60);
/// Bytes kept in all uploads and downloads together.
pub const MAX_BYTES: usize = 64 << 20;
/// Uploads, and answers kept for block-wise fetching, per client address (IPv6: per /64).
pub const PER_ADDRESS: usize = 8;

type Key = (SocketAddr, String);

struct Upload {
    body: Vec<u8>,
    at: Instant,
}

struct Download {
    payload: Arc<[u8]>,
    etag: [u8; 4],
    at: Instant,
}

#[derive(Default)]
struct Inner {
    uploads: HashMap<Key, Upload>,
    downloads: HashMap<Key, Download>,
    bytes: usize,
}

impl Inner {
    /// Transfers of `peer`'s address kept now (in `map`).
    fn of_address<T>(map: &HashMap<Key, T>, peer: SocketAddr) -> usize {
        let subnet = crate::net::client_subnet(peer.ip());
        map.keys().filter(|(p, _)| crate::net::client_subnet(p.ip()) == subnet).count()
    }
}

/// What a Block1 block led to.
pub enum Put {
    /// More blocks to come: answer 2.31 Continue.
    Continue,
    /// The last block: the whole body.
    Complete(Vec<u8>),
    /// Over the body limit: 4.13.
    TooLarge,
    /// Not the block expected next (or a non-final block of the wrong size): 4.08.
    Incomplete,
    /// Too many bytes kept for transfers in all, or too many transfers of the address: 5.03.
    Busy,
}

/// The transfers in progress.
pub struct Blocks {
    inner: Mutex<Inner>,
    limit: usize,
}

/// An answer served block by block.
pub struct Slice {
    pub payload: Vec<u8>,
    pub block: Block,
    pub total: usize,
    pub etag: [u8; 4],
}

impl Blocks {
    pub fn new(limit: usize) -> Blocks {
        Blocks { inner: Mutex::new(Inner::default()), limit }
    }

    /// Adds a Block1 block of `key`'s body (`size1`: the total the client announced, if any).
    pub fn put(&self, key: Key, block: Block, data: &[u8], size1: Option<u32>) -> Put {
        if size1.is_some_and(|s| s as usize > self.limit) {
            self.drop_upload(&key);
            return Put::TooLarge;
        }
        if block.more && data.len() != block.size() {
            return Put::Incomplete;
        }
        let mut inner = self.inner.lock();
        inner.sweep();
        if block.num == 0 {
            if let Some(old) = inner.uploads.remove(&key) {
                inner.bytes -= old.body.len();
            }
            if Inner::of_address(&inner.uploads, key.0) >= PER_ADDRESS {
                return Put::Busy;
            }
            inner.uploads.insert(key.clone(), Upload { body: Vec::new(), at: Instant::now() });
        }
        let Some(upload) = inner.uploads.get(&key) else { return Put::Incomplete };
        if upload.body.len() != block.offset() {
            return Put::Incomplete;
        }
        let new_len = upload.body.len() + data.len();
        if new_len > self.limit {
            if let Some(old) = inner.uploads.remove(&key) {
                inner.bytes -= old.body.len();
            }
            return Put::TooLarge;
        }
        if inner.bytes + data.len() > MAX_BYTES {
            return Put::Busy;
        }
        inner.bytes += data.len();
        let Some(upload) = inner.uploads.get_mut(&key) else { return Put::Incomplete };
        upload.body.extend_from_slice(data);
        upload.at = Instant::now();
        if block.more {
            return Put::Continue;
        }
        let body = inner.uploads.remove(&key).map(|u| u.body).unwrap_or_default();
        inner.bytes -= body.len();
        Put::Complete(body)
    }

    fn drop_upload(&self, key: &Key) {
        let mut inner = self.inner.lock();
        if let Some(old) = inner.uploads.remove(key) {
            inner.bytes -= old.body.len();
        }
    }

    /// Keeps `payload` for `key` and returns the block asked (`block`'s number and size).
    /// `None` when the payload cannot be kept (too many bytes kept): the caller answers 5.03.
    pub fn serve(&self, key: Key, payload: Vec<u8>, block: Block) -> Option<Slice> {
        let etag = etag_of(&payload);
        let payload: Arc<[u8]> = Arc::from(payload);
        let slice = slice(&payload, etag, block);
        let mut inner = self.inner.lock();
        inner.sweep();
        if let Some(old) = inner.downloads.remove(&key) {
            inner.bytes -= old.payload.len();
        }
        let more = slice.as_ref().is_some_and(|s| s.block.more);
        if more {
            if inner.bytes + payload.len() > MAX_BYTES || Inner::of_address(&inner.downloads, key.0) >= PER_ADDRESS {
                return None;
            }
            inner.bytes += payload.len();
            inner.downloads.insert(key, Download { payload, etag, at: Instant::now() });
        }
        slice
    }

    /// The block asked of an answer kept for `key`, if it is still kept.
    pub fn cached(&self, key: &Key, block: Block) -> Option<Slice> {
        let mut inner = self.inner.lock();
        let d = inner.downloads.get_mut(key)?;
        d.at = Instant::now();
        slice(&d.payload, d.etag, block)
    }
}

impl Inner {
    fn sweep(&mut self) {
        let now = Instant::now();
        let mut freed = 0;
        self.uploads.retain(|_, u| {
            let keep = now.duration_since(u.at) < KEEP;
            if !keep {
                freed += u.body.len();
            }
            keep
        });
        self.downloads.retain(|_, d| {
            let keep = now.duration_since(d.at) < KEEP;
            if !keep {
                freed += d.payload.len();
            }
            keep
        });
        self.bytes -= freed;
    }
}

/// Block `block.num` of `payload` in blocks of `block.size()`; `None` past the end.
fn slice(payload: &[u8], etag: [u8; 4], block: Block) -> Option<Slice> {
    let start = block.offset();
    if start >= payload.len() && !(start == 0 && payload.is_empty()) {
        return None;
    }
    let end = (start + block.size()).min(payload.len());
    Some(Slice {
        payload: payload[start..end].to_vec(),
        block: Block { num: block.num, more: end < payload.len(), szx: block.szx },
        total: payload.len(),
        etag,
    })
}

/// A 4-byte entity tag of a representation.
pub fn etag_of(payload: &[u8]) -> [u8; 4] {
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(payload);
    let v = h.finish();
    [(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8, v as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        (SocketAddr::from(([127, 0, 0, 1], 9)), "v2/things/t".into())
    }

    fn b(num: u32, more: bool) -> Block {
        Block { num, more, szx: 0 }
    }

    #[test]
    fn blocks_in_order_make_the_body_and_out_of_order_is_incomplete() {
        let blocks = Blocks::new(100);
        assert!(matches!(blocks.put(key(), b(0, true), &[1; 16], None), Put::Continue));
        assert!(matches!(blocks.put(key(), b(2, true), &[3; 16], None), Put::Incomplete));
        assert!(matches!(blocks.put(key(), b(1, true), &[2; 16], None), Put::Continue));
        match blocks.put(key(), b(2, false), &[3; 5], None) {
            Put::Complete(body) => assert_eq!(body.len(), 37),
            _ => panic!("complete"),
        }
        assert_eq!(blocks.inner.lock().bytes, 0);
        // Over the limit, announced or reached.
        assert!(matches!(blocks.put(key(), b(0, true), &[1; 16], Some(101)), Put::TooLarge));
        for n in 0..6 {
            assert!(matches!(blocks.put(key(), b(n, true), &[1; 16], None), Put::Continue));
        }
        assert!(matches!(blocks.put(key(), b(6, true), &[1; 16], None), Put::TooLarge));
        assert_eq!(blocks.inner.lock().bytes, 0);
        // A short non-final block.
        assert!(matches!(blocks.put(key(), b(0, true), &[1; 3], None), Put::Incomplete));
    }

    #[test]
    fn an_answer_is_served_block_by_block() {
        let blocks = Blocks::new(100);
        let payload: Vec<u8> = (0..40).collect();
        let first = blocks.serve(key(), payload.clone(), b(0, false)).expect("first");
        assert_eq!(first.payload, &payload[..16]);
        assert!(first.block.more);
        assert_eq!(first.total, 40);
        let last = blocks.cached(&key(), b(2, false)).expect("kept");
        assert_eq!(last.payload, &payload[32..]);
        assert!(!last.block.more);
        assert_eq!(last.etag, first.etag);
        assert!(blocks.cached(&key(), b(3, false)).is_none());
    }
}
