//! The broker daemon: `ringlog serve`.
//!
//! Threads: one pinned data-shard executor per core (connections, partitions) and
//! the coordination executor (metadata), from `ringlog-shards`; the main thread only
//! starts them, writes `listeners.json` when the broker is ready, and turns SIGTERM /
//! SIGINT into an orderly shutdown (stop accepting, finish in-flight requests within
//! a bound, close every log with its clean-shutdown marker, exit 0).

pub mod admin;
mod port_check;

use crate::core::connection_limits::{Admission, ConnectionLimits};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{Latency, Shares};
use ringlog_shards::{
    Answered, CoordinatorContext, Handler, PoolConfig, ShardContext, ShardId, ShardPool,
};
use tracing::{debug, error, info, warn};

use crate::config::{BrokerConfig, ConfigError, ReloadPlan, SHUTDOWN_DRAIN_MS_MAX};
use crate::core::coordinator::Coordinator;
use crate::core::messages::{CoordinatorRequest, ShardRequest};
use crate::core::shard::Shard;

/// File in the data directory where the bound listener addresses are written.
pub const LISTENERS_FILE: &str = "listeners.json";
/// Lock file that keeps two brokers off one data directory.
pub const LOCK_FILE: &str = ".lock";

/// Why the broker could not run.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another ringlog process")]
    Locked(PathBuf),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Shards(#[from] ringlog_shards::ShardError),
    #[error(transparent)]
    IoProperties(#[from] crate::iotune::ApplyError),
    #[error("broker failed: {0}")]
    Failed(String),
}

/// What executors tell the main thread.
enum Event {
    Ready,
    Failed(String),
}

/// Replaces the log filter of the running process (a `RUST_LOG`-style string).
pub type SetLogFilter = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// How a running broker re-reads its configuration on SIGHUP.
pub struct Reloader {
    /// Reads the configuration again from its sources (file, environment, flags).
    pub read: Box<dyn Fn() -> Result<BrokerConfig, String> + Send>,
    /// Replaces the log filter (`log.level`).
    pub set_log_filter: SetLogFilter,
}

/// [`serve_with`] without a way to reload: SIGHUP says so.
pub fn serve(config: BrokerConfig) -> Result<(), BrokerError> {
    serve_with(config, None)
}

/// Runs the broker until SIGTERM/SIGINT, then shuts down in order; SIGHUP applies
/// the reloadable part of the configuration `reloader` reads. Returns an error if
/// the broker could not start or a shard failed.
pub fn serve_with(config: BrokerConfig, reloader: Option<Reloader>) -> Result<(), BrokerError> {
    let (config, _lock) = open_data_dir(config)?;
    let data_dir = config.data_dir.clone();
    let listeners_path = data_dir.join(LISTENERS_FILE);
    let _ = std::fs::remove_file(&listeners_path);
    let reserved = Reserved::bind(&config)?;
    let (native_addr, kafka_addr) = (reserved.native_addr, reserved.kafka_addr);
    let cluster_addr = reserved.cluster_addr;
    let advertised = config.advertised_native_addr.unwrap_or(native_addr);
    let admin_addr = reserved.admin.as_ref().map(|(_, addr)| *addr);
    let shards = config.shard_count();
    let config = Arc::new(BrokerConfig {
        shards,
        kafka_addr,
        admin_addr,
        cluster_addr,
        ..config
    });

    let (events_tx, events_rx) = flume::unbounded::<Event>();
    let (stop_tx, stop_rx) = flume::bounded::<()>(1);
    let listeners = admin::Listeners {
        native: native_addr,
        kafka: kafka_addr,
        admin: admin_addr,
    };
    let (pool, admin_state) = start_pool(&config, listeners, advertised, events_tx, stop_rx)?;
    install_signal_handlers(
        stop_tx.clone(),
        admin_state.clone(),
        reloader,
        (*config).clone(),
    );
    let admin = match reserved.admin {
        Some((l, _)) => match admin::AdminServer::start(l, admin_state.clone()) {
            Ok(server) => Some(server),
            Err(e) => {
                let _ = stop_tx.try_send(());
                let _ = pool.join();
                return Err(e);
            }
        },
        None => None,
    };
    info!(native = %native_addr, kafka = ?kafka_addr, admin = ?admin_addr, shards, data_dir = %data_dir.display(), broker_id = config.broker_id, "broker starting");

    let failure = match events_rx.recv() {
        Ok(Event::Ready) => {
            let listeners = listeners_json(&config, native_addr, admin_addr);
            match crate::metadata::store::write_atomically(&listeners_path, listeners.as_bytes()) {
                Ok(()) => {
                    admin_state.ready.store(true, Ordering::Release);
                    info!(native = %native_addr, listeners = %listeners_path.display(), "broker ready");
                    None
                }
                Err(e) => Some(e.to_string()),
            }
        }
        Ok(Event::Failed(reason)) => Some(reason),
        Err(_) => Some("executors stopped before the broker was ready".into()),
    };
    if failure.is_some() {
        let _ = stop_tx.try_send(());
    }
    // Later failures (a shard that could not bind) also stop the broker.
    let watcher_stop = stop_tx.clone();
    let watcher = std::thread::spawn(move || {
        let mut later = None;
        while let Ok(ev) = events_rx.recv() {
            if let Event::Failed(reason) = ev {
                later.get_or_insert(reason);
                let _ = watcher_stop.try_send(());
            }
        }
        later
    });
    let joined = pool.join();
    admin_state.stopping.store(true, Ordering::Release);
    if let Some(admin) = admin {
        admin.stop();
    }
    drop(stop_tx);
    let later = watcher.join().ok().flatten();
    let _ = std::fs::remove_file(&listeners_path);
    drop(reserved.ports);
    joined?;
    if let Some(reason) = failure.or(later) {
        return Err(BrokerError::Failed(reason));
    }
    info!("broker stopped cleanly");
    Ok(())
}

/// Starts the executors: one data shard per core serving both listeners, and the
/// coordinator; returns them with the admin listener's view of them.
fn start_pool(
    config: &Arc<BrokerConfig>,
    listeners: admin::Listeners,
    advertised: SocketAddr,
    events_tx: flume::Sender<Event>,
    stop_rx: flume::Receiver<()>,
) -> Result<(ShardPool<()>, Arc<admin::AdminState>), BrokerError> {
    let (native_addr, kafka_addr) = (listeners.native, listeners.kafka);
    let pool_config = PoolConfig {
        shards: config.shards,
        cores: config.cores.clone(),
        io_memory_bytes: config.io_memory_bytes,
        name: "ringlog".into(),
        ..PoolConfig::default()
    };
    let (admin_state, queries) = admin::AdminState::new(
        config.broker_id,
        config.data_dir.clone(),
        pool_config.shard_cores()?,
        listeners,
    );
    let queries = Arc::new(queries);
    let data_config = config.clone();
    let data_events = events_tx.clone();
    let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
    let coord_config = config.clone();
    let pool = ShardPool::start(
        &pool_config,
        move |ctx: ShardContext<ShardRequest, CoordinatorRequest>| {
            run_shard(
                ctx,
                data_config.clone(),
                limits.clone(),
                native_addr,
                kafka_addr,
                data_events.clone(),
                queries.clone(),
            )
        },
        move |ctx: CoordinatorContext<ShardRequest, CoordinatorRequest>| {
            run_coordinator(ctx, coord_config, advertised, events_tx, stop_rx)
        },
    )?;
    Ok((pool, Arc::new(admin_state)))
}

/// Creates, resolves and locks the data directory, and applies its
/// `io-properties.toml`; the lock holds while the returned file lives.
fn open_data_dir(config: BrokerConfig) -> Result<(BrokerConfig, File), BrokerError> {
    config.validate()?;
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| BrokerError::Io {
        op: "create data directory",
        path: data_dir.clone(),
        source,
    })?;
    // Absolute, so every path derived from it is independent of the working
    // directory (glommio's directory opens need it too).
    let data_dir = std::fs::canonicalize(&data_dir).map_err(|source| BrokerError::Io {
        op: "resolve data directory",
        path: data_dir.clone(),
        source,
    })?;
    let mut config = BrokerConfig {
        data_dir: data_dir.clone(),
        ..config
    };
    let lock = lock_data_dir(&data_dir)?;
    crate::iotune::apply(&mut config)?;
    config.validate()?;
    Ok((config, lock))
}

