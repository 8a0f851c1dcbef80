//! Kafka's four record codecs, as the records section of a batch uses them
//! (attribute bits 0-2): gzip (1), snappy (2, in the xerial framing Kafka's Java
//! client writes, or raw), lz4 (3, the LZ4 frame format) and zstd (4, one frame).
//!
//! All pure Rust (flate2 on miniz_oxide, snap, lz4_flex, ruzstd), so the build
//! compiles no C. Decompression is always bounded: a few compressed bytes can
//! expand without limit, so every reader stops with an error once it has produced
//! more than the caller's limit, and nothing is allocated from a size the input
//! declares beyond it.

use std::io::{self, Read};

use crate::BatchError;

/// The codecs, by their attribute value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    /// The codec of attribute bits 0-2; `None` for the unassigned values 5-7.
    pub fn from_id(id: i16) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    /// Kafka's `compression.type` names.
    pub fn from_name(name: &str) -> Option<Codec> {
        Some(match name {
            "none" => Codec::None,
            "gzip" => Codec::Gzip,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// The xerial snappy-java stream header: magic, version 1, compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per xerial block (snappy-java's default).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// Most output bytes snappy makes per input byte: a 3-byte copy element emits at
/// most 64 bytes (21.3 per byte); literals emit one per byte.
const SNAPPY_EXPANSION_MAX: usize = 22;

fn corrupt(codec: Codec, e: impl std::fmt::Display) -> BatchError {
    BatchError::Decode(format!("{} records do not decompress: {e}", codec.name()))
}

/// A reader of the decompressed records section. It yields at most `limit` bytes
/// before failing; a caller that reads on past `limit` gets an error from the
/// codecs that state sizes (snappy) and must bound the others with `take`.
pub fn reader<'a>(
    codec: Codec,
    data: &'a [u8],
    limit: usize,
) -> Result<Box<dyn Read + 'a>, BatchError> {
    Ok(match codec {
        Codec::None => Box::new(data),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Codec::Snappy => Box::new(SnappyReader::new(data, limit)),
        Codec::Lz4 => Box::new(crate::lz4::Lz4Reader::new(data)),
        Codec::Zstd => {
            Box::new(ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| corrupt(codec, e))?)
        }
    })
}

/// Decompresses all of `data`; more than `limit` bytes of output is an error.
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(2).min(limit));
    let read = reader(codec, data, limit)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out);
    read.map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(BatchError::Decode(format!(
            "{} records decompress to more than {limit} bytes",
            codec.name()
        )));
    }
    Ok(out)
}

/// Compresses `data` for a records section.
pub fn compress(codec: Codec, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    use std::io::Write;
    let fail = |e: io::Error| BatchError::Build(format!("{} compression: {e}", codec.name()));
    Ok(match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).map_err(fail)?;
            enc.finish().map_err(fail)?
        }
        Codec::Snappy => {
            let mut out = XERIAL_HEADER.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|e| fail(io::Error::other(e)))?;
                let len = u32::try_from(compressed.len()).map_err(|e| fail(io::Error::other(e)))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        Codec::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).map_err(fail)?;
            enc.finish().map_err(|e| fail(io::Error::other(e)))?
        }
        Codec::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    })
}

/// Snappy as Kafka clients write it: the xerial framing (a 16-byte header, then
/// blocks of `u32 length | raw snappy`), or one raw snappy block when the header is
/// absent (as snappy-java reads it). Each block's stated size is checked before it
/// is decoded, so the reader holds at most one block.
struct SnappyReader<'a> {
    rest: &'a [u8],
    framed: bool,
    /// Largest block size accepted (the caller's output limit).
    limit: usize,
    block: Vec<u8>,
    at: usize,
    done: bool,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8], limit: usize) -> Self {
        let framed = data.starts_with(&XERIAL_HEADER[..8]);
        let rest = if framed {
            data.get(XERIAL_HEADER.len()..).unwrap_or_default()
        } else {
            data
        };
        Self {
            rest,
            framed,
            limit,
            block: Vec::new(),
            at: 0,
            done: false,
        }
    }

    /// Decodes the next block into `self.block`; `false` at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
        let raw = if self.framed {
            if self.rest.is_empty() {
                return Ok(false);
            }
            let Some((len, tail)) = self.rest.split_first_chunk::<4>() else {
                return Err(bad("a snappy block length is cut short".into()));
            };
            let len = u32::from_be_bytes(*len) as usize;
            if len > tail.len() {
                return Err(bad(format!("a snappy block of {len} bytes is cut short")));
            }
            let (raw, tail) = tail.split_at(len);
            self.rest = tail;
            raw
        } else {
            if self.done {
                return Ok(false);
            }
            self.done = true;
            std::mem::take(&mut self.rest)
        };
        let size = snap::raw::decompress_len(raw).map_err(|e| bad(e.to_string()))?;
        // The size the block states is checked before anything is allocated.
        if size > self.limit {
            return Err(bad(format!(
                "a snappy block decompresses to more than {} bytes ({size})",
                self.limit
            )));
        }
        // Nor is a stated size more than the block's bytes can expand to: each
        // output byte comes from a literal (1:1) or a copy element (3 input bytes
        // for at most 64 output bytes), so a few bytes cannot make us allocate
        // megabytes they could never fill.
        let expandable = raw.len().saturating_mul(SNAPPY_EXPANSION_MAX);
        if size > expandable {
            return Err(bad(format!(
                "a snappy block of {} bytes states {size} decompressed bytes, more than \
                 snappy expands to ({expandable})",
                raw.len()
            )));
        }
        self.block.resize(size, 0);
        let n = snap::raw::Decoder::new()
            .decompress(raw, &mut self.block)
            .map_err(|e| bad(e.to_string()))?;
        self.block.truncate(n);
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(
                decompress(codec, &packed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn output_past_the_limit_is_an_error_not_an_allocation() {
        let zeros = vec![0u8; 4 << 20];
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let packed = compress(codec, &zeros).unwrap();
            assert!(packed.len() < zeros.len() / 4, "{codec:?} compresses zeros");
            let e = decompress(codec, &packed, 1 << 20).unwrap_err();
            assert!(e.to_string().contains("more than"), "{codec:?}: {e}");
        }
        // A raw snappy block declaring a huge size is refused before allocation.
        let raw = [0xff, 0xff, 0xff, 0xff, 0x0f]; // a raw block of 2^32 - 1 bytes
        let e = decompress(Codec::Snappy, &raw, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_for_every_codec() {
        let junk = b"definitely not compressed data, just some bytes".to_vec();
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            assert!(decompress(codec, &junk, 1 << 20).is_err(), "{codec:?}");
            // Cuts into the compressed data (LZ4's decoder forgives a missing end
            // mark: everything it returns was there).
            for cut in [9, 17, 40] {
                let packed = compress(codec, &sample()).unwrap();
                let short = &packed[..packed.len().saturating_sub(cut)];
                assert!(
                    decompress(codec, short, 1 << 22).is_err(),
                    "{codec:?} cut {cut}"
                );
            }
        }
    }
}
