//! `ringlog cluster describe`: the brokers with their epochs and fencing, the active
//! controller and its term, and the metadata offset, as the bootstrap broker sees
//! them (Kafka's `kafka-metadata-quorum describe` and DescribeCluster in one).

use ringlog::client::admin::describe_cluster;
use ringlog::client::Client;

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
}

pub fn run(cmd: ClusterCommand) -> anyhow::Result<i32> {
    match cmd {
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
