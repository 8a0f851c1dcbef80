//! Recovery over arbitrary segment bytes: the batch walk, torn-tail versus
//! corruption classification, the recovery rule per segment kind, index building,
//! and the index file decoder. Input: one byte choosing the segment kind (bit 7:
//! seal the CRCs, see `seal`), eight bytes of base offset, then the segment image.
#![no_main]

mod seal;

use libfuzzer_sys::fuzz_target;
use ringlog_storage::image::{read_index_files, scan_image, ImageEnd, ScanMode};

/// Kafka's default `max.message.bytes`, as the broker opens logs.
const MAX_BATCH_BYTES: usize = 1_048_588;
const INDEX_INTERVAL: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let mode = match (data[0] & 0x7f) % 3 {
        0 => ScanMode::Tail,
        1 => ScanMode::Closed,
        _ => ScanMode::Compacted,
    };
    let base = i64::from_le_bytes(data[1..9].try_into().expect("eight bytes"));
    let mut image = data[9..].to_vec();
    if data[0] & 0x80 != 0 {
        seal::seal_batches(&mut image);
    }
    let image = &image[..];
    let scan = scan_image(image, base, mode, MAX_BATCH_BYTES, INDEX_INTERVAL);
    assert!(scan.data_bytes <= image.len() as u64);
    match &scan.end {
        ImageEnd::Clean => assert_eq!(scan.data_bytes, image.len() as u64),
        ImageEnd::Truncated { at, .. } => {
            assert!(
                matches!(mode, ScanMode::Tail),
                "only the newest segment is truncated"
            );
            assert_eq!(*at, scan.data_bytes);
            // What recovery keeps opens cleanly next time, to the same offset.
            let kept = &image[..*at as usize];
            let again = scan_image(kept, base, mode, MAX_BATCH_BYTES, INDEX_INTERVAL);
            assert_eq!(again.end, ImageEnd::Clean);
            assert_eq!(again.next_offset, scan.next_offset);
            assert_eq!(again.batches, scan.batches);
        }
        ImageEnd::Corrupt {
            position,
            continuation_at,
            ..
        } => {
            assert_eq!(*position, scan.data_bytes);
            assert!(continuation_at.is_none_or(|c| c > *position));
        }
    }
    // The index files a roll writes read back as the same segment.
    if scan.batches > 0 {
        let read = read_index_files(&scan.index_file, &scan.time_index_file, base)
            .expect("index files written for valid batches read back");
        assert_eq!(read.next_offset, scan.next_offset);
        assert_eq!(read.data_bytes, scan.data_bytes);
    }
    // The image taken as a pair of index files: a decoder that never panics.
    let half = image.len() / 2;
    let _ = read_index_files(&image[..half], &image[half..], base);
});
