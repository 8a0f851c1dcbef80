//! Property tests: validation never panics on arbitrary bytes, and any single-byte
//! change inside the CRC-covered region of a valid batch is caught.

use bytes::Bytes;
use proptest::prelude::*;

use crate::{BatchBuilder, RecordBatch, CRC_COVERAGE_START};

fn batch_of(values: &[Vec<u8>]) -> Bytes {
    let mut b = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        b.push(None, Some(Bytes::from(v.clone())), &[], 1_000 + i as i64);
    }
    b.build().unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = RecordBatch::peek_size(&bytes, 1 << 20);
        let _ = RecordBatch::validate_slice(&bytes, 1 << 20);
        if let Some(h) = crate::BatchHeader::read(&bytes) {
            let _ = h.last_offset();
        }
        if let Ok(b) = RecordBatch::parse(Bytes::from(bytes)) {
            let _ = b.validate(1 << 20);
            let _ = b.first_record_at_or_after(0);
            let _ = b.records();
            let _ = crate::validate::validate_produced(&b, &Default::default(), 0);
        }
    }

    #[test]
    fn any_flipped_covered_byte_is_detected(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        pick in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let good = batch_of(&values);
        RecordBatch::validate_slice(&good, 1 << 20).unwrap();
        let mut bad = good.to_vec();
        let at = CRC_COVERAGE_START + pick.index(bad.len() - CRC_COVERAGE_START);
        bad[at] ^= flip;
        prop_assert!(RecordBatch::validate_slice(&bad, 1 << 20).is_err());
    }
}

#[test]
fn a_damaged_base_offset_saturates_instead_of_overflowing() {
    let mut bytes = batch_of(&[vec![1], vec![2], vec![3]]).to_vec();
    RecordBatch::set_base_offset(&mut bytes, i64::MAX - 1);
    let header = crate::BatchHeader::read(&bytes).unwrap();
    assert_eq!(header.last_offset_delta, 2);
    assert_eq!(header.last_offset(), i64::MAX);
    assert_eq!(
        RecordBatch::parse(Bytes::from(bytes))
            .unwrap()
            .last_offset(),
        i64::MAX
    );
}
