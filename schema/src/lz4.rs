//! Reading LZ4 frames (the format Kafka clients write for `compression.type=lz4`)
//! with memory proportional to what the frame's bytes can decompress to.
//!
//! Why not `lz4_flex::frame::FrameDecoder`: it reserves buffers for the block size
//! the frame header *states* (up to 4 MiB, twice over for linked blocks), so a
//! 27-byte batch stating 4 MiB blocks costs ~0.3 ms and 12 MiB to decompress —
//! thousands of them in one produce request would stall the shard for seconds.
//! Here a block's buffer is sized by its own compressed length (LZ4 expands at most
//! 255:1), and linked blocks keep only the 64 KiB window the format allows matches
//! to reach. Checksums are verified as lz4 does: the header's, each block's when
//! flagged, and the content's when flagged.

use std::hash::Hasher;
use std::io::{self, Read};

use twox_hash::XxHash32;

const MAGIC: u32 = 0x184D_2204;
/// How far back a match may reach: the dictionary linked blocks keep.
const WINDOW_BYTES: usize = 64 * 1024;
/// Most output bytes per input byte of a compressed block (a match's length
/// continues with one byte per 255), plus slack for a block's last literals.
const EXPANSION_MAX: usize = 255;
const EXPANSION_SLACK: usize = 64;
/// High bit of a block size: the block is stored uncompressed.
const UNCOMPRESSED_FLAG: u32 = 0x8000_0000;

fn bad(e: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.into())
}

/// A streaming reader of one LZ4 frame's content.
pub(crate) struct Lz4Reader<'a> {
    rest: &'a [u8],
    /// Parsed once the first read needs it.
    frame: Option<FrameDescriptor>,
    /// The decoded block is `block[..len]`; the buffer keeps its size between
    /// blocks so it is zeroed once, not per block.
    block: Vec<u8>,
    len: usize,
    at: usize,
    /// Linked blocks: the last `WINDOW_BYTES` of output before `block`.
    window: Vec<u8>,
    content_hash: XxHash32,
    done: bool,
}

#[derive(Clone, Copy, Debug)]
struct FrameDescriptor {
    linked: bool,
    block_checksums: bool,
    content_checksum: bool,
    max_block_bytes: usize,
}