/// The listeners' addresses, held before any shard binds them.
struct Reserved {
    /// Bound, non-listening SO_REUSEPORT sockets (native, then Kafka if any): every
    /// shard binds the same, possibly ephemeral, port while they are held.
    ports: Vec<socket2::Socket>,
    native_addr: SocketAddr,
    kafka_addr: Option<SocketAddr>,
    /// The inter-broker listener's address, if it is on.
    cluster_addr: Option<SocketAddr>,
    /// The admin HTTP listener, bound.
    admin: Option<(std::net::TcpListener, SocketAddr)>,
}

impl Reserved {
    fn bind(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let native = reserve_port(config.native_addr)?;
        let native_addr = bound_addr(&native, config.native_addr)?;
        let mut ports = vec![native];
        let kafka_addr = match config.kafka_addr {
            Some(addr) => {
                let kafka = reserve_port(addr)?;
                let bound = bound_addr(&kafka, addr)?;
                ports.push(kafka);
                Some(bound)
            }
            None => None,
        };
        let cluster_addr = match config.cluster_addr {
            Some(addr) => {
                let cluster = reserve_port(addr)?;
                let bound = bound_addr(&cluster, addr)?;
                ports.push(cluster);
                Some(bound)
            }
            None => None,
        };
        let admin = config.admin_addr.map(admin::bind).transpose()?;
        Ok(Self {
            ports,
            native_addr,
            kafka_addr,
            cluster_addr,
            admin,
        })
    }
}

