//! Atomics, cells and locks from std, or from loom under `--cfg loom`, so one protocol is both run and model-checked.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::{
    cell::UnsafeCell,
    hint::spin_loop,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{
            AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize,
            Ordering, fence,
        },
    },
    thread,
};

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::{
    hint::spin_loop,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{
            AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize,
            Ordering, fence,
        },
    },
    thread,
};

/// `UnsafeCell` with loom's `with` / `with_mut` accessors, so code that touches owner-only
/// memory is written once and checked by loom's causality tracking.
#[cfg(not(loom))]
#[allow(dead_code)]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Locks a shim mutex, treating poisoning as a broken runtime invariant: the scheduler never
/// panics while holding one of its locks.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

// A channel's lock (`ChanMutex`): loom's under loom; `parking_lot`'s otherwise — no
// poisoning (a channel's critical sections never run user code that could panic half-way;
// they only move values and links) and an inlined fast path of one CAS, where std's `Mutex`
// checks the thread's panic count on every lock and unlock, 6-8% of an unbuffered hand-off.
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex as ChanMutex, MutexGuard as ChanGuard};
#[cfg(not(loom))]
pub(crate) use parking_lot::{Mutex as ChanMutex, MutexGuard as ChanGuard};

/// Locks a channel's lock (see [`ChanMutex`]).
#[inline]
pub(crate) fn chan_lock<T>(m: &ChanMutex<T>) -> ChanGuard<'_, T> {
    #[cfg(not(loom))]
    {
        m.lock()
    }
    #[cfg(loom)]
    {
        lock(m)
    }
}
