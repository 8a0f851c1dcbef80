//! Shard snapshots as Prometheus text exposition format 0.0.4: a pure function, so the
//! format is unit-tested without a broker.
//!
//! Names follow Prometheus conventions: a `ringlog_` prefix, base units (seconds,
//! bytes), `_total` on counters. Per-shard series carry `shard`, per-partition ones
//! `topic` and `partition`, per-group ones `group`.

use std::collections::HashMap;
use std::fmt::Write;

use ringlog_storage::stats::HistogramSnapshot;

use super::{ConnectionRefusal, ShardSnapshot};

/// Broker-wide facts for the exposition.
pub struct BrokerFacts<'a> {
    pub broker_id: i32,
    pub version: &'a str,
    pub uptime_seconds: f64,
    /// Log writes that failed (a full disk or a closed pipe under stderr).
    pub log_lines_dropped: u64,
    /// Unclean leader elections this broker committed as the active controller.
    pub unclean_elections: u64,
}

/// How a family's values are to be read.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Metric families in the order they were first declared, each with its samples.
#[derive(Default)]
struct Exposition {
    families: Vec<(String, &'static str, Kind, String)>,
    index: HashMap<String, usize>,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &'static str, kind: Kind) -> &mut String {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            self.families
                .push((name.to_string(), help, kind, String::new()));
            self.families.len() - 1
        });
        &mut self.families[i].3
    }

    fn value(
        &mut self,
        name: &str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let out = self.family(name, help, kind);
        let _ = writeln!(out, "{name}{} {}", label_set(labels), number(v));
    }

    fn counter(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        self.value(name, help, Kind::Counter, labels, v as f64);
    }

    fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.value(name, help, Kind::Gauge, labels, v);
    }

    /// A histogram with its bounds divided by `scale` (µs to seconds: 1e6).
    fn histogram(
        &mut self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
        scale: f64,
    ) {
        let out = self.family(name, help, Kind::Histogram);
        for (bound, count) in h.cumulative() {
            let le = number(bound as f64 / scale);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            let _ = writeln!(out, "{name}_bucket{} {count}", label_set(&with_le));
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        let total = h.count();
        let _ = writeln!(out, "{name}_bucket{} {total}", label_set(&with_le));
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            label_set(labels),
            number(h.sum as f64 / scale)
        );
        let _ = writeln!(out, "{name}_count{} {total}", label_set(labels));
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for (name, help, kind, samples) in self.families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", kind.name());
            out.push_str(&samples);
        }
        out
    }
}

fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// The whole exposition: broker facts, then every shard that answered (`None` for one
/// that did not, reported as down), then consumer-group lag across shards.
pub fn render(facts: &BrokerFacts<'_>, shards: &[(u16, Option<ShardSnapshot>)]) -> String {
    let mut e = Exposition::default();
    let broker = facts.broker_id.to_string();
    e.gauge(
        "ringlog_build_info",
        "Always 1; the labels say which build runs.",
        &[("version", facts.version), ("broker_id", &broker)],
        1.0,
    );
    e.gauge(
        "ringlog_uptime_seconds",
        "Seconds since the broker started.",
        &[],
        facts.uptime_seconds,
    );
    e.counter(
        "ringlog_log_lines_dropped_total",
        "Log lines lost because writing them failed (full disk or closed pipe under the log).",
        &[],
        facts.log_lines_dropped,
    );
    e.counter(
        "ringlog_unclean_leader_elections_total",
        "Partitions given to a replica outside their ISR by this broker's controller (unclean.leader.election.enable): records only the old ISR held are lost.",
        &[],
        facts.unclean_elections,
    );
    // Where each partition's high watermark is, for group lag.
    let mut high_watermarks: HashMap<(&str, i32), i64> = HashMap::new();
    for (id, snap) in shards {
        let shard = id.to_string();
        let s = [("shard", shard.as_str())];
        e.gauge(
            "ringlog_shard_up",
            "1 if the shard answered this scrape in time, 0 if it did not.",
            &s,
            if snap.is_some() { 1.0 } else { 0.0 },
        );
        let Some(snap) = snap else { continue };
        for r in &snap.requests {
            e.histogram(
                "ringlog_request_latency_seconds",
                "Requests answered, by protocol and kind: time from the request read to its answer ready.",
                &[("shard", &shard), ("protocol", r.protocol), ("request", r.request)],
                &r.latency_us,
                1e6,
            );
        }
        for c in &snap.connections {
            let l = [("shard", shard.as_str()), ("protocol", c.protocol)];
            e.gauge(
                "ringlog_connections",
                "Client connections open.",
                &l,
                c.open as f64,
            );
            e.counter(
                "ringlog_connections_accepted_total",
                "Client connections accepted.",
                &l,
                c.accepted,
            );
        }
        e.histogram(
            "ringlog_fdatasync_latency_seconds",
            "fdatasync calls on the write path and how long each took (its count is the fdatasync count).",
            &s,
            &snap.fdatasync_us,
            1e6,
        );
        e.histogram(
            "ringlog_commit_write_seconds",
            "Write stages of commits and how long each took: what was buffered issued, then no write in flight (the stage before an fdatasync).",
            &s,
            &snap.commit_write_us,
            1e6,
        );
        e.histogram(
            "ringlog_group_commit_records",
            "Records made durable by one fdatasync (group-commit size).",
            &s,
            &snap.commit_records,
            1.0,
        );
        for (result, n) in [("hit", snap.cache_hits), ("miss", snap.cache_misses)] {
            e.counter(
                "ringlog_cache_reads_total",
                "Log reads served from the recent-batch cache (hit) or from disk (miss).",
                &[("shard", &shard), ("result", result)],
                n,
            );
        }
        for (limit, n) in [
            (
                ConnectionRefusal::Broker.key(),
                snap.connections_refused[ConnectionRefusal::Broker as usize],
            ),
            (
                ConnectionRefusal::PerAddress.key(),
                snap.connections_refused[ConnectionRefusal::PerAddress as usize],
            ),
        ] {
            e.counter(
                "ringlog_connections_refused_total",
                "Connections closed at accept for being over a limit.",
                &[("shard", &shard), ("limit", limit)],
                n,
            );
        }
        for m in &snap.memory {
            let labels = [("shard", shard.as_str()), ("budget", m.kind)];
            e.gauge(
                "ringlog_memory_reserved_bytes",
                "Bytes reserved in a shard's memory budget: requests being read or handled, fetch responses being read or queued.",
                &labels,
                m.used_bytes as f64,
            );
            e.gauge(
                "ringlog_memory_budget_bytes",
                "A shard's memory budget (queued.max.request.bytes or queued.max.response.bytes over the shards).",
                &labels,
                m.capacity_bytes as f64,
            );
            e.counter(
                "ringlog_memory_waits_total",
                "Reservations that waited for memory: the shard was at its budget and stopped reading.",
                &labels,
                m.waits,
            );
        }
        e.gauge(
            "ringlog_open_segment_files",
            "Segment files the shard holds open (shard.open.files.max bounds them; colder ones are closed).",
            &s,
            snap.open_segment_files as f64,
        );
        e.counter(
            "ringlog_segment_file_reopens_total",
            "Segment files reopened after being closed as cold.",
            &s,
            snap.segment_file_reopens,
        );
        e.gauge(
            "ringlog_preallocated_unused_bytes",
            "Bytes the shard's logs keep allocated and zero-filled past their data (shard.preallocate.max.bytes bounds them).",
            &s,
            snap.preallocated_unused_bytes as f64,
        );
        e.counter(
            "ringlog_compactions_total",
            "Compaction passes (cleanup.policy=compact) that rewrote segments.",
            &s,
            snap.compactions,
        );
        e.counter(
            "ringlog_isr_shrinks_total",
            "ISR changes committed for this shard's partition leaders that dropped a lagging member.",
            &s,
            snap.isr_shrinks,
        );
        e.counter(
            "ringlog_isr_expands_total",
            "ISR changes committed for this shard's partition leaders that added a caught-up follower.",
            &s,
            snap.isr_expands,
        );
        e.counter(
            "ringlog_compacted_records_total",
            "Records compaction removed (older values of a key, expired tombstones).",
            &s,
            snap.compacted_records,
        );
        e.counter(
            "ringlog_offsets_records_skipped_total",
            "Records of __consumer_offsets skipped when loading a partition's groups because they do not parse.",
            &s,
            snap.offsets_records_skipped,
        );
        e.gauge(
            "ringlog_waiters",
            "Tasks waiting on the shard's signals: long-polling fetches and shutdown watchers of requests in flight.",
            &s,
            snap.waiters as f64,
        );
        let reads = snap.cache_hits + snap.cache_misses;
        if reads > 0 {
            e.gauge(
                "ringlog_cache_hit_ratio",
                "Share of log reads served from the cache since start.",
                &s,
                snap.cache_hits as f64 / reads as f64,
            );
        }
        e.gauge(
            "ringlog_partitions",
            "Partitions this shard leads.",
            &s,
            snap.partitions.len() as f64,
        );
        let under = snap
            .partitions
            .iter()
            .filter(|p| p.leader && p.in_sync_replicas < p.replicas)
            .count();
        e.gauge(
            "ringlog_under_replicated_partitions",
            "Partitions this shard leads whose in-sync replicas are fewer than their replicas.",
            &s,
            under as f64,
        );
        let under_min = snap
            .partitions
            .iter()
            .filter(|p| p.leader && p.in_sync_replicas < p.min_insync)
            .count();
        e.gauge(
            "ringlog_under_min_isr_partitions",
            "Partitions this shard leads whose in-sync replicas are fewer than min.insync.replicas: acks=all produce is refused with NOT_ENOUGH_REPLICAS.",
            &s,
            under_min as f64,
        );
        e.histogram(
            "ringlog_replication_lag_seconds",
            "From an append on a partition this shard leads to the fetch in which a follower reported it durable (one sample per follower and append).",
            &s,
            &snap.replication_lag_us,
            1e6,
        );
        let failed = snap.partitions.iter().filter(|p| p.log_failed).count();
        e.gauge(
            "ringlog_failed_log_partitions",
            "Partitions this shard leads whose log refuses writes after a failed write or fdatasync (full or failing disk); a restart retries.",
            &s,
            failed as f64,
        );
        for p in &snap.partitions {
            high_watermarks.insert((p.topic.as_str(), p.partition), p.high_watermark);
            let part = p.partition.to_string();
            let l = [
                ("shard", shard.as_str()),
                ("topic", p.topic.as_str()),
                ("partition", part.as_str()),
            ];
            for f in &p.followers {
                let follower = f.broker.to_string();
                let fl = [
                    ("shard", shard.as_str()),
                    ("topic", p.topic.as_str()),
                    ("partition", part.as_str()),
                    ("follower", follower.as_str()),
                ];
                e.gauge(
                    "ringlog_follower_lag_records",
                    "Records the leader holds durable that the follower had not reported durable at its last fetch.",
                    &fl,
                    f.records as f64,
                );
                e.gauge(
                    "ringlog_follower_lag_seconds",
                    "Time since the follower was last caught up with the leader's log end (it leaves the ISR past replica.lag.time.max.ms).",
                    &fl,
                    f.since_caught_up_ms as f64 / 1e3,
                );
            }
            let counters: [(&str, &'static str, u64); 6] = [
                (
                    "ringlog_partition_bytes_in_total",
                    "Record-batch bytes appended.",
                    p.bytes_in,
                ),
                (
                    "ringlog_partition_records_in_total",
                    "Records appended.",
                    p.records_in,
                ),
                (
                    "ringlog_partition_bytes_out_total",
                    "Record-batch bytes sent to fetches.",
                    p.bytes_out,
                ),
                (
                    "ringlog_partition_records_out_total",
                    "Records sent to fetches.",
                    p.records_out,
                ),
                (
                    "ringlog_partition_replica_fetch_bytes_total",
                    "Record-batch bytes this follower fetched from the leader and made durable.",
                    p.bytes_replicated,
                ),
                (
                    "ringlog_partition_replica_fetch_records_total",
                    "Records this follower fetched from the leader and made durable.",
                    p.records_replicated,
                ),
            ];
            for (name, help, v) in counters {
                e.counter(name, help, &l, v);
            }
            let gauges: [(&str, &'static str, f64); 8] = [
                (
                    "ringlog_partition_log_start_offset",
                    "First offset still in the log.",
                    p.log_start as f64,
                ),
                (
                    "ringlog_partition_log_end_offset",
                    "Offset the next record appended gets.",
                    p.log_end as f64,
                ),
                (
                    "ringlog_partition_high_watermark",
                    "Offset below which consumers may read.",
                    p.high_watermark as f64,
                ),
                (
                    "ringlog_partition_size_bytes",
                    "Bytes of the partition's segments.",
                    p.size_bytes as f64,
                ),
                (
                    "ringlog_partition_segments",
                    "Segments of the partition's log.",
                    p.segments as f64,
                ),
                (
                    "ringlog_partition_in_sync_replicas",
                    "Replicas in sync with the leader.",
                    p.in_sync_replicas as f64,
                ),
                (
                    "ringlog_partition_producers",
                    "Idempotent producers the partition tracks (until producer.id.expiration.ms).",
                    p.producers as f64,
                ),
                (
                    "ringlog_partition_log_failed",
                    "1 when the partition's log refuses writes after a failed write or fdatasync.",
                    f64::from(u8::from(p.log_failed)),
                ),
            ];
            for (name, help, v) in gauges {
                e.gauge(name, help, &l, v);
            }
        }
    }
    for (_, snap) in shards {
        let Some(snap) = snap else { continue };
        for c in &snap.committed {
            let part = c.partition.to_string();
            let l = [
                ("group", c.group.as_str()),
                ("topic", c.topic.as_str()),
                ("partition", part.as_str()),
            ];
            e.gauge(
                "ringlog_consumer_group_committed_offset",
                "The group's committed offset.",
                &l,
                c.offset as f64,
            );
            if let Some(hw) = high_watermarks.get(&(c.topic.as_str(), c.partition)) {
                e.gauge(
                    "ringlog_consumer_group_lag",
                    "Records between the group's committed offset and the high watermark.",
                    &l,
                    (hw - c.offset).max(0) as f64,
                );
            }
        }
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CommittedOffset, PartitionSnapshot, ShardStats};
    use crate::metrics::{Protocol, RequestKind};
    use std::time::Instant;

    fn facts() -> BrokerFacts<'static> {
        BrokerFacts {
            broker_id: 3,
            version: "1.2.3",
            uptime_seconds: 1.5,
            log_lines_dropped: 2,
            unclean_elections: 0,
        }
    }

    fn snapshot() -> ShardSnapshot {
        let stats = ShardStats::default();
        stats.request_done(Protocol::Kafka, RequestKind::Produce, Instant::now());
        stats.io.fdatasync_us.record(700);
        stats.io.commit_write_us.record(300);
        let _conn = stats.connection(Protocol::Native);
        let mut s = stats.snapshot(0);
        s.cache_hits = 3;
        s.cache_misses = 1;
        s.partitions.push(PartitionSnapshot {
            topic: "t".into(),
            partition: 1,
            log_end: 10,
            high_watermark: 10,
            replicas: 1,
            in_sync_replicas: 1,
            leader: true,
            records_in: 10,
            ..PartitionSnapshot::default()
        });
        s.committed.push(CommittedOffset {
            group: "g\"1\\\n".into(),
            topic: "t".into(),
            partition: 1,
            offset: 4,
        });
        s
    }

    #[test]
    fn every_family_has_help_and_type_once_and_samples_follow() {
        let text = render(&facts(), &[(0, Some(snapshot())), (1, None)]);
        let mut declared = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(declared.insert(name.clone()), "{name} declared twice");
                current = name;
            } else if line.starts_with("# TYPE ") {
                assert!(line.starts_with(&format!("# TYPE {current} ")), "{line}");
            } else {
                assert!(line.starts_with(&current), "{line} outside {current}");
            }
        }
        assert!(text.contains("ringlog_shard_up{shard=\"1\"} 0\n"));
        assert!(text.contains("ringlog_shard_up{shard=\"0\"} 1\n"));
        assert!(text.contains("ringlog_cache_hit_ratio{shard=\"0\"} 0.75\n"));
        assert!(text.contains(
            "ringlog_partition_records_in_total{shard=\"0\",topic=\"t\",partition=\"1\"} 10\n"
        ));
        assert!(text.contains("ringlog_connections{shard=\"0\",protocol=\"native\"} 1\n"));
    }

    #[test]
    fn histograms_are_cumulative_in_seconds_with_inf_sum_and_count() {
        let text = render(&facts(), &[(0, Some(snapshot()))]);
        let l = "shard=\"0\"";
        assert!(text.contains(&format!(
            "ringlog_fdatasync_latency_seconds_bucket{{{l},le=\"0.0005\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "ringlog_fdatasync_latency_seconds_bucket{{{l},le=\"0.001\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "ringlog_fdatasync_latency_seconds_bucket{{{l},le=\"10\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "ringlog_fdatasync_latency_seconds_bucket{{{l},le=\"+Inf\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "ringlog_fdatasync_latency_seconds_sum{{{l}}} 0.0007\n"
        )));
        assert!(text.contains(&format!(
            "ringlog_fdatasync_latency_seconds_count{{{l}}} 1\n"
        )));
        assert!(text.contains(&format!("ringlog_commit_write_seconds_sum{{{l}}} 0.0003\n")));
    }

    #[test]
    fn partition_health_counts_leaders_only_and_followers_show_their_lag() {
        let stats = ShardStats::default();
        stats.replication_lag_us.record(1_800);
        let mut s = stats.snapshot(0);
        let part = |partition, leader, isr| PartitionSnapshot {
            topic: "r".into(),
            partition,
            replicas: 3,
            in_sync_replicas: isr,
            leader,
            min_insync: if leader { 2 } else { 0 },
            ..PartitionSnapshot::default()
        };
        // Led: one short of its replicas, one below min.insync.replicas.
        let mut led = part(0, true, 2);
        led.followers = vec![
            crate::metrics::FollowerLag {
                broker: 2,
                records: 0,
                since_caught_up_ms: 120,
            },
            crate::metrics::FollowerLag {
                broker: 3,
                records: 4_000,
                since_caught_up_ms: 31_000,
            },
        ];
        s.partitions.push(led);
        s.partitions.push(part(1, true, 1));
        // Followed, with its ISR short too: the leader's broker counts it.
        let mut followed = part(2, false, 1);
        followed.bytes_replicated = 4_096;
        s.partitions.push(followed);
        let text = render(&facts(), &[(0, Some(s))]);
        let l = "shard=\"0\"";
        assert!(text.contains(&format!("ringlog_under_replicated_partitions{{{l}}} 2\n")));
        assert!(text.contains(&format!("ringlog_under_min_isr_partitions{{{l}}} 1\n")));
        let f = |n| format!("{l},topic=\"r\",partition=\"0\",follower=\"{n}\"");
        assert!(text.contains(&format!("ringlog_follower_lag_records{{{}}} 4000\n", f(3))));
        assert!(text.contains(&format!("ringlog_follower_lag_seconds{{{}}} 31\n", f(3))));
        assert!(text.contains(&format!("ringlog_follower_lag_seconds{{{}}} 0.12\n", f(2))));
        assert!(text.contains(&format!(
            "ringlog_partition_replica_fetch_bytes_total{{{l},topic=\"r\",partition=\"2\"}} 4096\n"
        )));
        assert!(text.contains(&format!(
            "ringlog_replication_lag_seconds_bucket{{{l},le=\"0.0015\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "ringlog_replication_lag_seconds_bucket{{{l},le=\"0.002\"}} 1\n"
        )));
    }

    #[test]
    fn group_lag_uses_the_high_watermark_and_labels_are_escaped() {
        let text = render(&facts(), &[(0, Some(snapshot()))]);
        assert!(text.contains(
            "ringlog_consumer_group_lag{group=\"g\\\"1\\\\\\n\",topic=\"t\",partition=\"1\"} 6\n"
        ), "{text}");
    }
}
