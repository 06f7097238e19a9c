//! A runtime's timers: one lockable heap per P (plus one for timers armed off any P), the
//! count of armed timers, and the deadline the polling M sleeps until.
//!
//! Arming pushes onto the arming P's heap (other Ms lock a heap to run its due timers: an
//! idle P's timers still fire). Each heap mirrors its earliest deadline in `next`, so
//! checks take no lock. Who runs due timers: an M in `find_runnable` (its own P's), a
//! stealing M (its victims'), and the M polling the idle hook, which sleeps exactly until
//! the earliest deadline of any heap. No lost wake-up between an arm and that sleep: the
//! armer pushes, fences, then reads `poll_until`; the poller stores `poll_until`, fences,
//! then recomputes the earliest deadline — one of them sees the other.

use super::cell::TimerCell;
use super::heap::{Entry, Heap};
use crate::loom::{AtomicU64, AtomicUsize, Mutex, Ordering, fence, lock};
use crate::sched::MAX_PROCS;
use std::sync::Arc;
use std::time::Instant;

/// No M is polling.
pub(crate) const NOT_POLLING: u64 = u64::MAX;
/// An M polls with no timer deadline.
pub(crate) const POLL_FOREVER: u64 = u64::MAX - 1;

/// Index of the heap for timers armed by a thread holding no P of this runtime (after one
/// heap per possible P; under loom, a model's handful).
pub(crate) const FOREIGN_HEAP: usize = if cfg!(loom) { 2 } else { MAX_PROCS };

/// One P's timers.
#[derive(Debug)]
pub(crate) struct TimerHeap {
    heap: Mutex<Heap<Arc<TimerCell>>>,
    /// The heap's earliest deadline (`u64::MAX`: empty). Written under the lock (SeqCst: the
    /// arm side of the poll handshake); read lock-free.
    next: AtomicU64,
}

impl Default for TimerHeap {
    fn default() -> Self {
        TimerHeap {
            heap: Mutex::new(Heap::default()),
            next: AtomicU64::new(u64::MAX),
        }
    }
}

/// All timers of one runtime.
#[derive(Debug)]
pub(crate) struct TimerHome {
    heaps: Box<[TimerHeap]>,
    /// Armed timers (a pending timer means the program is not deadlocked). Changed by arm,
    /// stop and fire (SeqCst: read by the deadlock check).
    pub(crate) armed: AtomicUsize,
    /// The deadline the polling M sleeps until, `POLL_FOREVER`, or `NOT_POLLING`. Written by
    /// the polling M, read by armers (SeqCst: the poll handshake).
    pub(crate) poll_until: AtomicU64,
    epoch: Instant,
}

impl TimerHome {
    pub(crate) fn new() -> TimerHome {
        TimerHome {
            heaps: (0..=FOREIGN_HEAP).map(|_| TimerHeap::default()).collect(),
            armed: AtomicUsize::new(0),
            poll_until: AtomicU64::new(NOT_POLLING),
            epoch: Instant::now(),
        }
    }

