//! The broker's protocol-neutral core: the services the native and Kafka listeners
//! (sibling adapters) call after decoding a request (`topics`, `produce`, `fetch`,
//! `list_offsets`, `groups`, `metadata`), the typed mesh messages (`messages`), and
//! the state they act on (`shard`, `partition`, `coordinator` with its
//! `quorum_driver`,
//! `group_coordinator`, producer state, resource budgets). Everything is in the
//! broker's own types, errors included (`error::ErrorKind`): nothing here names a
//! type generated for either protocol, and nothing here uses an adapter
//! (`tests/architecture.rs` checks both).

pub mod connection_limits;
pub mod coordinator;
pub mod epoch_ends;
pub mod error;
pub mod fetch;
pub mod group_coordinator;
pub mod groups;
pub mod hw_checkpoint;
pub mod list_offsets;
pub mod memory;
pub mod messages;
pub mod metadata;
pub mod partition;
pub mod partition_dir;
pub mod produce;
pub mod producer_snapshot;
pub mod producer_state;
pub mod quorum_driver;
pub mod remote;
pub mod replica;
pub mod request_order;
pub mod routing;
pub mod shard;
pub mod topics;
