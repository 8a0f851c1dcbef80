//! `ringlog iotune --data-dir DIR [--duration S]`: measures the device under the data
//! directory, prints the figures and writes `io-properties.toml` for the broker.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ringlog::config::IO_PROPERTIES_FILE;
use ringlog::iotune::measure;
use ringlog::iotune::properties::{derive, IoProperties, Measured, Throughput};

/// Shortest and longest measurement.
const DURATION_S_MIN: u64 = 5;
const DURATION_S_MAX: u64 = 3600;
/// Locked memory for the measuring executor's I/O buffers: enough for the largest
/// run (16 × 1 MiB writes, 2 × 16 MiB reads) to use registered buffers. Buffers past
/// it fall back to ordinary memory, which measured 40 % slower here (1 MiB × 16
/// writes: 3.0 against 5.1 GB/s).
const IO_MEMORY_BYTES: usize = 64 << 20;

#[derive(clap::Args)]
pub struct IotuneArgs {
    /// Data directory whose device is measured (created if missing).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Seconds to measure for (5 to 3600).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Where to write the properties (default: DATA_DIR/io-properties.toml, where
    /// `ringlog serve` looks).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: IotuneArgs) -> anyhow::Result<i32> {
    if !(DURATION_S_MIN..=DURATION_S_MAX).contains(&args.duration) {
        anyhow::bail!(
            "--duration {}: expected {DURATION_S_MIN} to {DURATION_S_MAX} seconds",
            args.duration
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;
    let dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolve {}", args.data_dir.display()))?;
    let out = args.out.unwrap_or_else(|| dir.join(IO_PROPERTIES_FILE));
    let duration = Duration::from_secs(args.duration);
    println!(
        "iotune: measuring the device under {} for {} s",
        dir.display(),
        args.duration
    );
    let started = Instant::now();
    let measure_dir = dir.clone();
    let measured = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ringlog-iotune")
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            measure::run(&measure_dir, duration, &|step| eprintln!("  {step}")).await
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the I/O executor (io_uring): {e}; if it says \"Cannot allocate memory\", raise the locked-memory limit (ulimit -l unlimited, or LimitMEMLOCK=infinity in systemd)"
            )
        })?
        .join()
        .map_err(|e| anyhow::anyhow!("executor failed: {e}"))??;
    let props = IoProperties {
        data_dir: dir.display().to_string(),
        measured_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_seconds: started.elapsed().as_secs_f64(),
        derived: derive(&measured),
        measured,
    };
    print!("{}", report(&props.measured));
    let d = &props.derived;
    println!(
        "derived: log.write.buffer.bytes = {} ({} KiB), log.write.inflight.max = {}, log.read.ahead.bytes = {} ({} MiB)",
        d.write_buffer_bytes,
        d.write_buffer_bytes >> 10,
        d.inflight_writes_max,
        d.read_ahead_bytes,
        d.read_ahead_bytes >> 20
    );
    ringlog::metadata::store::write_atomically(&out, props.to_file_text().as_bytes())
        .with_context(|| format!("write {}", out.display()))?;
    println!(
        "wrote {} in {:.1} s; `ringlog serve` applies it at its next start",
        out.display(),
        props.duration_seconds
    );
    Ok(0)
}

/// The figures as a table.
fn report(m: &Measured) -> String {
    let mut out = String::new();
    rows(&mut out, "sequential write", &m.seq_write);
    rows(&mut out, "sequential read", &m.seq_read);
    out += &format!(
        "fdatasync after a 4 KiB write: p50 {} µs, p99 {} µs, max {} µs ({} samples)\n",
        m.fdatasync_p50_us, m.fdatasync_p99_us, m.fdatasync_max_us, m.fdatasync_samples
    );
    out += &format!(
        "random read, {} KiB x {} in flight: {} IOPS ({:.0} MB/s)\n",
        m.rand_read_block_bytes >> 10,
        m.rand_read_queue_depth,
        m.rand_read_iops,
        m.rand_read_iops as f64 * m.rand_read_block_bytes as f64 / 1e6
    );
    out
}

/// One table of runs: block size (KiB), requests in flight, MB/s.
fn rows(out: &mut String, title: &str, runs: &[Throughput]) {
    *out += &format!("{title:<20}{:>9}  in flight       MB/s\n", "block");
    for t in runs {
        *out += &format!(
            "{:>24} KiB {:>10} {:>10.0}\n",
            t.block_bytes >> 10,
            t.queue_depth,
            t.bytes_per_sec as f64 / 1e6
        );
    }
}
