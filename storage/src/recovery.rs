//! Opening a log's files: index loading, segment scans, torn-tail truncation, and the
//! small file helpers they share with the log (all on glommio I/O).
//!
//! Recovery rule: closed segments were fdatasynced at roll and their index files were
//! written before the next segment existed, so a closed segment with valid index files
//! is trusted; one without is scanned strictly (any bad batch is corruption). The newest
//! segment is trusted only after a clean shutdown; otherwise it is scanned, checking
//! every batch's length, CRC-32C and offset, and truncated at the first torn batch
//! (see `scan::classify_stop` for how torn is told from corrupt).

use std::path::Path;
use std::rc::Rc;

use glommio::io::{Directory, DmaFile, OpenOptions, ReadResult};

use crate::config::BLOCK_BYTES;
use crate::error::io_err;
use crate::index::{OffsetIndex, TimeIndex};
use crate::scan::{classify_stop, step_with_gaps, Step, StopKind};
use crate::segment::Segment;
use crate::{Result, StorageError};

const BLOCK: u64 = BLOCK_BYTES as u64;

/// How strictly a scan treats a bad batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanMode {
    /// The newest segment: a torn tail is truncated.
    Tail,
    /// A closed segment: every byte up to its end must be valid.
    Closed,
    /// A closed segment of a compacted log: as `Closed`, but cleaning may have
    /// removed batches, so offsets only increase.
    Compacted,
}

/// Where a scan ended.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// File size before any truncation.
    pub file_len: u64,
    /// Why the scan stopped before the file end, if it did.
    pub stop_reason: Option<String>,
    /// The scan stopped at zeros: preallocated space never written, the normal end of
    /// an active segment's data rather than a torn write.
    pub stopped_at_zeros: bool,
}

thread_local! {
    /// Devices whose io_uring poll-ring support this thread's glommio has probed.
    static PROBED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> = Default::default();
}

/// Makes glommio's IOPOLL probe for the device holding `dir` give the right answer.
///
/// glommio 0.9.0 decides once per thread and device whether DMA reads go to the
/// IOPOLL ring, by reading the first block of the first DMA file opened there. When
/// that file is new and empty the read "succeeds" with 0 bytes, the device is taken as
/// pollable, and every later read fails with EOPNOTSUPP on devices without poll queues
/// (virtio, most cloud volumes). So before the first DMA open, open a one-block file
/// with data in it; the probe then reads real bytes and learns the truth.
pub async fn probe_device_once(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)
        .map_err(|e| io_err("stat", dir, e))?
        .dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(".dma-probe");
    std::fs::write(&probe, [0xA5u8; BLOCK_BYTES]).map_err(|e| io_err("write", &probe, e))?;
    let opened = DmaFile::open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    opened
        .map_err(|e| io_err("open", &probe, e))?
        .close()
        .await
        .map_err(|e| io_err("close", &probe, e))?;
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

pub(crate) async fn open_rw(path: &Path, create_new: bool) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create_new)
        .dma_open(path)
        .await
        .map_err(|e| io_err(if create_new { "create" } else { "open" }, path, e))
}

pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = Directory::open(dir)
        .await
        .map_err(|e| io_err("open directory", dir, e))?;
    d.sync()
        .await
        .map_err(|e| io_err("fsync directory", dir, e))?;
    d.close()
        .await
        .map_err(|e| io_err("close directory", dir, e))
}

pub(crate) async fn remove_file(path: &Path) -> Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e: std::io::Error = e.into();
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(io_err("remove", path, e))
            }
        }
    }
}

async fn read(file: &DmaFile, seg: &Segment, pos: u64, len: usize) -> Result<ReadResult> {
    file.read_at_aligned(pos, len)
        .await
        .map_err(|e| io_err("read", &seg.path, e))
}

/// The bytes of `[align_down(end), end)`, which the next write rewrites.
pub(crate) async fn read_tail_block(file: &DmaFile, path: &Path, end: u64) -> Result<Vec<u8>> {
    let start = end - end % BLOCK;
    if start == end {
        return Ok(Vec::new());
    }
    let data = file
        .read_at_aligned(start, BLOCK_BYTES)
        .await
        .map_err(|e| io_err("read", path, e))?;
    let want = (end - start) as usize;
    if data.len() < want {
        return Err(StorageError::Corruption {
            segment: path.to_path_buf(),
            position: start,
            reason: format!(
                "file ends {} bytes into its last block, expected {want}",
                data.len()
            ),
        });
    }
    Ok(data[..want].to_vec())
}

