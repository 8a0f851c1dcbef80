//! A single-executor broadcast signal: tasks wait until the next `notify`. Used for
//! "new data in this partition" (long-poll fetches) and "shutdown requested".

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiter on each `notify`. `!Send`: belongs to one executor.
#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Wakes every task waiting now.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves at the first `notify` after this call.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            signal: self,
            generation: self.generation.get(),
        }
    }
}

/// Future of [`Signal::wait`].
pub struct Wait<'a> {
    signal: &'a Signal,
    generation: u64,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        // A waiter polled again replaces nothing: duplicates are harmless wake-ups.
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A one-way latch: once set, every present and future waiter proceeds.
#[derive(Default)]
pub struct Latch {
    set: Cell<bool>,
    signal: Signal,
}

impl Latch {
    pub fn set(&self) {
        if !self.set.replace(true) {
            self.signal.notify();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub async fn wait(&self) {
        while !self.set.get() {
            self.signal.wait().await;
        }
    }
}
