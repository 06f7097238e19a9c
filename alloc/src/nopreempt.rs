//! The per-thread count of heap locks held: what a suspend-signal handler reads (through a
//! hook `rt` installs) to defer suspending a thread that holds a lock the collector's
//! stop-the-world would need.
//!
//! A cache's `busy` word covers an allocation's lock-free window; this count covers every
//! lock the heap takes — the heap lock (`stats`, `release_free_pages`, span allocation and
//! freeing, the scavenger), the cache registry, the mcentral span sets and the list of
//! deferred drops — whichever method takes it (`sweep_one`, `release_finalized`, `stats`
//! from a thread that has no cache). A thread suspended while holding one would deadlock a
//! `start_mark` that needs it. The counter is a `const`-initialised thread-local `Cell`, so
//! a signal handler may read it.

use std::cell::Cell;
use std::sync::atomic::{Ordering, compiler_fence};

thread_local! {
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// Held while the current thread holds a heap lock.
#[derive(Debug)]
pub(crate) struct NoPreempt(());

impl NoPreempt {
    /// Count a lock about to be taken (before blocking on it: a thread waiting for the lock is
    /// in the heap too).
    #[inline]
    pub(crate) fn enter() -> NoPreempt {
        HELD.with(|h| h.set(h.get() + 1));
        // The handler runs on this thread: order the count before the lock's accesses.
        compiler_fence(Ordering::SeqCst);
        NoPreempt(())
    }
}

impl Drop for NoPreempt {
    #[inline]
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        HELD.with(|h| h.set(h.get() - 1));
    }
}

/// How many heap locks the current thread holds or waits for (0 = a suspend may proceed,
/// as far as this heap is concerned). Not inlined: the runtime reads thread state only
/// through calls that cannot be cached across a goroutine switch.
#[inline(never)]
pub fn heap_locks_held() -> u32 {
    HELD.with(|h| h.get())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_the_guards() {
        assert_eq!(heap_locks_held(), 0);
        let a = NoPreempt::enter();
        let b = NoPreempt::enter();
        assert_eq!(heap_locks_held(), 2);
        drop(b);
        drop(a);
        assert_eq!(heap_locks_held(), 0);
    }
}
