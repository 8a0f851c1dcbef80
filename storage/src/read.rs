//! The read path's disk reads: batches from a segment file at a position, and the
//! position of the batch holding an offset. Every batch read from disk is
//! CRC-checked before it is handed out; a batch that fails is reported as
//! corruption at its position, never served.

use std::path::Path;

use bytes::Bytes;
use glommio::io::DmaFile;
use ringlog_schema::{BatchHeader, RecordBatch};

use crate::config::BLOCK_BYTES;
use crate::error::io_err;
use crate::segment::Segment;
use crate::{Result, StorageError};

const BLOCK: u64 = BLOCK_BYTES as u64;

/// Reads whole batches from `position` (a batch start at or before `from`) up to
/// `limit`, skipping batches that end before `from`, verifying each CRC; at most
/// `max_bytes` after the first batch.
pub(crate) async fn read_batches(
    file: &DmaFile,
    path: &Path,
    mut position: u64,
    limit: u64,
    from: i64,
    max_bytes: usize,
    max_batch_bytes: usize,
) -> Result<Vec<Bytes>> {
    let corrupt = |position: u64, reason: String| StorageError::Corruption {
        segment: path.to_path_buf(),
        position,
        reason,
    };
    let mut want = max_bytes.max(ringlog_schema::BATCH_HEADER_LEN) + BLOCK_BYTES;
    loop {
        if position >= limit {
            return Ok(Vec::new());
        }
        let aligned = position - position % BLOCK;
        let len = (want as u64 + (position - aligned))
            .min(limit - aligned)
            .next_multiple_of(BLOCK) as usize;
        let data = file
            .read_at_aligned(aligned, len)
            .await
            .map_err(|e| io_err("read", path, e))?;
        let data_end = ((aligned + data.len() as u64).min(limit) - aligned) as usize;
        let mut at = (position - aligned) as usize;
        let mut first = None;
        let mut taken = 0usize;
        while at < data_end {
            let here = &data[at..data_end];
            let size = match RecordBatch::peek_size(here, max_batch_bytes) {
                Ok(Some(size)) => size,
                Ok(None) => break,
                Err(e) => return Err(corrupt(aligned + at as u64, e.to_string())),
            };
            if here.len() < size {
                break;
            }
            let batch = &here[..size];
            RecordBatch::validate_slice(batch, max_batch_bytes)
                .map_err(|e| corrupt(aligned + at as u64, e.to_string()))?;
            let last = BatchHeader::read(batch).map_or(i64::MIN, |h| h.last_offset());
            if last >= from {
                if first.is_some() && taken + size > max_bytes {
                    break;
                }
                first.get_or_insert(at);
                taken += size;
            }
            at += size;
        }
        match first {
            Some(start) => return Ok(vec![Bytes::copy_from_slice(&data[start..start + taken])]),
            None if at > (position - aligned) as usize => {
                // Skipped batches below `from`; continue after them.
                position = aligned + at as u64;
            }
            None => {
                // The first batch did not fit in what was read. Either the file is
                // shorter than the log's records of it, or the batch runs past the data,
                // or the read was too small: only the last case reads again, larger, so
                // this loop always progresses.
                let read_end = aligned + data.len() as u64;
                if read_end < limit && data.len() < len {
                    return Err(corrupt(
                        read_end,
                        format!("segment file ends at {read_end}, before the {limit} bytes of data it should hold"),
                    ));
                }
                let size = RecordBatch::peek_size(&data[at..data_end], max_batch_bytes)
                    .map_err(|e| corrupt(position, e.to_string()))?;
                match size {
                    Some(size) if aligned + (at + size) as u64 > limit => {
                        return Err(corrupt(
                            position,
                            format!(
                                "batch of {size} bytes runs past the end of the data at {limit}"
                            ),
                        ));
                    }
                    Some(size) if size + BLOCK_BYTES > want => want = size + BLOCK_BYTES,
                    _ => {
                        return Err(corrupt(
                            position,
                            format!("cannot read a whole batch from {} bytes", data_end - at),
                        ))
                    }
                }
            }
        }
    }
}

/// File position of the batch containing `offset` in `seg` (all of it on disk).
pub(crate) async fn find_batch_start(
    seg: &Segment,
    offset: i64,
    max_batch_bytes: usize,
) -> Result<u64> {
    let mut position = u64::from(seg.offset_index.floor(seg.relative(offset)));
    loop {
        if position >= seg.size {
            return Ok(seg.size);
        }
        let data = seg
            .file
            .get()
            .await?
            .read_at(position, ringlog_schema::BATCH_HEADER_LEN)
            .await
            .map_err(|e| io_err("read", &seg.path, e))?;
        let corrupt = |reason: String| StorageError::Corruption {
            segment: seg.path.clone(),
            position,
            reason,
        };
        let size =
            RecordBatch::peek_size(&data, max_batch_bytes).map_err(|e| corrupt(e.to_string()))?;
        let (Some(size), Some(header)) = (size, BatchHeader::read(&data)) else {
            return Err(corrupt("short batch header".into()));
        };
        let last = header.last_offset();
        if last >= offset {
            return Ok(position);
        }
        position += size as u64;
    }
}
