//! A full disk under a running broker (issue 13 §2), on a real small file system: a
//! loop-mounted ext4 image. Appends to the partition that hits ENOSPC are refused
//! with KAFKA_STORAGE_ERROR, also on retry (never answered as a duplicate, which
//! clients take for success); reads and a partition with allocated space keep
//! working; metrics and the log say why. After the space is freed and the broker is
//! restarted, every acknowledged record is there, in order, once.

mod common;

use common::kafka::Conn;
use common::loopfs::LoopFs;
use common::*;

const KAFKA_STORAGE_ERROR: i16 = 56;
/// Records per produced batch (each value is a few bytes plus the batch framing).
const RECORDS_PER_BATCH: usize = 2_000;
/// Free space left when the test starts producing.
const LEFT_FREE_BYTES: u64 = 3 << 20;

#[test]
fn a_full_disk_refuses_appends_and_loses_nothing_acknowledged() {
    let Some(fs) = LoopFs::mount(
        "a_full_disk_refuses_appends_and_loses_nothing_acknowledged",
        48,
    ) else {
        return;
    };
    let data = fs.path().join("data");
    // Small segments: preallocation (capped at a segment) stays well inside the disk.
    let settings = ["--set", "log.segment.bytes=2097152"];
    let logs = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_logging_in(&data, logs.path(), 1, &settings);
    ok(&broker.cli(&["topic", "create", "t", "--partitions", "1"]));
    ok(&broker.cli(&["topic", "create", "other", "--partitions", "1"]));
    // `other` gets its segment (and its allocation) before the disk fills.
    ok(&broker.cli_input(&["produce", "--topic", "other"], b"before\n"));
    let filler = fs.fill_leaving("filler", LEFT_FREE_BYTES);

    let mut conn = Conn::new(&broker.kafka_addr);
    let (pid, epoch) = conn.init_producer();
    let mut acked = Vec::new();
    let mut seq = 0i32;
    let failed_batch = loop {
        assert!(
            acked.len() < 100 * RECORDS_PER_BATCH,
            "{} records acknowledged on a disk with {LEFT_FREE_BYTES} bytes free",
            acked.len()
        );
        let (code, base) = conn.produce("t", pid, epoch, seq, RECORDS_PER_BATCH);
        if code != 0 {
            assert_eq!(code, KAFKA_STORAGE_ERROR, "a full disk:\n{}", broker.log());
            break seq;
        }
        assert_eq!(base, acked.len() as i64);
        acked.extend((0..RECORDS_PER_BATCH).map(|i| format!("s{}", seq + i as i32)));
        seq += RECORDS_PER_BATCH as i32;
    };
    assert!(!acked.is_empty(), "nothing fitted on the disk");
    // The retry of the refused batch is refused again, not taken for a duplicate.
    let (code, _) = conn.produce("t", pid, epoch, failed_batch, RECORDS_PER_BATCH);
    assert_eq!(code, KAFKA_STORAGE_ERROR, "the retry");

    // Reads go on; a partition with allocated space takes writes.
    assert_eq!(broker.consume_values("t"), acked);
    ok(&broker.cli_input(&["produce", "--topic", "other"], b"during\n"));
    assert_eq!(broker.consume_values("other"), ["before", "during"]);
    // The operator can see what happened and why.
    let text = metrics(&broker.admin_addr);
    assert_eq!(metric_sum(&text, "ringlog_failed_log_partitions", &[]), 1.0);
    assert_eq!(
        metric_sum(&text, "ringlog_partition_log_failed", &["topic=\"t\""]),
        1.0
    );
    assert!(
        broker.log().contains("No space left on device"),
        "{}",
        broker.log()
    );

    // Space freed, broker restarted: everything acknowledged is there, and the
    // producer goes on where it stopped.
    std::fs::remove_file(filler).unwrap();
    broker.kill9();
    let broker = Broker::start_logging_in(&data, logs.path(), 1, &settings);
    assert_eq!(broker.consume_values("t"), acked);
    let mut conn = Conn::new(&broker.kafka_addr);
    let (code, base) = conn.produce("t", pid, epoch, failed_batch, RECORDS_PER_BATCH);
    assert_eq!(
        (code, base),
        (0, acked.len() as i64),
        "the retry after restart"
    );
    acked.extend((0..RECORDS_PER_BATCH).map(|i| format!("s{}", failed_batch + i as i32)));
    assert_eq!(broker.consume_values("t"), acked);
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
}
