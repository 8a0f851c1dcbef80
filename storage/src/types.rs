//! Newtypes for the numbers a log juggles, so an offset is never mistaken for a
//! byte position or an epoch.

use std::fmt;

/// A record offset within a partition. Bounds such as log end and durable offset are
/// exclusive ("the next offset"), as in Kafka's log end offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl Offset {
    /// The raw value.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A leader epoch, stamped into every batch's partitionLeaderEpoch field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the batch's first record.
    pub base_offset: Offset,
    /// Offset of its last record (inclusive).
    pub last_offset: Offset,
    /// The batch's maxTimestamp.
    pub max_timestamp: i64,
}
