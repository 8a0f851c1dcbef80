//! The measurements of `ringlog iotune`, with glommio DMA (O_DIRECT) I/O on a scratch
//! file in the data directory, so the figures are those of the path the logs take.
//!
//! One run, within the asked duration: fill the scratch file (so later writes do not
//! pay for extent allocation, as the log's zero-ahead arranges), sequential writes at
//! each block size × queue depth, fdatasync after a 4 KiB write, sequential reads at
//! a few sizes with one read ahead (the recovery scan's pattern), and random 4 KiB
//! reads at queue depth 32. Write buffers carry a distinct stamp in every 4 KiB block
//! so a deduplicating device cannot skip them; their contents are otherwise not
//! filled (filling would measure memcpy, not the device).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};

use super::properties::{Measured, Throughput};
use super::IotuneError;

/// Block sizes of the sequential-write runs.
pub const WRITE_BLOCKS: [u64; 3] = [64 << 10, 256 << 10, 1 << 20];
/// Queue depths of the sequential-write runs.
pub const WRITE_DEPTHS: [u32; 3] = [1, 4, 16];
/// Read sizes of the sequential-read runs (each with one more read in flight).
pub const READ_BLOCKS: [u64; 3] = [1 << 20, 4 << 20, 16 << 20];
const READ_DEPTH: u32 = 2;
/// Random reads: 4 KiB at 32 in flight.
const RAND_BLOCK: u64 = 4096;
const RAND_DEPTH: u32 = 32;
/// Largest scratch file, and the least free space it needs.
pub const SCRATCH_BYTES_MAX: u64 = 1 << 30;
pub const SCRATCH_BYTES_MIN: u64 = 64 << 20;
/// Most fdatasync samples kept.
const SYNC_SAMPLES_MAX: usize = 1 << 20;
/// Name of the scratch file in the data directory (removed at the end).
pub const SCRATCH_FILE: &str = ".ringlog-iotune.tmp";

/// Shares of the duration: fill, sequential writes, fdatasync, sequential reads,
/// random reads.
const SHARES: [f64; 5] = [0.10, 0.50, 0.15, 0.10, 0.15];

