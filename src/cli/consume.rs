//! `ringlog consume`: print records of a topic, one per line.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use ringlog::client::{Client, Consumer, ConsumerConfig, StartOffset};

use super::{block_on, Connect};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: Connect,
    /// Topic to read.
    #[arg(short, long)]
    topic: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Read only this partition.
    #[arg(short, long)]
    partition: Option<i32>,
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

pub fn run(args: ConsumeArgs) -> anyhow::Result<i32> {
    block_on(move || async move {
        let client = Client::connect(&args.connect.bootstrap_server).await?;
        let start = match (args.offset, args.from_beginning) {
            (Some(o), _) => StartOffset::Offset(o),
            (None, true) => StartOffset::Earliest,
            (None, false) => StartOffset::Latest,
        };
        let mut config = ConsumerConfig::default();
        if let Some(t) = args.timeout_ms {
            config.max_wait_ms = u32::try_from(t.min(500)).unwrap_or(500);
        }
        let mut consumer = Consumer::assign(
            client,
            &args.topic,
            args.partition.map(|p| vec![p]),
            start,
            config,
        )
        .await
        .with_context(|| format!("cannot consume topic {:?}", args.topic))?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut count = 0u64;
        let mut last_record = Instant::now();
        'outer: loop {
            if args.max_messages.is_some_and(|m| count >= m) {
                break;
            }
            let records = consumer.poll().await?;
            if records.is_empty() {
                if let Some(t) = args.timeout_ms {
                    if last_record.elapsed() >= Duration::from_millis(t) {
                        break;
                    }
                }
                continue;
            }
            last_record = Instant::now();
            for r in records {
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
                out.write_all(b"\n")?;
                count += 1;
                if args.max_messages.is_some_and(|m| count >= m) {
                    break 'outer;
                }
            }
            out.flush()?;
        }
        out.flush()?;
        eprintln!("Processed a total of {count} messages");
        Ok(0)
    })
}
