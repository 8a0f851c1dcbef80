//! A shard's memory budget for request bytes being read and response bytes queued
//! (Kafka's `queued.max.request.bytes`, split evenly across shards).
//!
//! A connection reserves a frame's whole length before it reads the frame's body,
//! and a fetch reserves its response limit before it reads the log; the grant
//! lives until the request has been answered (a request) or the response has been
//! written to the socket (a response). A shard at its budget stops reading sockets:
//! callers wait, in arrival order, until enough is released; a request that fits
//! the budget is never failed for want of memory.
//!
//! No task holds a grant while it waits for another: a reader reserves with nothing
//! held, and a fetch drops its request's grant before it reserves its response, so
//! waits cannot form a cycle. A reservation larger than the whole budget is granted
//! once nothing else is held (so a frame up to `socket.request.max.bytes` always gets
//! through, alone).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// The budget of one shard (single executor).
pub struct MemoryBudget {
    capacity: usize,
    used: Cell<usize>,
    /// Reservations waiting, oldest first: (ticket, bytes, waker).
    waiting: RefCell<VecDeque<(u64, usize, Option<Waker>)>>,
    next_ticket: Cell<u64>,
    /// Reservations that had to wait, since start (for metrics).
    waits: Cell<u64>,
}

impl MemoryBudget {
    pub fn new(capacity: usize) -> Rc<Self> {
        Rc::new(Self {
            capacity: capacity.max(1),
            used: Cell::new(0),
            waiting: RefCell::new(VecDeque::new()),
            next_ticket: Cell::new(0),
            waits: Cell::new(0),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Reservations that waited for memory since start.
    pub fn waits(&self) -> u64 {
        self.waits.get()
    }

    /// Whether `bytes` can be granted now: it fits what is left, or nothing is held
    /// (a reservation larger than the budget goes alone).
    fn fits(&self, bytes: usize) -> bool {
        let used = self.used.get();
        used == 0 || used.saturating_add(bytes) <= self.capacity
    }

    /// Reserves `bytes`, waiting (first come, first served) until they fit.
    pub async fn reserve(self: &Rc<Self>, bytes: usize) -> Grant {
        if self.waiting.borrow().is_empty() && self.fits(bytes) {
            return self.grant(bytes);
        }
        self.waits.set(self.waits.get() + 1);
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        self.waiting.borrow_mut().push_back((ticket, bytes, None));
        let mut queued = Queued {
            budget: self,
            ticket,
        };
        poll_fn(|cx| {
            let mut waiting = self.waiting.borrow_mut();
            let first = waiting.front().map(|(t, _, _)| *t);
            if first == Some(ticket) && self.fits(bytes) {
                waiting.pop_front();
                return Poll::Ready(());
            }
            if let Some(entry) = waiting.iter_mut().find(|(t, _, _)| *t == ticket) {
                entry.2 = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        queued.ticket = u64::MAX;
        drop(queued);
        let grant = self.grant(bytes);
        // The next in line may fit too.
        self.wake_first();
        grant
    }

    fn grant(self: &Rc<Self>, bytes: usize) -> Grant {
        self.used.set(self.used.get() + bytes);
        Grant {
            budget: self.clone(),
            bytes,
        }
    }

    fn release(&self, bytes: usize) {
        self.used.set(self.used.get().saturating_sub(bytes));
        self.wake_first();
    }

    fn wake_first(&self) {
        if let Some((_, bytes, waker)) = self.waiting.borrow_mut().front_mut() {
            if self.fits(*bytes) {
                if let Some(w) = waker.take() {
                    w.wake();
                }
            }
        }
    }
}

/// A reservation still in line; leaving the line (a cancelled wait) hands the turn
/// on.
struct Queued<'a> {
    budget: &'a MemoryBudget,
    ticket: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.ticket == u64::MAX {
            return;
        }
        self.budget
            .waiting
            .borrow_mut()
            .retain(|(t, _, _)| *t != self.ticket);
        self.budget.wake_first();
    }
}

/// Reserved bytes, given back on drop.
pub struct Grant {
    budget: Rc<MemoryBudget>,
    bytes: usize,
}

impl Grant {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back what is held beyond `bytes` (a response smaller than its limit).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            let freed = self.bytes - bytes;
            self.bytes = bytes;
            self.budget.release(freed);
        }
    }

    /// Makes the grant exactly `bytes`: shrinks, or grows without waiting. Growing
    /// is for memory already allocated (a fetch whose first batch was larger than
    /// its limit, as Kafka allows); waiting for it could deadlock.
    pub fn resize_to(&mut self, bytes: usize) {
        if bytes > self.bytes {
            let more = bytes - self.bytes;
            self.budget.used.set(self.budget.used.get() + more);
            self.bytes = bytes;
        } else {
            self.shrink_to(bytes);
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sync::run_on_executor as run;

    async fn settle() {
        for _ in 0..4 {
            glommio::executor().yield_task_queue_now().await;
        }
    }

    #[test]
    fn reservations_wait_in_order_and_proceed_as_memory_is_released() {
        run(|| async {
            let budget = MemoryBudget::new(100);
            let a = budget.reserve(60).await;
            let order = Rc::new(RefCell::new(Vec::new()));
            let spawn = |name: &'static str, bytes: usize| {
                let (budget, order) = (budget.clone(), order.clone());
                glommio::spawn_local(async move {
                    let g = budget.reserve(bytes).await;
                    order.borrow_mut().push(name);
                    g
                })
            };
            let b = spawn("b", 50);
            settle().await;
            // c would fit now (60 + 30), but b is first in line.
            let c = spawn("c", 30);
            settle().await;
            assert!(order.borrow().is_empty());
            assert_eq!(budget.used(), 60);
            drop(a);
            let b = b.await;
            let c = c.await;
            assert_eq!(*order.borrow(), ["b", "c"]);
            assert_eq!(budget.used(), 80);
            drop((b, c));
            assert_eq!(budget.used(), 0);
            assert_eq!(budget.waits(), 2);
        });
    }

    #[test]
    fn an_oversized_reservation_goes_alone_and_shrinking_gives_memory_back() {
        run(|| async {
            let budget = MemoryBudget::new(100);
            let big = budget.reserve(1_000).await;
            assert_eq!(budget.used(), 1_000);
            let small = {
                let budget = budget.clone();
                glommio::spawn_local(async move { budget.reserve(10).await })
            };
            settle().await;
            drop(big);
            let mut small = small.await;
            small.shrink_to(4);
            assert_eq!(budget.used(), 4);
        });
    }

    #[test]
    fn a_cancelled_wait_leaves_the_line() {
        run(|| async {
            let budget = MemoryBudget::new(100);
            let held = budget.reserve(100).await;
            let gave_up = futures_lite::future::or(
                async {
                    budget.reserve(50).await;
                    false
                },
                async {
                    settle().await;
                    true
                },
            )
            .await;
            assert!(gave_up);
            assert!(budget.waiting.borrow().is_empty());
            let next = {
                let budget = budget.clone();
                glommio::spawn_local(async move { budget.reserve(70).await })
            };
            settle().await;
            drop(held);
            assert_eq!(next.await.bytes(), 70);
        });
    }
}