/// Scans `seg` (whose indexes are empty and size 0) from position 0, indexing every
/// valid batch, up to `limit` bytes (the file size when `None`). Returns where it
/// stopped; a corrupt batch is an error naming the segment and position.
pub(crate) async fn scan_segment(
    seg: &mut Segment,
    limit: Option<u64>,
    max_batch_bytes: usize,
    index_interval: u32,
    mode: ScanMode,
    read_ahead: usize,
) -> Result<ScanOutcome> {
    let file = seg.file.get().await?;
    let file_len = file
        .file_size()
        .await
        .map_err(|e| io_err("stat", &seg.path, e))?;
    let end = limit.unwrap_or(file_len).min(file_len);
    let mut chunk_pos = 0u64;
    let mut chunk = ReadResult::default();
    let mut ahead: ReadAhead = None;
    loop {
        let pos = seg.size;
        if pos >= end {
            return Ok(ScanOutcome {
                file_len,
                stop_reason: None,
                stopped_at_zeros: false,
            });
        }
        if pos >= chunk_pos + chunk.len() as u64 {
            // Next chunk: the read-ahead if it covers `pos`, else a fresh read.
            let (p, c) = match ahead.take() {
                Some((p, task)) if p <= pos && pos < p + read_ahead as u64 => match task.await {
                    Some(r) => (p, r.map_err(|e| io_err("read", &seg.path, e))?),
                    None => (
                        pos - pos % BLOCK,
                        read(&file, seg, pos - pos % BLOCK, read_ahead).await?,
                    ),
                },
                _ => (
                    pos - pos % BLOCK,
                    read(&file, seg, pos - pos % BLOCK, read_ahead).await?,
                ),
            };
            (chunk_pos, chunk) = (p, c);
            ahead = spawn_read(&file, chunk_pos + chunk.len() as u64, end, read_ahead);
            if pos >= chunk_pos + chunk.len() as u64 {
                let reason = format!(
                    "file ended at {} before the expected {end} bytes",
                    chunk_pos + chunk.len() as u64
                );
                return stop_at(&file, seg, mode, file_len, end, max_batch_bytes, reason).await;
            }
        }
        let chunk_end = (chunk_pos + chunk.len() as u64).min(end);
        let available = &chunk[(pos - chunk_pos) as usize..(chunk_end - chunk_pos) as usize];
        let gaps = matches!(mode, ScanMode::Compacted);
        let outcome = match step_with_gaps(
            available,
            seg.next_offset,
            gaps,
            max_batch_bytes,
            chunk_end >= end,
        ) {
            Step::NeedMore(need) => {
                // A batch straddling the chunk end gets a read of its own.
                let from = pos - pos % BLOCK;
                let len = ((pos - from) as usize + need).next_multiple_of(BLOCK_BYTES);
                let buf = read(&file, seg, from, len).await?;
                let buf_end = (from + buf.len() as u64).min(end);
                match step_with_gaps(
                    &buf[(pos - from) as usize..(buf_end - from) as usize],
                    seg.next_offset,
                    gaps,
                    max_batch_bytes,
                    true,
                ) {
                    Step::NeedMore(_) => Step::Stop("short read".into()),
                    other => other,
                }
            }
            other => other,
        };
        match outcome {
            Step::Batch(b) => {
                seg.on_batch(pos, &b, index_interval);
                glommio::yield_if_needed().await;
            }
            Step::Stop(reason) => {
                return stop_at(&file, seg, mode, file_len, end, max_batch_bytes, reason).await
            }
            Step::NeedMore(_) => unreachable!("resolved above"),
        }
    }
}

/// Decides what the bytes at `seg.size` that are not a valid batch mean.
async fn stop_at(
    file: &DmaFile,
    seg: &Segment,
    mode: ScanMode,
    file_len: u64,
    end: u64,
    max_batch_bytes: usize,
    reason: String,
) -> Result<ScanOutcome> {
    let pos = seg.size;
    let window_pos = pos - pos % BLOCK;
    let window = read(file, seg, window_pos, stop_window_len(max_batch_bytes)).await?;
    let window = &window[..window.len().min((end - window_pos) as usize)];
    let kind = classify_stop(window, window_pos, pos, seg.next_offset, max_batch_bytes);
    match stop_verdict(mode, kind) {
        StopVerdict::Truncate => {
            let head = &window[((pos - window_pos) as usize).min(window.len())..];
            Ok(ScanOutcome {
                file_len,
                stop_reason: Some(reason),
                stopped_at_zeros: starts_with_zeros(head),
            })
        }
        StopVerdict::Corrupt {
            continuation_at: Some(at),
        } => Err(StorageError::Corruption {
            segment: seg.path.clone(),
            position: pos,
            reason: format!("{reason}; valid batches follow at position {at}"),
        }),
        StopVerdict::Corrupt {
            continuation_at: None,
        } => Err(StorageError::Corruption {
            segment: seg.path.clone(),
            position: pos,
            reason: format!("{reason}, inside a closed segment of {end} bytes"),
        }),
    }
}

/// Bytes read from the stop position's block on to classify a stop: the longest
/// batch, a header past it, and the block the stop falls in.
pub(crate) fn stop_window_len(max_batch_bytes: usize) -> usize {
    (max_batch_bytes + 2 * ringlog_schema::BATCH_HEADER_LEN + BLOCK_BYTES)
        .next_multiple_of(BLOCK_BYTES)
}