/// The address a reserved socket was bound to (its port, when 0 was asked).
fn bound_addr(socket: &socket2::Socket, asked: SocketAddr) -> Result<SocketAddr, BrokerError> {
    socket
        .local_addr()
        .map_err(|source| BrokerError::Bind {
            addr: asked,
            source,
        })?
        .as_socket()
        .ok_or(BrokerError::Failed(format!(
            "the listener address for {asked} is not IP"
        )))
}

/// `listeners.json`: where a ready broker listens, for tools and tests.
fn listeners_json(
    config: &BrokerConfig,
    native_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
) -> String {
    format!(
        "{}\n",
        serde_json::json!({
            "native": native_addr.to_string(),
            "kafka": config.kafka_addr.map(|a| a.to_string()),
            "cluster": config.cluster_addr.map(|a| a.to_string()),
            "admin": admin_addr.map(|a| a.to_string()),
            "broker_id": config.broker_id,
            "shards": config.shards,
            "pid": std::process::id(),
        })
    )
}

/// Reserves `addr` for this process's shards with SO_REUSEPORT (every shard binds
/// the same port), refusing a port another socket listens on: the kernel would let
/// a second process of the same user share it (see `port_check`).
fn reserve_port(addr: SocketAddr) -> Result<socket2::Socket, BrokerError> {
    let bind_err = |source| BrokerError::Bind { addr, source };
    if addr.port() != 0
        && port_check::still_taken_after(addr, port_check::LINGERING_LISTENER_WAIT)
            .map_err(bind_err)?
    {
        return Err(bind_err(std::io::Error::from(
            std::io::ErrorKind::AddrInUse,
        )));
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(bind_err)?;
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.set_reuse_port(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    Ok(socket)
}

fn lock_data_dir(dir: &Path) -> Result<File, BrokerError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| BrokerError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(BrokerError::Locked(dir.to_path_buf()));
    }
    Ok(file)
}

fn install_signal_handlers(
    stop: flume::Sender<()>,
    admin: Arc<admin::AdminState>,
    reloader: Option<Reloader>,
    mut running: BrokerConfig,
) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for sig in signals.forever() {
                    if sig == SIGHUP {
                        reload(reloader.as_ref(), &mut running, &admin);
                        continue;
                    }
                    info!(signal = sig, "shutdown requested");
                    // Readiness goes down first, so a load balancer stops sending.
                    admin.stopping.store(true, Ordering::Release);
                    let _ = stop.try_send(());
                }
            });
        }
        Err(e) => {
            warn!(error = %e, "cannot install signal handlers; SIGTERM will kill without a clean shutdown")
        }
    }
}

/// SIGHUP: reads the configuration again and applies what can change while running
/// (`log.level`, broker retention); names every other changed key as needing a
/// restart. A configuration that does not read or validate changes nothing.
fn reload(reloader: Option<&Reloader>, running: &mut BrokerConfig, admin: &admin::AdminState) {
    let Some(reloader) = reloader else {
        warn!("SIGHUP: this broker has no configuration source to reload; restart it to apply changes");
        return;
    };
    let new =
        match (reloader.read)().and_then(|c| c.validate().map(|()| c).map_err(|e| e.to_string())) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "SIGHUP: configuration not reloaded; the running one stays");
                return;
            }
        };
    let plan = ReloadPlan::from(running, &new);
    if !plan.needs_restart.is_empty() {
        warn!(keys = ?plan.needs_restart, "SIGHUP: these changed keys apply only after a restart (SIGTERM, then start)");
    }
    if let Some(level) = &plan.log_level {
        match (reloader.set_log_filter)(level) {
            Ok(()) => info!(level = %level, "SIGHUP: log level reloaded"),
            Err(e) => warn!(level = %level, error = %e, "SIGHUP: log level not changed"),
        }
    }
    if let Some((ms, bytes)) = plan.retention {
        let answers = admin.set_retention(ms, bytes);
        let changed: usize = answers.iter().filter_map(|(_, n)| *n).sum();
        let late: Vec<u16> = answers
            .iter()
            .filter(|(_, n)| n.is_none())
            .map(|(s, _)| *s)
            .collect();
        info!(retention_ms = ?ms, retention_bytes = ?bytes, partitions = changed, "SIGHUP: retention reloaded");
        if !late.is_empty() {
            warn!(shards = ?late, "SIGHUP: these shards had not answered in time; they apply the retention when they do");
        }
    }
    if plan == ReloadPlan::default() {
        info!("SIGHUP: configuration read again; nothing that can change while running changed");
    }
    *running = ReloadPlan::applied(running, &new);
}

