//! The two sparse indexes of a segment and their file format.
//!
//! - [`OffsetIndex`] (`.index`): entry = (offset - segment base: u32, file position:
//!   u32), 8 bytes, one entry every `index.interval.bytes` of batches. It maps an offset
//!   to the position of a batch that starts at or before it; a short scan finishes.
//! - [`TimeIndex`] (`.timeindex`): entry = (running max timestamp: i64, offset - base:
//!   u32), 12 bytes, added with the offset index when the running max grew. Every batch
//!   up to and including an entry's batch has maxTimestamp <= the entry's timestamp, so
//!   the first offset with timestamp >= t lies after the last entry below t.
//!
//! Files are written only when a segment is sealed (roll) or the log closes cleanly,
//! never on the append path. Layout, little-endian:
//! `magic "RLIX" | version u8 | kind u8 | 0u16 | base i64 | next_offset i64 |
//! data_bytes u64 | max_timestamp i64 | count u32 | crc32c u32 | entries...`,
//! zero-padded to the block size. The CRC-32C covers the header up to the CRC and the
//! entries. Crash rule: a file that is missing, short, or fails its CRC is ignored and
//! rebuilt by scanning the segment.

use crate::config::BLOCK_BYTES;

const MAGIC: &[u8; 4] = b"RLIX";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 48;
const CRC_AT: usize = 44;

/// What a sealed segment's index file says about the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub base_offset: i64,
    pub next_offset: i64,
    pub data_bytes: u64,
    pub max_timestamp: i64,
}

/// Sparse offset -> position index of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
    bytes_since_entry: u64,
}

impl OffsetIndex {
    /// Records a batch at `position`; adds an entry when `interval` bytes of batches
    /// went by since the last one (and always for the first batch).
    pub fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        batch_len: u32,
        interval: u32,
    ) -> bool {
        let due = self.entries.is_empty() || self.bytes_since_entry >= u64::from(interval);
        if due {
            debug_assert!(self
                .entries
                .last()
                .is_none_or(|&(o, p)| o < relative_offset && p < position));
            self.entries.push((relative_offset, position));
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += u64::from(batch_len);
        due
    }

    /// Position of the last indexed batch starting at or before `relative_offset`.
    pub fn floor(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn encode(&self, summary: &SegmentSummary) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 8);
        for &(o, p) in &self.entries {
            body.extend_from_slice(&o.to_le_bytes());
            body.extend_from_slice(&p.to_le_bytes());
        }
        encode_file(1, summary, self.entries.len(), &body)
    }

    pub fn decode(buf: &[u8]) -> Option<(SegmentSummary, Self)> {
        let (summary, count, body) = decode_file(1, 8, buf)?;
        let mut entries = Vec::with_capacity(count);
        for e in body.chunks_exact(8) {
            let o = u32::from_le_bytes(e[0..4].try_into().ok()?);
            let p = u32::from_le_bytes(e[4..8].try_into().ok()?);
            if entries.last().is_some_and(|&(lo, lp)| lo >= o || lp >= p)
                || u64::from(p) >= summary.data_bytes.max(1)
            {
                return None;
            }
            entries.push((o, p));
        }
        Some((
            summary,
            Self {
                entries,
                bytes_since_entry: u64::MAX / 2,
            },
        ))
    }
}

/// Sparse running-max-timestamp -> offset index of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Called with each indexed batch and the segment's running max timestamp.
    pub fn on_indexed_batch(&mut self, running_max_ts: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| running_max_ts > t) {
            self.entries.push((running_max_ts, relative_offset));
        }
    }

    /// Relative offset of a batch from which scanning finds the first record with
    /// timestamp >= `ts`: the last entry whose running max is below `ts`, else 0.
    pub fn scan_start(&self, ts: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < ts);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn encode(&self, summary: &SegmentSummary) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 12);
        for &(t, o) in &self.entries {
            body.extend_from_slice(&t.to_le_bytes());
            body.extend_from_slice(&o.to_le_bytes());
        }
        encode_file(2, summary, self.entries.len(), &body)
    }

    pub fn decode(buf: &[u8]) -> Option<(SegmentSummary, Self)> {
        let (summary, count, body) = decode_file(2, 12, buf)?;
        let mut entries = Vec::with_capacity(count);
        for e in body.chunks_exact(12) {
            let t = i64::from_le_bytes(e[0..8].try_into().ok()?);
            let o = u32::from_le_bytes(e[8..12].try_into().ok()?);
            if entries.last().is_some_and(|&(lt, lo)| lt >= t || lo >= o) {
                return None;
            }
            entries.push((t, o));
        }
        Some((summary, Self { entries }))
    }
}

