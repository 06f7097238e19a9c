//! A span set: the lock-protected stack of spans that mcentral keeps per list.
//!
//! Go uses lock-free spanSets; a short lock is enough here because sets are touched only on
//! cache refills and by sweepers, never on the allocation fast path. The lock spins briefly
//! and then yields rather than parking in the kernel: the critical sections are a `Vec`
//! push or pop, and a futex sleep/wake pair costs far more than that on contended refills.
//! Generic over the element so the loom models can use plain ids; under loom the lock is
//! loom's `Mutex`, which the model checker understands.

use crate::loom::{AtomicUsize, Ordering};

/// A set of spans (or span ids in a model). Pushed and popped under its own lock.
#[derive(Debug)]
pub(crate) struct SpanSet<T> {
    items: lock::Lock<Vec<T>>,
    /// Length, written under the lock, read without it so that sweepers and refills skip
    /// empty sets without locking. A stale zero is harmless: a set becomes non-empty only by
    /// a push that is ordered before any pop that must see it (by the stop-the-world flip,
    /// or by program order on the pushing thread).
    len: AtomicUsize,
}

impl<T> SpanSet<T> {
    pub(crate) fn new() -> Self {
        SpanSet {
            items: lock::Lock::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    pub(crate) fn push(&self, t: T) {
        self.items.with(|v| {
            v.push(t);
            // Relaxed: the lock orders the items; the length is only a hint (see the field).
            self.len.store(v.len(), Ordering::Relaxed);
        })
    }

    /// Make the set's capacity at least `n`, so that pushes up to `n` entries never
    /// reallocate. The heap keeps every set of a class able to hold every span of the class
    /// (a span is in at most one set at a time), reserved when the span is made, so pushes
    /// made with the world stopped never call the system allocator.
    pub(crate) fn reserve(&self, n: usize) {
        self.items.with(|v| {
            if v.capacity() < n {
                // Amortised, with little slack (every set of a class reserves for all of the
                // class's spans, so the slack counts four times): grow by a quarter.
                let want = n.max(v.capacity() + v.capacity() / 4);
                v.reserve(want - v.len());
            }
        })
    }

    pub(crate) fn pop(&self) -> Option<T> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.items.with(|v| {
            let t = v.pop();
            self.len.store(v.len(), Ordering::Relaxed);
            t
        })
    }
}

#[cfg(not(loom))]
mod lock {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A spin-then-yield lock for very short critical sections.
    #[derive(Debug)]
    pub(crate) struct Lock<T> {
        held: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: the value is only reached through `with`, which holds the lock, so at most one
    // thread accesses it at a time; `T: Send` lets it be used from whichever thread that is.
    unsafe impl<T: Send> Sync for Lock<T> {}

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Lock {
                held: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let _np = crate::nopreempt::NoPreempt::enter();
            let mut spins = 0u32;
            // Acquire: pairs with the Release store that unlocks, so we see the previous
            // holder's writes to the value.
            while self
                .held
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            struct Unlock<'a>(&'a AtomicBool);
            impl Drop for Unlock<'_> {
                fn drop(&mut self) {
                    // Release: publishes our writes to the next holder (see above).
                    self.0.store(false, Ordering::Release);
                }
            }
            let _unlock = Unlock(&self.held);
            // SAFETY: we hold the lock (the compare-exchange above succeeded), so no other
            // thread has a reference to the value until `_unlock` drops.
            f(unsafe { &mut *self.value.get() })
        }
    }
}

#[cfg(loom)]
mod lock {
    /// Under loom: loom's mutex, so the models see the lock.
    #[derive(Debug)]
    pub(crate) struct Lock<T>(loom::sync::Mutex<T>);

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Lock(loom::sync::Mutex::new(value))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            f(&mut self.0.lock().expect("runtime: span set lock poisoned"))
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_a_stack_that_reserves_ahead_and_shares_between_threads() {
        let s = std::sync::Arc::new(SpanSet::new());
        assert_eq!(s.pop(), None);
        s.reserve(40);
        let cap = s.items.with(|v| v.capacity());
        assert!(cap >= 40);
        for i in 0..40 {
            s.push(i);
        }
        assert_eq!(s.items.with(|v| v.capacity()), cap, "no reallocation");
        let s2 = s.clone();
        let t = std::thread::spawn(move || (0..20).filter_map(|_| s2.pop()).count());
        let mine = (0..20).filter_map(|_| s.pop()).count();
        assert_eq!(mine + t.join().unwrap(), 40);
        assert_eq!(s.pop(), None);
    }
}
