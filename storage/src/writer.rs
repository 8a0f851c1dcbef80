//! The aligned write-behind buffer of the active segment.
//!
//! O_DIRECT writes must start at block-aligned positions and cover whole blocks. Appends
//! are copied into a DMA buffer that starts at `align_down(end)`; full buffers are queued
//! for writing. A flush queues the partly filled buffer too, zero-padded to the next
//! block, and remembers that last partial block (`tail`): the next buffer starts with
//! those bytes and rewrites the block when it is written. So every write is aligned,
//! the file only ever holds whole blocks, and nothing on the append path reads the disk.
//!
//! That rewrite must not be in flight together with the partial write it follows
//! ([`WriteItem::rewrites_tail`]), so it waits for it. To keep the wait off every
//! later write, the buffer that rewrites the block is one block long: the buffers
//! after it start at a block boundary and overlap nothing in flight.
//!
//! This type only moves bytes between buffers; the log issues the queued writes.

use std::collections::VecDeque;

use glommio::io::DmaBuffer;

use crate::config::BLOCK_BYTES;

const BLOCK: u64 = BLOCK_BYTES as u64;

/// A buffer ready to be written at `position`.
pub(crate) struct WriteItem {
    pub position: u64,
    pub buffer: DmaBuffer,
    /// True when this write starts in the block the previous (partial) write ended in:
    /// it must not be in flight at the same time as that write.
    pub rewrites_tail: bool,
    /// The first byte this write changes in the file. The bytes before it in its
    /// first block are rewritten unchanged (they are the tail the previous write
    /// put there), so a read of them is not disturbed by this write.
    pub fresh_from: u64,
}

/// Where appended bytes wait until they are written.
pub(crate) struct WriteBehind {
    buffer_bytes: usize,
    current: Option<DmaBuffer>,
    /// File position of `current[0]`, block-aligned.
    current_position: u64,
    /// Valid bytes in `current`.
    current_len: usize,
    /// File position of the first byte of `current` that was not already in the
    /// file (past the tail it starts with).
    current_fresh: u64,
    /// With no current buffer: the bytes of the partial block at `align_down(end)`.
    tail: Vec<u8>,
    /// Logical end of appended data (segment size).
    end: u64,
    /// Everything before this position is queued, in flight, or on disk.
    queued_through: u64,
    ready: VecDeque<WriteItem>,
    last_queued_was_partial: bool,
}

