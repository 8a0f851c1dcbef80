//! The admin HTTP listener: `/metrics` parses as Prometheus text and its counters move
//! by exactly what was produced and fetched; `/v1/status`, `/v1/ready` and `/v1/live`
//! answer as an orchestrator expects.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use prometheus_parse::{LineInfo, Scrape, Value};

/// One HTTP/1.0 request; returns the status code and the body.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    (code, body.to_string())
}

/// Scrapes `/metrics`, checking every line is one the exposition format allows.
fn scrape(addr: &str) -> Scrape {
    let (code, body) = http(addr, "GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    for line in body.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty),
            "not Prometheus text: {line:?}"
        );
    }
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// Sum of a counter or gauge over the samples whose labels include `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a single value"),
        })
        .sum()
}

/// Total observations of a histogram over the samples whose labels include `labels`,
/// checking each has buckets ending in +Inf and never decreasing.
fn histogram_count(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    let mut seen = 0;
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
    {
        let Value::Histogram(buckets) = &s.value else {
            panic!("{metric} is not a histogram")
        };
        assert!(buckets.len() > 5, "{metric}: {buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        let last = buckets.last().unwrap();
        assert!(last.less_than.is_infinite(), "{metric}: no +Inf bucket");
        total += last.count;
        seen += 1;
    }
    assert!(seen > 0, "no {metric} with {labels:?}");
    total
}

#[test]
fn metrics_count_what_was_produced_and_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, &[]);
    let admin = broker.admin_addr.clone();
    ok(&broker.cli(&["topic", "create", "m", "--partitions", "4"]));

    let before = scrape(&admin);
    assert_eq!(
        sum(
            &before,
            "ringlog_partition_records_in_total",
            &[("topic", "m")]
        ),
        0.0
    );
    assert_eq!(sum(&before, "ringlog_shard_up", &[]), 2.0);
    assert_eq!(sum(&before, "ringlog_partitions", &[]), 4.0);
    let produce_requests = histogram_count(
        &before,
        "ringlog_request_latency_seconds",
        &[("protocol", "native"), ("request", "produce")],
    );

    let records = 500;
    let input: String = (0..records).map(|i| format!("record-{i}\n")).collect();
    ok(&broker.cli_input(&["produce", "--topic", "m"], input.as_bytes()));
    let out = broker.cli(&[
        "consume",
        "--topic",
        "m",
        "--from-beginning",
        "--group",
        "g",
        "--max-messages",
        &records.to_string(),
        "--timeout-ms",
        "20000",
    ]);
    ok(&out);

    let after = scrape(&admin);
    let m = [("topic", "m")];
    assert_eq!(
        sum(&after, "ringlog_partition_records_in_total", &m),
        f64::from(records)
    );
    assert_eq!(
        sum(&after, "ringlog_partition_records_out_total", &m),
        f64::from(records)
    );
    let bytes_in = sum(&after, "ringlog_partition_bytes_in_total", &m);
    assert!(bytes_in > f64::from(records) * 8.0, "{bytes_in}");
    assert_eq!(
        sum(&after, "ringlog_partition_log_end_offset", &m),
        f64::from(records)
    );
    assert_eq!(
        sum(&after, "ringlog_partition_high_watermark", &m),
        f64::from(records)
    );
    assert_eq!(sum(&after, "ringlog_under_replicated_partitions", &[]), 0.0);
    // Produce requests were timed, and group-committed by at least one fdatasync.
    let produced = histogram_count(
        &after,
        "ringlog_request_latency_seconds",
        &[("protocol", "native"), ("request", "produce")],
    );
    assert!(
        produced > produce_requests,
        "{produced} <= {produce_requests}"
    );
    assert!(
        histogram_count(
            &after,
            "ringlog_request_latency_seconds",
            &[("request", "fetch")]
        ) > 0.0
    );
    assert!(histogram_count(&after, "ringlog_fdatasync_latency_seconds", &[]) > 0.0);
    let committed = histogram_count(&after, "ringlog_group_commit_records", &[]);
    assert!(committed > 0.0);
    assert!(sum(&after, "ringlog_cache_reads_total", &[]) > 0.0);
    assert!(
        sum(
            &after,
            "ringlog_connections_accepted_total",
            &[("protocol", "native")]
        ) >= 3.0
    );
    // The group committed everything it read: no lag; more records make lag.
    let g = [("group", "g"), ("topic", "m")];
    assert_eq!(
        sum(&after, "ringlog_consumer_group_committed_offset", &g),
        f64::from(records)
    );
    assert_eq!(sum(&after, "ringlog_consumer_group_lag", &g), 0.0);
    ok(&broker.cli_input(&["produce", "--topic", "m"], b"one\ntwo\nthree\n"));
    let later = scrape(&admin);
    assert_eq!(sum(&later, "ringlog_consumer_group_lag", &g), 3.0);
    assert_eq!(
        sum(&later, "ringlog_partition_records_in_total", &m),
        f64::from(records + 3)
    );
}

