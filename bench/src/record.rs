//! The bench's record format: a fixed header that lets consumers measure end-to-end
//! latency and verify what they read, then filler up to `--message-size`.
//!
//! ```text
//! magic u32 | producer u32 | partition u32 | crc32c(body) u32 | seq u64 | sent_ns u64 | body
//! ```
//! All little-endian. `sent_ns` is the record's *intended* send time (coordinated
//! omission: a stalled broker delays records that were due, and that delay counts),
//! in nanoseconds since the run's epoch, which all threads of the process share.

use thiserror::Error;

use crate::config::PayloadKind;

pub const HEADER_LEN: usize = 32;
const MAGIC: u32 = 0x3142_4c52; // "RLB1"

/// What a record's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub producer: u32,
    pub partition: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record of {0} bytes is shorter than the bench header")]
    Short(usize),
    #[error("record does not start with the bench's magic number")]
    Magic,
    #[error("payload checksum mismatch (producer {producer}, seq {seq})")]
    Checksum { producer: u32, seq: u64 },
}

/// Makes record values for one producer: a pool of filler bytes twice the body size,
/// from which each record takes a window at a varying start, so records differ
/// without generating bytes per record.
pub struct RecordMaker {
    size: usize,
    pool: Vec<u8>,
}

impl RecordMaker {
    pub fn new(size: usize, kind: PayloadKind, seed: u64) -> Self {
        let body = size.saturating_sub(HEADER_LEN).max(1);
        let mut pool = vec![0u8; body * 2];
        match kind {
            PayloadKind::Random => {
                let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for b in pool.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = (x >> 24) as u8;
                }
            }
            PayloadKind::Compressible => {
                let text = b"ringlog bench compressible payload, the same words again and again. ";
                for (i, b) in pool.iter_mut().enumerate() {
                    *b = text[i % text.len()];
                }
            }
        }
        Self { size, pool }
    }

    /// The value of record `h`.
    pub fn make(&self, h: Header) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size);
        self.make_into(h, &mut v);
        v
    }

    /// `make` into `v` (cleared first), so a sender can reuse one buffer.
    pub fn make_into(&self, h: Header, v: &mut Vec<u8>) {
        let body_len = self.size - HEADER_LEN;
        let start = (h.seq.wrapping_mul(61) % (self.pool.len() / 2) as u64) as usize;
        let body = &self.pool[start..start + body_len];
        v.clear();
        v.extend_from_slice(&MAGIC.to_le_bytes());
        v.extend_from_slice(&h.producer.to_le_bytes());
        v.extend_from_slice(&h.partition.to_le_bytes());
        v.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        v.extend_from_slice(&h.seq.to_le_bytes());
        v.extend_from_slice(&h.sent_ns.to_le_bytes());
        v.extend_from_slice(body);
    }
}

/// Reads and checks a record's header and body checksum.
pub fn decode(value: &[u8]) -> Result<Header, RecordError> {
    if value.len() < HEADER_LEN {
        return Err(RecordError::Short(value.len()));
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([value[i], value[i + 1], value[i + 2], value[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&value[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(0) != MAGIC {
        return Err(RecordError::Magic);
    }
    let h = Header {
        producer: u32_at(4),
        partition: u32_at(8),
        seq: u64_at(16),
        sent_ns: u64_at(24),
    };
    if crc32c::crc32c(&value[HEADER_LEN..]) != u32_at(12) {
        return Err(RecordError::Checksum {
            producer: h.producer,
            seq: h.seq,
        });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64) -> Header {
        Header {
            producer: 3,
            partition: 7,
            seq,
            sent_ns: 123_456_789,
        }
    }

    #[test]
    fn records_round_trip_at_every_size_and_kind() {
        for kind in [PayloadKind::Random, PayloadKind::Compressible] {
            for size in [HEADER_LEN, HEADER_LEN + 1, 100, 1024, 10_000] {
                let maker = RecordMaker::new(size, kind, 42);
                for seq in [0, 1, 2, 1_000_003] {
                    let v = maker.make(header(seq));
                    assert_eq!(v.len(), size);
                    assert_eq!(decode(&v), Ok(header(seq)));
                }
            }
        }
    }

    #[test]
    fn records_of_one_producer_differ() {
        let maker = RecordMaker::new(1024, PayloadKind::Random, 1);
        let a = maker.make(header(1));
        let b = maker.make(header(2));
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }

    #[test]
    fn damage_is_detected() {
        let maker = RecordMaker::new(256, PayloadKind::Random, 9);
        let good = maker.make(header(5));
        assert_eq!(decode(&good[..10]), Err(RecordError::Short(10)));
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad), Err(RecordError::Magic));
        for i in HEADER_LEN..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                decode(&bad),
                Err(RecordError::Checksum {
                    producer: 3,
                    seq: 5
                }),
                "flip at {i}"
            );
        }
        let mut bad = good.clone();
        bad[12] ^= 1;
        assert!(matches!(decode(&bad), Err(RecordError::Checksum { .. })));
    }
}
