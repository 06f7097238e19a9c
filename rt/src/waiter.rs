//! The waiter a goroutine (or a plain thread) parks on a poll descriptor: one cell per
//! goroutine, made on its first wait, with a wake-up flag.
//!
//! netpoll's contract for a `park` closure is: commit a waiter, and if the commit succeeds,
//! block until *that* waiter is woken. A goroutine's `park` may return without a matching
//! `ready` (a token left by an earlier, unrelated wake-up), so the cell carries a flag: the
//! waker sets it (Release) and then readies the party; the parked party loops on
//! `swap(false)` (Acquire) around `park`. Every successful commit is woken exactly once
//! (netpoll's guarantee) and consumed exactly once here, so the flag is clear whenever the
//! party is not waiting. The loom model below races the wake against the wait.

use crate::loom::{Arc, AtomicBool, Ordering};
use gort_netpoll::Waiter;

/// Who waits in a cell.
#[derive(Debug)]
#[cfg_attr(loom, allow(dead_code))]
enum Who {
    Goroutine(gort_sched::Goroutine),
    Thread(crate::loom::thread::Thread),
}

/// One party's parking spot: a goroutine's (made once, kept in a goroutine-local) or a plain
/// thread's.
#[derive(Debug)]
pub(crate) struct WaitCell {
    woken: AtomicBool,
    who: Who,
}

impl WaitCell {
    /// The cell of the calling party: a goroutine handle inside a goroutine, the thread
    /// otherwise.
    #[cfg(not(loom))]
    pub(crate) fn for_current() -> WaitCell {
        let who = match gort_sched::current() {
            Some(g) => Who::Goroutine(g),
            None => Who::Thread(std::thread::current()),
        };
        WaitCell {
            woken: AtomicBool::new(false),
            who,
        }
    }

    #[cfg(loom)]
    pub(crate) fn for_current() -> WaitCell {
        WaitCell {
            woken: AtomicBool::new(false),
            who: Who::Thread(crate::loom::thread::current()),
        }
    }

    /// Block until the waiter committed for this cell has been woken.
    pub(crate) fn wait(&self) {
        // Acquire pairs with the Release store in `wake`.
        while !self.take() {
            match &self.who {
                #[cfg(not(loom))]
                Who::Goroutine(_) => gort_sched::park_for(gort_sched::WaitReason::IoWait),
                #[cfg(loom)]
                Who::Goroutine(_) => unreachable!(),
                Who::Thread(_) => crate::loom::thread::park(),
            }
        }
    }

    /// Consume the wake-up flag.
    #[inline]
    fn take(&self) -> bool {
        let set = self.woken.load(Ordering::Acquire);
        if set {
            // Only the waiting party clears the flag, and only after its one wake-up.
            self.woken.store(false, Ordering::Relaxed);
        }
        set
    }

    fn wake(&self) {
        // Release pairs with the Acquire swap in `wait`.
        self.woken.store(true, Ordering::Release);
        match &self.who {
            Who::Goroutine(g) => g.ready(),
            Who::Thread(t) => t.unpark(),
        }
    }
}

/// A committed waiter: a counted reference to the party's cell (no allocation per wait).
#[derive(Debug)]
pub(crate) struct GWaiter(pub(crate) Arc<WaitCell>);

// SAFETY: `Arc::into_raw` yields a non-null pointer to a `WaitCell`, whose alignment (that of
// a pointer or an `AtomicBool` beside one) is at least 4, so the word is greater than 2;
// `from_raw` rebuilds the same `Arc`, taking back the count `into_raw` leaked.
unsafe impl Waiter for GWaiter {
    fn into_raw(self) -> usize {
        Arc::into_raw(self.0).expose_provenance()
    }

    unsafe fn from_raw(raw: usize) -> Self {
        let ptr = std::ptr::with_exposed_provenance::<WaitCell>(raw);
        // SAFETY: the caller passes a word made by `into_raw`, once: this takes back its
        // strong count (`ptr` carries the provenance `into_raw` exposed).
        GWaiter(unsafe { Arc::from_raw(ptr) })
    }

    fn wake(self) {
        self.0.wake();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// A waker racing a waiter: the waiter returns only after the wake, and a second wait
    /// after a second wake also returns (the flag is consumed exactly once per wake).
    #[test]
    fn wake_races_wait() {
        loom::model(|| {
            let cell = Arc::new(WaitCell::for_current());
            let w = GWaiter(cell.clone());
            let done = Arc::new(AtomicBool::new(false));
            let d2 = done.clone();
            let t = loom::thread::spawn(move || {
                d2.store(true, Ordering::Relaxed);
                w.wake();
            });
            cell.wait();
            // Release/Acquire through the flag: the waker's earlier write is visible.
            assert!(done.load(Ordering::Relaxed));
            assert!(!cell.woken.load(Ordering::Relaxed));
            t.join().unwrap();
        });
    }

    /// A raw round trip through the semaphore's word keeps the cell alive and wakes it.
    #[test]
    fn raw_round_trip() {
        loom::model(|| {
            let cell = Arc::new(WaitCell::for_current());
            let raw = GWaiter(cell.clone()).into_raw();
            assert!(raw > 2);
            let t = loom::thread::spawn(move || {
                // SAFETY: `raw` came from `into_raw` and is converted back once.
                unsafe { GWaiter::from_raw(raw) }.wake();
            });
            cell.wait();
            t.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn thread_cell_wake_before_wait_returns_at_once() {
        let cell = Arc::new(WaitCell::for_current());
        let raw = GWaiter(cell.clone()).into_raw();
        // SAFETY: `raw` came from `into_raw` just above and is converted back once.
        unsafe { GWaiter::from_raw(raw) }.wake();
        cell.wait();
        assert_eq!(Arc::strong_count(&cell), 1);
    }
}
