//! CRC sealing for fuzz inputs: a random mutation almost never leaves a valid
//! CRC-32C behind, which would keep the fuzzer out of everything past the CRC
//! check. Targets seal the batches in their input (when its first byte says so)
//! so both paths, a bad CRC and what follows a good one, get explored.

/// Where the CRC sits in a batch and where the bytes it covers start.
const CRC_AT: usize = 17;
const CRC_COVERS_FROM: usize = 21;
const LOG_OVERHEAD: usize = 12;

/// Rewrites the CRC of each batch in the chain starting at `buf[0]`, as far as
/// the batch lengths chain within `buf`.
pub fn seal_batches(buf: &mut [u8]) {
    let mut pos = 0usize;
    while let Some(len_field) = buf.get(pos + 8..pos + LOG_OVERHEAD) {
        let batch_len = i32::from_be_bytes(len_field.try_into().expect("four bytes"));
        let Ok(batch_len) = usize::try_from(batch_len) else {
            return;
        };
        let end = pos + LOG_OVERHEAD + batch_len;
        if batch_len < CRC_COVERS_FROM - LOG_OVERHEAD || end > buf.len() {
            return;
        }
        let crc = crc32c::crc32c(&buf[pos + CRC_COVERS_FROM..end]);
        buf[pos + CRC_AT..pos + CRC_COVERS_FROM].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}
