//! Zero-filling the active segment ahead of the writer.
//!
//! Segment space is fallocated in steps; ext4 and XFS record fallocated space as
//! *unwritten* extents. A write into an unwritten extent converts it to written, a
//! metadata change that the next fdatasync must commit to the journal before it can
//! return. Under `log.flush = batch` that is every group commit: measured with fio on
//! this project's host, 16 KiB writes at 50 MB/s each followed by fdatasync took
//! 139 µs p50 / 212 µs p99 per fdatasync into fallocated space and 44 µs / 133 µs into
//! space already written once.
//!
//! So while a log has spare time, a background write fills the space just past its
//! data with zeros, a piece at a time, keeping up to `log.zero.ahead.bytes` ahead.
//! The data writes that follow overwrite written extents and their fdatasyncs are
//! plain device flushes. Each piece still converts its extents once, so pieces are
//! large enough to make that rare and small enough that a data write queued behind
//! one waits little: with 128 KiB pieces the broker's 50 MB/s run zeroed one piece per
//! ~8 group commits and its p99.9 got worse; with 1 MiB pieces, over three interleaved
//! A/B runs, ack latency went from 595–627 to 458–486 µs at p50, 1.98–2.87 to
//! 1.47–1.66 ms at p99 and 5.0–10.5 to 3.4–6.4 ms at p99.9 (BENCHMARKS.md).
//!
//! The cost is a second write of each byte while the log is lightly loaded. A log
//! that always has a group waiting to be written never starts a piece (see
//! `PartitionLog::zero_ahead_if_idle`): at max rate about 13 % of the bytes were
//! zero-filled first, and throughput stayed within run-to-run noise.
//!
//! Zeros past the data are what recovery already treats as unwritten space, so zero
//! filling changes nothing on disk that a reader or a recovery could see.
//!
//! Ordering rules, kept by the log: a data write that reaches into the piece in
//! flight waits for it (`wait_idle`), or the zeros could land over the data; rolls,
//! truncation and close wait for it too and reset the frontier.

use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

use glommio::sync::{Semaphore, StaticPermit};
use tracing::warn;

use crate::config::BLOCK_BYTES;
use crate::files::SegmentFile;

const BLOCK: u64 = BLOCK_BYTES as u64;

/// Bytes zeroed by one write.
pub(crate) const ZERO_WRITE_BYTES: u64 = 1 << 20;

/// The next piece to zero, or `None` when a whole piece more would reach beyond
/// `ahead` bytes past the data, or the file has no more allocated space.
///
/// `data_end` is the end of appended data in the segment, `frontier` the end of the
/// space zeroed so far (0 when none), `file_size` the segment file's allocated size.
/// Pure, so every case is tested.
pub(crate) fn next_piece(
    data_end: u64,
    frontier: u64,
    file_size: u64,
    ahead: u64,
) -> Option<Range<u64>> {
    // The block the data ends in is rewritten by the writer; zeros start after it.
    let data_block_end = data_end.next_multiple_of(BLOCK);
    let start = frontier.max(data_block_end);
    let target = data_block_end.saturating_add(ahead);
    // Whole pieces only: topping up by what one group commit appended would make
    // every other fdatasync journal a conversion again, the cost this avoids. The
    // last piece of the allocated space may be shorter.
    if start.saturating_add(ZERO_WRITE_BYTES) > target {
        return None;
    }
    let end = (start + ZERO_WRITE_BYTES).min(file_size / BLOCK * BLOCK);
    (end > start).then_some(start..end)
}

/// A log's zero-fill state; shared with the task writing a piece.
pub(crate) struct ZeroAhead {
    /// End of the zeroed space in the active segment (0: none).
    frontier: Cell<u64>,
    /// Start of the piece being written, if one is.
    inflight_from: Cell<Option<u64>>,
    /// Held by the piece in flight.
    lock: Rc<Semaphore>,
    /// Set after a failed zero write: filling is only an optimisation, so the log goes
    /// on without it rather than failing.
    disabled: Cell<bool>,
    pieces: Cell<u64>,
}

