//! `ringlog tune --check` as a user runs it: against a fake /proc and /sys root
//! (`--root`), the table and the JSON, and the exit status that follows the rows.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn put(root: &Path, path: &str, content: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

#[test]
fn tune_check_reports_every_row_and_fails_only_on_fail() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    put(
        r,
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
        "powersave\n",
    );
    put(
        r,
        "sys/kernel/mm/transparent_hugepage/enabled",
        "always madvise [never]\n",
    );
    put(r, "proc/sys/vm/swappiness", "0\n");
    put(r, "proc/mounts", "/dev/nvme0n1 /srv xfs rw 0 0\n");
    put(r, "sys/block/nvme0n1/queue/scheduler", "[none]\n");
    put(r, "sys/block/nvme0n1/queue/rotational", "1\n");
    let run = |json: bool| {
        let mut cmd = Command::new(RINGLOG);
        cmd.args(["tune", "--check", "--data-dir", "/srv/ringlog", "--root"])
            .arg(r);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = run(true);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == name)
            .map(|r| r["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status("cpu governor"), "WARN");
    assert_eq!(status("transparent huge pages"), "OK");
    assert_eq!(status("vm.swappiness"), "OK");
    assert_eq!(status("net.core.somaxconn"), "N/A");
    assert_eq!(status("data dir file system"), "OK");
    assert_eq!(status("io scheduler"), "OK");
    assert_eq!(status("rotational"), "FAIL");
    assert_eq!(out.status.code(), Some(1), "a FAIL row fails the command");

    let table = String::from_utf8(run(false).stdout).unwrap();
    assert!(table.starts_with("CHECK"), "{table}");
    assert!(
        table.contains("rotational") && table.contains("FAIL"),
        "{table}"
    );

    // Without the failing row the exit status follows the process's own limits,
    // which this test does not control: 0 exactly when no row says FAIL.
    put(r, "sys/block/nvme0n1/queue/rotational", "0\n");
    let out = run(true);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let any_fail = rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["status"] == "FAIL");
    assert_eq!(out.status.code(), Some(i32::from(any_fail)));
}
