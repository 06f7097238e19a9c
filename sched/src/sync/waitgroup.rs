//! Waiting for a collection of goroutines to finish (Go's `sync.WaitGroup`).
//!
//! One word: the counter in the high 32 bits, the number of waiters in the low 32. `add`
//! that brings the counter to zero with waiters queued resets the word and releases each
//! waiter once; the misuse checks are Go's.

use super::sema::Sema;
use crate::WaitReason;
use crate::loom::{AtomicU64, Ordering};

/// Counts outstanding tasks; `wait` blocks until the count is zero.
#[derive(Debug, Default)]
pub struct WaitGroup {
    state: AtomicU64,
    sema: Sema,
}

impl WaitGroup {
    /// A wait group with a count of zero.
    pub fn new() -> WaitGroup {
        WaitGroup::default()
    }

    /// Adds `delta` (possibly negative) to the count.
    ///
    /// # Panics
    /// When the count goes negative ("sync: negative WaitGroup counter"), or on a positive
    /// `add` from zero racing a `wait` (Go's misuse report).
    pub fn add(&self, delta: i32) {
        let d = (i64::from(delta) as u64) << 32;
        // AcqRel: the last `done` publishes the tasks' writes to the released waiters.
        let state = self.state.fetch_add(d, Ordering::AcqRel).wrapping_add(d);
        let v = (state >> 32) as i32;
        let w = state as u32;
        assert!(v >= 0, "sync: negative WaitGroup counter");
        assert!(
            !(w != 0 && delta > 0 && v == delta),
            "sync: WaitGroup misuse: Add called concurrently with Wait"
        );
        if v > 0 || w == 0 {
            return;
        }
        // Counter zero with waiters: nobody may change the state now but us.
        assert!(
            self.state.load(Ordering::Relaxed) == state,
            "sync: WaitGroup misuse: Add called concurrently with Wait"
        );
        self.state.store(0, Ordering::Release);
        for _ in 0..w {
            self.sema.release();
        }
    }

    /// Subtracts one from the count.
    pub fn done(&self) {
        self.add(-1);
    }

    /// Waits until the count is zero.
    pub fn wait(&self) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state >> 32 == 0 {
                return;
            }
            match self
                .state
                .compare_exchange(state, state + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.sema.acquire(false, WaitReason::SyncWaitGroupWait);
                    assert!(
                        self.state.load(Ordering::Acquire) == 0,
                        "sync: WaitGroup is reused before previous Wait has returned"
                    );
                    return;
                }
                Err(cur) => state = cur,
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::{Arc, AtomicUsize};
    use loom::thread;

    /// `wait` returns only after both `done`s, and sees the workers' writes.
    #[test]
    fn loom_waitgroup_wait_sees_every_done() {
        loom::model(|| {
            let wg = Arc::new(WaitGroup::new());
            let n = Arc::new(AtomicUsize::new(0));
            wg.add(2);
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (wg, n) = (wg.clone(), n.clone());
                    thread::spawn(move || {
                        n.fetch_add(1, Ordering::Relaxed);
                        wg.done();
                    })
                })
                .collect();
            wg.wait();
            assert_eq!(n.load(Ordering::Relaxed), 2);
            for t in ts {
                t.join().unwrap();
            }
        });
    }
}
