//! Walking the batches of a segment image, and deciding what a bad one means.
//!
//! Pure functions over byte slices: recovery and index rebuilds feed them what they
//! read from disk. The decision that matters is [`classify_stop`]: when the scan meets
//! bytes that are not a valid next batch at position `p`, are they
//!
//! - a **torn tail** — the end of writes that never completed (never acknowledged under
//!   `log.flush=batch`), to be truncated away; or
//! - **corruption** of data that was durable — to be reported, never silently dropped?
//!
//! Evidence of durability is a valid batch *after* `p` continuing the offsets: writes
//! are sequential and fdatasync covers a prefix, so durable data beyond a torn region
//! cannot exist — unless in-flight writes landed out of order at the crash. Those leave
//! a hole: a 4 KiB block that was never written reads as zeros (preallocated space or
//! the zero padding of the previous tail-block write). So a continuation found behind
//! such a zero block is still a torn tail; a continuation with no hole before it means
//! the bytes at `p` were durable and changed afterwards: corruption.

use ringlog_schema::{BatchHeader, RecordBatch, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};

use crate::config::BLOCK_BYTES;

/// A batch found by the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScannedBatch {
    pub len: usize,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// The outcome of looking at the bytes at a batch boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A valid batch with the expected base offset.
    Batch(ScannedBatch),
    /// The buffer ends inside the batch; read at least this many bytes from here.
    NeedMore(usize),
    /// No valid batch starts here (end of data, torn write or corruption).
    Stop(String),
}

/// Looks at the batch starting at `buf[0]`. `at_eof` says `buf` runs to the end of
/// the file, so a short batch is final rather than a reason to read more.
#[cfg(test)]
pub(crate) fn step(buf: &[u8], expected_base: i64, max_batch_bytes: usize, at_eof: bool) -> Step {
    step_with_gaps(buf, expected_base, false, max_batch_bytes, at_eof)
}

/// [`step`]; with `gaps`, the batch may start past `expected_base` (a compacted
/// segment, where cleaning removed whole batches), never before it.
pub(crate) fn step_with_gaps(
    buf: &[u8],
    expected_base: i64,
    gaps: bool,
    max_batch_bytes: usize,
    at_eof: bool,
) -> Step {
    let size = match RecordBatch::peek_size(buf, max_batch_bytes) {
        Ok(Some(size)) => size,
        Ok(None) if at_eof => {
            return Step::Stop(format!("{} bytes, less than a batch header", buf.len()))
        }
        Ok(None) => return Step::NeedMore(BATCH_HEADER_LEN),
        Err(e) => return Step::Stop(e.to_string()),
    };
    if buf.len() < size {
        return if at_eof {
            Step::Stop(format!(
                "batch of {size} bytes cut off after {} bytes",
                buf.len()
            ))
        } else {
            Step::NeedMore(size)
        };
    }
    let bytes = &buf[..size];
    if let Err(e) = RecordBatch::validate_slice(bytes, max_batch_bytes) {
        return Step::Stop(e.to_string());
    }
    let Some(header) = BatchHeader::read(bytes) else {
        return Step::Stop("batch shorter than its header".into());
    };
    let in_place = if gaps {
        header.base_offset >= expected_base
    } else {
        header.base_offset == expected_base
    };
    if !in_place {
        return Step::Stop(format!(
            "base offset {}, expected {expected_base}",
            header.base_offset
        ));
    }
    Step::Batch(ScannedBatch {
        len: size,
        base_offset: header.base_offset,
        last_offset: header.last_offset(),
        max_timestamp: header.max_timestamp,
    })
}

/// What the bytes at a stop position are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopKind {
    /// Unfinished writes: truncate the segment at the stop position.
    TornTail,
    /// Durable data damaged: a valid continuation starts at this file position.
    Corrupt { continuation_at: u64 },
}

/// Classifies a stop at file position `stop_pos`. `window` holds the segment bytes
/// from file position `window_pos` (<= `stop_pos`) on, covering at least
/// `max_batch_bytes + BATCH_HEADER_LEN` bytes after `stop_pos` or up to the file end.
/// `expected_base` is the offset the batch at `stop_pos` should have had.
pub(crate) fn classify_stop(
    window: &[u8],
    window_pos: u64,
    stop_pos: u64,
    expected_base: i64,
    max_batch_bytes: usize,
) -> StopKind {
    let Some(start) = stop_pos.checked_sub(window_pos).map(|s| s as usize) else {
        return StopKind::TornTail;
    };
    if start >= window.len() {
        return StopKind::TornTail;
    }
    let search_end = window.len().min(start + max_batch_bytes + LOG_OVERHEAD);
    for q in start + 1..search_end {
        let Some(candidate) = window.get(q..) else {
            break;
        };
        if !looks_like_continuation(candidate, expected_base) {
            continue;
        }
        let Ok(Some(size)) = RecordBatch::peek_size(candidate, max_batch_bytes) else {
            continue;
        };
        if candidate.len() < size
            || RecordBatch::validate_slice(&candidate[..size], max_batch_bytes).is_err()
        {
            continue;
        }
        let q_pos = window_pos + q as u64;
        return if has_unwritten_block(window, window_pos, stop_pos, q_pos) {
            StopKind::TornTail
        } else {
            StopKind::Corrupt {
                continuation_at: q_pos,
            }
        };
    }
    StopKind::TornTail
}

/// Cheap filter before a CRC: magic 2 and a base offset after the expected one.
fn looks_like_continuation(buf: &[u8], expected_base: i64) -> bool {
    let Some(header) = BatchHeader::read(buf) else {
        return false;
    };
    header.magic == MAGIC_V2
        && header.base_offset > expected_base
        && header.base_offset.saturating_sub(expected_base) <= i64::from(i32::MAX)
}

