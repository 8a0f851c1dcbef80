//! The wall clock, in the units the broker stores: record timestamps, deadlines of
//! group members and producer ids are wall-clock milliseconds since the epoch.
//! One place, so a clock before 1970 or past i64 reads the same everywhere.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch (0 for a clock before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Nanoseconds since the epoch (0 for a clock before it), for unique names.
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
