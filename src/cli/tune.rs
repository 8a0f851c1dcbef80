//! `ringlog tune --check`: the host checks of `ringlog::tune` as a table (or JSON);
//! exits 1 when a check fails.

use std::path::PathBuf;

use ringlog::config::BrokerConfig;
use ringlog::tune::{checks, table, Host, Status};

#[derive(clap::Args)]
pub struct TuneArgs {
    /// Inspect the host and report (the only mode so far; changing settings is
    /// tuning/apply.sh's job).
    #[arg(long, required = true)]
    check: bool,
    /// Also check the file system and device under this data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read /proc and /sys under this directory instead of / (for testing).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Shards to size the locked-memory check for (default: one per core).
    #[arg(long)]
    shards: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: TuneArgs) -> anyhow::Result<i32> {
    let _ = args.check;
    let defaults = BrokerConfig::default();
    let shards = args
        .shards
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    let data_dir = args
        .data_dir
        .map(|d| std::fs::canonicalize(&d).unwrap_or(d));
    let rows = checks(
        &Host::this(&args.root),
        data_dir.as_deref(),
        shards,
        defaults.io_memory_bytes as u64,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(if rows.iter().any(|r| r.status == Status::Fail) {
        1
    } else {
        0
    })
}
