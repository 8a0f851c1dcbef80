//! A few bytes of compressed records must not make the broker allocate what their
//! header merely claims: a snappy block's stated length is believed only as far as
//! snappy can expand the bytes at hand, an lz4 frame's stated block size only as
//! far as lz4 can expand each block. Measured with a counting allocator, so this
//! file holds nothing else (tests run on several threads; the peak is per test
//! binary, so each case runs in one test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringlog_schema::compression::{decompress, Codec};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The broker's bound on a batch's decompressed records.
const LIMIT: usize = 64 << 20;

/// Most bytes `decompress` held at once for `data`.
fn peak_while_decompressing(codec: Codec, data: &[u8]) -> (usize, String) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let outcome = match decompress(codec, data, LIMIT) {
        Ok(v) => format!("{} bytes", v.len()),
        Err(e) => e.to_string(),
    };
    (PEAK.load(Ordering::Relaxed) - before, outcome)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn small_inputs_claiming_large_outputs_allocate_little() {
    // A raw snappy block stating 60 MiB, holding one 4-byte literal.
    let mut raw = Vec::new();
    varint(60 << 20, &mut raw);
    raw.extend_from_slice(&[3 << 2, b'a', b'b', b'c', b'd']);
    // The same block in Kafka's xerial framing, three times over.
    let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    for _ in 0..3 {
        framed.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        framed.extend_from_slice(&raw);
    }
    for (what, data) in [("raw snappy", &raw), ("xerial snappy", &framed)] {
        let (peak, outcome) = peak_while_decompressing(Codec::Snappy, data);
        assert!(
            peak <= 1 << 20,
            "{what}: {} input bytes made decompression hold {peak} bytes ({outcome})",
            data.len()
        );
        assert!(outcome.contains("snappy"), "{what}: {outcome}");
    }

    // Valid lz4 frames of 50 bytes stating 4 MiB blocks, linked and independent.
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    use std::io::Write;
    for mode in [BlockMode::Linked, BlockMode::Independent] {
        let info = FrameInfo::new()
            .block_size(BlockSize::Max4MB)
            .block_mode(mode);
        let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
        encoder.write_all(&[7u8; 50]).expect("encodes");
        let frame = encoder.finish().expect("encodes");
        let (peak, outcome) = peak_while_decompressing(Codec::Lz4, &frame);
        assert_eq!(outcome, "50 bytes");
        assert!(
            peak <= 1 << 20,
            "lz4 {mode:?}: {} input bytes made decompression hold {peak} bytes",
            frame.len()
        );
    }
}