/// What a scan does at a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopVerdict {
    /// The end of the segment's data: truncate there (newest segment only).
    Truncate,
    /// Damage to report; `continuation_at` where valid batches resume, if any.
    Corrupt { continuation_at: Option<u64> },
}

/// The recovery rule at a stop: only the newest segment may end in a torn tail.
pub(crate) fn stop_verdict(mode: ScanMode, kind: StopKind) -> StopVerdict {
    match (mode, kind) {
        (ScanMode::Tail, StopKind::TornTail) => StopVerdict::Truncate,
        (_, StopKind::Corrupt { continuation_at }) => StopVerdict::Corrupt {
            continuation_at: Some(continuation_at),
        },
        (ScanMode::Closed | ScanMode::Compacted, StopKind::TornTail) => StopVerdict::Corrupt {
            continuation_at: None,
        },
    }
}

/// The stop is at zeros (preallocated space never written), not a torn write.
pub(crate) fn starts_with_zeros(head: &[u8]) -> bool {
    head.iter()
        .take(ringlog_schema::BATCH_HEADER_LEN)
        .all(|&b| b == 0)
}

type ReadAhead = Option<(
    u64,
    glommio::task::JoinHandle<glommio::Result<ReadResult, ()>>,
)>;

fn spawn_read(file: &Rc<DmaFile>, pos: u64, end: u64, size: usize) -> ReadAhead {
    if pos >= end {
        return None;
    }
    let f = file.clone();
    let task = glommio::spawn_local(async move { f.read_at_aligned(pos, size).await }).detach();
    Some((pos, task))
}

/// Loads a segment's index files; `None` if either is missing, damaged, or disagrees
/// with the segment it names.
/// A closed segment's index files, decoded: its summary and both indexes.
pub(crate) type LoadedIndexes = (crate::index::SegmentSummary, OffsetIndex, TimeIndex);

pub(crate) async fn load_indexes(dir: &Path, seg: &Segment) -> Option<LoadedIndexes> {
    let idx = read_whole(&seg.index_path(dir)).await?;
    let tidx = read_whole(&seg.time_index_path(dir)).await?;
    decode_indexes(&idx, &tidx, seg.base_offset)
}

/// Decodes both index files of the segment based at `base_offset`; `None` if either
/// is damaged or they disagree.
pub(crate) fn decode_indexes(
    idx: &[u8],
    tidx: &[u8],
    base_offset: i64,
) -> Option<(crate::index::SegmentSummary, OffsetIndex, TimeIndex)> {
    let (summary, offsets) = OffsetIndex::decode(idx)?;
    let (tsummary, times) = TimeIndex::decode(tidx)?;
    (summary == tsummary && summary.base_offset == base_offset).then_some((summary, offsets, times))
}

async fn read_whole(path: &Path) -> Option<Vec<u8>> {
    let f = DmaFile::open(path).await.ok()?;
    let len = f.file_size().await.ok()?;
    let data = f
        .read_at_aligned(0, len.next_multiple_of(BLOCK) as usize)
        .await
        .ok();
    let _ = f.close().await;
    data.map(|d| d.to_vec())
}

/// A segment's two index files, encoded, ready to be written.
pub(crate) struct IndexFiles {
    index: (std::path::PathBuf, Vec<u8>),
    time_index: (std::path::PathBuf, Vec<u8>),
}

/// Encodes both index files of `seg` (no I/O, so callers can hold a borrow).
pub(crate) fn encode_indexes(dir: &Path, seg: &Segment) -> IndexFiles {
    let summary = seg.summary();
    IndexFiles {
        index: (seg.index_path(dir), seg.offset_index.encode(&summary)),
        time_index: (seg.time_index_path(dir), seg.time_index.encode(&summary)),
    }
}

/// Writes both index files and fdatasyncs them.
pub(crate) async fn write_indexes(files: IndexFiles) -> Result<()> {
    write_whole(&files.index.0, &files.index.1).await?;
    write_whole(&files.time_index.0, &files.time_index.1).await
}

async fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    debug_assert_eq!(bytes.len() % BLOCK_BYTES, 0);
    let f = DmaFile::create(path)
        .await
        .map_err(|e| io_err("create", path, e))?;
    let mut buf = f.alloc_dma_buffer(bytes.len());
    buf.as_bytes_mut().copy_from_slice(bytes);
    let n = f
        .write_at(buf, 0)
        .await
        .map_err(|e| io_err("write", path, e))?;
    if n != bytes.len() {
        return Err(io_err(
            "write",
            path,
            std::io::Error::other(format!("short write: {n} of {}", bytes.len())),
        ));
    }
    f.fdatasync()
        .await
        .map_err(|e| io_err("fdatasync", path, e))?;
    f.close().await.map_err(|e| io_err("close", path, e))
}
