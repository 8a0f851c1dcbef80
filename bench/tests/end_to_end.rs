//! `ringlog-bench` against real broker processes: every standard workload writes its
//! reports and verifies what it consumed; `compare` reads them back; a broker stalled
//! with SIGSTOP shows in the coordinated-omission-corrected tail.

#[path = "../../tests/common/broker.rs"]
mod broker;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use broker::Broker;
use ringlog_bench::summary::Summary;
use ringlog_bench::workloads;

const BENCH: &str = env!("CARGO_BIN_EXE_ringlog-bench");

/// The broker binary: built beside the bench by `cargo test --workspace`; built here
/// when only this package's tests were asked for.
fn ringlog_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(BENCH).with_file_name("ringlog");
        if !bin.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "ringlog", "--bin", "ringlog"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo to build the broker");
            assert!(status.success(), "building the ringlog binary failed");
        }
        bin
    })
    .clone()
}

/// For `broker.rs`, whose CLI helpers these tests do not use.
#[allow(dead_code)]
fn cli_with_input(args: &[String], _input: Option<&[u8]>) -> Output {
    Command::new(ringlog_bin()).args(args).output().unwrap()
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ringlog-bench failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn summary(path: &Path) -> Summary {
    let text = std::fs::read_to_string(path).unwrap();
    Summary::from_json(&text).unwrap()
}

#[test]
fn every_standard_workload_writes_its_reports_and_compare_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    let out = dir.path().join("results");
    let out_s = out.to_str().unwrap();
    for name in workloads::NAMES {
        let stdout = ok(&bench(&[
            "workload",
            name,
            "-b",
            &broker.addr,
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--out",
            out_s,
            "--quiet",
        ]));
        assert!(stdout.contains("records/s"), "{stdout}");
        let preset = workloads::preset(name, &broker.addr).unwrap();
        let s = summary(&out.join(format!("{name}.json")));
        assert!(s.verification.is_empty(), "{name}: {:?}", s.verification);
        assert!(s.throughput.records_per_s > 0.0, "{name}");
        assert_eq!(s.records.errors, 0, "{name}");
        assert_eq!(s.records.sent, s.records.acked, "{name}");
        let groups = preset.consumer_groups as u64;
        if preset.mode != ringlog_bench::config::Mode::Produce {
            assert_eq!(s.records.consumed, s.records.acked * groups, "{name}");
            assert!(s.latency_us.e2e.is_some(), "{name}");
            assert!(out.join(format!("{name}.e2e.hgrm")).exists(), "{name}");
            assert!(
                stdout.contains("verified every consumed record"),
                "{stdout}"
            );
        }
        assert!(s.latency_us.produce.is_some(), "{name}");
        let hgrm = std::fs::read_to_string(out.join(format!("{name}.produce.hgrm"))).unwrap();
        assert!(
            hgrm.contains("1/(1-Percentile)") && hgrm.contains("#[Max"),
            "{name}"
        );
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{name}"
        );
        let txt = std::fs::read_to_string(out.join(format!("{name}.txt"))).unwrap();
        assert_eq!(txt, stdout, "{name}: the text report is what was printed");
    }

    let a = out.join("max-rate-1-topic-1-partition-1kb.json");
    let b = out.join("small-100b.json");
    let plot = out.join("compare.svg");
    let table = ok(&bench(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]));
    let (sa, sb) = (summary(&a), summary(&b));
    let row: Vec<f64> = table
        .lines()
        .find(|l| l.starts_with("records/s"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(
        (row[0] - sa.throughput.records_per_s).abs() < 0.1,
        "{table}"
    );
    assert!(
        (row[1] - sb.throughput.records_per_s).abs() < 0.1,
        "{table}"
    );
    let ratio = sb.throughput.records_per_s / sa.throughput.records_per_s;
    assert!((row[2] - ratio).abs() < 0.01, "{table}");
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
}

#[test]
fn a_broker_stalled_for_a_second_shows_in_the_corrected_tail() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    let json = dir.path().join("stall.json");
    // 2,000 records/s for 4 s: a 1 s stall delays ~2,000 records that were due, by up
    // to a second each, measured from when they were due.
    let child = Command::new(BENCH)
        .args([
            "produce",
            "-b",
            &broker.addr,
            "--topic",
            "stall",
            "--rate",
            "2000",
            "--duration",
            "4",
            "--warmup",
            "0",
            "--linger-ms",
            "0",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stall once records are flowing: the topic's log has data.
    let log = dir.path().join("data").join("stall-0");
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir_bytes(&log) < 64 * 1024 {
        assert!(Instant::now() < deadline, "no records reached the broker");
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(broker.pid(), libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(1)); // the stall itself
    unsafe { libc::kill(broker.pid(), libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let p = summary(&json).latency_us.produce.unwrap();
    eprintln!(
        "stall run: p50 {} p90 {} p99 {} p99.9 {} max {} µs",
        p.p50, p.p90, p.p99, p.p999, p.max
    );
    assert!(
        p.max >= 900_000,
        "max {} µs should hold the 1 s stall",
        p.max
    );
    assert!(
        p.p999 >= 800_000,
        "p99.9 {} µs should hold the stall",
        p.p999
    );
    // Corrected: every record due during the stall waited for it (a quarter of the
    // run, delays spread over 0..1 s), not only the few requests in flight when it
    // began, so the stall reaches down to p90.
    assert!(p.p99 >= 500_000, "p99 {} µs", p.p99);
    assert!(p.p90 >= 250_000, "p90 {} µs", p.p90);
    assert!(
        p.p50 < 200_000,
        "p50 {} µs: most records were not stalled",
        p.p50
    );
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn the_kafka_protocol_runs_the_same_workload_and_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, &[]);
    let json = dir.path().join("kafka.json");
    let stdout = ok(&bench(&[
        "e2e",
        "--protocol",
        "kafka",
        "-b",
        &broker.kafka_addr,
        "--topic",
        "via-kafka",
        "--partitions",
        "3",
        "--consumers",
        "2",
        "--rate",
        "5000",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(stdout.contains("protocol kafka"), "{stdout}");
    let s = summary(&json);
    assert!(s.verification.is_empty(), "{:?}", s.verification);
    assert_eq!(s.records.errors, 0);
    assert!(s.records.acked > 0 && s.records.consumed == s.records.acked);
    assert!(s.latency_us.produce.is_some() && s.latency_us.e2e.is_some());
    // The topic the Kafka client created is the broker's: the native CLI sees it.
    let described = String::from_utf8(
        Command::new(ringlog_bin())
            .args(["topic", "describe", "via-kafka", "-b", &broker.addr])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let partitions = described
        .lines()
        .filter(|l| l.contains("\tPartition: "))
        .count();
    assert_eq!(partitions, 3, "{described}");
}