impl<'a> Lz4Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            rest: data,
            frame: None,
            block: Vec::new(),
            len: 0,
            at: 0,
            window: Vec::new(),
            content_hash: XxHash32::with_seed(0),
            done: false,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> io::Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(bad(format!("lz4 frame cut short in its {what}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn take_u32(&mut self, what: &str) -> io::Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn read_descriptor(&mut self) -> io::Result<FrameDescriptor> {
        let magic = self.take_u32("magic number")?;
        if magic != MAGIC {
            return Err(bad(format!("not an lz4 frame (magic {magic:#010x})")));
        }
        let descriptor_at = self.rest;
        let flg_bd = self.take(2, "frame descriptor")?;
        let (flg, bd) = (flg_bd[0], flg_bd[1]);
        if flg >> 6 != 1 {
            return Err(bad(format!("lz4 frame version {} (1 expected)", flg >> 6)));
        }
        if flg & 0b10 != 0 || bd & 0b1000_1111 != 0 {
            return Err(bad("lz4 frame descriptor sets reserved bits"));
        }
        if flg & 1 != 0 {
            return Err(bad("lz4 frames with a dictionary id are not supported"));
        }
        let max_block_bytes = match (bd >> 4) & 0b111 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            id => return Err(bad(format!("lz4 block size id {id} (4 to 7 expected)"))),
        };
        if flg & 0b1000 != 0 {
            // The content size: a hint only, never used to size anything.
            self.take(8, "content size")?;
        }
        let descriptor_len = descriptor_at.len() - self.rest.len();
        let expected = (XxHash32::oneshot(0, &descriptor_at[..descriptor_len]) >> 8) as u8;
        let checksum = self.take(1, "header checksum")?[0];
        if checksum != expected {
            return Err(bad("lz4 frame header checksum does not match"));
        }
        Ok(FrameDescriptor {
            linked: flg & 0b10_0000 == 0,
            block_checksums: flg & 0b1_0000 != 0,
            content_checksum: flg & 0b100 != 0,
            max_block_bytes,
        })
    }

    /// Decodes the next block into `self.block`; `false` at the end mark.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let frame = match self.frame {
            Some(f) => f,
            None => {
                let f = self.read_descriptor()?;
                self.frame = Some(f);
                f
            }
        };
        if frame.linked {
            // The block about to be replaced becomes part of the window.
            self.window.extend_from_slice(&self.block[..self.len]);
            let excess = self.window.len().saturating_sub(WINDOW_BYTES);
            self.window.drain(..excess);
        }
        self.len = 0;
        self.at = 0;
        let size = self.take_u32("block size")?;
        if size == 0 {
            self.done = true;
            if frame.content_checksum {
                let stated = self.take_u32("content checksum")?;
                if stated != self.content_hash.finish_32() {
                    return Err(bad("lz4 content checksum does not match"));
                }
            }
            return Ok(false);
        }
        let len = (size & !UNCOMPRESSED_FLAG) as usize;
        if len > frame.max_block_bytes {
            return Err(bad(format!(
                "lz4 block of {len} bytes exceeds the frame's {} byte blocks",
                frame.max_block_bytes
            )));
        }
        let raw = self.take(len, "block")?;
        if frame.block_checksums {
            let stated = self.take_u32("block checksum")?;
            if stated != XxHash32::oneshot(0, raw) {
                return Err(bad("lz4 block checksum does not match"));
            }
        }
        if size & UNCOMPRESSED_FLAG != 0 {
            if self.block.len() < len {
                self.block.resize(len, 0);
            }
            self.block[..len].copy_from_slice(raw);
            self.len = len;
        } else {
            let room = frame
                .max_block_bytes
                .min(len.saturating_mul(EXPANSION_MAX) + EXPANSION_SLACK);
            if self.block.len() < room {
                self.block.resize(room, 0);
            }
            let out = &mut self.block[..room];
            // Kafka's clients write independent blocks (its own reader refuses
            // linked ones): those take the decoder's faster path without a dictionary.
            let n = if self.window.is_empty() {
                lz4_flex::block::decompress_into(raw, out)
            } else {
                lz4_flex::block::decompress_into_with_dict(raw, out, &self.window)
            }
            .map_err(|e| bad(format!("lz4 block does not decompress: {e}")))?;
            self.len = n;
        }
        if frame.content_checksum {
            self.content_hash.write(&self.block[..self.len]);
        }
        Ok(true)
    }
}

impl Read for Lz4Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.len {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.len - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    use std::io::Write;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 997) as u8).collect()
    }

    fn encode(data: &[u8], info: FrameInfo) -> Vec<u8> {
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode(frame: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Lz4Reader::new(frame).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn frames_of_every_layout_decode_to_their_content() {
        let data = sample(700_000);
        for size in [BlockSize::Max64KB, BlockSize::Max256KB, BlockSize::Max4MB] {
            for mode in [BlockMode::Linked, BlockMode::Independent] {
                for checksums in [false, true] {
                    let info = FrameInfo::new()
                        .block_size(size)
                        .block_mode(mode)
                        .block_checksums(checksums)
                        .content_checksum(checksums)
                        .content_size(checksums.then_some(data.len() as u64));
                    let frame = encode(&data, info);
                    assert_eq!(
                        decode(&frame).unwrap(),
                        data,
                        "{size:?} {mode:?} {checksums}"
                    );
                }
            }
        }
        // Incompressible data goes in uncompressed blocks.
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(decode(&encode(&noise, FrameInfo::new())).unwrap(), noise);
        assert_eq!(
            decode(&encode(&[], FrameInfo::new())).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn damaged_frames_are_errors() {
        let data = sample(100_000);
        let info = FrameInfo::new()
            .block_checksums(true)
            .content_checksum(true);
        let frame = encode(&data, info);
        for at in [0, 4, 5, 6, 12, frame.len() / 2, frame.len() - 2] {
            let mut bad = frame.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {at}");
        }
        for cut in [3, 6, 7, 20, frame.len() - 1] {
            assert!(decode(&frame[..cut]).is_err(), "cut at {cut}");
        }
    }
}
