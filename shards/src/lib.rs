//! ringlog-shards: the thread-per-core skeleton (DESIGN §2).
//!
//! - [`ShardPool`] starts one glommio `LocalExecutor` per data shard, each pinned to
//!   its own core, plus one lightweight coordination executor, and stops them in
//!   order.
//! - [`Mesh`] connects every executor to every other (a glommio channel mesh) so a
//!   shard can call another ([`Mesh::call_shard`]) or the coordinator
//!   ([`Mesh::call_coordinator`]) and await its typed answer; messages move, payloads
//!   inside them (`Bytes`) are never copied.
//! - [`routing`] says which shard owns a partition.
//!
//! Architecture invariant: this crate knows nothing about topics, logs or protocols.
//! Its requests are type parameters chosen by the broker: one type for what data
//! shards serve, one for what the coordinator serves.

mod error;
mod mesh;
mod pool;
pub mod routing;

pub use error::ShardError;
pub use mesh::{Answer, Answered, Handler, Mesh, Peer, Pending};
pub use pool::{CoordinatorContext, PoolConfig, ShardContext, ShardPool, MESH_CAPACITY_DEFAULT};
pub use routing::{shard_for_partition, ShardId};
