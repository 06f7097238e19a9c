//! The global run queue: a locked FIFO for overflow, foreign spawns and Gs readied without a P.
//!
//! `len` mirrors the deque's length so that idle Ms and the fairness check can test for work
//! without taking the lock. It is written only under the lock (SeqCst, so that the idle
//! protocol's "enqueue, then look for idle Ps" against "go idle, then look for work" cannot
//! both miss, see `sched.rs`).

use crate::loom::{AtomicUsize, Mutex, MutexGuard, Ordering, lock};
use crate::runq::RunQueue;
use std::collections::VecDeque;
use std::ptr::NonNull;

#[derive(Debug)]
pub(crate) struct GlobalQueue<T> {
    len: AtomicUsize,
    items: Mutex<VecDeque<NonNull<T>>>,
}

// SAFETY: only moves pointers between threads, under the lock.
unsafe impl<T> Send for GlobalQueue<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for GlobalQueue<T> {}

impl<T> Default for GlobalQueue<T> {
    fn default() -> Self {
        GlobalQueue {
            len: AtomicUsize::new(0),
            items: Mutex::new(VecDeque::new()),
        }
    }
}

/// The locked queue; dropping it releases the lock.
///
/// It also holds a no-preempt window, as the scheduler lock does (`sched::lock`): a thread
/// holding the scheduler lock may take this one (a resize moving a retired P's queue here),
/// so a holder suspended for a stop of the world would stall the stop's coordinator behind
/// them both. Fields drop in order: the lock is released before the window ends.
pub(crate) struct Locked<'a, T> {
    len: &'a AtomicUsize,
    items: MutexGuard<'a, VecDeque<NonNull<T>>>,
    #[cfg(not(loom))]
    _np: crate::suspend::NoPreempt,
}

impl<T> Locked<'_, T> {
    /// Goroutines queued (exact: we hold the lock).
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn push(&mut self, item: NonNull<T>) {
        self.items.push_back(item);
        self.len.store(self.items.len(), Ordering::SeqCst);
    }

    /// Takes one item to run now and moves up to `max - 1` more into `dst` (owned by the
    /// caller): Go's `globrunqget`.
    pub(crate) fn pop_batch(&mut self, max: usize, dst: &RunQueue<T>) -> Option<NonNull<T>> {
        let first = self.items.pop_front()?;
        let room = crate::runq::CAPACITY / 2;
        for _ in 1..max.min(room) {
            let Some(item) = self.items.pop_front() else {
                break;
            };
            if let Err(batch) = dst.push_back(item) {
                // Cannot happen with `room` items into a queue the caller just drained, but
                // never lose work: put the spill back.
                for g in batch.into_iter().rev() {
                    self.items.push_front(g);
                }
                break;
            }
        }
        self.len.store(self.items.len(), Ordering::SeqCst);
        Some(first)
    }

    pub(crate) fn pop(&mut self) -> Option<NonNull<T>> {
        let item = self.items.pop_front();
        self.len.store(self.items.len(), Ordering::SeqCst);
        item
    }
}