impl ZeroAhead {
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(Self {
            frontier: Cell::new(0),
            inflight_from: Cell::new(None),
            lock: Rc::new(Semaphore::new(1)),
            disabled: Cell::new(false),
            pieces: Cell::new(0),
        })
    }

    pub(crate) fn frontier(&self) -> u64 {
        self.frontier.get()
    }

    /// Pieces written since the log opened.
    pub(crate) fn pieces(&self) -> u64 {
        self.pieces.get()
    }

    /// Whether a data write ending at `end` would overlap the piece in flight.
    pub(crate) fn overlaps_inflight(&self, end: u64) -> bool {
        self.inflight_from.get().is_some_and(|from| end > from)
    }

    /// Waits until no piece is in flight; the permit keeps new ones from starting.
    pub(crate) async fn wait_idle(&self) -> Option<glommio::sync::Permit<'_>> {
        self.lock.acquire_permit(1).await.ok()
    }

    /// Forgets the zeroed space: the segment changed or was cut. Call while holding
    /// the permit of [`ZeroAhead::wait_idle`].
    pub(crate) fn reset(&self) {
        self.frontier.set(0);
    }

    /// The permit to write a piece, if none is in flight and filling is on.
    pub(crate) fn try_start(self: &Rc<Self>) -> Option<StaticPermit> {
        if self.disabled.get() {
            return None;
        }
        self.lock.try_acquire_static_permit(1).ok()
    }

    /// Writes zeros over `piece` of `file` in a spawned task that holds `permit`.
    pub(crate) fn spawn_write(
        self: &Rc<Self>,
        file: SegmentFile,
        piece: Range<u64>,
        permit: StaticPermit,
    ) {
        let zero = self.clone();
        zero.inflight_from.set(Some(piece.start));
        glommio::spawn_local(async move {
            let _permit = permit;
            let len = (piece.end - piece.start) as usize;
            let mut buffer = glommio::allocate_dma_buffer(len);
            buffer.as_bytes_mut().fill(0);
            let path = file.path().to_path_buf();
            let result = match file.get().await {
                Ok(f) => f.write_at(buffer, piece.start).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            zero.inflight_from.set(None);
            match result {
                Ok(n) => {
                    let done = piece.start + (n as u64) / BLOCK * BLOCK;
                    zero.frontier.set(zero.frontier.get().max(done));
                    zero.pieces.set(zero.pieces.get() + 1);
                }
                Err(e) => {
                    zero.disabled.set(true);
                    warn!(segment = %path.display(), error = %e, "zero-filling ahead of the writer failed; continuing without it");
                }
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn first_piece_starts_after_the_block_the_data_ends_in() {
        assert_eq!(
            next_piece(100, 0, 32 * MIB, 4 * MIB),
            Some(BLOCK..BLOCK + ZERO_WRITE_BYTES)
        );
        assert_eq!(
            next_piece(BLOCK, 0, 32 * MIB, 4 * MIB),
            Some(BLOCK..BLOCK + ZERO_WRITE_BYTES)
        );
        assert_eq!(
            next_piece(0, 0, 32 * MIB, 4 * MIB),
            Some(0..ZERO_WRITE_BYTES)
        );
    }

    #[test]
    fn continues_from_the_frontier_in_whole_pieces_up_to_ahead_bytes_past_the_data() {
        let data = 10 * BLOCK + 7;
        let data_block_end = 11 * BLOCK;
        let target = data_block_end + 4 * MIB;
        let frontier = target - ZERO_WRITE_BYTES;
        assert_eq!(
            next_piece(data, frontier, 32 * MIB, 4 * MIB),
            Some(frontier..target)
        );
        assert_eq!(
            next_piece(data, frontier + BLOCK, 32 * MIB, 4 * MIB),
            None,
            "less than a whole piece short of the target waits for more data"
        );
        assert_eq!(next_piece(data, target, 32 * MIB, 4 * MIB), None);
        assert_eq!(next_piece(data, target + MIB, 32 * MIB, 4 * MIB), None);
    }

    #[test]
    fn a_writer_that_overtook_the_frontier_is_zeroed_ahead_of_from_its_end() {
        assert_eq!(
            next_piece(8 * MIB, MIB, 32 * MIB, 4 * MIB),
            Some(8 * MIB..8 * MIB + ZERO_WRITE_BYTES)
        );
    }

    #[test]
    fn never_zeroes_past_the_allocated_size() {
        assert_eq!(next_piece(0, 0, 64 * 1024, 4 * MIB), Some(0..64 * 1024));
        assert_eq!(next_piece(0, 0, 0, 4 * MIB), None);
        assert_eq!(next_piece(MIB, MIB, MIB + 100, 4 * MIB), None);
        assert_eq!(
            next_piece(0, 0, BLOCK + 100, 4 * MIB),
            Some(0..BLOCK),
            "a partial last block is left alone"
        );
    }

    #[test]
    fn zero_ahead_bytes_turns_filling_off() {
        assert_eq!(next_piece(0, 0, 32 * MIB, 0), None);
        assert_eq!(next_piece(5 * BLOCK, 0, 32 * MIB, 0), None);
        assert_eq!(
            next_piece(0, 0, 32 * MIB, ZERO_WRITE_BYTES - BLOCK),
            None,
            "less than one piece ahead never fills"
        );
    }

    #[test]
    fn every_piece_is_aligned_within_bounds_and_after_the_data() {
        for data in [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 5, MIB, 31 * MIB] {
            for frontier in [0, BLOCK, MIB, 2 * MIB + BLOCK, 40 * MIB] {
                for size in [0, BLOCK, MIB, 32 * MIB, 32 * MIB + 17] {
                    for ahead in [0, BLOCK, ZERO_WRITE_BYTES, 4 * MIB] {
                        let Some(p) = next_piece(data, frontier, size, ahead) else {
                            continue;
                        };
                        assert!(p.start < p.end);
                        assert_eq!(p.start % BLOCK, 0);
                        assert_eq!(p.end % BLOCK, 0);
                        assert!(p.start >= data, "{p:?} overlaps data ending {data}");
                        assert!(p.start >= frontier);
                        assert!(p.end <= size);
                        assert!(p.end - p.start <= ZERO_WRITE_BYTES);
                        assert!(
                            p.end - p.start == ZERO_WRITE_BYTES || p.end == size / BLOCK * BLOCK,
                            "{p:?}: short pieces only at the end of the allocation"
                        );
                        assert!(p.end <= data.next_multiple_of(BLOCK) + ahead);
                    }
                }
            }
        }
    }
}
