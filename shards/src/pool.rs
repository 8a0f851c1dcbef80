//! The executor pool: one pinned glommio executor per data shard plus the
//! coordination executor, started together and joined in order.
//!
//! Start-up is gated: every executor reports that it is running before any joins the
//! mesh (a barrier), so one executor that cannot start (most often: the locked-memory
//! limit for io_uring buffers) fails the whole start with its reason instead of
//! leaving the others waiting forever.

use std::future::Future;
use std::sync::Arc;

use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::mesh::{Handler, Mesh, Peer, Serves, Wire};
use crate::{ShardError, ShardId};

/// Messages a peer channel holds before its sender waits.
pub const MESH_CAPACITY_DEFAULT: usize = 1024;
/// Most data shards (shard ids are u16; a host has far fewer cores).
pub const SHARDS_MAX: u16 = 1024;
/// io_uring buffer memory of the coordination executor: it does little I/O.
const COORDINATOR_IO_MEMORY_BYTES: usize = 1 << 20;

/// How to build the pool.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Number of data shards, `1..=SHARDS_MAX`.
    pub shards: u16,
    /// CPU of each data shard; `None` pins shard `i` to CPU `i mod ncpu`.
    pub cores: Option<Vec<usize>>,
    /// io_uring buffer memory (locked) per data shard.
    pub io_memory_bytes: usize,
    /// Capacity of each peer-to-peer mesh channel.
    pub mesh_capacity: usize,
    /// Thread name prefix.
    pub name: String,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            shards: 1,
            cores: None,
            io_memory_bytes: 10 << 20,
            mesh_capacity: MESH_CAPACITY_DEFAULT,
            name: "ringlog".into(),
        }
    }
}

impl PoolConfig {
    /// The CPU each data shard is pinned to.
    pub fn shard_cores(&self) -> Result<Vec<usize>, ShardError> {
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return Err(ShardError::Config(format!(
                "shards = {} must be in [1, {SHARDS_MAX}]",
                self.shards
            )));
        }
        if self.mesh_capacity == 0 {
            return Err(ShardError::Config("mesh capacity must be > 0".into()));
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        match &self.cores {
            None => Ok((0..usize::from(self.shards)).map(|i| i % ncpu).collect()),
            Some(cores) if cores.len() != usize::from(self.shards) => Err(ShardError::Config(
                format!("{} cores listed for {} shards", cores.len(), self.shards),
            )),
            Some(cores) => match cores.iter().find(|c| **c >= ncpu) {
                Some(bad) => Err(ShardError::Config(format!(
                    "core {bad} does not exist: this host has cores 0..{ncpu}"
                ))),
                None => Ok(cores.clone()),
            },
        }
    }
}

/// What a data shard's executor gets at start: who it is, and the key to the mesh.
pub struct ShardContext<S: Send + 'static, C: Send + 'static> {
    /// This shard.
    pub shard: ShardId,
    /// Number of data shards.
    pub shards: u16,
    /// CPU this executor is pinned to.
    pub core: usize,
    builder: MeshBuilder<Wire<S, C>, Full>,
}

impl<S: Send + 'static, C: Send + 'static> ShardContext<S, C> {
    /// Joins the mesh; `handler` answers the requests peers send to this shard.
    /// Every executor must join, or the others wait.
    pub async fn join_mesh(self, handler: Handler<S>) -> Result<Mesh<S, C>, ShardError> {
        Mesh::join(
            self.builder,
            Peer::Shard(self.shard),
            self.shards,
            Serves::Shard(handler),
        )
        .await
    }
}

/// What the coordination executor gets at start.
pub struct CoordinatorContext<S: Send + 'static, C: Send + 'static> {
    /// Number of data shards.
    pub shards: u16,
    builder: MeshBuilder<Wire<S, C>, Full>,
}

