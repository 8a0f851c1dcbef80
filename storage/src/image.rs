//! Recovery's decisions over a segment image held in memory: the same batch walk,
//! stop classification, recovery rule and index building that opening a log runs on
//! its files (`recovery::scan_segment`), without the I/O. For tools that inspect
//! segments and for the fuzzer (`tests/fuzz`, target `segment_scan`), which feeds it
//! arbitrary bytes as a segment file and index files.

use crate::index::{OffsetIndex, SegmentSummary, TimeIndex};
use crate::recovery::{starts_with_zeros, stop_verdict, stop_window_len, StopVerdict};
use crate::scan::{classify_stop, step_with_gaps, Step};
use crate::segment::{index_batch, IndexState};

pub use crate::recovery::ScanMode;

/// How a scan of a segment image ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageEnd {
    /// Every byte of the image is a valid batch.
    Clean,
    /// The newest segment's torn tail: recovery truncates the file at `at`.
    Truncated {
        at: u64,
        /// The tail is zeros (preallocated space), the normal end of active data.
        at_zeros: bool,
        reason: String,
    },
    /// Damage recovery reports instead of opening the log.
    Corrupt {
        position: u64,
        /// Where valid batches resume, when the damage has a continuation.
        continuation_at: Option<u64>,
        reason: String,
    },
}

/// What a scan of a segment image found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageScan {
    /// Valid batches from the start of the image.
    pub batches: usize,
    /// Bytes those batches take: where the segment's data ends.
    pub data_bytes: u64,
    /// The offset after the last valid batch.
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub end: ImageEnd,
    /// The `.index` and `.timeindex` files a roll would write for the valid part.
    pub index_file: Vec<u8>,
    pub time_index_file: Vec<u8>,
}

/// Scans `image`, the bytes of the segment whose first offset is `base_offset`, as
/// recovery would in `mode`.
pub fn scan_image(
    image: &[u8],
    base_offset: i64,
    mode: ScanMode,
    max_batch_bytes: usize,
    index_interval: u32,
) -> ImageScan {
    let gaps = matches!(mode, ScanMode::Compacted);
    let (mut pos, mut next_offset, mut batches) = (0u64, base_offset, 0usize);
    let mut max_timestamp = i64::MIN;
    let (mut offset_index, mut time_index) = (OffsetIndex::default(), TimeIndex::default());
    let end = loop {
        let Some(rest) = image.get(pos as usize..).filter(|r| !r.is_empty()) else {
            break ImageEnd::Clean;
        };
        match step_with_gaps(rest, next_offset, gaps, max_batch_bytes, true) {
            Step::Batch(b) => {
                let state = IndexState {
                    base_offset,
                    max_timestamp: &mut max_timestamp,
                    offset_index: &mut offset_index,
                    time_index: &mut time_index,
                };
                index_batch(state, pos, &b, index_interval);
                pos += b.len as u64;
                next_offset = b.last_offset + 1;
                batches += 1;
            }
            // At the end of the data a step never asks for more; were it to, the
            // batch is cut off, as recovery would find it.
            Step::NeedMore(need) => {
                let reason = format!("batch needs {need} bytes, {} left", rest.len());
                break stop(image, pos, next_offset, mode, max_batch_bytes, reason);
            }
            Step::Stop(reason) => {
                break stop(image, pos, next_offset, mode, max_batch_bytes, reason);
            }
        }
    };
    let summary = SegmentSummary {
        base_offset,
        next_offset,
        data_bytes: pos,
        max_timestamp,
    };
    ImageScan {
        batches,
        data_bytes: pos,
        next_offset,
        max_timestamp,
        end,
        index_file: offset_index.encode(&summary),
        time_index_file: time_index.encode(&summary),
    }
}

fn stop(
    image: &[u8],
    pos: u64,
    next_offset: i64,
    mode: ScanMode,
    max_batch_bytes: usize,
    reason: String,
) -> ImageEnd {
    let block = crate::config::BLOCK_BYTES as u64;
    let window_pos = pos - pos % block;
    let window_end = image
        .len()
        .min(window_pos as usize + stop_window_len(max_batch_bytes));
    let window = &image[window_pos as usize..window_end];
    let kind = classify_stop(window, window_pos, pos, next_offset, max_batch_bytes);
    match stop_verdict(mode, kind) {
        StopVerdict::Truncate => ImageEnd::Truncated {
            at: pos,
            at_zeros: starts_with_zeros(&image[pos as usize..]),
            reason,
        },
        StopVerdict::Corrupt { continuation_at } => ImageEnd::Corrupt {
            position: pos,
            continuation_at,
            reason,
        },
    }
}

/// What a pair of index files says about their segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedSegment {
    pub next_offset: i64,
    pub data_bytes: u64,
    pub max_timestamp: i64,
}

/// Decodes a segment's `.index` and `.timeindex` files as opening a log does:
/// `None` when either is damaged or they disagree with each other or the segment.
pub fn read_index_files(
    index: &[u8],
    time_index: &[u8],
    base_offset: i64,
) -> Option<IndexedSegment> {
    let (summary, _, _) = crate::recovery::decode_indexes(index, time_index, base_offset)?;
    Some(IndexedSegment {
        next_offset: summary.next_offset,
        data_bytes: summary.data_bytes,
        max_timestamp: summary.max_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringlog_schema::BatchBuilder;

    const MAX: usize = 1 << 20;

    fn batch(base: i64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for _ in 0..n {
            b.push(None, Some(Bytes::from_static(&[7u8; 100])), &[], 1_000);
        }
        let mut bytes = b.build().unwrap().to_vec();
        ringlog_schema::RecordBatch::set_base_offset(&mut bytes, base);
        bytes
    }

    #[test]
    fn a_clean_image_scans_to_its_end_and_its_indexes_read_back() {
        let mut image = batch(40, 3);
        image.extend(batch(43, 2));
        let scan = scan_image(&image, 40, ScanMode::Closed, MAX, 1);
        assert_eq!(scan.end, ImageEnd::Clean);
        assert_eq!((scan.batches, scan.next_offset), (2, 45));
        assert_eq!(scan.data_bytes, image.len() as u64);
        let read = read_index_files(&scan.index_file, &scan.time_index_file, 40).unwrap();
        assert_eq!(read.next_offset, 45);
        assert_eq!(read.data_bytes, image.len() as u64);
        assert!(read_index_files(&scan.index_file, &scan.time_index_file, 41).is_none());
    }

    #[test]
    fn a_torn_tail_truncates_the_newest_segment_and_is_corruption_in_a_closed_one() {
        let mut image = batch(0, 3);
        let first = image.len() as u64;
        let torn = batch(3, 3);
        image.extend_from_slice(&torn[..torn.len() / 2]);
        let tail = scan_image(&image, 0, ScanMode::Tail, MAX, 4096);
        assert!(matches!(tail.end, ImageEnd::Truncated { at, at_zeros: false, .. } if at == first));
        let closed = scan_image(&image, 0, ScanMode::Closed, MAX, 4096);
        assert!(matches!(
            closed.end,
            ImageEnd::Corrupt { position, continuation_at: None, .. } if position == first
        ));
    }
}
