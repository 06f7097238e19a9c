//! Go's `fdMutex`, reduced to what a poll descriptor needs: one lock per direction, so that
//! parties reading (or writing) one descriptor take turns instead of racing for its single
//! semaphore slot.
//!
//! A direction's semaphore admits one waiter, and with edge-triggered readiness the lock must
//! cover a whole operation (try the I/O, wait, retry), not just the wait: a reader that
//! consumed the only readiness edge and read part of the data must not leave a second reader
//! parked with the rest of the data unread and no edge to come. So [`crate::Poller::io`]
//! holds the lock from its first attempt to its result, as Go's `fd.Read` holds `readLock`.
//!
//! One word holds the state — `CLOSED`, `LOCKED` and a count of queued waiters (`WAITER`
//! units) — and a queue (a std mutex over a deque of raw waiters, [`crate::Waiter::into_raw`])
//! holds the parties that found the lock taken:
//!
//! - lock: `LOCKED` clear and not `CLOSED` → set it (one compare-exchange); `CLOSED` → fail.
//! - enqueue (the waiter's commit): under the queue's mutex, re-read the word; if it is still
//!   `LOCKED` and not `CLOSED`, count the waiter in (compare-exchange) and push it: it may
//!   park. Otherwise it must not park and tries to lock again.
//! - unlock: clear `LOCKED` (one RMW); if that RMW saw queued waiters, pop one under the
//!   mutex and hand it to the caller to wake. The woken party tries to lock again (barging is
//!   allowed, as in Go's fdMutex: a woken waiter that loses re-queues).
//! - close: under the mutex, set `CLOSED` and take every queued waiter to wake; their next
//!   lock fails.
//!
//! No lost wake-up: an enqueue and an unlock are both read-modify-writes of the one word. If
//! the unlock comes first in its modification order, the enqueue's compare-exchange sees
//! `LOCKED` clear (or fails and re-reads it) and does not park; if the enqueue comes first, the
//! unlock sees the waiter counted and pops it — under the mutex, hence after the push. Close
//! is symmetric with `CLOSED`. The loom model below checks mutual exclusion and that every
//! queued party is woken.

use crate::loom::{AtomicBool, AtomicUsize, Mutex, Ordering};
use std::collections::VecDeque;

/// Set by `close`: every later `try_lock` fails.
const CLOSED: usize = 1;
/// Held by one party.
const LOCKED: usize = 2;
/// One queued waiter (the count occupies the bits above `LOCKED`).
const WAITER: usize = 4;

/// The lock was closed: the descriptor is closed or evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// One direction's lock.
#[derive(Debug)]
pub(crate) struct FdLock {
    /// `CLOSED | LOCKED | waiters * WAITER`; every change is a read-modify-write.
    state: AtomicUsize,
    /// Raw waiters that found the lock taken, oldest first. The waiter count in `state`
    /// changes only under this mutex, together with the deque.
    queue: Mutex<VecDeque<usize>>,
    /// A holder's note that its last transfer moved fewer bytes than it asked for on a stream
    /// socket — drained the receive queue, or filled the send buffer — so the next attempt
    /// would fail with `WouldBlock` ([`crate::Poller::io_stream`]). Read and written only by
    /// the holder (Relaxed: the lock's Acquire in `try_lock` and Release in `unlock` order
    /// one holder's accesses before the next's); cleared by `reset`.
    drained: AtomicBool,
}

impl FdLock {
    pub(crate) fn new() -> Self {
        FdLock {
            state: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
            drained: AtomicBool::new(false),
        }
    }

