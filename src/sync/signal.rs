//! A single-executor broadcast signal: tasks wait until the next `notify`. Used for
//! "new data in this partition" (long-poll fetches) and "shutdown requested".

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiter on each `notify`. `!Send`: belongs to one executor.
///
/// Each waiting future owns one slot of the waiter list and gives it back when it
/// is dropped, so a wait that ends some other way (a timeout, a cancelled request)
/// leaves nothing behind, and polling a waiter again is O(1).
#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    waiters: RefCell<Slots>,
}

/// Waker slots with a free list.
#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Slots {
    fn insert(&mut self, w: Waker) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.wakers[i] = Some(w);
                i
            }
            None => {
                self.wakers.push(Some(w));
                self.wakers.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.wakers.get_mut(i) {
            if slot.take().is_some() {
                self.free.push(i);
            }
        }
    }
}

impl Signal {
    /// Wakes every task waiting now.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let drained = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in drained.wakers.into_iter().flatten() {
            w.wake();
        }
    }

    /// Resolves at the first `notify` after this call.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            signal: self,
            generation: self.generation.get(),
            slot: None,
        }
    }

    /// Tasks waiting now (for tests and metrics).
    pub fn waiters(&self) -> usize {
        let w = self.waiters.borrow();
        w.wakers.len() - w.free.len()
    }
}

/// Future of [`Signal::wait`].
pub struct Wait<'a> {
    signal: &'a Signal,
    generation: u64,
    /// The waiter slot this future holds, in `generation`'s list.
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            self.slot = None;
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        let held = self.slot.and_then(|i| waiters.wakers.get_mut(i)?.as_mut());
        match held {
            Some(w) => {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
            }
            None => {
                let i = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        // After a notify the list was drained: the slot is no longer this one's.
        if let Some(i) = self.slot {
            if self.signal.generation.get() == self.generation {
                self.signal.waiters.borrow_mut().remove(i);
            }
        }
    }
}

/// A one-way latch: once set, every present and future waiter proceeds.
#[derive(Default)]
pub struct Latch {
    set: Cell<bool>,
    signal: Signal,
}

impl Latch {
    /// Tasks waiting for the latch.
    pub fn waiters(&self) -> usize {
        self.signal.waiters()
    }

    pub fn set(&self) {
        if !self.set.replace(true) {
            self.signal.notify();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Unsets a set latch, so what it guards is done again. Only for a latch
    /// nobody can be waiting on (a set latch has no waiters).
    pub fn reset(&self) {
        self.set.set(false);
    }

    pub async fn wait(&self) {
        while !self.set.get() {
            self.signal.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::FutureExt;

    use crate::sync::run_on_executor as run;

    #[test]
    fn a_wait_that_ends_otherwise_leaves_no_waiter_behind() {
        run(|| async {
            let signal = Signal::default();
            for _ in 0..10_000 {
                let timeout = async { glommio::yield_if_needed().await };
                // The wait is polled (registers), then the other branch wins.
                signal
                    .wait()
                    .or(async {
                        glommio::executor().yield_task_queue_now().await;
                        timeout.await
                    })
                    .await;
            }
            assert_eq!(signal.waiters(), 0);
        });
    }

    #[test]
    fn notify_wakes_every_waiter_once_and_reuses_nothing_stale() {
        run(|| async {
            let signal = std::rc::Rc::new(Signal::default());
            let woken = std::rc::Rc::new(Cell::new(0));
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let (signal, woken) = (signal.clone(), woken.clone());
                    glommio::spawn_local(async move {
                        signal.wait().await;
                        woken.set(woken.get() + 1);
                    })
                })
                .collect();
            glommio::executor().yield_task_queue_now().await;
            assert_eq!(signal.waiters(), 50);
            signal.notify();
            for t in tasks {
                t.await;
            }
            assert_eq!((woken.get(), signal.waiters()), (50, 0));
            // A wait taken before a notify and dropped after it frees nothing new.
            let mut old = Box::pin(signal.wait());
            assert!(futures_lite::future::poll_once(old.as_mut())
                .await
                .is_none());
            signal.notify();
            let mut fresh = Box::pin(signal.wait());
            assert!(futures_lite::future::poll_once(fresh.as_mut())
                .await
                .is_none());
            // Both held slot 0, in different generations: the stale one's drop
            // must not free the fresh one's.
            drop(old);
            assert_eq!(signal.waiters(), 1);
            drop(fresh);
            assert_eq!(signal.waiters(), 0);
        });
    }
}
