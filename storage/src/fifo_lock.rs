//! [`FifoLock`]: an async lock for one executor that its waiters get in the order
//! they asked for it.
//!
//! The log's append lock must be fair: appends are ordered by when they reach the log,
//! and a producer's pipelined requests reach it in send order. glommio's `Semaphore`
//! lets a task that asks while a woken waiter has not yet run take the permit first;
//! the waiter then queues again at the back. Under load that stored a producer's
//! batches out of send order (found by `ringlog-bench`'s verification: two 252-record
//! batches of one producer swapped in a single-partition log at max rate). Tickets
//! rule that out: whoever asks later is served later.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A fair (first come, first served) lock; `!Send`, for one executor's tasks.
#[derive(Default)]
pub(crate) struct FifoLock {
    next_ticket: Cell<u64>,
    /// The ticket that may hold the lock now.
    serving: Cell<u64>,
    held: Cell<bool>,
    waiters: RefCell<BTreeMap<u64, Waker>>,
    /// Tickets whose futures were dropped before their turn: skipped.
    abandoned: RefCell<BTreeSet<u64>>,
}

impl FifoLock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Waits for the lock; the guard releases it when dropped.
    pub(crate) fn lock(&self) -> Acquire<'_> {
        Acquire {
            lock: self,
            ticket: None,
            acquired: false,
        }
    }

    /// Passes the turn to the next live ticket and wakes its task.
    fn advance(&self) {
        let mut next = self.serving.get() + 1;
        {
            let mut abandoned = self.abandoned.borrow_mut();
            while abandoned.remove(&next) {
                next += 1;
            }
        }
        self.serving.set(next);
        if let Some(w) = self.waiters.borrow_mut().remove(&next) {
            w.wake();
        }
    }
}

/// The future of [`FifoLock::lock`].
pub(crate) struct Acquire<'a> {
    lock: &'a FifoLock,
    ticket: Option<u64>,
    acquired: bool,
}

impl<'a> Future for Acquire<'a> {
    type Output = FifoGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FifoGuard<'a>> {
        let lock = self.lock;
        let ticket = *self.ticket.get_or_insert_with(|| {
            let t = lock.next_ticket.get();
            lock.next_ticket.set(t + 1);
            t
        });
        if lock.serving.get() == ticket && !lock.held.get() {
            lock.held.set(true);
            self.acquired = true;
            return Poll::Ready(FifoGuard { lock });
        }
        lock.waiters.borrow_mut().insert(ticket, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        if self.acquired {
            return;
        }
        // Cancelled while waiting: give the turn away rather than block everyone after.
        self.lock.waiters.borrow_mut().remove(&ticket);
        if self.lock.serving.get() == ticket {
            self.lock.advance();
        } else {
            self.lock.abandoned.borrow_mut().insert(ticket);
        }
    }
}

/// Holds a [`FifoLock`]; the next ticket gets it on drop.
pub(crate) struct FifoGuard<'a> {
    lock: &'a FifoLock,
}

impl Drop for FifoGuard<'_> {
    fn drop(&mut self) {
        self.lock.held.set(false);
        self.lock.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn run<T, F, Fut>(make: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(make)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn waiters_get_the_lock_in_the_order_they_asked_even_against_late_arrivals() {
        let order = run(|| async {
            let lock = Rc::new(FifoLock::new());
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for i in 0..50u32 {
                let (lock, order) = (lock.clone(), order.clone());
                tasks.push(glommio::spawn_local(async move {
                    let _g = lock.lock().await;
                    order.borrow_mut().push(i);
                    // Hold across awaits, as an append that waits for the device does.
                    glommio::yield_if_needed().await;
                    glommio::executor().yield_task_queue_now().await;
                }));
                // Arrivals keep coming while earlier waiters are being woken.
                if i % 3 == 0 {
                    glommio::executor().yield_task_queue_now().await;
                }
            }
            for t in tasks {
                t.await;
            }
            let v = order.borrow().clone();
            v
        });
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_waiter_dropped_before_its_turn_does_not_block_the_rest() {
        let got = run(|| async {
            let lock = Rc::new(FifoLock::new());
            let first = lock.lock().await;
            // Ticket 1 asks and is cancelled; ticket 2 must still get the lock.
            {
                let mut cancelled = Box::pin(lock.lock());
                let waker =
                    futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
                let mut cx = Context::from_waker(&waker);
                assert!(cancelled.as_mut().poll(&mut cx).is_pending());
            }
            let l2 = lock.clone();
            let third = glommio::spawn_local(async move {
                let _g = l2.lock().await;
                true
            });
            drop(first);
            let got = third.await;
            // And once more after it.
            let _g = lock.lock().await;
            got
        });
        assert!(got);
    }

    #[test]
    fn a_waiter_cancelled_on_its_turn_passes_it_on() {
        let got = run(|| async {
            let lock = Rc::new(FifoLock::new());
            let first = lock.lock().await;
            let mut next = Box::pin(lock.lock());
            let waker = futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            let mut cx = Context::from_waker(&waker);
            assert!(next.as_mut().poll(&mut cx).is_pending());
            drop(first); // now it is `next`'s turn, but it is dropped unpolled
            drop(next);
            let _g = lock.lock().await;
            true
        });
        assert!(got);
    }
}
