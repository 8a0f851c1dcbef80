//! Waiting for many futures at once, in linear time.
//!
//! A plain "poll every pending future on each wake-up" join costs O(n) per wake-up
//! and O(n²) for a request naming n partitions whose answers arrive one by one.
//! Here each future gets its own waker that records its index, and a wake-up polls
//! only the futures that were woken.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Indices woken since the last poll, and the joining task's waker.
#[derive(Default)]
struct Woken {
    ready: Mutex<Vec<usize>>,
    parent: Mutex<Option<Waker>>,
}

struct SlotWaker {
    index: usize,
    woken: Arc<Woken>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.index);
        let parent = self
            .woken
            .parent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = parent {
            w.wake();
        }
    }
}

/// Runs the futures concurrently on this task and returns their outputs in input
/// order. Each future is polled once at the start and then only when it wakes.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let n = futures.len();
    let woken = Arc::new(Woken::default());
    let mut slots: Vec<(Option<Pin<Box<F>>>, Waker)> = futures
        .into_iter()
        .enumerate()
        .map(|(index, f)| {
            let waker = Waker::from(Arc::new(SlotWaker {
                index,
                woken: woken.clone(),
            }));
            (Some(Box::pin(f)), waker)
        })
        .collect();
    let mut outputs: Vec<Option<F::Output>> = (0..n).map(|_| None).collect();
    let mut to_poll: Vec<usize> = (0..n).collect();
    let mut done = 0;
    poll_fn(|cx| {
        *woken.parent.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        loop {
            to_poll.append(&mut woken.ready.lock().unwrap_or_else(PoisonError::into_inner));
            if to_poll.is_empty() {
                break;
            }
            for i in to_poll.drain(..) {
                let (slot, waker) = &mut slots[i];
                let Some(f) = slot.as_mut() else {
                    continue;
                };
                if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(waker)) {
                    outputs[i] = Some(v);
                    *slot = None;
                    done += 1;
                }
            }
        }
        if done == n {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn outputs_come_in_input_order_and_each_future_is_polled_only_when_woken() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let polls = Rc::new(Cell::new(0u64));
                let n = 2_000u64;
                let futures: Vec<_> = (0..n)
                    .map(|i| {
                        let polls = polls.clone();
                        async move {
                            let mut yielded = false;
                            poll_fn(|cx| {
                                polls.set(polls.get() + 1);
                                if yielded {
                                    Poll::Ready(i)
                                } else {
                                    yielded = true;
                                    cx.waker().wake_by_ref();
                                    Poll::Pending
                                }
                            })
                            .await
                        }
                    })
                    .collect();
                let out = join_all(futures).await;
                assert_eq!(out, (0..n).collect::<Vec<_>>());
                // Twice each: linear, not n per wake-up.
                assert_eq!(polls.get(), 2 * n);
            })
            .expect("executor")
            .join()
            .expect("test");
    }
}
