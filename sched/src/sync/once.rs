//! Running an initialisation exactly once (Go's `sync.Once`).

use super::mutex::RawMutex;
use crate::loom::{AtomicBool, Ordering};

/// Runs a function once; every other caller waits until it has finished.
#[derive(Debug, Default)]
pub struct Once {
    done: AtomicBool,
    m: RawMutex,
}

impl Once {
    /// A `Once` that has not run.
    pub fn new() -> Once {
        Once::default()
    }

    /// Runs `f` if no call has run yet, waiting for a call in progress. As in Go, a call
    /// that panics still counts as done (later calls do not run their `f`).
    pub fn call_once(&self, f: impl FnOnce()) {
        // Acquire: pairs with the Release below, so `f`'s writes are visible.
        if !self.done.load(Ordering::Acquire) {
            self.call_slow(f);
        }
    }

    #[cold]
    fn call_slow(&self, f: impl FnOnce()) {
        struct Finish<'a>(&'a Once);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                self.0.done.store(true, Ordering::Release);
                self.0.m.unlock();
            }
        }
        self.m.lock();
        if self.done.load(Ordering::Relaxed) {
            self.m.unlock();
            return;
        }
        let _finish = Finish(self);
        f();
    }

    /// Whether a call has completed.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}
