//! Failover on real broker processes (issue 18): unclean leader election.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::*;

/// Five voters, so the controller quorum outlives the two brokers this kills.
const SETTINGS: &[&str] = &[
    "--set",
    "broker.session.timeout.ms=3000",
    "--set",
    "broker.heartbeat.interval.ms=300",
    "--set",
    "metadata.commit.timeout.ms=3000",
    "--set",
    "min.insync.replicas=1",
    "--set",
    "replica.lag.time.max.ms=1500",
];

/// `topic describe` of `topic`-0 through broker `asked`: (leader, ISR).
fn leader_and_isr(c: &Cluster, asked: usize, topic: &str) -> (String, String) {
    let out = ok(&c.broker(asked).cli(&["topic", "describe", topic]));
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.split(&format!("{name}: ")).nth(1))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    (field("Leader"), field("Isr"))
}

fn produce(c: &Cluster, via: usize, topic: &str, from: usize, n: usize) -> std::process::Output {
    let lines: String = (from..from + n).map(|i| format!("v{i}\n")).collect();
    c.broker(via).cli_input(
        &["produce", "--topic", topic, "--acks", "all"],
        lines.as_bytes(),
    )
}

/// Issue 18 scope 2: with `unclean.leader.election.enable` off (the default) a
/// partition whose in-sync replicas are all down stays offline even though a
/// replica outside the ISR is alive, and produce gets a clear retriable error;
/// turning it on for the topic at runtime elects that replica at once, which
/// then holds only what it had (the records only the old ISR held are lost, as
/// documented), and the election is counted.
#[test]
fn a_partition_without_live_isr_stays_offline_until_unclean_election_is_enabled() {
    let mut c = Cluster::start(5, SETTINGS);
    // Partition 0 of an RF 2 topic: replicas 1 and 2, led by 1.
    ok(&c.broker(3).cli(&[
        "topic",
        "create",
        "u",
        "--partitions",
        "1",
        "--replication-factor",
        "2",
    ]));
    assert_eq!(leader_and_isr(&c, 3, "u"), ("1".into(), "1,2".into()));
    ok(&produce(&c, 3, "u", 0, 100));

    // Broker 2 goes and leaves the ISR; what is produced next is on broker 1 only.
    c.kill9(2);
    c.wait_for(Duration::from_secs(20), "broker 2 leaves the ISR", |c| {
        (leader_and_isr(c, 3, "u").1 == "1").then_some(())
    });
    ok(&produce(&c, 3, "u", 100, 50));
    // Broker 1 goes too; broker 2 comes back, outside the ISR.
    c.kill9(1);
    c.restart(2);
    c.wait_for(Duration::from_secs(30), "broker 1 is fenced", |c| {
        let brokers = c.describe(3)["brokers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        brokers
            .iter()
            .any(|b| b["id"] == 1 && b["fenced"] == true)
            .then_some(())
    });
    c.wait_for(Duration::from_secs(30), "broker 2 is unfenced", |c| {
        let brokers = c.describe(3)["brokers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        brokers
            .iter()
            .any(|b| b["id"] == 2 && b["fenced"] == false)
            .then_some(())
    });
    // Offline: no leader, the ISR keeps broker 1, and produce is refused with a
    // retriable error that says why.
    assert_eq!(leader_and_isr(&c, 3, "u"), ("none".into(), "1".into()));
    let refused = fails(&produce(&c, 3, "u", 150, 10));
    assert!(refused.contains("LEADER_NOT_AVAILABLE"), "{refused}");
    let unclean = |c: &Cluster, id: usize| {
        let text = metrics(&c.broker(id).admin_addr);
        metric_sum(&text, "ringlog_unclean_leader_elections_total", &[])
    };
    let elections_before: f64 = (2..=5).map(|id| unclean(&c, id)).sum();
    assert_eq!(elections_before, 0.0);

    ok(&c.broker(4).cli(&[
        "topic",
        "alter-config",
        "u",
        "--config",
        "unclean.leader.election.enable=true",
    ]));
    let (_, took) = c.wait_for(Duration::from_secs(10), "broker 2 is elected", |c| {
        (leader_and_isr(c, 3, "u") == ("2".into(), "2".into())).then_some(())
    });
    eprintln!("unclean election {took:?} after the config change");
    ok(&produce(&c, 3, "u", 200, 10));
    // Broker 2 never had 100..150: they are lost; what it had and what came after
    // is there, in order.
    let want: Vec<String> = (0..100).chain(200..210).map(|i| format!("v{i}")).collect();
    assert_eq!(c.broker(5).consume_values("u"), want);
    let elections: f64 = (2..=5).map(|id| unclean(&c, id)).sum();
    assert_eq!(
        elections, 1.0,
        "counted once, by the controller that committed it"
    );
    assert!(
        (2..=5).any(|id| c.broker(id).log().contains("unclean leader election")),
        "no warning logged"
    );

    // The old leader comes back as a follower: the records only it held diverge
    // from the new leader's log (KIP-279), so it truncates them and rejoins.
    c.restart(1);
    c.wait_for(Duration::from_secs(30), "broker 1 rejoins the ISR", |c| {
        (leader_and_isr(c, 3, "u") == ("2".into(), "1,2".into())).then_some(())
    });
    assert!(
        c.broker(1)
            .log()
            .contains("replica truncated to the leader's log"),
        "{}",
        c.broker(1).log()
    );
}

/// Issue 18 scope 3: SIGTERM makes a broker ask the controller to move its
/// leaderships first. With a 30 s session only a controlled shutdown can explain
/// the leader moving before the broker is gone; the new leader is an ISR member,
/// so every acknowledged record is there, and produce goes on at once.
#[test]
fn a_stopping_broker_hands_its_leaderships_over_before_it_exits() {
    let settings = [
        "--set",
        "broker.session.timeout.ms=30000",
        "--set",
        "broker.heartbeat.interval.ms=300",
        "--set",
        "metadata.commit.timeout.ms=5000",
        "--set",
        "min.insync.replicas=2",
    ];
    let mut c = Cluster::start(3, &settings);
    ok(&c.broker(2).cli(&[
        "topic",
        "create",
        "s",
        "--partitions",
        "1",
        "--replication-factor",
        "3",
    ]));
    assert_eq!(leader_and_isr(&c, 2, "s"), ("1".into(), "1,2,3".into()));
    ok(&produce(&c, 2, "s", 0, 100));

    let started = std::time::Instant::now();
    let status = c.broker_mut(1).terminate();
    let took = started.elapsed();
    assert!(status.success(), "broker 1 exited with {status}");
    eprintln!("broker 1 stopped {took:?} after SIGTERM");
    // Already moved when it exited: broker 2, the next in-sync replica.
    let (leader, isr) = c
        .wait_for(
            Duration::from_secs(2),
            "the survivors see the new leader",
            |c| {
                let (leader, isr) = leader_and_isr(c, 3, "s");
                (leader != "1").then_some((leader, isr))
            },
        )
        .0;
    assert_eq!((leader.as_str(), isr.as_str()), ("2", "2,3"));
    assert!(
        c.broker(1).log().contains("controlled shutdown: fenced"),
        "{}",
        c.broker(1).log()
    );
    ok(&produce(&c, 3, "s", 100, 100));
    let want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    assert_eq!(c.broker(3).consume_values("s"), want);
}