    /// Now, in nanoseconds on this runtime's clock.
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The clock reading `d` from now (saturating).
    pub(crate) fn deadline_after(&self, d: std::time::Duration) -> u64 {
        self.now()
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Pushes an entry on heap `h`. The caller then calls `Shared::timer_armed`.
    pub(crate) fn push(&self, h: usize, when: u64, seq: u64, cell: Arc<TimerCell>) {
        let heap = &self.heaps[h];
        // Not suspended by a stop of the world while holding a heap's lock: holders of the
        // scheduler lock (sysmon, resizes) take these too (see `sched::lock`).
        let _np = crate::sched::no_preempt();
        let mut q = lock(&heap.heap);
        q.push(Entry { when, seq, cell });
        heap.next.store(q.earliest(), Ordering::SeqCst);
        drop(q);
        // StoreLoad: pairs with the fence in `poll_deadline`.
        fence(Ordering::SeqCst);
    }

    /// Earliest deadline over the heaps `0..nps` and the foreign heap (`u64::MAX`: none).
    pub(crate) fn earliest(&self, nps: usize) -> u64 {
        self.heaps[..nps]
            .iter()
            .chain(std::iter::once(&self.heaps[FOREIGN_HEAP]))
            .map(|h| h.next.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The polling M, before it blocks: announces its deadline, then recomputes it, so a
    /// timer armed concurrently is either seen here or sees the announcement (and wakes the
    /// poll). Returns the deadline to sleep until (`u64::MAX`: no timer).
    pub(crate) fn poll_deadline(&self, nps: usize) -> u64 {
        let first = self.earliest(nps);
        self.poll_until
            .store(first.min(POLL_FOREVER), Ordering::SeqCst);
        // StoreLoad: pairs with the fence in `push`.
        fence(Ordering::SeqCst);
        let again = self.earliest(nps);
        if again < first {
            self.poll_until.store(again, Ordering::SeqCst);
        }
        again
    }

    /// The polling M, after its poll returned.
    pub(crate) fn poll_done(&self) {
        self.poll_until.store(NOT_POLLING, Ordering::SeqCst);
    }

    /// Whether heap `h` has a timer due by `now`.
    #[inline]
    pub(crate) fn due(&self, h: usize, now: u64) -> bool {
        self.heaps[h].next.load(Ordering::Relaxed) <= now
    }

    /// Whether heap `h` holds any timer.
    #[inline]
    pub(crate) fn has_timers(&self, h: usize) -> bool {
        self.heaps[h].next.load(Ordering::Relaxed) != u64::MAX
    }

    /// Pops the next due entry of heap `h` (the lock is not held while it fires).
    pub(crate) fn pop_due(&self, h: usize, now: u64) -> Option<Entry<Arc<TimerCell>>> {
        let heap = &self.heaps[h];
        let _np = crate::sched::no_preempt();
        let mut q = lock(&heap.heap);
        let e = q.pop_due(now);
        heap.next.store(q.earliest(), Ordering::SeqCst);
        e
    }

    /// Heaps to scan: `0..nps` and the foreign heap.
    pub(crate) fn heap_ids(nps: usize) -> impl Iterator<Item = usize> + Clone {
        (0..nps).chain(std::iter::once(FOREIGN_HEAP))
    }

    /// Drops every entry (the runtime is going away; breaks cell → home cycles).
    pub(crate) fn clear(&self) {
        for heap in self.heaps.iter() {
            let drained = {
                let _np = crate::sched::no_preempt();
                lock(&heap.heap).drain()
            };
            heap.next.store(u64::MAX, Ordering::SeqCst);
            drop(drained);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::timer::{Action, TimerCell};
    use loom::thread;

    /// A timer armed while the only idle M is about to sleep in its poll: either the poller
    /// sleeps no later than the timer's deadline, or the armer sees the poller's deadline and
    /// wakes it. Never a poll past a pending timer.
    #[test]
    fn loom_timer_armed_while_the_only_m_goes_idle() {
        loom::model(|| {
            let home = Arc::new(TimerHome::new());
            let armer = {
                let home = home.clone();
                thread::spawn(move || {
                    let (tx, _rx) = crate::chan::chan(1);
                    let cell = Arc::new(TimerCell::new(Action::Send(tx), home.clone(), 0));
                    let (seq, _) = cell.arm();
                    home.push(0, 5, seq, cell);
                    // `Shared::timer_armed`: wake the poller if it sleeps past us.
                    let until = home.poll_until.load(Ordering::SeqCst);
                    until != NOT_POLLING && 5 < until
                })
            };
            let deadline = home.poll_deadline(1);
            let woke = armer.join().unwrap();
            assert!(
                deadline <= 5 || woke,
                "the poller sleeps past a pending timer"
            );
            home.clear();
        });
    }
}