/// Removes the scratch file however the run ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs every measurement on `dir`'s device within about `duration`; `progress`
/// hears what is being measured.
pub async fn run(
    dir: &Path,
    duration: Duration,
    progress: &dyn Fn(&str),
) -> Result<Measured, IotuneError> {
    let path = dir.join(SCRATCH_FILE);
    let free = free_bytes(dir)?;
    let size = (free / 4).min(SCRATCH_BYTES_MAX) / (1 << 20) * (1 << 20);
    if size < SCRATCH_BYTES_MIN {
        return Err(IotuneError::NoSpace {
            dir: dir.to_path_buf(),
            free,
            needed: SCRATCH_BYTES_MIN * 4,
        });
    }
    let _scratch = Scratch(path.clone());
    let io = |op: &'static str| {
        let path = path.clone();
        move |source: glommio::GlommioError<()>| IotuneError::Io {
            op,
            path,
            source: source.into(),
        }
    };
    // Before the first DMA open on the device (see the function's doc).
    ringlog_storage::probe_device_once(dir).await?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(io("create (O_DIRECT)"))?;
    let file = Rc::new(file);
    file.pre_allocate(size, false)
        .await
        .map_err(io("fallocate"))?;
    let share = |i: usize| duration.mul_f64(SHARES[i]);

    progress("filling the scratch file");
    let filled = sequential_write(&file, size, 1 << 20, 16, share(0), true)
        .await
        .map_err(io("write"))?;
    // Everything later stays within what was written.
    let region = filled.bytes.max(1 << 20).min(size);

    let mut seq_write = Vec::new();
    let per_write = share(1).div_f64((WRITE_BLOCKS.len() * WRITE_DEPTHS.len()) as f64);
    for block in WRITE_BLOCKS {
        for depth in WRITE_DEPTHS {
            progress(&format!(
                "sequential write, {} KiB blocks, {depth} in flight",
                block >> 10
            ));
            let run = sequential_write(&file, region, block, depth, per_write, false)
                .await
                .map_err(io("write"))?;
            seq_write.push(run.throughput(block, depth));
        }
    }

    progress("fdatasync after a 4 KiB write");
    let mut syncs = sync_latencies(&file, region, share(2))
        .await
        .map_err(io("write and fdatasync"))?;
    syncs.sort_unstable();

    let mut seq_read = Vec::new();
    let per_read = share(3).div_f64(READ_BLOCKS.len() as f64);
    for block in READ_BLOCKS {
        progress(&format!("sequential read, {} MiB reads", block >> 20));
        let run = sequential_read(&file, region, block, READ_DEPTH, per_read)
            .await
            .map_err(io("read"))?;
        seq_read.push(run.throughput(block, READ_DEPTH));
    }

    progress("random 4 KiB reads, 32 in flight");
    let rand = random_read(&file, region, share(4))
        .await
        .map_err(io("read"))?;

    let _ = file.fdatasync().await;
    if let Ok(file) = Rc::try_unwrap(file) {
        let _ = file.close().await;
    }
    let pct = |q: f64| {
        let i = ((syncs.len() as f64 * q).ceil() as usize).saturating_sub(1);
        syncs
            .get(i.min(syncs.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Ok(Measured {
        fdatasync_p50_us: pct(0.50),
        fdatasync_p99_us: pct(0.99),
        fdatasync_max_us: syncs.last().copied().unwrap_or(0),
        fdatasync_samples: syncs.len() as u64,
        rand_read_iops: rand.ops_per_sec(),
        rand_read_block_bytes: RAND_BLOCK,
        rand_read_queue_depth: RAND_DEPTH,
        seq_write,
        seq_read,
    })
}

/// Bytes moved, requests done and the time they took.
#[derive(Default)]
struct Run {
    bytes: u64,
    ops: u64,
    elapsed: Duration,
}

impl Run {
    fn bytes_per_sec(&self) -> u64 {
        per_sec(self.bytes, self.elapsed)
    }
    fn ops_per_sec(&self) -> u64 {
        per_sec(self.ops, self.elapsed)
    }
    fn throughput(&self, block_bytes: u64, queue_depth: u32) -> Throughput {
        Throughput {
            block_bytes,
            queue_depth,
            bytes_per_sec: self.bytes_per_sec(),
        }
    }
}

fn per_sec(n: u64, elapsed: Duration) -> u64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        (n as f64 / s) as u64
    } else {
        0
    }
}

/// Positions handed out in order, wrapping at `region`; with `once`, ending there.
struct Cursor {
    next: Cell<u64>,
    region: u64,
    block: u64,
    once: bool,
}

impl Cursor {
    fn take(&self) -> Option<u64> {
        let mut pos = self.next.get();
        if pos + self.block > self.region {
            if self.once {
                return None;
            }
            pos = 0;
        }
        self.next.set(pos + self.block);
        Some(pos)
    }
}

/// `depth` tasks writing `block`-sized buffers at consecutive positions until
/// `budget` has passed (or, with `once`, until the region is written).
async fn sequential_write(
    file: &Rc<DmaFile>,
    region: u64,
    block: u64,
    depth: u32,
    budget: Duration,
    once: bool,
) -> glommio::Result<Run, ()> {
    let cursor = Rc::new(Cursor {
        next: Cell::new(0),
        region,
        block,
        once,
    });
    let stamp = Rc::new(Cell::new(0u64));
    let work = |file: Rc<DmaFile>, cursor: Rc<Cursor>, stamp: Rc<Cell<u64>>, deadline| async move {
        let mut run = Run::default();
        while Instant::now() < deadline {
            let Some(pos) = cursor.take() else { break };
            let mut buf = file.alloc_dma_buffer(block as usize);
            for page in buf.as_bytes_mut().chunks_mut(4096) {
                let n = stamp.get().wrapping_add(1);
                stamp.set(n);
                page[..8].copy_from_slice(&n.to_le_bytes());
            }
            run.bytes += file.write_at(buf, pos).await? as u64;
            run.ops += 1;
        }
        Ok(run)
    };
    in_parallel(depth, budget, |deadline| {
        work(file.clone(), cursor.clone(), stamp.clone(), deadline)
    })
    .await
}

