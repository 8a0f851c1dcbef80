//! `ringlog cluster describe`: the brokers with their epochs and fencing, the active
//! controller and its term, and the metadata offset, as the bootstrap broker sees
//! them (Kafka's `kafka-metadata-quorum describe` and DescribeCluster in one).
//! `ringlog cluster elect-leaders`: Kafka's `kafka-leader-election.sh`.

use ringlog::client::admin::describe_cluster;
use ringlog::client::Client;
use ringlog_schema::wire::ErrorCode;

use super::{block_on, Connect};

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the brokers, the active controller and the metadata offset.
    Describe {
        #[command(flatten)]
        connect: Connect,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Elect leaders: give partitions back to their preferred leader (the first
    /// replica, when live and in sync), or, with --unclean, give partitions that
    /// have no leader to a live replica outside the ISR (records only the old ISR
    /// held are lost).
    ElectLeaders {
        #[command(flatten)]
        connect: Connect,
        /// Preferred-leader election.
        #[arg(long, required_unless_present = "unclean", conflicts_with = "unclean")]
        preferred: bool,
        /// Unclean election of partitions without a leader.
        #[arg(long)]
        unclean: bool,
        /// Only this topic's partitions (default: every topic).
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
    },
}

pub fn run(cmd: ClusterCommand) -> anyhow::Result<i32> {
    match cmd {
        ClusterCommand::ElectLeaders {
            connect,
            preferred: _,
            unclean,
            topic,
            partition,
        } => block_on(move || async move {
            let client = Client::connect(&connect.bootstrap_server).await?;
            let partitions = match (topic, partition) {
                (None, _) => None,
                (Some(t), Some(p)) => Some(vec![(t, p)]),
                (Some(t), None) => {
                    let info = client.topic(&t, false).await?;
                    Some(
                        info.partitions
                            .iter()
                            .map(|p| (t.clone(), p.partition))
                            .collect(),
                    )
                }
            };
            let outcomes = client.elect_leaders(unclean, partitions).await?;
            // As kafka-leader-election.sh: a partition that needed no election is
            // not a failure.
            let mut failed = 0;
            for o in outcomes {
                match o.result {
                    Ok(()) => println!("{}-{}: elected", o.topic, o.partition),
                    Err(e) if e.code() == Some(ErrorCode::ELECTION_NOT_NEEDED) => {
                        println!("{}-{}: election not needed", o.topic, o.partition)
                    }
                    Err(e) => {
                        failed += 1;
                        println!("{}-{}: failed: {e}", o.topic, o.partition)
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }),
        ClusterCommand::Describe { connect, json } => block_on(move || async move {
            let client = Client::connect(&connect.bootstrap_server).await?;
            let c = describe_cluster(&client).await?;
            let brokers = c.brokers.unwrap_or_default();
            if json {
                let v = serde_json::json!({
                    "cluster_id": c.cluster_id,
                    "controller_id": c.controller_id,
                    "controller_term": c.controller_term,
                    "metadata_offset": c.metadata_offset,
                    "brokers": brokers.iter().map(|b| serde_json::json!({
                        "id": b.id,
                        "host": b.host,
                        "port": b.port,
                        "shards": b.shard_count,
                        "epoch": b.epoch,
                        "fenced": b.fenced,
                    })).collect::<Vec<_>>(),
                });
                println!("{v}");
                return Ok(0);
            }
            println!("ClusterId: {}", c.cluster_id.unwrap_or_default());
            let controller = match c.controller_id {
                -1 => "none".to_string(),
                id => id.to_string(),
            };
            println!(
                "Controller: {controller}\tTerm: {}\tMetadataOffset: {}",
                c.controller_term, c.metadata_offset
            );
            println!(
                "{:>6} {:<24} {:>6} {:>8} {:<8}",
                "BROKER", "ADDRESS", "SHARDS", "EPOCH", "STATE"
            );
            for b in brokers {
                println!(
                    "{:>6} {:<24} {:>6} {:>8} {:<8}",
                    b.id,
                    format!("{}:{}", b.host, b.port),
                    b.shard_count,
                    b.epoch,
                    if b.fenced { "fenced" } else { "unfenced" }
                );
            }
            Ok(0)
        }),
    }
}