async fn run_shard(
    ctx: ShardContext<ShardRequest, CoordinatorRequest>,
    config: Arc<BrokerConfig>,
    limits: Arc<ConnectionLimits>,
    native_addr: SocketAddr,
    kafka_addr: Option<SocketAddr>,
    events: flume::Sender<Event>,
    queries: Arc<Vec<flume::Receiver<crate::metrics::ShardQuery>>>,
) {
    let id = ctx.shard;
    let background = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::NotImportant,
        "background",
    );
    let cluster = config.controller_voters.len() > 1;
    let shard = Rc::new(Shard::new(id, ctx.shards, config, background, limits));
    if cluster {
        shard.set_replica_wire(Rc::new(crate::peer::replica::PeerReplicaWire));
    }
    // Bind before joining the mesh: connections wait in the backlog until ready.
    let listener = TcpListener::bind(native_addr);
    let kafka_listener = kafka_addr.map(|a| (a, TcpListener::bind(a)));
    let handler_shard = shard.clone();
    let handler: Handler<ShardRequest> = Rc::new(move |from, request| {
        let s = handler_shard.clone();
        Box::pin(s.handle(from, request)) as Pin<Box<dyn Future<Output = Answered>>>
    });
    let mesh = match ctx.join_mesh(handler).await {
        Ok(m) => m,
        Err(e) => {
            let _ = events.send(Event::Failed(format!("shard {id}: {e}")));
            return;
        }
    };
    shard.set_mesh(mesh.clone());
    let listener = match listener {
        Ok(l) => Some(l),
        Err(e) => {
            let _ = events.send(Event::Failed(format!(
                "shard {id} cannot bind {native_addr}: {e}"
            )));
            None
        }
    };
    let stopping = async {
        shard.stopping.wait().await;
    };
    futures_lite::future::or(shard.ready.wait(), stopping).await;
    if let Some(rx) = queries.get(id.index()) {
        glommio::spawn_local(shard.clone().answer_queries(rx.clone())).detach();
    }
    match kafka_listener {
        Some((_, Ok(l))) => {
            let serve = |shard, stream, admission: Admission| {
                glommio::spawn_local(async move {
                    crate::kafka::connection::serve(shard, stream).await;
                    drop(admission);
                })
                .detach();
            };
            glommio::spawn_local(accept_loop(shard.clone(), l, "kafka", serve)).detach();
        }
        Some((addr, Err(e))) => {
            let _ = events.send(Event::Failed(format!(
                "shard {id} cannot bind the Kafka listener {addr}: {e}"
            )));
        }
        None => {}
    }
    if let Some(listener) = listener {
        let bg = shard.clone();
        let _ =
            glommio::spawn_local_into(bg.background_loop(), shard.background).map(|t| t.detach());
        glommio::spawn_local(shard.clone().group_timers()).detach();
        if cluster {
            glommio::spawn_local(crate::core::replica::run_isr_checks(shard.clone())).detach();
        }
        let serve = |shard, stream, admission: Admission| {
            glommio::spawn_local(async move {
                crate::native::connection::serve(shard, stream).await;
                drop(admission);
            })
            .detach();
        };
        accept_loop(shard.clone(), listener, "native", serve).await;
    } else {
        shard.stopping.wait().await;
    }
    shard
        .drain_and_close(Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX))
        .await;
    // Keep answering peers (the coordinator awaits this shard's Shutdown answer)
    // until every executor is done calling.
    if let Err(e) = mesh
        .leave(Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX))
        .await
    {
        warn!(shard = %id, error = %e, "left the mesh without waiting for every peer");
    }
}

