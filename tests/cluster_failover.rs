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

/// Settings for the preferred-leader tests: a short imbalance check, and a
/// session long enough that only the controlled shutdown moves leaderships.
fn preferred_settings(auto_rebalance: bool) -> Vec<String> {
    [
        "broker.session.timeout.ms=30000",
        "broker.heartbeat.interval.ms=300",
        "metadata.commit.timeout.ms=5000",
        "replica.lag.time.max.ms=1500",
        "leader.imbalance.check.interval.seconds=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("auto.leader.rebalance.enable={auto_rebalance}")])
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// Broker 1 stops; its leadership of `topic`-0 moves to broker 2.
fn stop_preferred_leader(c: &mut Cluster, topic: &str) {
    assert!(c.broker_mut(1).terminate().success());
    c.wait_for(Duration::from_secs(5), "broker 2 leads", |c| {
        (leader_and_isr(c, 2, topic) == ("2".into(), "2,3".into())).then_some(())
    });
}

/// Broker 1 stops (its leadership of `topic`-0 moves to broker 2), comes back
/// and catches up into the ISR again: `topic`-0 is then led by a broker other
/// than its preferred leader.
fn bounce_preferred_leader(c: &mut Cluster, topic: &str) {
    stop_preferred_leader(c, topic);
    c.restart(1);
    c.wait_for(Duration::from_secs(20), "broker 1 rejoins the ISR", |c| {
        (leader_and_isr(c, 2, topic) == ("2".into(), "1,2,3".into())).then_some(())
    });
}

/// Issue 18 scope 4: `ringlog cluster elect-leaders --preferred` and Kafka's
/// ElectLeaders give a partition back to its preferred leader once it is in
/// sync again, answer ELECTION_NOT_NEEDED where it leads already, and leave
/// every record in place; DescribeCluster lists the brokers and the controller.
#[test]
fn preferred_leaders_are_elected_on_demand() {
    let settings = preferred_settings(false);
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut c = Cluster::start(3, &settings);
    ok(&c.broker(2).cli(&[
        "topic",
        "create",
        "p",
        "--partitions",
        "2",
        "--replication-factor",
        "3",
    ]));
    ok(&produce(&c, 2, "p", 0, 100));
    bounce_preferred_leader(&mut c, "p");

    let out = ok(&c
        .broker(3)
        .cli(&["cluster", "elect-leaders", "--preferred", "--topic", "p"]));
    assert_eq!(out, "p-0: elected\np-1: election not needed\n");
    assert_eq!(leader_and_isr(&c, 2, "p").0, "1");
    ok(&produce(&c, 3, "p", 100, 100));

    // Kafka's ElectLeaders, after another bounce.
    bounce_preferred_leader(&mut c, "p");
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        ApiKey, DescribeClusterRequest, DescribeClusterResponse, ElectLeadersRequest,
        ElectLeadersResponse, TopicName,
    };
    let mut tp = TopicPartitions::default();
    tp.topic = TopicName(kafka_protocol::protocol::StrBytes::from_static_str("p"));
    tp.partitions = vec![0, 1, 7];
    let mut req = ElectLeadersRequest::default();
    req.election_type = 0;
    req.topic_partitions = Some(vec![tp]);
    req.timeout_ms = 10_000;
    let mut conn = common::kafka::Conn::new(&c.broker(3).kafka_addr);
    let resp: ElectLeadersResponse = conn.call(ApiKey::ElectLeaders, 2, &req);
    assert_eq!(resp.error_code, 0);
    let codes: Vec<(i32, i16)> = resp.replica_election_results[0]
        .partition_result
        .iter()
        .map(|r| (r.partition_id, r.error_code))
        .collect();
    // Elected; ELECTION_NOT_NEEDED; UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(codes, [(0, 0), (1, 84), (7, 3)]);
    assert_eq!(leader_and_isr(&c, 2, "p").0, "1");

    let mut req = DescribeClusterRequest::default();
    req.endpoint_type = 1;
    let resp: DescribeClusterResponse = conn.call(ApiKey::DescribeCluster, 1, &req);
    assert_eq!(resp.error_code, 0);
    let mut ids: Vec<i32> = resp.brokers.iter().map(|b| b.broker_id.0).collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3]);
    assert!((1..=3).contains(&resp.controller_id.0), "{resp:?}");
    assert!(!resp.cluster_id.is_empty());

    // Nothing was lost or doubled by the moves.
    let want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    let mut got = c.broker(1).consume_values("p");
    got.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
    assert_eq!(got, want);
}

/// Issue 18 scope 4: with `auto.leader.rebalance.enable` the active controller
/// gives a partition back to its preferred leader by itself once that broker
/// is in sync again (here its only preferred partition: 100 % imbalance).
#[test]
fn the_controller_gives_partitions_back_to_their_preferred_leader() {
    let settings = preferred_settings(true);
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut c = Cluster::start(3, &settings);
    ok(&c.broker(2).cli(&[
        "topic",
        "create",
        "a",
        "--partitions",
        "1",
        "--replication-factor",
        "3",
    ]));
    ok(&produce(&c, 2, "a", 0, 100));
    stop_preferred_leader(&mut c, "a");
    c.restart(1);
    let (_, took) = c.wait_for(
        Duration::from_secs(30),
        "broker 1 leads its preferred partition again by itself",
        |c| (leader_and_isr(c, 2, "a") == ("1".into(), "1,2,3".into())).then_some(()),
    );
    eprintln!("the preferred leader led again {took:?} after its restart");
    ok(&produce(&c, 3, "a", 100, 100));
    let want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    assert_eq!(c.broker(3).consume_values("a"), want);
}
