//! `ringlog consume`: print records of a topic, one per line.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use std::collections::BTreeMap;

use ringlog::client::{
    Client, ClientError, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset, Record,
    StartOffset,
};

use super::{block_on, Connect};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: Connect,
    /// Topic to read.
    #[arg(short, long)]
    topic: String,
    /// Start at the earliest offset (default: only new records). With --group, only
    /// where the group has no committed offset (auto.offset.reset=earliest).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Read only this partition.
    #[arg(short, long, conflicts_with = "group")]
    partition: Option<i32>,
    /// Consume as a member of this consumer group: the broker assigns partitions,
    /// reading starts at the group's committed offsets, and progress is committed
    /// (every second and at exit) unless --no-commit.
    #[arg(short, long)]
    group: Option<String>,
    /// With --group: never commit offsets.
    #[arg(long, requires = "group")]
    no_commit: bool,
    /// With --group: the session timeout (session.timeout.ms).
    #[arg(long, requires = "group", default_value_t = 45_000)]
    session_timeout_ms: u64,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print the key before the value, tab-separated.
    #[arg(long)]
    print_key: bool,
    /// Print the offset before the value.
    #[arg(long)]
    print_offset: bool,
    /// Print the partition before the value.
    #[arg(long)]
    print_partition: bool,
}

/// How often `--group` commits what it printed.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

pub fn run(args: ConsumeArgs) -> anyhow::Result<i32> {
    block_on(move || async move {
        let client = Client::connect(&args.connect.bootstrap_server).await?;
        let mut source = match &args.group {
            Some(group) => Source::Group(join_group(client, &args, group).await?),
            None => Source::Partitions(assign(client, &args).await?),
        };
        let (count, unprinted) = print_records(&mut source, &args).await?;
        if let Source::Group(mut consumer) = source {
            if !args.no_commit {
                consumer
                    .commit_with(&unprinted)
                    .await
                    .context("cannot commit the group's offsets")?;
            }
            consumer.leave().await.context("cannot leave the group")?;
        }
        eprintln!("Processed a total of {count} messages");
        Ok(0)
    })
}

/// Where records come from: chosen partitions, or a group's assignment.
enum Source {
    Partitions(Consumer),
    Group(GroupConsumer),
}

impl Source {
    async fn poll(&mut self) -> Result<Vec<Record>, ClientError> {
        match self {
            Source::Partitions(c) => c.poll().await,
            Source::Group(c) => c.poll().await,
        }
    }
}

fn fetch_wait_ms(args: &ConsumeArgs) -> u32 {
    args.timeout_ms
        .map_or(ConsumerConfig::default().max_wait_ms, |t| {
            u32::try_from(t.min(500)).unwrap_or(500)
        })
}

async fn assign(client: Client, args: &ConsumeArgs) -> anyhow::Result<Consumer> {
    let start = match (args.offset, args.from_beginning) {
        (Some(o), _) => StartOffset::Offset(o),
        (None, true) => StartOffset::Earliest,
        (None, false) => StartOffset::Latest,
    };
    let config = ConsumerConfig {
        max_wait_ms: fetch_wait_ms(args),
        ..ConsumerConfig::default()
    };
    Consumer::assign(
        client,
        &args.topic,
        args.partition.map(|p| vec![p]),
        start,
        config,
    )
    .await
    .with_context(|| format!("cannot consume topic {:?}", args.topic))
}

/// `--group`: join as a member; what is printed is committed (every second and at
/// exit) unless `--no-commit`.
async fn join_group(
    client: Client,
    args: &ConsumeArgs,
    group: &str,
) -> anyhow::Result<GroupConsumer> {
    let mut config = GroupConfig::new(group, &[args.topic.as_str()]);
    config.client_id = "ringlog-cli".into();
    config.session_timeout = Duration::from_millis(args.session_timeout_ms);
    config.heartbeat_interval = (config.session_timeout / 3).min(Duration::from_secs(3));
    config.auto_commit = (!args.no_commit).then_some(AUTO_COMMIT_INTERVAL);
    config.offset_reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    config.fetch.max_wait_ms = fetch_wait_ms(args);
    GroupConsumer::join(client, config)
        .await
        .with_context(|| format!("cannot join group {group:?} on topic {:?}", args.topic))
}

/// Prints records until `--max-messages` or `--timeout-ms`. Returns how many were
/// printed and, per partition, the first offset returned but not printed (the
/// position a group commits for it).
async fn print_records(
    source: &mut Source,
    args: &ConsumeArgs,
) -> anyhow::Result<(u64, BTreeMap<(String, i32), i64>)> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    let mut last_record = Instant::now();
    let mut unprinted: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while unprinted.is_empty() && args.max_messages.is_none_or(|m| count < m) {
        let records = source.poll().await?;
        if records.is_empty() {
            if args
                .timeout_ms
                .is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t))
            {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        for r in records {
            if args.max_messages.is_some_and(|m| count >= m) {
                unprinted
                    .entry((args.topic.clone(), r.partition))
                    .and_modify(|o| *o = (*o).min(r.offset))
                    .or_insert(r.offset);
                continue;
            }
            print_record(&mut out, args, &r)?;
            count += 1;
        }
        // Printed before committed: at least once.
        out.flush()?;
    }
    out.flush()?;
    Ok((count, unprinted))
}

fn print_record(out: &mut impl Write, args: &ConsumeArgs, r: &Record) -> std::io::Result<()> {
    if args.print_partition {
        write!(out, "Partition:{}\t", r.partition)?;
    }
    if args.print_offset {
        write!(out, "Offset:{}\t", r.offset)?;
    }
    if args.print_key {
        out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(b"\t")?;
    }
    out.write_all(r.value.as_deref().unwrap_or(b"null"))?;
    out.write_all(b"\n")
}
