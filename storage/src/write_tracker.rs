//! Which of a log's issued writes are still in flight, by issue order.
//!
//! A write stage must know when the bytes it queued are in the file. Waiting until no
//! write at all is in flight (taking every write slot) also waits for the writes that
//! appends issue after it, and keeps them from being issued meanwhile: the device
//! queue empties at the end of every stage. Numbering writes as they are issued lets
//! a stage wait for exactly the writes issued before its own last one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use crate::notify::SyncNotify;

/// Writes of one log, numbered from 1 in the order they are issued.
#[derive(Default)]
pub(crate) struct WriteTracker {
    issued: Cell<u64>,
    /// Writes in flight: number → the first file position each changes. Two may
    /// share a position (a block's rewrite is issued while the write it follows is
    /// in flight).
    inflight: RefCell<BTreeMap<u64, u64>>,
    finished: SyncNotify,
}

impl WriteTracker {
    /// Numbers a write being issued that changes the file from `position` on.
    pub fn start(&self, position: u64) -> u64 {
        let seq = self.issued.get() + 1;
        self.issued.set(seq);
        self.inflight.borrow_mut().insert(seq, position);
        seq
    }

    /// The lowest file position a write in flight starts at: bytes from there on
    /// may not be in the file yet.
    pub fn first_position(&self) -> Option<u64> {
        // At most `inflight_writes_max` entries.
        self.inflight.borrow().values().min().copied()
    }

    /// Records that write `seq` has completed (successfully or not).
    pub fn finish(&self, seq: u64) {
        self.inflight.borrow_mut().remove(&seq);
        self.finished.notify_all();
    }

    /// The number of the last write issued (0 before the first).
    pub fn last_issued(&self) -> u64 {
        self.issued.get()
    }

    /// Whether every write numbered `seq` or lower has completed.
    pub fn done_through(&self, seq: u64) -> bool {
        self.inflight
            .borrow()
            .first_key_value()
            .is_none_or(|(&first, _)| first > seq)
    }

    /// Returns once write `seq` has completed, whatever the others do.
    pub async fn wait_for(&self, seq: u64) {
        while self.inflight.borrow().contains_key(&seq) {
            self.finished.wait().await;
        }
    }

    /// Returns once every write numbered `seq` or lower has completed; later writes
    /// may still be in flight.
    pub async fn wait_through(&self, seq: u64) {
        // No await between the check and registering for the next completion, so a
        // completion cannot slip between them.
        while !self.done_through(seq) {
            self.finished.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_position_counts_writes_that_share_one() {
        let t = WriteTracker::default();
        assert_eq!(t.first_position(), None);
        let partial = t.start(8192);
        let rewrite = t.start(8192);
        let next = t.start(12_288);
        t.finish(partial);
        assert_eq!(
            t.first_position(),
            Some(8192),
            "the rewrite is still in flight"
        );
        t.finish(rewrite);
        assert_eq!(t.first_position(), Some(12_288));
        t.finish(next);
        assert_eq!(t.first_position(), None);
    }

    #[test]
    fn waits_only_for_writes_issued_up_to_the_mark() {
        let t = WriteTracker::default();
        assert!(t.done_through(t.last_issued()), "nothing issued yet");
        let a = t.start(0);
        let b = t.start(0);
        let mark = t.last_issued();
        let c = t.start(0);
        assert!(!t.done_through(mark));
        // Completing out of order: b first, then the later c; a still holds the mark.
        t.finish(b);
        t.finish(c);
        assert!(!t.done_through(mark));
        t.finish(a);
        assert!(t.done_through(mark));
        // A write issued after the mark does not hold it back.
        let d = t.start(0);
        assert!(t.done_through(mark));
        assert!(!t.done_through(d));
    }

    #[test]
    fn a_waiter_wakes_when_its_writes_complete() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let t = std::rc::Rc::new(WriteTracker::default());
                let first = t.start(0);
                let later = t.start(0);
                let waiter = {
                    let t = t.clone();
                    glommio::spawn_local(async move { t.wait_through(first).await })
                };
                glommio::executor().yield_task_queue_now().await;
                assert!(!t.done_through(first));
                t.finish(first);
                // `later` is still in flight; the waiter must not need it.
                waiter.await;
                assert!(!t.done_through(later));
                // Waiting for one write alone ignores the ones before it.
                let last = t.start(0);
                let single = {
                    let t = t.clone();
                    glommio::spawn_local(async move { t.wait_for(last).await })
                };
                t.finish(last);
                single.await;
                assert!(!t.done_through(later), "`later` is still in flight");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
