//! Request order on one connection: a request sees the effects of every write sent
//! before it on the same connection, as Apache Kafka guarantees (its broker serves
//! one request per connection at a time). ringlog still runs requests of a
//! connection concurrently where that cannot be observed:
//!
//! - a read (Fetch, Metadata, OffsetFetch, ...) starts once every earlier write on
//!   the connection has completed; reads never wait for reads;
//! - a write (OffsetCommit, JoinGroup, CreateTopics, ...) starts once every earlier
//!   write has completed;
//! - a produce starts once every earlier write other than a produce has completed:
//!   produces follow each other without waiting, because the connection's reader
//!   queues each one on its partitions' owners before it reads the next request,
//!   which is what orders their appends (and their idempotent sequence checks).
//!
//! A write may run while an earlier read is still running (a long-polling fetch
//! followed by a produce): the read may then see the write's effect, which is
//! harmless, and a producer is not held for a consumer's `max_wait_ms`.
//!
//! The connection's reader admits requests one at a time and stops reading while a
//! request waits for admission, so the wait is TCP backpressure, not a queue.

use std::cell::Cell;
use std::rc::Rc;

use crate::sync::signal::Signal;

/// What a request does to broker state, for ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Reads state only.
    Read,
    /// Appends records; ordered with other produces by the reader's queueing.
    Produce,
    /// Changes any other state (groups, offsets, topics, producer ids).
    Write,
}

/// Writes of one connection that were admitted and have not completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WritesInFlight {
    pub produces: usize,
    pub others: usize,
}

/// Pure: whether a request with `effect` may start while `inflight` writes run.
pub fn may_start(effect: Effect, inflight: WritesInFlight) -> bool {
    match effect {
        Effect::Read | Effect::Write => inflight.produces == 0 && inflight.others == 0,
        Effect::Produce => inflight.others == 0,
    }
}

/// One connection's order gate (single executor).
#[derive(Default)]
pub struct RequestOrder {
    inflight: Cell<WritesInFlight>,
    completed: Signal,
}

impl RequestOrder {
    /// Waits until a request with `effect` may start, then registers it; the ticket
    /// is dropped when the request has taken effect (answered or failed).
    pub async fn admit(self: &Rc<Self>, effect: Effect) -> Ticket {
        loop {
            let completed = self.completed.wait();
            if may_start(effect, self.inflight.get()) {
                break;
            }
            completed.await;
        }
        let mut n = self.inflight.get();
        match effect {
            Effect::Read => {}
            Effect::Produce => n.produces += 1,
            Effect::Write => n.others += 1,
        }
        self.inflight.set(n);
        Ticket {
            order: self.clone(),
            effect,
        }
    }
}

/// An admitted request; dropping it marks the request's effects as visible.
pub struct Ticket {
    order: Rc<RequestOrder>,
    effect: Effect,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut n = self.order.inflight.get();
        match self.effect {
            Effect::Read => return,
            Effect::Produce => n.produces -= 1,
            Effect::Write => n.others -= 1,
        }
        self.order.inflight.set(n);
        self.order.completed.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflight(produces: usize, others: usize) -> WritesInFlight {
        WritesInFlight { produces, others }
    }

    #[test]
    fn reads_and_writes_wait_for_every_earlier_write() {
        for effect in [Effect::Read, Effect::Write] {
            assert!(may_start(effect, inflight(0, 0)));
            assert!(
                !may_start(effect, inflight(1, 0)),
                "{effect:?} after a produce"
            );
            assert!(
                !may_start(effect, inflight(0, 1)),
                "{effect:?} after a write"
            );
        }
    }

    #[test]
    fn produces_follow_produces_but_wait_for_other_writes() {
        assert!(may_start(Effect::Produce, inflight(0, 0)));
        assert!(may_start(Effect::Produce, inflight(3, 0)));
        assert!(!may_start(Effect::Produce, inflight(0, 1)));
        assert!(!may_start(Effect::Produce, inflight(2, 1)));
    }

    #[test]
    fn a_read_admitted_after_a_write_starts_only_once_the_write_is_done() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async move {
                let order = Rc::new(RequestOrder::default());
                let commit = order.admit(Effect::Write).await;
                let started = Rc::new(Cell::new(false));
                let read = glommio::spawn_local({
                    let order = order.clone();
                    let started = started.clone();
                    async move {
                        let _t = order.admit(Effect::Read).await;
                        started.set(true);
                    }
                });
                glommio::yield_if_needed().await;
                glommio::executor().yield_task_queue_now().await;
                assert!(!started.get(), "the read started before the write ended");
                drop(commit);
                read.await;
                assert!(started.get());
                // Reads never hold anything back.
                let _r = order.admit(Effect::Read).await;
                let _w = order.admit(Effect::Write).await;
            })
            .expect("executor")
            .join()
            .expect("test");
    }
}