    /// Holder only: whether the last holder's transfer left the direction drained.
    #[inline]
    pub(crate) fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Holder only: note whether this transfer left the direction drained.
    #[inline]
    pub(crate) fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    /// Take the lock if it is free: `Ok(true)` taken, `Ok(false)` held by another party (the
    /// caller may queue with [`enqueue`](Self::enqueue)), `Err` closed.
    #[inline]
    pub(crate) fn try_lock(&self) -> Result<bool, Closed> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & CLOSED != 0 {
                return Err(Closed);
            }
            if s & LOCKED != 0 {
                return Ok(false);
            }
            // Acquire: the previous holder's operation (its Release in `unlock`) happens
            // before ours.
            match self.state.compare_exchange_weak(
                s,
                s | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(true),
                Err(now) => s = now,
            }
        }
    }

    /// Queue `raw` behind the current holder. `true`: queued, the waiter will be woken
    /// exactly once (by an unlock or a close) and must then call `try_lock` again. `false`:
    /// the lock was released or closed since `try_lock`; the waiter was not queued, must not
    /// park, and tries again at once.
    pub(crate) fn enqueue(&self, raw: usize) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & CLOSED != 0 || s & LOCKED == 0 {
                return false;
            }
            // The RMW orders us against `unlock`'s fetch_and: see the module docs.
            match self.state.compare_exchange_weak(
                s,
                s + WAITER,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    q.push_back(raw);
                    return true;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Release the lock. Returns a queued waiter, which the caller must wake (outside any
    /// lock) so that it tries again.
    #[inline]
    pub(crate) fn unlock(&self) -> Option<usize> {
        // Release: our operation happens before the next holder's (its Acquire in try_lock).
        let old = self.state.fetch_and(!LOCKED, Ordering::Release);
        debug_assert!(
            old & LOCKED != 0,
            "runtime: poll descriptor lock released while not held"
        );
        if old < WAITER {
            return None;
        }
        self.pop()
    }

    #[cold]
    fn pop(&self) -> Option<usize> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        // Empty when a close took the waiters first.
        let raw = q.pop_front()?;
        self.state.fetch_sub(WAITER, Ordering::Relaxed);
        Some(raw)
    }

    /// Fail every later `try_lock` and hand each queued waiter to `wake`.
    pub(crate) fn close(&self, mut wake: impl FnMut(usize)) {
        let taken: Vec<usize> = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let n = q.len();
            let old = self.state.fetch_or(CLOSED, Ordering::Relaxed);
            if n == 0 {
                debug_assert!(old < WAITER);
                return;
            }
            self.state.fetch_sub(n * WAITER, Ordering::Relaxed);
            q.drain(..).collect()
        };
        for raw in taken {
            wake(raw);
        }
    }

    /// Make a recycled lock free and open again for its descriptor's next owner (who holds
    /// the descriptor alone: nobody can be queued).
    pub(crate) fn reset(&self) {
        let old = self.state.swap(0, Ordering::Relaxed);
        self.drained.store(false, Ordering::Relaxed);
        assert!(
            old < WAITER,
            "runtime: recycled poll descriptor still has a queued waiter"
        );
    }

    /// Whether the lock is held (for tests).
    #[allow(dead_code)]
    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::waiter::{ThreadWaiter, Waiter};
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    /// A counter that only the lock's holder touches, without atomics: Miri's race detector
    /// (and the final count) catch a second holder or a missing Acquire / Release edge.
    struct Guarded {
        lock: FdLock,
        count: UnsafeCell<usize>,
    }

    // SAFETY: `count` is only accessed by the holder of `lock` (what the test checks).
    unsafe impl Sync for Guarded {}

    fn acquire(g: &Guarded) {
        loop {
            match g.lock.try_lock() {
                Ok(true) => return,
                Ok(false) => {
                    let raw = ThreadWaiter::current().into_raw();
                    if g.lock.enqueue(raw) {
                        ThreadWaiter::park();
                    } else {
                        // SAFETY: `raw` was not queued: this is its one conversion back.
                        drop(unsafe { ThreadWaiter::from_raw(raw) });
                    }
                }
                Err(Closed) => panic!("closed"),
            }
        }
    }

    fn release(g: &Guarded) {
        if let Some(raw) = g.lock.unlock() {
            // SAFETY: popped from the queue by `unlock`: the one conversion back.
            unsafe { ThreadWaiter::from_raw(raw) }.wake();
        }
    }

    /// Threads hammering one lock, queueing and parking for real: every increment lands.
    #[test]
    fn threads_take_turns() {
        let (threads, rounds) = if cfg!(miri) { (3, 20) } else { (4, 2000) };
        let g = Arc::new(Guarded {
            lock: FdLock::new(),
            count: UnsafeCell::new(0),
        });
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let g = Arc::clone(&g);
                std::thread::spawn(move || {
                    for i in 0..rounds {
                        acquire(&g);
                        // SAFETY: we hold the lock.
                        unsafe { *g.count.get() += 1 };
                        if i % 4 == 0 {
                            // Hold it across a reschedule, so that others queue and park.
                            std::thread::yield_now();
                        }
                        release(&g);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: every thread has been joined.
        assert_eq!(unsafe { *g.count.get() }, threads * rounds);
        assert!(!g.lock.is_locked());
    }

    #[test]
    fn lock_queue_unlock_close() {
        let l = FdLock::new();
        assert_eq!(l.try_lock(), Ok(true));
        assert_eq!(l.try_lock(), Ok(false));
        assert!(l.enqueue(8));
        assert!(l.enqueue(12));
        // Unlock hands out the oldest waiter; the lock is free for it (or a barger).
        assert_eq!(l.unlock(), Some(8));
        assert!(!l.is_locked());
        assert!(!l.enqueue(16), "queued behind a free lock");
        assert_eq!(l.try_lock(), Ok(true));
        let mut woken = Vec::new();
        l.close(|raw| woken.push(raw));
        assert_eq!(woken, [12]);
        assert_eq!(l.try_lock(), Err(Closed));
        assert!(!l.enqueue(20), "queued on a closed lock");
        assert_eq!(l.unlock(), None);
        l.reset();
        assert_eq!(l.try_lock(), Ok(true));
        assert_eq!(l.unlock(), None);
    }
}

/// Loom models: parties taking turns on one lock, with and without a close. A queued party
/// sleeps in loom's `park`, so a lost wake-up is a deadlock loom reports; mutual exclusion is
/// checked with a flag swapped on entry and exit.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::loom::{Arc, AtomicBool, thread};

    struct Shared {
        lock: FdLock,
        inside: AtomicBool,
        /// Per party: woken since it last queued (written by the waker).
        woken: [AtomicBool; 3],
        threads: Mutex<Vec<Option<thread::Thread>>>,
    }

    fn raw(i: usize) -> usize {
        (i + 1) * 4
    }

    fn wake(s: &Shared, raw: usize) {
        let i = raw / 4 - 1;
        s.woken[i].store(true, Ordering::Release);
        let t = s.threads.lock().unwrap()[i].clone().unwrap();
        t.unpark();
    }

    /// Lock (queueing and parking while it is held); `false` when closed.
    fn acquire(s: &Shared, i: usize) -> bool {
        loop {
            match s.lock.try_lock() {
                Err(Closed) => return false,
                Ok(true) => return true,
                Ok(false) => {
                    s.woken[i].store(false, Ordering::Relaxed);
                    if s.lock.enqueue(raw(i)) {
                        while !s.woken[i].load(Ordering::Acquire) {
                            thread::park();
                        }
                    }
                }
            }
        }
    }

    fn release(s: &Shared) {
        if let Some(r) = s.lock.unlock() {
            wake(s, r);
        }
    }

    fn party(s: &Shared, i: usize) -> bool {
        if !acquire(s, i) {
            return false;
        }
        assert!(!s.inside.swap(true, Ordering::Relaxed), "two holders");
        s.inside.store(false, Ordering::Relaxed);
        release(s);
        true
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            lock: FdLock::new(),
            inside: AtomicBool::new(false),
            woken: [
                AtomicBool::new(false),
                AtomicBool::new(false),
                AtomicBool::new(false),
            ],
            threads: Mutex::new(vec![None, None, None]),
        })
    }

    fn spawn(s: &Arc<Shared>, i: usize, f: fn(&Shared, usize) -> bool) -> thread::JoinHandle<bool> {
        let s2 = Arc::clone(s);
        let h = thread::spawn(move || f(&s2, i));
        s.threads.lock().unwrap()[i] = Some(h.thread().clone());
        h
    }

    #[test]
    fn two_parties_take_turns() {
        loom::model(|| {
            let s = shared();
            s.threads.lock().unwrap()[0] = Some(thread::current());
            let h = spawn(&s, 1, party);
            assert!(party(&s, 0));
            assert!(h.join().unwrap());
            assert!(!s.lock.is_locked());
        });
    }

    #[test]
    fn close_wakes_a_queued_party() {
        loom::model(|| {
            let s = shared();
            s.threads.lock().unwrap()[0] = Some(thread::current());
            // Party 0 holds the lock while party 1 queues; a closer runs concurrently.
            assert_eq!(s.lock.try_lock(), Ok(true));
            let h = spawn(&s, 1, party);
            let s2 = Arc::clone(&s);
            let c = thread::spawn(move || s2.lock.close(|r| wake(&s2, r)));
            release(&s);
            c.join().unwrap();
            // Party 1 either got its turn before the close or was woken by it.
            let _ = h.join().unwrap();
            assert_eq!(s.lock.try_lock(), Err(Closed));
        });
    }
}