impl<T> GlobalQueue<T> {
    pub(crate) fn lock(&self) -> Locked<'_, T> {
        #[cfg(not(loom))]
        let np = crate::suspend::NoPreempt::enter();
        Locked {
            len: &self.len,
            items: lock(&self.items),
            #[cfg(not(loom))]
            _np: np,
        }
    }

    pub(crate) fn push(&self, item: NonNull<T>) {
        self.lock().push(item);
    }

    pub(crate) fn push_batch(&self, batch: impl IntoIterator<Item = NonNull<T>>) {
        let mut q = self.lock();
        for item in batch {
            q.items.push_back(item);
        }
        let n = q.items.len();
        q.len.store(n, Ordering::SeqCst);
    }

    /// Lock-free emptiness test (SeqCst: see the module docs).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::Arc;
    use loom::thread;

    fn item(v: usize) -> NonNull<usize> {
        NonNull::new(Box::into_raw(Box::new(v))).unwrap()
    }

    /// Concurrent pushes and batch pops lose nothing, and `len` is exact once all are done.
    #[test]
    fn loom_globalq_push_pop() {
        loom::model(|| {
            let q = Arc::new(GlobalQueue::<usize>::default());
            let pushers: Vec<_> = (0..2)
                .map(|i| {
                    let q = q.clone();
                    thread::spawn(move || q.push_batch([item(2 * i), item(2 * i + 1)]))
                })
                .collect();
            let local = RunQueue::<usize>::default();
            let mut got = Vec::new();
            if let Some(p) = q.lock().pop_batch(2, &local) {
                got.push(p);
            }
            for p in pushers {
                p.join().unwrap();
            }
            while let Some(p) = local.pop() {
                got.push(p);
            }
            while let Some(p) = q.lock().pop() {
                got.push(p);
            }
            assert_eq!(q.len(), 0);
            // SAFETY: every pointer came from `item` and is taken exactly once.
            let mut vals: Vec<usize> = got
                .into_iter()
                .map(|p| *unsafe { Box::from_raw(p.as_ptr()) })
                .collect();
            vals.sort();
            assert_eq!(vals, vec![0, 1, 2, 3]);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::runq::CAPACITY;
    use std::sync::Arc;

    fn item(v: usize) -> NonNull<usize> {
        NonNull::from(Box::leak(Box::new(v)))
    }

    fn take(p: NonNull<usize>) -> usize {
        // SAFETY: every pointer in these tests came from `item` and is taken exactly once.
        *unsafe { Box::from_raw(p.as_ptr()) }
    }

    /// Items cross threads as addresses with their provenance; the queue owns them between.
    struct Sent(NonNull<usize>);
    // SAFETY: each wrapped item is owned by exactly one thread at a time.
    unsafe impl Send for Sent {}

    #[test]
    fn push_pop_and_batches_keep_fifo_order_and_len() {
        let q = GlobalQueue::<usize>::default();
        q.push(item(0));
        q.push_batch((1..10).map(item));
        assert_eq!(q.len(), 10);
        let local = RunQueue::<usize>::default();
        // One to run now, three more into the local queue.
        assert_eq!(take(q.lock().pop_batch(4, &local).unwrap()), 0);
        assert_eq!(q.len(), 6);
        let moved: Vec<usize> = std::iter::from_fn(|| local.pop()).map(take).collect();
        assert_eq!(moved, [1, 2, 3]);
        assert_eq!(take(q.lock().pop().unwrap()), 4);
        let rest: Vec<usize> = std::iter::from_fn(|| q.lock().pop()).map(take).collect();
        assert_eq!(rest, [5, 6, 7, 8, 9]);
        assert_eq!(q.len(), 0);
        assert!(q.lock().pop_batch(4, &local).is_none());
        assert!(local.is_empty());
    }

    /// A batch never fills more than half the local ring, however large `max` is.
    #[test]
    fn pop_batch_is_capped_at_half_the_local_ring() {
        let q = GlobalQueue::<usize>::default();
        q.push_batch((0..CAPACITY + 3).map(item));
        let local = RunQueue::<usize>::default();
        assert_eq!(take(q.lock().pop_batch(usize::MAX, &local).unwrap()), 0);
        assert_eq!(local.len(), CAPACITY / 2 - 1);
        assert_eq!(q.len(), CAPACITY + 3 - CAPACITY / 2);
        let mut got: Vec<usize> = std::iter::from_fn(|| local.pop()).map(take).collect();
        got.extend(std::iter::from_fn(|| q.lock().pop()).map(take));
        assert_eq!(got, (1..CAPACITY + 3).collect::<Vec<_>>());
    }

    /// Two pushers against a batch-popping consumer: nothing lost, nothing doubled.
    #[test]
    fn concurrent_pushers_and_a_batch_popper() {
        let per = if cfg!(miri) { 20 } else { 2_000 };
        let q = Arc::new(GlobalQueue::<usize>::default());
        let pushers: Vec<_> = (0..2)
            .map(|i| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for v in 0..per {
                        let v = i * per + v;
                        if v % 2 == 0 {
                            q.push(item(v));
                        } else {
                            q.push_batch([item(v)]);
                        }
                    }
                })
            })
            .collect();
        let local = RunQueue::<usize>::default();
        let mut got = Vec::new();
        while got.len() < 2 * per {
            match q.lock().pop_batch(3, &local) {
                Some(p) => got.push(take(p)),
                None => std::thread::yield_now(),
            }
            got.extend(std::iter::from_fn(|| local.pop()).map(take));
        }
        for p in pushers {
            p.join().unwrap();
        }
        assert_eq!(q.len(), 0);
        got.sort_unstable();
        assert_eq!(got, (0..2 * per).collect::<Vec<_>>());
        // Hand-over to another thread of items popped here.
        q.push_batch([item(7), item(8)]);
        let popped: Vec<Sent> = std::iter::from_fn(|| q.lock().pop()).map(Sent).collect();
        let sum = std::thread::spawn(move || popped.into_iter().map(|s| take(s.0)).sum::<usize>());
        assert_eq!(sum.join().unwrap(), 15);
    }
}
