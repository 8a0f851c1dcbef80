//! `ringlog-bench`: the command line of the load generator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ringlog_bench::config::{Mode, PayloadKind, RunConfig};
use ringlog_bench::run::Outcome;
use ringlog_bench::summary::Summary;
use ringlog_bench::{compare, hgrm, plot, run, workloads};

const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9290";

#[derive(Parser)]
#[command(
    name = "ringlog-bench",
    version,
    about = "Load generator for ringlog: throughput, coordinated-omission-corrected latency \
             (HdrHistogram), verification of every consumed record, JSON/.hgrm/SVG reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Producers only: throughput and produce (send -> ack) latency.
    Produce(RunArgs),
    /// Consumers only, reading the topic from the beginning.
    Consume(RunArgs),
    /// Producers and consumers together: produce and end-to-end latency.
    E2e(RunArgs),
    /// Runs a standard workload (see BENCHMARKS.md) and writes its text summary, JSON,
    /// .hgrm files and plot into --out.
    Workload(WorkloadArgs),
    /// Shows runs side by side (JSON files of earlier runs), with ratios to the first.
    Compare(CompareArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Protocol {
    /// ringlog's native protocol (`-b` is the native listener).
    Native,
    /// The Kafka protocol, through a Kafka client library (`-b` is a Kafka
    /// listener: ringlog's or any Kafka-compatible broker's).
    Kafka,
}

impl From<Protocol> for ringlog_bench::config::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Native => Self::Native,
            Protocol::Kafka => Self::Kafka,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Payload {
    Random,
    Compressible,
}

#[derive(Args)]
struct RunArgs {
    /// Broker address (host:port).
    #[arg(short = 'b', long = "bootstrap-server", default_value = BOOTSTRAP_DEFAULT, env = "RINGLOG_BOOTSTRAP_SERVER")]
    bootstrap_server: String,
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "native")]
    protocol: Protocol,
    /// Topic; created with --partitions and --replication-factor if missing.
    #[arg(long, default_value = "ringlog-bench")]
    topic: String,
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumers in each consumer group.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Consumer groups; each receives every record.
    #[arg(long, default_value_t = 1)]
    consumer_groups: usize,
    /// Record value size in bytes (at least the 32-byte bench header).
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    #[arg(long, value_enum, default_value = "random")]
    payload: Payload,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    batch_size: usize,
    /// Producer linger.ms: 5 as Kafka (measured above 1 ms at max rate, BENCHMARKS.md).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Produce requests in flight per producer connection (native protocol).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i8,
    /// Records per second over all producers (open loop, latency from the intended
    /// send time); omit for max rate.
    #[arg(long)]
    rate: Option<u64>,
    /// Records to produce (to consume, in consume mode); else run for --duration.
    #[arg(long)]
    messages: Option<u64>,
    /// Seconds to run.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds at the start not measured.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Distinct record keys (murmur2-partitioned); omit for no keys, round-robin.
    #[arg(long)]
    keys: Option<u64>,
    /// CPUs to pin the bench's threads to, e.g. 1 or 0,1 or 2-5.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<CpuList>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The broker's process id, for its CPU use in the report (default: the local
    /// process listening on the -b port, if any).
    #[arg(long)]
    broker_pid: Option<u32>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args)]
struct OutputArgs {
    /// Write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one HdrHistogram .hgrm percentile distribution per histogram here.
    #[arg(long)]
    hgrm_dir: Option<PathBuf>,
    /// Plot latency by percentile and throughput over time (.svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct WorkloadArgs {
    /// The standard workload.
    #[arg(value_parser = PossibleValuesParser::new(workloads::NAMES))]
    name: String,
    #[arg(short = 'b', long = "bootstrap-server", default_value = BOOTSTRAP_DEFAULT, env = "RINGLOG_BOOTSTRAP_SERVER")]
    bootstrap_server: String,
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "native")]
    protocol: Protocol,
    /// Directory for <name>.txt, <name>.json, <name>.<histogram>.hgrm and <name>.svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Override the workload's duration, seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Override the workload's warm-up, seconds.
    #[arg(long)]
    warmup: Option<f64>,
    #[arg(long, value_parser = parse_cores)]
    cores: Option<CpuList>,
    /// The broker's process id, for its CPU use in the report (default: the local
    /// process listening on the -b port, if any).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// JSON files written by --json or `workload`.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Also plot every run's latency and throughput in one image (.svg).
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn parse_acks(s: &str) -> Result<i8, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("{s:?}: expected 0, 1 or all")),
    }
}

/// CPUs from `--cores` (a newtype: clap would take a bare `Vec` as repeated values).
#[derive(Clone, Debug, PartialEq)]
struct CpuList(Vec<usize>);

fn parse_cores(s: &str) -> Result<CpuList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{part:?}: expected a CPU number or a range like 2-5");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("expected at least one CPU".into());
    }
    Ok(CpuList(out))
}

