//! `ringlog topic create | list | describe | alter-config | delete`.

use anyhow::Context;
use ringlog::client::Client;
use ringlog::schema::wire::ErrorCode;

use super::{block_on, Connect};

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        #[command(flatten)]
        connect: Connect,
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(short, long)]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default.replication.factor).
        #[arg(short = 'r', long)]
        replication_factor: Option<i16>,
        /// Topic config, e.g. --config retention.ms=60000 (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Describe a topic: a line per partition.
    Describe {
        #[command(flatten)]
        connect: Connect,
        name: String,
    },
    /// Change a topic's configs (those its partitions pick up while open:
    /// retention.ms, retention.bytes, min.insync.replicas).
    AlterConfig {
        #[command(flatten)]
        connect: Connect,
        name: String,
        /// Set a config, e.g. --config retention.ms=60000 (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Remove a config, so the broker's default applies (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
        /// Only check that the change would be accepted.
        #[arg(long)]
        validate_only: bool,
    },
    /// Delete a topic and its data.
    Delete {
        #[command(flatten)]
        connect: Connect,
        name: String,
    },
}

pub fn run(cmd: TopicCommand) -> anyhow::Result<i32> {
    block_on(move || async move {
        match cmd {
            TopicCommand::Create {
                connect,
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                let configs = key_values(&configs)?;
                let client = Client::connect(&connect.bootstrap_server).await?;
                client
                    .create_topic(
                        &name,
                        partitions.unwrap_or(-1),
                        replication_factor.unwrap_or(-1),
                        configs,
                    )
                    .await
                    .with_context(|| format!("cannot create topic {name:?}"))?;
                println!("Created topic {name}.");
            }
            TopicCommand::List { connect } => {
                let client = Client::connect(&connect.bootstrap_server).await?;
                let md = client.metadata(None, false).await?;
                for t in md.topics.unwrap_or_default() {
                    println!("{}", t.name);
                }
            }
            TopicCommand::Describe { connect, name } => {
                let client = Client::connect(&connect.bootstrap_server).await?;
                let topics = client.describe_topics(Some(vec![name.clone()])).await?;
                let t = topics.into_iter().next().context("empty answer")?;
                if t.error == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                    anyhow::bail!("unknown topic {name:?}");
                }
                if t.error != ErrorCode::NONE {
                    anyhow::bail!("{}", t.message.unwrap_or_default());
                }
                let parts = t.partitions.unwrap_or_default();
                let configs: Vec<String> = t
                    .configs
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| format!("{}={}", c.key, c.value))
                    .collect();
                println!(
                    "Topic: {}\tPartitionCount: {}\tConfigs: {}",
                    t.name,
                    parts.len(),
                    configs.join(",")
                );
                for p in parts {
                    let list = |v: Option<Vec<i32>>| {
                        v.unwrap_or_default()
                            .iter()
                            .map(i32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tShard: {}\tLogStart: {}\tHighWatermark: {}\tLogEnd: {}",
                        t.name,
                        p.partition,
                        // Kafka's kafka-topics prints an offline partition so.
                        if p.leader < 0 { "none".to_string() } else { p.leader.to_string() },
                        list(p.replicas),
                        list(p.isr),
                        p.shard,
                        p.log_start,
                        p.high_watermark,
                        p.log_end
                    );
                }
            }
            TopicCommand::AlterConfig {
                connect,
                name,
                configs,
                delete,
                validate_only,
            } => {
                if configs.is_empty() && delete.is_empty() {
                    anyhow::bail!(
                        "nothing to change: give --config KEY=VALUE or --delete-config KEY"
                    );
                }
                let set = key_values(&configs)?;
                let client = Client::connect(&connect.bootstrap_server).await?;
                client
                    .alter_topic_configs(&name, set, delete, validate_only)
                    .await
                    .with_context(|| format!("cannot alter the configs of topic {name:?}"))?;
                if validate_only {
                    println!("The config change of topic {name} is valid.");
                } else {
                    println!("Altered the configs of topic {name}.");
                }
            }
            TopicCommand::Delete { connect, name } => {
                let client = Client::connect(&connect.bootstrap_server).await?;
                client
                    .delete_topic(&name)
                    .await
                    .with_context(|| format!("cannot delete topic {name:?}"))?;
                println!("Deleted topic {name}.");
            }
        }
        Ok(0)
    })
}

/// `KEY=VALUE` arguments as pairs.
fn key_values(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("--config {kv:?}: expected KEY=VALUE"))
        })
        .collect()
}