/// True when some 4 KiB block overlapping `[from, to)` is all zeros over that range:
/// the trace a write that never reached the disk leaves.
fn has_unwritten_block(window: &[u8], window_pos: u64, from: u64, to: u64) -> bool {
    let block = BLOCK_BYTES as u64;
    let mut b = from - from % block;
    while b < to {
        let lo = from.max(b);
        let hi = to.min(b + block);
        // Ignore slivers a real header could be all zeros over (a small baseOffset's
        // high bytes) unless they start the stop batch itself.
        let long_enough = hi - lo >= 64 || lo == from;
        let (l, h) = ((lo - window_pos) as usize, (hi - window_pos) as usize);
        if long_enough && window[l..h].iter().all(|&x| x == 0) {
            return true;
        }
        b += block;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringlog_schema::BatchBuilder;

    const MAX: usize = 1 << 20;

    fn batch(base: i64, n: usize, fill: u8) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(
                None,
                Some(Bytes::from(vec![fill.wrapping_add(i as u8) | 1; 300])),
                &[],
                1000 + i as i64,
            );
        }
        let mut v = b.build().unwrap().to_vec();
        RecordBatch::set_base_offset(&mut v, base);
        v
    }

    /// A segment image of `count` batches of 3 records each; returns it and the
    /// positions of the batches.
    fn image(count: usize) -> (Vec<u8>, Vec<usize>) {
        let mut img = Vec::new();
        let mut pos = Vec::new();
        for i in 0..count {
            pos.push(img.len());
            img.extend(batch(i as i64 * 3, 3, i as u8));
        }
        (img, pos)
    }

    fn walk(img: &[u8]) -> (usize, i64, Option<String>) {
        let (mut p, mut next) = (0usize, 0i64);
        loop {
            match step(&img[p..], next, MAX, true) {
                Step::Batch(b) => {
                    p += b.len;
                    next = b.last_offset + 1;
                }
                Step::Stop(r) => return (p, next, Some(r)),
                Step::NeedMore(_) => unreachable!("at_eof"),
            }
            if p == img.len() {
                return (p, next, None);
            }
        }
    }

    #[test]
    fn steps_through_a_clean_image() {
        let (img, _) = image(10);
        assert_eq!(walk(&img), (img.len(), 30, None));
    }

    #[test]
    fn asks_for_more_when_not_at_eof() {
        let (img, pos) = image(2);
        assert_eq!(
            step(&img[..5], 0, MAX, false),
            Step::NeedMore(BATCH_HEADER_LEN)
        );
        assert_eq!(step(&img[..100], 0, MAX, false), Step::NeedMore(pos[1]));
    }

    #[test]
    fn a_wrong_base_offset_stops_the_scan() {
        let (img, _) = image(2);
        assert!(matches!(step(&img, 7, MAX, true), Step::Stop(r) if r.contains("expected 7")));
    }

    #[test]
    fn torn_and_garbage_tails_are_torn() {
        let (img, pos) = image(8);
        // Cut mid-batch.
        let cut = &img[..pos[7] + 100];
        let (p, next, _) = walk(cut);
        assert_eq!(p, pos[7]);
        assert_eq!(
            classify_stop(cut, 0, p as u64, next, MAX),
            StopKind::TornTail
        );
        // Garbage after the last batch.
        let mut g = img.clone();
        g.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let (p, next, _) = walk(&g);
        assert_eq!(p, img.len());
        assert_eq!(
            classify_stop(&g, 0, p as u64, next, MAX),
            StopKind::TornTail
        );
        // Flipped byte in the last batch.
        let mut f = img.clone();
        f[pos[7] + 200] ^= 0x10;
        let (p, next, _) = walk(&f);
        assert_eq!(p, pos[7]);
        assert_eq!(
            classify_stop(&f, 0, p as u64, next, MAX),
            StopKind::TornTail
        );
    }

    #[test]
    fn a_flip_below_the_tail_is_corruption() {
        let (img, pos) = image(8);
        for (victim, at) in [(3usize, 200usize), (3, 9), (0, 30), (6, 60)] {
            let mut f = img.clone();
            f[pos[victim] + at] ^= 0x04;
            let (p, next, _) = walk(&f);
            assert_eq!(p, pos[victim]);
            let kind = classify_stop(&f, 0, p as u64, next, MAX);
            assert!(
                matches!(kind, StopKind::Corrupt { .. }),
                "victim {victim} at {at}: {kind:?}"
            );
        }
    }

    #[test]
    fn a_zero_hole_before_later_data_is_a_torn_tail() {
        // Blocks landed out of order: the block holding batch 5's middle never made it.
        let (img, pos) = image(24);
        let mut f = img.clone();
        let hole = (pos[5] / BLOCK_BYTES + 1) * BLOCK_BYTES;
        assert!(
            hole + 2 * BLOCK_BYTES < img.len(),
            "valid batches after the hole"
        );
        f[hole..hole + BLOCK_BYTES].fill(0);
        let (p, next, _) = walk(&f);
        assert!(
            p <= hole && hole < p + 2000,
            "stopped at the batch holding the hole"
        );
        let kind = classify_stop(&f, 0, p as u64, next, MAX);
        assert_eq!(kind, StopKind::TornTail);
        // The same image without the hole but with one flipped byte there: corruption.
        let mut g = img.clone();
        g[hole + 100] ^= 0x20;
        let (p, next, _) = walk(&g);
        assert!(matches!(
            classify_stop(&g, 0, p as u64, next, MAX),
            StopKind::Corrupt { .. }
        ));
    }
}
