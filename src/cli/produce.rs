//! `ringlog produce`: one record per stdin line, batched and pipelined.

use std::io::BufRead;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use ringlog::client::{Client, Producer, ProducerConfig};
use ringlog::schema::compression::Codec;

use super::{block_on, Connect};

/// Lines handed from the stdin thread to the executor at a time.
const LINES_PER_CHUNK: usize = 1024;

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: Connect,
    /// Topic to produce to.
    #[arg(short, long)]
    topic: String,
    /// Acknowledgements: all (-1), 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i8,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Produce every record to this partition.
    #[arg(short, long)]
    partition: Option<i32>,
    /// Batch size in bytes (batch.size).
    #[arg(long, default_value_t = ringlog::client::BATCH_BYTES_DEFAULT)]
    batch_size: usize,
    /// Linger in milliseconds (linger.ms).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Codec of each batch (compression.type): none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_codec)]
    compression_type: Codec,
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    Codec::from_name(s).ok_or_else(|| format!("{s:?}: expected none, gzip, snappy, lz4 or zstd"))
}

fn parse_acks(s: &str) -> Result<i8, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("{s:?}: expected all, 1 or 0")),
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<i32> {
    let (tx, rx) = flume::bounded::<std::io::Result<Vec<String>>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut chunk = Vec::with_capacity(LINES_PER_CHUNK);
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => chunk.push(l),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
            if chunk.len() == LINES_PER_CHUNK && tx.send(Ok(std::mem::take(&mut chunk))).is_err() {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(Ok(chunk));
        }
    });
    block_on(move || async move {
        let client = Client::connect(&args.connect.bootstrap_server).await?;
        let config = ProducerConfig {
            acks: args.acks,
            batch_bytes: args.batch_size,
            linger: Duration::from_millis(args.linger_ms),
            compression: args.compression_type,
            ..ProducerConfig::default()
        };
        // Resolve the topic first so an unknown one fails before reading input.
        client
            .topic(&args.topic, config.auto_create_topics)
            .await
            .with_context(|| format!("topic {:?}", args.topic))?;
        let producer = Producer::new(client, config);
        let mut line_no = 0u64;
        while let Ok(chunk) = rx.recv_async().await {
            for line in chunk.context("reading stdin")? {
                line_no += 1;
                let (key, value) = match &args.key_separator {
                    Some(sep) => {
                        let (k, v) = line.split_once(sep.as_str()).with_context(|| {
                            format!("line {line_no} has no key separator {sep:?}")
                        })?;
                        (Some(Bytes::from(k.to_string())), v.to_string())
                    }
                    None => (None, line),
                };
                producer
                    .send(
                        &args.topic,
                        args.partition,
                        key,
                        Some(Bytes::from(value)),
                        &[],
                    )
                    .await
                    .with_context(|| format!("line {line_no}"))?;
            }
        }
        producer.flush().await.context("produce failed")?;
        Ok(0)
    })
}
