//! ringlog-shards: the thread-per-core skeleton (DESIGN §2).
//!
//! - [`ShardPool`] starts one glommio `LocalExecutor` per data shard, each pinned to
//!   its own core, plus one lightweight coordination executor, and stops them in
//!   order.
//! - [`Mesh`] connects every executor to every other (a glommio channel mesh) so a
//!   shard can [`Mesh::call`] another and await its answer; messages move, payloads
//!   inside them (`Bytes`) are never copied.
//! - [`routing`] says which shard owns a partition.
//!
//! Architecture invariant: this crate knows nothing about topics, logs or protocols.
//! Its messages are a type parameter chosen by the broker.

mod error;
mod mesh;
mod pool;
pub mod routing;

pub use error::ShardError;
pub use mesh::{Handler, Mesh, Peer, Reply};
pub use pool::{PoolConfig, ShardContext, ShardPool, MESH_CAPACITY_DEFAULT};
pub use routing::{shard_for_partition, ShardId};