fn encode_file(kind: u8, s: &SegmentSummary, count: usize, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((HEADER_LEN + body.len()).next_multiple_of(BLOCK_BYTES));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, kind, 0, 0]);
    out.extend_from_slice(&s.base_offset.to_le_bytes());
    out.extend_from_slice(&s.next_offset.to_le_bytes());
    out.extend_from_slice(&s.data_bytes.to_le_bytes());
    out.extend_from_slice(&s.max_timestamp.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().next_multiple_of(BLOCK_BYTES), 0);
    out
}

fn decode_file(kind: u8, entry_len: usize, buf: &[u8]) -> Option<(SegmentSummary, usize, &[u8])> {
    if buf.len() < HEADER_LEN || &buf[0..4] != MAGIC || buf[4] != VERSION || buf[5] != kind {
        return None;
    }
    let i64_at = |at: usize| buf[at..at + 8].try_into().ok().map(i64::from_le_bytes);
    let summary = SegmentSummary {
        base_offset: i64_at(8)?,
        next_offset: i64_at(16)?,
        data_bytes: u64::from_le_bytes(buf[24..32].try_into().ok()?),
        max_timestamp: i64_at(32)?,
    };
    let count = u32::from_le_bytes(buf[40..44].try_into().ok()?) as usize;
    let stored = u32::from_le_bytes(buf[CRC_AT..HEADER_LEN].try_into().ok()?);
    let body = buf.get(HEADER_LEN..HEADER_LEN.checked_add(count.checked_mul(entry_len)?)?)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[..CRC_AT]), body);
    if crc != stored || summary.next_offset < summary.base_offset {
        return None;
    }
    Some((summary, count, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> SegmentSummary {
        SegmentSummary {
            base_offset: 100,
            next_offset: 400,
            data_bytes: 90_000,
            max_timestamp: 77,
        }
    }

    #[test]
    fn offset_index_is_sparse_and_floors() {
        let mut idx = OffsetIndex::default();
        // 30 batches of 1000 bytes, 10 records each, interval 4096.
        for i in 0..30u32 {
            idx.on_batch(i * 10, i * 1000, 1000, 4096);
        }
        // Entries at batches 0, 5, 10, ... (after >= 4096 bytes since the last).
        assert_eq!(
            idx.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![0, 50, 100, 150, 200, 250]
        );
        assert_eq!(idx.floor(0), 0);
        assert_eq!(idx.floor(49), 0);
        assert_eq!(idx.floor(50), 5000);
        assert_eq!(idx.floor(299), 25_000);
        assert_eq!(idx.len(), 6);
    }

    #[test]
    fn time_index_finds_scan_start() {
        let mut t = TimeIndex::default();
        t.on_indexed_batch(10, 0);
        t.on_indexed_batch(10, 5); // no growth, no entry
        t.on_indexed_batch(20, 9);
        t.on_indexed_batch(35, 20);
        assert_eq!(t.scan_start(5), 0);
        assert_eq!(t.scan_start(10), 0);
        assert_eq!(t.scan_start(11), 0);
        assert_eq!(t.scan_start(21), 9);
        assert_eq!(t.scan_start(36), 20);
    }

    #[test]
    fn index_files_round_trip_and_reject_damage() {
        let mut idx = OffsetIndex::default();
        let mut t = TimeIndex::default();
        for i in 0..100u32 {
            idx.on_batch(i * 3, i * 800, 800, 4096);
            t.on_indexed_batch(i64::from(i) * 2, i * 3);
        }
        let bytes = idx.encode(&summary());
        assert_eq!(bytes.len() % BLOCK_BYTES, 0);
        let (s, back) = OffsetIndex::decode(&bytes).unwrap();
        assert_eq!(s, summary());
        assert_eq!(back.entries, idx.entries);
        let tbytes = t.encode(&summary());
        assert_eq!(TimeIndex::decode(&tbytes).unwrap().1.entries, t.entries);
        // Wrong kind, any flipped byte in the covered region, truncation: rejected.
        assert!(TimeIndex::decode(&bytes).is_none());
        for at in [0, 5, 9, 30, 41, 45, 50, 60] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(OffsetIndex::decode(&bad).is_none(), "flip at {at}");
        }
        assert!(OffsetIndex::decode(&bytes[..40]).is_none());
        assert!(OffsetIndex::decode(&[]).is_none());
    }
}
