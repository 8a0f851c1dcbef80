//! `ringlog serve`: flags and environment over the TOML config, then run the broker;
//! SIGHUP reads the same sources again (`Reloader`).

use std::path::PathBuf;

use anyhow::Context;
use ringlog::broker::Reloader;
use ringlog::config::BrokerConfig;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML config file with Kafka's key names (log.dirs, num.partitions, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (log.dirs). Default ./data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Data shards (default: one per core).
    #[arg(long)]
    shards: Option<u16>,
    /// CPU of each shard, comma-separated.
    #[arg(long)]
    cores: Option<String>,
    /// Native listener HOST:PORT (port 0 = ephemeral). Default 127.0.0.1:9290.
    #[arg(long)]
    native_addr: Option<String>,
    /// Kafka-protocol listener HOST:PORT (port 0 = ephemeral, `none` = off). Default
    /// 127.0.0.1:9092.
    #[arg(long)]
    kafka_addr: Option<String>,
    /// Admin HTTP listener HOST:PORT for /metrics, /v1/status, /v1/ready and /v1/live
    /// (port 0 = ephemeral, `none` = off). Default 127.0.0.1:9644.
    #[arg(long)]
    admin_addr: Option<String>,
    /// broker.id.
    #[arg(long)]
    broker_id: Option<i32>,
    /// controller.quorum.voters: the controller quorum, `id@host:port,...` at their
    /// inter-broker listeners. Default: none, a cluster of one.
    #[arg(long)]
    controller_voters: Option<String>,
    /// inter.broker.listener HOST:PORT, where the other brokers reach this one
    /// (needed with --controller-voters; port 9293 by convention).
    #[arg(long)]
    cluster_addr: Option<String>,
    /// Any config key: --set key=value (repeatable), over file and environment.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Log lines as text or JSON (filter with RUST_LOG, e.g. info,ringlog::kafka=debug).
    #[arg(long, value_enum, default_value = "human", env = "RINGLOG_LOG_FORMAT")]
    log_format: super::LogFormat,
}

pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let set_log_filter = super::init_logging_as("info", args.log_format);
    let config = read_config(&args)?;
    // RUST_LOG, when set, wins over log.level at start.
    if let Some(level) = &config.log_level {
        if std::env::var_os("RUST_LOG").is_none() {
            set_log_filter(level).map_err(|e| anyhow::anyhow!("log.level {level:?}: {e}"))?;
        }
    }
    let reloader = Reloader {
        read: Box::new(move || read_config(&args).map_err(|e| format!("{e:#}"))),
        set_log_filter,
    };
    ringlog::broker::serve_with(config, Some(reloader))?;
    Ok(0)
}

/// The configuration from its sources, lowest first: defaults, the TOML file, the
/// environment, flags, `--set`. SIGHUP reads it again the same way.
fn read_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.apply_toml_file(path)?;
    }
    config.apply_env(std::env::vars())?;
    let flags: [(&str, Option<String>); 9] = [
        (
            "log.dirs",
            args.data_dir.as_ref().map(|p| p.display().to_string()),
        ),
        ("shards", args.shards.map(|s| s.to_string())),
        ("cores", args.cores.clone()),
        ("native.listener", args.native_addr.clone()),
        ("kafka.listener", args.kafka_addr.clone()),
        ("admin.listener", args.admin_addr.clone()),
        ("broker.id", args.broker_id.map(|b| b.to_string())),
        ("controller.quorum.voters", args.controller_voters.clone()),
        ("inter.broker.listener", args.cluster_addr.clone()),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            config.set(key, &v, "command line")?;
        }
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        config.set(k.trim(), v, "command line --set")?;
    }
    Ok(config)
}
