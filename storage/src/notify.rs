//! A single-threaded broadcast: tasks wait for "the next sync finished" and all wake.
//!
//! Group commit needs it: a flusher whose offsets a concurrent fdatasync covered must
//! learn so when that sync ends, without first queueing for the flush lock (glommio's
//! semaphore lets a releasing task take the lock again before woken waiters run, which
//! turned every flush into its own fdatasync).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub(crate) struct SyncNotify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl SyncNotify {
    /// Wakes every task waiting in [`SyncNotify::wait`].
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.wakers.take() {
            w.wake();
        }
    }

    /// Completes at the next [`SyncNotify::notify_all`] after this call.
    pub async fn wait(&self) {
        let start = self.generation.get();
        poll_fn(|cx| {
            if self.generation.get() != start {
                Poll::Ready(())
            } else {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}