/// `depth` tasks reading `block` bytes at consecutive positions (the scan's read
/// plus its read-ahead when `depth` is 2).
async fn sequential_read(
    file: &Rc<DmaFile>,
    region: u64,
    block: u64,
    depth: u32,
    budget: Duration,
) -> glommio::Result<Run, ()> {
    let cursor = Cursor {
        next: Cell::new(0),
        region,
        block,
        once: false,
    };
    reads(file, block, depth, budget, Rc::new(move || cursor.take())).await
}

/// 32 tasks reading 4 KiB at random aligned positions.
async fn random_read(
    file: &Rc<DmaFile>,
    region: u64,
    budget: Duration,
) -> glommio::Result<Run, ()> {
    let blocks = (region / RAND_BLOCK).max(1);
    let seed = Cell::new(0x9E37_79B9_7F4A_7C15u64);
    let next = move || Some((xorshift(&seed) % blocks) * RAND_BLOCK);
    reads(file, RAND_BLOCK, RAND_DEPTH, budget, Rc::new(next)).await
}

/// `depth` tasks reading `block` bytes at the positions `next` hands out.
async fn reads(
    file: &Rc<DmaFile>,
    block: u64,
    depth: u32,
    budget: Duration,
    next: Rc<dyn Fn() -> Option<u64>>,
) -> glommio::Result<Run, ()> {
    in_parallel(depth, budget, |deadline| {
        let (file, next) = (file.clone(), next.clone());
        async move {
            let mut run = Run::default();
            while Instant::now() < deadline {
                let Some(pos) = next() else { break };
                run.bytes += file.read_at_aligned(pos, block as usize).await?.len() as u64;
                run.ops += 1;
            }
            Ok(run)
        }
    })
    .await
}

/// fdatasync times (µs) of 4 KiB writes at consecutive positions, one at a time, as
/// a lightly loaded log's group commit does.
async fn sync_latencies(
    file: &Rc<DmaFile>,
    region: u64,
    budget: Duration,
) -> glommio::Result<Vec<u64>, ()> {
    let deadline = Instant::now() + budget;
    let cursor = Cursor {
        next: Cell::new(0),
        region,
        block: 4096,
        once: false,
    };
    let mut samples = Vec::new();
    while Instant::now() < deadline && samples.len() < SYNC_SAMPLES_MAX {
        let Some(pos) = cursor.take() else { break };
        let mut buf = file.alloc_dma_buffer(4096);
        buf.as_bytes_mut()[..8].copy_from_slice(&(samples.len() as u64).to_le_bytes());
        file.write_at(buf, pos).await?;
        let started = Instant::now();
        file.fdatasync().await?;
        samples.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    Ok(samples)
}

/// Runs `depth` copies of a worker until the deadline `budget` from now; sums their
/// runs over the time until the last one finished.
async fn in_parallel<F, Fut>(depth: u32, budget: Duration, worker: F) -> glommio::Result<Run, ()>
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = glommio::Result<Run, ()>> + 'static,
{
    let started = Instant::now();
    let deadline = started + budget;
    let tasks: Vec<_> = (0..depth)
        .map(|_| glommio::spawn_local(worker(deadline)).detach())
        .collect();
    let mut total = Run::default();
    let mut failure = None;
    for t in tasks {
        match t.await {
            Some(Ok(r)) => {
                total.bytes += r.bytes;
                total.ops += r.ops;
            }
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
            None => {}
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

fn xorshift(state: &Cell<u64>) -> u64 {
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    x
}

/// Free bytes for an unprivileged user on `dir`'s file system.
pub fn free_bytes(dir: &Path) -> Result<u64, IotuneError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| IotuneError::Io {
        op: "statvfs",
        path: dir.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: statvfs fills the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(IotuneError::Io {
            op: "statvfs",
            path: dir.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_wraps_or_stops_at_the_region_end() {
        let c = Cursor {
            next: Cell::new(0),
            region: 10,
            block: 4,
            once: false,
        };
        let got: Vec<u64> = (0..4).filter_map(|_| c.take()).collect();
        assert_eq!(got, vec![0, 4, 0, 4]);
        let c = Cursor {
            next: Cell::new(0),
            region: 10,
            block: 4,
            once: true,
        };
        let got: Vec<u64> = (0..4).filter_map(|_| c.take()).collect();
        assert_eq!(got, vec![0, 4]);
    }

    #[test]
    fn the_shares_cover_the_duration() {
        assert!((SHARES.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
