//! What the coordinator asks of the active controller when that is another broker,
//! in the core's own types. The inter-broker adapter implements it
//! over its protocol; the core never names that protocol.

use std::future::Future;
use std::pin::Pin;

use crate::cluster::controller::{Heartbeat, HeartbeatAnswer};
use crate::core::messages::{ConfigAlteration, NewTopic, PartitionError, TopicOutcome};
use crate::metadata::{BrokerId, BrokerInfo};

/// A boxed future of the coordination executor (not `Send`).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// An admin change forwarded to the active controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCall {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    /// A partition leader's ISR change.
    AlterPartition(crate::metadata::records::IsrChange),
    AlterTopicConfigs {
        topic: String,
        alteration: ConfigAlteration,
        validate_only: bool,
    },
    /// An operator's leader election; `partitions` `None` is every partition.
    ElectLeaders {
        kind: crate::metadata::election::ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    },
}

/// Calls on the active controller at broker `leader`. Each is bounded in time by
/// the implementation; an error's kind says whether to retry elsewhere
/// (`NotController`) or give up (`RequestTimedOut`).
pub trait RemoteController {
    fn register(
        &self,
        leader: BrokerId,
        broker: BrokerInfo,
        incarnation: u64,
    ) -> LocalFuture<'_, Result<u64, PartitionError>>;

    fn heartbeat(
        &self,
        leader: BrokerId,
        heartbeat: Heartbeat,
    ) -> LocalFuture<'_, Result<HeartbeatAnswer, PartitionError>>;

    fn admin(
        &self,
        leader: BrokerId,
        call: AdminCall,
    ) -> LocalFuture<'_, Result<Vec<TopicOutcome>, PartitionError>>;
}