#[test]
fn status_ready_and_live_answer_for_orchestration() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("data"), 2, &["--broker-id", "7"]);
    let admin = broker.admin_addr.clone();

    let (code, body) = http(&admin, "GET", "/v1/status");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["broker_id"], 7);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["state"], "serving");
    assert!(v["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s["shard"], i);
        assert!(s["core"].is_u64() && s["up"] == true, "{s}");
    }
    assert_eq!(v["listeners"]["native"], broker.addr.as_str());
    assert_eq!(v["listeners"]["kafka"], broker.kafka_addr.as_str());
    assert_eq!(v["listeners"]["admin"], admin.as_str());

    assert_eq!(http(&admin, "GET", "/v1/ready").0, 200);
    let (code, body) = http(&admin, "GET", "/v1/live");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&admin, "GET", "/nope");
    assert_eq!(code, 404);
    assert!(body.contains("/metrics"), "{body}");
    assert_eq!(http(&admin, "POST", "/metrics").0, 405);
    assert!(broker.terminate().success());
}

#[test]
fn admin_listener_can_be_turned_off_and_a_taken_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("a"), 1, &["--set", "admin.listener=none"]);
    assert!(broker.admin_addr.is_empty());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = cli_with_input(
        &[
            "serve".into(),
            "--data-dir".into(),
            dir.path().join("b").display().to_string(),
            "--native-addr".into(),
            "127.0.0.1:0".into(),
            "--kafka-addr".into(),
            "none".into(),
            "--admin-addr".into(),
            port.clone(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot bind {port}")), "{err}");
}

/// Every listener reserves its port with SO_REUSEPORT so all shards can accept on it;
/// without a check the kernel would let a second broker of the same user listen on a
/// port the first holds and split its connections between them.
#[test]
fn a_port_another_broker_listens_on_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Broker::start(&dir.path().join("a"), 1, &[]);
    let b = dir.path().join("b");
    let serve = |native: &str, kafka: &str, extra: &[&str]| {
        let mut args = vec![
            "--native-addr",
            native,
            "--kafka-addr",
            kafka,
            "--admin-addr",
            "none",
        ];
        args.extend_from_slice(extra);
        Broker::serve_must_fail(&b, &args)
    };
    let voters = format!("1@{}", first.addr);
    let cluster = [
        "--broker-id",
        "1",
        "--controller-voters",
        voters.as_str(),
        "--cluster-addr",
        first.addr.as_str(),
    ];
    for (taken, err) in [
        (&first.addr, serve(&first.addr, "none", &[])),
        (
            &first.kafka_addr,
            serve("127.0.0.1:0", &first.kafka_addr, &[]),
        ),
        (&first.addr, serve("127.0.0.1:0", "none", &cluster)),
    ] {
        assert!(err.contains(&format!("cannot bind {taken}")), "{err}");
        assert!(err.contains("in use"), "{err}");
    }
    assert!(first.terminate().success());
}
