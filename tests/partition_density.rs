//! Issue 13 §3: disk and files scale with data, not with partition count. 10,000
//! partitions on one shard with one record each used to take 41 MB of disk apiece
//! (a 32 MiB preallocation step and 8 MiB of zeros: this machine's disk filled) and
//! 10,018 open files; now they take little disk and at most `shard.open.files.max`
//! descriptors, and every record reads back.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use common::*;

const PARTITIONS: usize = 10_000;
const DISK_LIMIT_BYTES: u64 = 2 << 30;
const OPEN_FILES_LIMIT: usize = 2_000;

/// Bytes the file system allocated under `dir`.
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += allocated_bytes(&entry.path());
        }
    }
    total
}

fn open_files(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn ten_thousand_partitions_of_one_record_take_little_disk_and_few_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data, 1, &[]);
    let started = Instant::now();
    let partitions = PARTITIONS.to_string();
    ok(&broker.cli(&["topic", "create", "dense", "--partitions", &partitions]));
    let created = started.elapsed();
    // Round-robin: one record per partition.
    let input: String = (0..PARTITIONS).map(|i| format!("record-{i}\n")).collect();
    ok(&broker.cli_input(&["produce", "--topic", "dense"], input.as_bytes()));
    let produced = started.elapsed();
    let disk = allocated_bytes(&data);
    let files = open_files(broker.pid());
    let read = ok(&broker.cli(&[
        "consume",
        "--topic",
        "dense",
        "--from-beginning",
        "--max-messages",
        &partitions,
    ]));
    let got: BTreeSet<&str> = read.lines().collect();
    let want: BTreeSet<String> = (0..PARTITIONS).map(|i| format!("record-{i}")).collect();
    eprintln!(
        "{PARTITIONS} partitions: created in {created:?}, produced by {produced:?}, read by {:?}; {disk} bytes on disk; {files} open files",
        started.elapsed()
    );
    assert_eq!(got.len(), PARTITIONS, "records read back");
    assert!(want.iter().all(|w| got.contains(w.as_str())));
    assert!(disk < DISK_LIMIT_BYTES, "{disk} bytes on disk");
    assert!(files < OPEN_FILES_LIMIT, "{files} open files");
    let after_reads = open_files(broker.pid());
    assert!(
        after_reads < OPEN_FILES_LIMIT,
        "{after_reads} open files after reading"
    );
}