impl RunArgs {
    fn config(&self, mode: Mode) -> anyhow::Result<RunConfig> {
        Ok(RunConfig {
            workload: None,
            mode,
            protocol: self.protocol.into(),
            bootstrap_server: self.bootstrap_server.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            producers: self.producers,
            consumers: self.consumers,
            consumer_groups: self.consumer_groups,
            message_size: self.message_size,
            payload: match self.payload {
                Payload::Random => PayloadKind::Random,
                Payload::Compressible => PayloadKind::Compressible,
            },
            batch_size: self.batch_size,
            linger_ms: self.linger_ms,
            max_in_flight: self.max_in_flight,
            acks: self.acks,
            rate: self.rate,
            messages: self.messages,
            duration_s: self.duration,
            warmup_s: self.warmup,
            keys: self.keys,
            cores: self.cores.clone().map(|c| c.0),
            seed: self.seed,
            broker_pid: self.broker_pid,
        })
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringlog-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let (config, out, quiet) = match cli.command {
        Command::Produce(a) => (a.config(Mode::Produce)?, outputs(&a.out), a.out.quiet),
        Command::Consume(a) => (a.config(Mode::Consume)?, outputs(&a.out), a.out.quiet),
        Command::E2e(a) => (a.config(Mode::E2e)?, outputs(&a.out), a.out.quiet),
        Command::Workload(w) => {
            let mut config = workloads::preset(&w.name, &w.bootstrap_server)
                .ok_or_else(|| anyhow!("unknown workload {}", w.name))?;
            if let Some(d) = w.duration {
                config.duration_s = d;
            }
            if let Some(d) = w.warmup {
                config.warmup_s = d;
            }
            config.cores = w.cores.clone().map(|c| c.0);
            config.broker_pid = w.broker_pid;
            config.protocol = w.protocol.into();
            std::fs::create_dir_all(&w.out)
                .with_context(|| format!("create {}", w.out.display()))?;
            let at = |ext: &str| w.out.join(format!("{}.{ext}", w.name));
            let out = Outputs {
                text: Some(at("txt")),
                json: Some(at("json")),
                hgrm: Some((w.out.clone(), w.name.clone())),
                plot: Some(at("svg")),
            };
            (config, out, w.quiet)
        }
        Command::Compare(c) => return compare_runs(&c),
    };
    let outcome = run::run(&config, !quiet)?;
    let text = outcome.summary.to_text();
    print!("{text}");
    write_outputs(&outcome, &text, &out)?;
    if outcome.summary.verification.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "ringlog-bench: the run failed verification or had client errors ({} problem(s) above)",
            outcome.summary.verification.len()
        );
        Ok(ExitCode::from(1))
    }
}

/// Where a run's reports go.
struct Outputs {
    text: Option<PathBuf>,
    json: Option<PathBuf>,
    /// Directory and file-name prefix of the `.hgrm` files.
    hgrm: Option<(PathBuf, String)>,
    plot: Option<PathBuf>,
}

fn outputs(a: &OutputArgs) -> Outputs {
    Outputs {
        text: None,
        json: a.json.clone(),
        hgrm: a.hgrm_dir.clone().map(|d| (d, "ringlog-bench".to_string())),
        plot: a.plot.clone(),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

fn write_outputs(o: &Outcome, text: &str, out: &Outputs) -> anyhow::Result<()> {
    if let Some(p) = &out.text {
        write_file(p, text.as_bytes())?;
    }
    if let Some(p) = &out.json {
        write_file(p, o.summary.to_json().as_bytes())?;
    }
    if let Some((dir, prefix)) = &out.hgrm {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for (name, h) in [("produce", &o.produce), ("e2e", &o.e2e)] {
            if let Some(h) = h {
                let mut buf = Vec::new();
                hgrm::write(h, &mut buf).context("format .hgrm")?;
                write_file(&dir.join(format!("{prefix}.{name}.hgrm")), &buf)?;
            }
        }
    }
    if let Some(p) = &out.plot {
        plot::run_plot(p, &o.summary)?;
    }
    Ok(())
}

fn compare_runs(c: &CompareArgs) -> anyhow::Result<ExitCode> {
    let mut labels = Vec::new();
    let mut runs = Vec::new();
    for path in &c.runs {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let s = Summary::from_json(&text)
            .with_context(|| format!("{}: not a ringlog-bench JSON report", path.display()))?;
        labels.push(path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        ));
        runs.push(s);
    }
    print!("{}", compare::table(&labels, &runs));
    if let Some(p) = &c.plot {
        plot::compare_plot(p, &labels, &runs)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_accept_lists_and_ranges() {
        assert_eq!(parse_cores("1").unwrap(), CpuList(vec![1]));
        assert_eq!(parse_cores("0,2-4").unwrap(), CpuList(vec![0, 2, 3, 4]));
        assert!(parse_cores("").is_err());
        assert!(parse_cores("4-2").is_err());
        assert!(parse_cores("x").is_err());
    }

    #[test]
    fn acks_accept_kafka_spellings() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("0").unwrap(), 0);
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
