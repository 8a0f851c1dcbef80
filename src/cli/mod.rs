//! The command line: `ringlog serve | topic | produce | consume | group | tune | iotune`, with Kafka tools'
//! habits (`-b/--bootstrap-server`, `--from-beginning`, `--max-messages`).

mod cluster;
mod consume;
mod group;
mod iotune;
mod produce;
mod serve;
mod topic;
mod tune;

use std::future::Future;

use clap::{Parser, Subcommand};
use ringlog::broker::SetLogFilter;
use ringlog::client::BOOTSTRAP_DEFAULT;

#[derive(Parser)]
#[command(
    name = "ringlog",
    version,
    about = "ringlog: a Kafka-class message broker, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(serve::ServeArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Describe the cluster: brokers, epochs, fencing, the active controller.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Produce lines from stdin, one record per line.
    Produce(produce::ProduceArgs),
    /// Consume records and print them, one per line.
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Check the host's settings for running ringlog (CPU, memory, network, disk).
    Tune(tune::TuneArgs),
    /// Measure the data directory's device and write io-properties.toml for the broker.
    Iotune(iotune::IotuneArgs),
}

/// Connection options shared by the client commands.
#[derive(clap::Args, Clone)]
pub struct Connect {
    /// Broker address (native protocol).
    #[arg(short = 'b', long = "bootstrap-server", default_value = BOOTSTRAP_DEFAULT, env = "RINGLOG_BOOTSTRAP_SERVER")]
    pub bootstrap_server: String,
}

pub fn run() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Topic(cmd) => {
            init_logging("warn");
            topic::run(cmd)
        }
        Command::Cluster(cmd) => {
            init_logging("warn");
            cluster::run(cmd)
        }
        Command::Produce(args) => {
            init_logging("warn");
            produce::run(args)
        }
        Command::Consume(args) => {
            init_logging("warn");
            consume::run(args)
        }
        Command::Group(cmd) => {
            init_logging("warn");
            group::run(cmd)
        }
        Command::Tune(args) => {
            init_logging("warn");
            tune::run(args)
        }
        Command::Iotune(args) => {
            init_logging("warn");
            iotune::run(args)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_level`).
pub fn init_logging(default_level: &str) {
    let _ = init_logging_as(default_level, LogFormat::Human);
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for people (colour on a terminal).
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default `default_level`);
/// returns how to change the filter later.
pub fn init_logging_as(default_level: &str, format: LogFormat) -> SetLogFilter {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ringlog::metrics::log_writer::LossyStderr);
    fn setter<S: Send + Sync + 'static>(
        handle: tracing_subscriber::reload::Handle<EnvFilter, S>,
    ) -> SetLogFilter {
        Box::new(move |spec: &str| {
            let filter = EnvFilter::try_new(spec).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        })
    }
    match format {
        LogFormat::Human => {
            let builder = builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            setter(handle)
        }
        LogFormat::Json => {
            let builder = builder
                .json()
                .with_current_span(false)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            setter(handle)
        }
    }
}

/// Runs a client future on a small glommio executor on this thread.
pub fn block_on<F, Fut, T>(f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("ringlog-cli")
        .io_memory(512 << 10)
        .spawn(f)
        .map_err(|e| anyhow::anyhow!("cannot start the I/O executor (io_uring): {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor failed: {e}"))?
}
