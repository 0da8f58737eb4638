//! Block1/Block2 option values (RFC 7959 §2.2): block number, more flag, size exponent.

/// One block option value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Block number (at most 20 bits).
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// Size exponent: the block holds `2^(szx+4)` bytes (0..=6; 7 is BERT, reserved over UDP).
    pub szx: u8,
}

impl Block {
    /// The largest size exponent over UDP (1,024-byte blocks).
    pub const MAX_SZX: u8 = 6;

    /// Block size in bytes.
    pub fn size(self) -> usize {
        1 << (usize::from(self.szx) + 4)
    }

    /// Offset of this block's first byte.
    pub fn offset(self) -> usize {
        self.num as usize * self.size()
    }

    /// Decodes an option value (0 to 3 bytes); `None` for BERT or more than 3 bytes.
    pub fn decode(v: &[u8]) -> Option<Block> {
        let n = crate::uint(v, 3)?;
        let szx = (n & 7) as u8;
        if szx > Self::MAX_SZX {
            return None;
        }
        Some(Block { num: n >> 4, more: n & 8 != 0, szx })
    }

    /// The shortest encoding of the value.
    pub fn encode(self) -> Vec<u8> {
        let n = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx);
        crate::encode::uint_bytes(n)
    }

    /// The size exponent of the largest block not larger than `size` bytes (at least 16).
    pub fn szx_for(size: usize) -> u8 {
        let mut szx = Self::MAX_SZX;
        while szx > 0 && (1usize << (szx + 4)) > size {
            szx -= 1;
        }
        szx
    }
}

#[cfg(test)]
mod tests {
    use super::Block;

    #[test]
    fn round_trips() {
        for b in [
            Block { num: 0, more: false, szx: 0 },
            Block { num: 0, more: true, szx: 6 },
            Block { num: 15, more: true, szx: 2 },
            Block { num: 4095, more: false, szx: 6 },
            Block { num: (1 << 20) - 1, more: true, szx: 6 },
        ] {
            assert_eq!(Block::decode(&b.encode()), Some(b));
        }
        assert_eq!(Block::decode(&[]), Some(Block { num: 0, more: false, szx: 0 }));
        assert_eq!(Block::decode(&[7]), None);
        assert_eq!(Block::decode(&[0, 0, 0, 1]), None);
        assert_eq!(Block { num: 3, more: false, szx: 6 }.offset(), 3072);
        assert_eq!(Block::szx_for(1024), 6);
        assert_eq!(Block::szx_for(1000), 5);
        assert_eq!(Block::szx_for(3), 0);
    }
}