/// Accepts connections on `listener` until shutdown, handing each to `serve`.
async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    protocol: &'static str,
    serve: impl Fn(Rc<Shard>, glommio::net::TcpStream, Admission),
) {
    loop {
        let stop = async {
            shard.stopping.wait().await;
            None
        };
        let accept = async { Some(listener.accept().await) };
        match futures_lite::future::or(accept, stop).await {
            None => return,
            Some(Ok(stream)) => {
                let Some(address) = stream.peer_addr().ok().map(|a| a.ip()) else {
                    continue;
                };
                match shard.connection_limits.open(address) {
                    Ok(admission) => serve(shard.clone(), stream, admission),
                    Err(refusal) => {
                        shard.stats.connection_refused(refusal);
                        debug!(shard = %shard.id, protocol, %address, limit = refusal.key(), "connection refused: over the limit");
                        drop(stream);
                    }
                }
            }
            Some(Err(e)) => {
                warn!(shard = %shard.id, protocol, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The coordinator, with links to the other voters when there are any.
fn load_coordinator(
    config: &Arc<BrokerConfig>,
    shards: u16,
    advertised: SocketAddr,
) -> Result<Rc<Coordinator>, crate::core::coordinator::CoordinatorError> {
    let slot: Rc<std::cell::OnceCell<std::rc::Weak<Coordinator>>> =
        Rc::new(std::cell::OnceCell::new());
    let peers = if config.controller_voters.len() > 1 {
        let s = slot.clone();
        let cluster_id: Rc<dyn Fn() -> String> = Rc::new(move || {
            s.get()
                .and_then(|w| w.upgrade())
                .map(|c| c.cluster_id())
                .unwrap_or_default()
        });
        let links = crate::peer::link::PeerLinks::start(
            config.broker_id,
            &config.controller_voters,
            cluster_id,
            config.metadata_commit_timeout,
            config.broker_heartbeat_interval,
        );
        Some((
            links.clone() as Rc<dyn crate::core::quorum_driver::RaftTransport>,
            links as Rc<dyn crate::core::remote::RemoteController>,
        ))
    } else {
        None
    };
    let c = Coordinator::load(config.clone(), shards, advertised, peers)?;
    let _ = slot.set(Rc::downgrade(&c));
    Ok(c)
}

async fn run_coordinator(
    ctx: CoordinatorContext<ShardRequest, CoordinatorRequest>,
    config: Arc<BrokerConfig>,
    advertised: SocketAddr,
    events: flume::Sender<Event>,
    stop: flume::Receiver<()>,
) {
    let shards = ctx.shards;
    let loaded = load_coordinator(&config, shards, advertised);
    if let (Ok(c), Some(addr)) = (&loaded, config.cluster_addr) {
        match TcpListener::bind(addr) {
            Ok(listener) => {
                info!(addr = %addr, "inter-broker listener bound");
                glommio::spawn_local(crate::peer::server::accept_loop(c.clone(), listener))
                    .detach();
            }
            Err(e) => {
                let _ = events.send(Event::Failed(format!(
                    "cannot bind the inter-broker listener {addr}: {e}"
                )));
                return;
            }
        }
    }
    let handler: Handler<CoordinatorRequest> = match &loaded {
        Ok(c) => {
            let c = c.clone();
            Rc::new(move |from, request| {
                let c = c.clone();
                Box::pin(c.handle(from, request)) as Pin<Box<dyn Future<Output = Answered>>>
            })
        }
        // The broker stops; until it does, shards asking for a metadata change are
        // refused.
        Err(_) => Rc::new(|_, request| {
            let refused = request.refuse();
            Box::pin(async move { refused })
        }),
    };
    let mesh = match ctx.join_mesh(handler).await {
        Ok(m) => m,
        Err(e) => {
            let _ = events.send(Event::Failed(format!("coordinator: {e}")));
            return;
        }
    };
    match &loaded {
        Ok(c) => {
            c.set_mesh(mesh.clone());
            match c.start().await {
                Ok(()) => {
                    let _ = events.send(Event::Ready);
                }
                Err(e) => {
                    error!(error = %e, "the cluster metadata cannot be served");
                    let _ = events.send(Event::Failed(e));
                }
            }
        }
        Err(e) => {
            error!(error = %e, "cannot load cluster metadata");
            let _ = events.send(Event::Failed(e.to_string()));
        }
    }
    let _ = stop.recv_async().await;
    if let Ok(c) = &loaded {
        c.controlled_shutdown().await;
    }
    info!("shutting down: draining shards");
    let calls = (0..shards).map(|s| {
        let mesh = mesh.clone();
        async move {
            let _ = mesh
                .call_shard(ShardId(s), |answer| ShardRequest::Shutdown { answer })
                .await;
        }
    });
    crate::sync::join::join_all(calls.collect::<Vec<_>>()).await;
    if let Err(e) = mesh
        .leave(Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX))
        .await
    {
        warn!(error = %e, "coordinator left the mesh without waiting for every peer");
    }
}
