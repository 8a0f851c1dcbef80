//! What a run does: [`RunConfig`], built from the command line or a standard workload,
//! and recorded in every report so a figure always travels with its settings.

use serde::{Deserialize, Serialize};

/// Which clients a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Producers only: produce-ack latency and throughput.
    Produce,
    /// Consumers only, reading what the topic holds from the beginning.
    Consume,
    /// Producers and consumers together: end-to-end latency as well.
    E2e,
}

/// The wire protocol the bench's clients speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// ringlog's native protocol (its client library on glommio).
    #[default]
    Native,
    /// The Apache Kafka protocol (rskafka on tokio): ringlog's Kafka listener or any
    /// Kafka-compatible broker.
    Kafka,
}

/// What fills a record after its bench header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Pseudo-random bytes (from `--seed`): what compression cannot shrink.
    Random,
    /// Repeated text: what compression shrinks well.
    Compressible,
}

/// Every setting of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The standard workload this run is, if any.
    pub workload: Option<String>,
    pub mode: Mode,
    /// Absent in reports written before the Kafka protocol: native.
    #[serde(default)]
    pub protocol: Protocol,
    pub bootstrap_server: String,
    pub topic: String,
    /// Partitions of the topic when the bench creates it.
    pub partitions: i32,
    pub replication_factor: i16,
    pub producers: usize,
    /// Consumers in each consumer group.
    pub consumers: usize,
    /// Consumer groups; every group receives every record.
    pub consumer_groups: usize,
    pub message_size: usize,
    pub payload: PayloadKind,
    /// Producer `batch.size` in bytes.
    pub batch_size: usize,
    pub linger_ms: u64,
    /// Producer `max.in.flight.requests` per connection. Absent in older reports:
    /// the native producer's default then.
    #[serde(default = "max_in_flight_default")]
    pub max_in_flight: usize,
    /// 0, 1 or -1 (all).
    pub acks: i8,
    /// Records per second over all producers; `None` is as fast as the broker takes.
    pub rate: Option<u64>,
    /// Records to produce in all (or to consume, in consume mode).
    pub messages: Option<u64>,
    /// Seconds to run when `messages` is not set.
    pub duration_s: f64,
    /// Seconds at the start whose records are sent but not measured.
    pub warmup_s: f64,
    /// Distinct keys (partitioned by murmur2); `None` sends no keys, round-robin.
    pub keys: Option<u64>,
    /// CPUs the bench's threads are pinned to, in turn.
    pub cores: Option<Vec<usize>>,
    pub seed: u64,
    /// The broker's process, for its CPU use; `None` finds it by the listening
    /// port of `bootstrap_server` when the broker runs on this host.
    #[serde(default)]
    pub broker_pid: Option<u32>,
}

fn max_in_flight_default() -> usize {
    ringlog::client::ProducerConfig::default().max_in_flight
}

impl RunConfig {
    /// Checks what the flags cannot express by their types alone.
    pub fn validate(&self) -> Result<(), String> {
        if self.message_size < crate::record::HEADER_LEN {
            return Err(format!(
                "--message-size {} is below the bench header of {} bytes",
                self.message_size,
                crate::record::HEADER_LEN
            ));
        }
        if self.partitions < 1 {
            return Err("--partitions must be at least 1".into());
        }
        if self.replication_factor < 1 {
            return Err("--replication-factor must be at least 1".into());
        }
        if !(-1..=1).contains(&self.acks) {
            return Err(format!("--acks {}: expected 0, 1 or all", self.acks));
        }
        if self.mode != Mode::Consume && self.producers == 0 {
            return Err("--producers must be at least 1".into());
        }
        if self.mode != Mode::Produce && (self.consumers == 0 || self.consumer_groups == 0) {
            return Err("--consumers and --consumer-groups must be at least 1".into());
        }
        if self.rate == Some(0) {
            return Err("--rate must be positive (omit it for max rate)".into());
        }
        if self.messages == Some(0) {
            return Err("--messages must be positive".into());
        }
        // Written so that NaN fails too.
        let positive = self.duration_s.is_finite() && self.duration_s > 0.0;
        let not_negative = self.warmup_s.is_finite() && self.warmup_s >= 0.0;
        if !positive || !not_negative {
            return Err("--duration must be positive and --warmup not negative".into());
        }
        if self.messages.is_none() && self.warmup_s >= self.duration_s {
            return Err(format!(
                "--warmup {} s leaves nothing to measure in --duration {} s",
                self.warmup_s, self.duration_s
            ));
        }
        if self.max_in_flight == 0 {
            return Err("--max-in-flight must be at least 1".into());
        }
        if self.keys == Some(0) {
            return Err("--keys must be positive (omit it for no keys)".into());
        }
        if let Some(c) = &self.cores {
            if c.is_empty() {
                return Err("--cores must list at least one CPU".into());
            }
        }
        Ok(())
    }

    /// Whether produce acks carry latency (acks=0 has none to measure).
    pub fn measures_acks(&self) -> bool {
        self.mode != Mode::Consume && self.acks != 0
    }
}

#[cfg(test)]
pub(crate) fn sample() -> RunConfig {
    // The first standard workload, shortened, with no linger and a plain topic name.
    let base = crate::workloads::preset("max-rate-1-topic-1-partition-1kb", "127.0.0.1:9290")
        .expect("a standard workload");
    RunConfig {
        workload: None,
        topic: "bench".into(),
        linger_ms: 0,
        duration_s: 10.0,
        warmup_s: 1.0,
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_valid_and_each_bad_value_is_named() {
        sample().validate().unwrap();
        let cases: Vec<(RunConfig, &str)> = vec![
            (
                RunConfig {
                    message_size: 10,
                    ..sample()
                },
                "--message-size",
            ),
            (
                RunConfig {
                    partitions: 0,
                    ..sample()
                },
                "--partitions",
            ),
            (
                RunConfig {
                    acks: 2,
                    ..sample()
                },
                "--acks",
            ),
            (
                RunConfig {
                    producers: 0,
                    ..sample()
                },
                "--producers",
            ),
            (
                RunConfig {
                    mode: Mode::E2e,
                    consumers: 0,
                    ..sample()
                },
                "--consumers",
            ),
            (
                RunConfig {
                    rate: Some(0),
                    ..sample()
                },
                "--rate",
            ),
            (
                RunConfig {
                    warmup_s: 10.0,
                    ..sample()
                },
                "--warmup",
            ),
            (
                RunConfig {
                    keys: Some(0),
                    ..sample()
                },
                "--keys",
            ),
            (
                RunConfig {
                    cores: Some(vec![]),
                    ..sample()
                },
                "--cores",
            ),
        ];
        for (config, flag) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.contains(flag), "{err} should name {flag}");
        }
    }

    #[test]
    fn consume_mode_needs_no_producers() {
        RunConfig {
            mode: Mode::Consume,
            producers: 0,
            ..sample()
        }
        .validate()
        .unwrap();
    }
}