impl WriteBehind {
    /// A writer resuming at `end`; `tail` holds the bytes of `[align_down(end), end)`.
    pub fn new(buffer_bytes: usize, end: u64, tail: Vec<u8>) -> Self {
        assert_eq!(
            tail.len() as u64,
            end % BLOCK,
            "tail must be the partial last block"
        );
        Self {
            buffer_bytes,
            current: None,
            current_position: 0,
            current_len: 0,
            current_fresh: 0,
            tail,
            end,
            queued_through: end,
            ready: VecDeque::new(),
            // The tail block on disk is final: no write is in flight for it.
            last_queued_was_partial: false,
        }
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    /// Copies `data` into write-behind buffers, allocating them with `alloc`; full
    /// buffers are queued.
    pub fn append(&mut self, mut data: &[u8], alloc: &dyn Fn(usize) -> DmaBuffer) {
        while !data.is_empty() {
            let buffer_bytes = self.buffer_bytes;
            if self.current.is_none() {
                let size = if self.tail.is_empty() {
                    buffer_bytes
                } else {
                    BLOCK_BYTES
                };
                let mut buf = alloc(size);
                let tail_len = self.tail.len();
                buf.as_bytes_mut()[..tail_len].copy_from_slice(&self.tail);
                self.tail.clear();
                self.current_position = self.end - tail_len as u64;
                self.current_fresh = self.end;
                self.current_len = tail_len;
                self.current = Some(buf);
            }
            let Some(buf) = self.current.as_mut() else {
                unreachable!("allocated above")
            };
            let capacity = buf.len();
            let n = data.len().min(capacity - self.current_len);
            buf.as_bytes_mut()[self.current_len..self.current_len + n].copy_from_slice(&data[..n]);
            self.current_len += n;
            self.end += n as u64;
            data = &data[n..];
            if self.current_len == capacity {
                self.queue_current();
            }
        }
    }

    /// Queues the partly filled buffer (zero-padded to a whole block) so a flush can
    /// write it; keeps its last partial block as the tail for the next buffer.
    /// Returns false when there was nothing new to queue.
    pub fn queue_partial(&mut self) -> bool {
        if self.queued_through == self.end || self.current.is_none() {
            return false;
        }
        let len = self.current_len;
        let padded = len.next_multiple_of(BLOCK_BYTES);
        let tail_start = len - len % BLOCK_BYTES;
        if let Some(buf) = self.current.as_mut() {
            buf.as_bytes_mut()[len..padded].fill(0);
            self.tail = buf.as_bytes()[tail_start..len].to_vec();
            buf.trim_to_size(padded);
        }
        self.queue_current();
        true
    }

    fn queue_current(&mut self) {
        let Some(buffer) = self.current.take() else {
            return;
        };
        let partial = self.current_len % BLOCK_BYTES != 0;
        self.ready.push_back(WriteItem {
            position: self.current_position,
            buffer,
            rewrites_tail: self.last_queued_was_partial,
            fresh_from: self.current_fresh,
        });
        self.last_queued_was_partial = partial;
        self.queued_through = self.end;
        self.current_len = 0;
    }

    pub fn pop_ready(&mut self) -> Option<WriteItem> {
        self.ready.pop_front()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Lowest file position whose bytes may not be on disk, given the lowest start of
    /// a write in flight: bytes below it can be read back from the file.
    pub fn stable_position(&self, first_inflight: Option<u64>) -> u64 {
        let mut stable = self.queued_through;
        if let Some(front) = self.ready.front() {
            stable = stable.min(front.position);
        }
        if let Some(p) = first_inflight {
            stable = stable.min(p);
        }
        stable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DmaBuffer has no public constructor outside an executor; these tests run in one.
    fn with_alloc(f: impl FnOnce(&dyn Fn(usize) -> DmaBuffer) + Send + 'static) {
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let dir = tempfile::tempdir().unwrap();
                let file = glommio::io::DmaFile::create(dir.path().join("f"))
                    .await
                    .unwrap();
                f(&|n| file.alloc_dma_buffer(n));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn full_buffers_are_queued_aligned_and_partials_keep_the_tail() {
        with_alloc(|alloc| {
            let mut w = WriteBehind::new(8192, 0, Vec::new());
            w.append(&[1u8; 5000], alloc);
            assert!(!w.has_ready());
            assert!(w.queue_partial());
            assert!(!w.queue_partial(), "nothing new");
            let item = w.pop_ready().unwrap();
            assert_eq!(
                (item.position, item.buffer.len(), item.rewrites_tail),
                (0, 8192, false)
            );
            assert_eq!(item.fresh_from, 0);
            assert_eq!(item.buffer.as_bytes()[4999], 1);
            assert_eq!(item.buffer.as_bytes()[5000], 0, "zero padding");
            // 5000 = 4096 + 904: a one-block buffer at 4096 rewrites the block with the
            // 904-byte tail; the next full buffer starts at the block boundary after it.
            w.append(&[2u8; 12_000], alloc);
            let head = w.pop_ready().unwrap();
            assert_eq!(
                (head.position, head.buffer.len(), head.rewrites_tail),
                (4096, 4096, true)
            );
            assert_eq!(head.fresh_from, 5000, "the tail is already in the file");
            assert_eq!(head.buffer.as_bytes()[903], 1);
            assert_eq!(head.buffer.as_bytes()[904], 2);
            let item = w.pop_ready().unwrap();
            assert_eq!(
                (item.position, item.buffer.len(), item.rewrites_tail),
                (8192, 8192, false)
            );
            assert_eq!(item.buffer.as_bytes()[0], 2);
            assert!(!w.has_ready());
            assert_eq!(w.end(), 17_000);
            assert_eq!(w.stable_position(None), 16_384);
            assert_eq!(w.stable_position(Some(4096)), 4096);
            // A partial block whose tail sits in the one-block buffer itself.
            let mut w = WriteBehind::new(8192, 0, Vec::new());
            w.append(&[3u8; 100], alloc);
            assert!(w.queue_partial());
            w.pop_ready().unwrap();
            w.append(&[4u8; 100], alloc);
            assert!(w.queue_partial());
            let head = w.pop_ready().unwrap();
            assert_eq!(
                (head.position, head.buffer.len(), head.rewrites_tail),
                (0, 4096, true)
            );
            assert_eq!(&head.buffer.as_bytes()[98..102], &[3, 3, 4, 4]);
            w.append(&[5u8; 8192], alloc);
            let again = w.pop_ready().unwrap();
            assert_eq!(
                (again.position, again.buffer.len(), again.rewrites_tail),
                (0, 4096, true)
            );
            assert_eq!(again.buffer.as_bytes()[4095], 5);
            assert_eq!(w.end(), 8392);
        });
    }
}
