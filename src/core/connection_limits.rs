//! `max.connections` and `max.connections.per.ip` (Kafka's keys): client
//! connections open at once on the broker, counted over every shard and both
//! client listeners.
//!
//! Shards accept their own connections (SO_REUSEPORT), so the counts are shared:
//! an atomic for the total and a small map per address behind a mutex. Both are
//! touched only when a connection is accepted or closed, never per request.
//!
//! A connection over a limit is closed at once after accept (Kafka closes a
//! connection over its per-address limit the same way; over `max.connections` it
//! stops accepting instead, which would leave the client waiting in the backlog
//! with no answer). Refusals are counted in `/metrics` and logged at debug.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was refused (a metrics label, so it lives with the metrics).
pub use crate::metrics::ConnectionRefusal as Refusal;

/// Pure: whether one more connection may open, given what is open.
pub fn admit(
    open: usize,
    open_from_address: usize,
    max: usize,
    max_per_address: usize,
) -> Result<(), Refusal> {
    if open >= max {
        Err(Refusal::Broker)
    } else if open_from_address >= max_per_address {
        Err(Refusal::PerAddress)
    } else {
        Ok(())
    }
}

/// The broker's open client connections.
pub struct ConnectionLimits {
    max: usize,
    max_per_address: usize,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionLimits {
    pub fn new(max: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_address,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `address`, or says which limit it is over.
    pub fn open(self: &Arc<Self>, address: IpAddr) -> Result<Admission, Refusal> {
        let mut per = self
            .per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let from = per.get(&address).copied().unwrap_or(0);
        admit(
            self.open.load(Ordering::Relaxed),
            from,
            self.max,
            self.max_per_address,
        )?;
        per.insert(address, from + 1);
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Admission {
            limits: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open_now(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// An open connection's place in the counts, given back when it closes.
pub struct Admission {
    limits: Arc<ConnectionLimits>,
    address: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut per = self
            .limits
            .per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.address);
            }
        }
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_limit_comes_before_the_address_limit() {
        assert_eq!(admit(0, 0, 1, 1), Ok(()));
        assert_eq!(admit(1, 0, 1, 5), Err(Refusal::Broker));
        assert_eq!(admit(3, 2, 5, 2), Err(Refusal::PerAddress));
        assert_eq!(admit(3, 1, 5, 2), Ok(()));
    }

    #[test]
    fn closing_a_connection_gives_its_place_back() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limits.open(a).unwrap();
        let _a2 = limits.open(a).unwrap();
        assert_eq!(limits.open(a).err(), Some(Refusal::PerAddress));
        let _b1 = limits.open(b).unwrap();
        assert_eq!(limits.open(b).err(), Some(Refusal::Broker));
        drop(a1);
        assert_eq!(limits.open_now(), 2);
        let _a3 = limits.open(a).unwrap();
        assert_eq!(limits.per_address.lock().unwrap().len(), 2);
    }
}