impl<S: Send + 'static, C: Send + 'static> CoordinatorContext<S, C> {
    /// Joins the mesh; `handler` answers the requests data shards send to the
    /// coordinator. It must join, or the shards wait.
    pub async fn join_mesh(self, handler: Handler<C>) -> Result<Mesh<S, C>, ShardError> {
        Mesh::join(
            self.builder,
            Peer::Coordinator,
            self.shards,
            Serves::Coordinator(handler),
        )
        .await
    }
}

/// A running pool. [`ShardPool::join`] waits for every executor to return.
pub struct ShardPool<T: Send + 'static> {
    handles: Vec<(String, ExecutorJoinHandle<Option<T>>)>,
}

impl<T: Send + 'static> ShardPool<T> {
    /// Starts `config.shards` data executors running `data` and one coordination
    /// executor running `coordinator`. Returns once all are running.
    pub fn start<S, C, D, DF, K, KF>(
        config: &PoolConfig,
        data: D,
        coordinator: K,
    ) -> Result<Self, ShardError>
    where
        S: Send + 'static,
        C: Send + 'static,
        D: Fn(ShardContext<S, C>) -> DF + Send + Sync + 'static,
        DF: Future<Output = T> + 'static,
        K: FnOnce(CoordinatorContext<S, C>) -> KF + Send + 'static,
        KF: Future<Output = T> + 'static,
    {
        let cores = config.shard_cores()?;
        let shards = config.shards;
        let mesh =
            MeshBuilder::<Wire<S, C>, Full>::full(usize::from(shards) + 1, config.mesh_capacity);
        let data = Arc::new(data);
        // Each executor takes one go/abort token after reporting that it started.
        let (go_tx, go_rx) = flume::unbounded::<bool>();
        let mut started = Vec::new();
        let mut handles = Vec::new();
        let mut spawn_err = None;
        for (i, core) in cores.iter().enumerate() {
            let name = format!("{}-shard-{i}", config.name);
            let (up_tx, up_rx) = flume::bounded::<()>(1);
            let ctx = ShardContext {
                shard: ShardId(u16::try_from(i).unwrap_or(u16::MAX)),
                shards,
                core: *core,
                builder: mesh.clone(),
            };
            let data = data.clone();
            let go = go_rx.clone();
            let spawned = LocalExecutorBuilder::new(Placement::Fixed(*core))
                .name(&name)
                .io_memory(config.io_memory_bytes)
                .spawn(move || gated(up_tx, go, move || data(ctx)));
            match spawned {
                Ok(h) => {
                    handles.push((name, h));
                    started.push(up_rx);
                }
                Err(e) => {
                    spawn_err = Some(ShardError::Start {
                        name,
                        reason: e.to_string(),
                    });
                    break;
                }
            }
        }
        if spawn_err.is_none() {
            let name = format!("{}-coordinator", config.name);
            let (up_tx, up_rx) = flume::bounded::<()>(1);
            let ctx = CoordinatorContext {
                shards,
                builder: mesh,
            };
            let go = go_rx.clone();
            match LocalExecutorBuilder::new(Placement::Unbound)
                .name(&name)
                .io_memory(COORDINATOR_IO_MEMORY_BYTES)
                .spawn(move || gated(up_tx, go, move || coordinator(ctx)))
            {
                Ok(h) => {
                    handles.push((name, h));
                    started.push(up_rx);
                }
                Err(e) => {
                    spawn_err = Some(ShardError::Start {
                        name,
                        reason: e.to_string(),
                    })
                }
            }
        }
        // An executor that failed to build dropped its `up_tx` without sending.
        let failed = started.iter().position(|up| up.recv().is_err());
        let all_up = spawn_err.is_none() && failed.is_none();
        for _ in 0..handles.len() {
            let _ = go_tx.send(all_up);
        }
        if all_up {
            return Ok(Self { handles });
        }
        let mut first_err = spawn_err;
        for (name, h) in handles {
            if let Err(e) = h.join() {
                first_err.get_or_insert(ShardError::Start {
                    name,
                    reason: explain_start_error(&e.to_string()),
                });
            }
        }
        Err(first_err.unwrap_or_else(|| ShardError::Start {
            name: config.name.clone(),
            reason: "an executor stopped during start-up".into(),
        }))
    }

    /// Waits for every executor to return, data shards first, and returns their
    /// outputs in shard order (the coordinator's last).
    pub fn join(self) -> Result<Vec<T>, ShardError> {
        let mut out = Vec::with_capacity(self.handles.len());
        let mut first_err = None;
        for (name, h) in self.handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(e) => {
                    first_err.get_or_insert(ShardError::Executor {
                        name,
                        reason: e.to_string(),
                    });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Reports that the executor runs, waits for the pool's go, then runs `body`.
/// On abort it returns `None` without running `body`.
async fn gated<T, F, Fut>(up: flume::Sender<()>, go: flume::Receiver<bool>, body: F) -> Option<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let _ = up.send(());
    match go.recv_async().await {
        Ok(true) => {
            let out = body().await;
            // An executor that returns without leaving the mesh must not leave its
            // peers waiting for answers it will never send.
            crate::mesh::close_on_exit();
            Some(out)
        }
        _ => None,
    }
}

/// Adds the fix to the locked-memory failure glommio reports as ENOMEM.
fn explain_start_error(reason: &str) -> String {
    if reason.contains("Cannot allocate memory") || reason.contains("ENOMEM") {
        format!(
            "{reason}: io_uring buffers need locked memory; raise the limit \
             (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in the systemd unit) \
             or lower the shard io memory"
        )
    } else {
        reason.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::Answer;

    /// A number; the answer is who answered and the number plus one.
    type Msg = (u64, Answer<(u16, u64)>);

    /// Far longer than any of these tests needs; reaching it fails the test.
    const LEAVE_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

    fn echo_handler(me: u16) -> Handler<Msg> {
        Rc::new(move |_from, (x, answer): Msg| Box::pin(async move { answer.send((me, x + 1)) }))
    }

    #[test]
    fn every_executor_calls_every_other_and_itself() {
        let config = PoolConfig {
            shards: 3,
            ..PoolConfig::default()
        };
        let pool = ShardPool::start(
            &config,
            |ctx: ShardContext<Msg, Msg>| async move {
                let me = ctx.shard;
                let mesh = ctx
                    .join_mesh(echo_handler(me.0))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut seen = Vec::new();
                for s in 0..mesh.shards() {
                    let (who, x) = mesh
                        .call_shard(ShardId(s), |answer| (10, answer))
                        .await
                        .map_err(|e| e.to_string())?;
                    assert_eq!(x, 11);
                    seen.push(who);
                }
                let (who, _) = mesh
                    .call_coordinator(|answer| (0, answer))
                    .await
                    .map_err(|e| e.to_string())?;
                seen.push(who);
                // Shards finish at different times; leaving keeps each answering
                // until the slowest has made its calls.
                mesh.leave(LEAVE_BOUND).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(seen)
            },
            |ctx: CoordinatorContext<Msg, Msg>| async move {
                let mesh = ctx
                    .join_mesh(echo_handler(999))
                    .await
                    .map_err(|e| e.to_string())?;
                mesh.leave(LEAVE_BOUND).await.map_err(|e| e.to_string())?;
                Ok(vec![])
            },
        )
        .unwrap();
        let out = pool.join().unwrap();
        assert_eq!(out.len(), 4);
        for seen in &out[..3] {
            assert_eq!(seen.as_ref().unwrap(), &vec![0, 1, 2, 999]);
        }
    }

    #[test]
    fn a_refused_request_is_an_error_for_the_caller() {
        let config = PoolConfig {
            shards: 1,
            ..PoolConfig::default()
        };
        let pool = ShardPool::start(
            &config,
            |ctx: ShardContext<Msg, Msg>| async move {
                let mesh = ctx
                    .join_mesh(echo_handler(0))
                    .await
                    .map_err(|e| e.to_string())?;
                let refused = mesh.call_coordinator(|answer| (1, answer)).await;
                mesh.leave(LEAVE_BOUND).await.map_err(|e| e.to_string())?;
                match refused {
                    Err(ShardError::Refused(who)) => Ok::<_, String>(who),
                    other => Err(format!("{other:?}")),
                }
            },
            |ctx: CoordinatorContext<Msg, Msg>| async move {
                let refuse: Handler<Msg> =
                    Rc::new(|_from, (_, answer): Msg| Box::pin(async move { answer.refuse() }));
                let mesh = ctx.join_mesh(refuse).await.map_err(|e| e.to_string())?;
                mesh.leave(LEAVE_BOUND).await.map_err(|e| e.to_string())?;
                Ok(String::new())
            },
        )
        .unwrap();
        let out = pool.join().unwrap();
        assert_eq!(out[0].as_deref(), Ok("coordinator"), "{out:?}");
    }

    #[test]
    fn calls_to_an_executor_that_exited_without_leaving_fail_instead_of_hanging() {
        let config = PoolConfig {
            shards: 2,
            ..PoolConfig::default()
        };
        let pool = ShardPool::start(
            &config,
            |ctx: ShardContext<Msg, Msg>| async move {
                let me = ctx.shard;
                let mesh = ctx
                    .join_mesh(echo_handler(me.0))
                    .await
                    .map_err(|e| e.to_string())?;
                if me.0 == 0 {
                    // Exits at once, without leaving.
                    return Ok::<_, String>(0);
                }
                // Shard 0 answers until it exits; after that every call must fail.
                let mut answered = 0;
                loop {
                    match mesh.call_shard(ShardId(0), |answer| (1, answer)).await {
                        Ok(_) => answered += 1,
                        Err(ShardError::PeerGone(_)) => break,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                assert!(mesh
                    .call_shard(ShardId(0), |answer| (1, answer))
                    .await
                    .is_err());
                mesh.leave(LEAVE_BOUND).await.map_err(|e| e.to_string())?;
                Ok(answered)
            },
            |ctx: CoordinatorContext<Msg, Msg>| async move {
                let mesh = ctx
                    .join_mesh(echo_handler(u16::MAX))
                    .await
                    .map_err(|e| e.to_string())?;
                mesh.leave(LEAVE_BOUND).await.map_err(|e| e.to_string())?;
                Ok(0)
            },
        )
        .unwrap();
        let out = pool.join().unwrap();
        assert!(out.iter().all(|r| r.is_ok()), "{out:?}");
    }

    #[test]
    fn bad_core_lists_are_refused() {
        let config = PoolConfig {
            shards: 2,
            cores: Some(vec![0]),
            ..PoolConfig::default()
        };
        assert!(matches!(config.shard_cores(), Err(ShardError::Config(_))));
        let config = PoolConfig {
            shards: 1,
            cores: Some(vec![100_000]),
            ..PoolConfig::default()
        };
        assert!(matches!(config.shard_cores(), Err(ShardError::Config(_))));
        let config = PoolConfig {
            shards: 0,
            ..PoolConfig::default()
        };
        assert!(config.shard_cores().is_err());
    }

    #[test]
    fn start_failure_is_reported_not_hung() {
        // io_memory far beyond what the host can lock/allocate makes executor creation fail.
        let config = PoolConfig {
            shards: 2,
            io_memory_bytes: usize::MAX / 2,
            ..PoolConfig::default()
        };
        let r = ShardPool::<()>::start(
            &config,
            |_ctx: ShardContext<Msg, Msg>| async {},
            |_ctx: CoordinatorContext<Msg, Msg>| async {},
        );
        assert!(matches!(r, Err(ShardError::Start { .. })), "{:?}", r.err());
    }
}
