//! A goroutine-aware mutex with Go's two modes (normal, starvation).
//!
//! The state word holds `LOCKED`, `WOKEN` (a waiter was woken and is competing: unlock need
//! not wake another), `STARVING` and the number of queued waiters. In normal mode a woken
//! waiter competes with newly arriving lockers, which usually win (they are already
//! running) — good throughput; a waiter that fails for more than 1 ms switches the mutex to
//! starvation mode, where unlock hands the mutex straight to the first waiter and newcomers
//! queue at the tail without trying. The mode goes back to normal when the waiter that got
//! the mutex waited less than 1 ms or was the last one. Arriving lockers spin a few rounds
//! first when other CPUs may release the lock soon. The algorithm is Go's `sync.Mutex`.

use super::sema::Sema;
use crate::WaitReason;
use crate::loom::{AtomicU32, Ordering, UnsafeCell};
use std::time::{Duration, Instant};

const LOCKED: u32 = 1;
const WOKEN: u32 = 2;
const STARVING: u32 = 4;
const WAITER_SHIFT: u32 = 3;
const ONE_WAITER: u32 = 1 << WAITER_SHIFT;

/// How long a waiter fails to get the lock before the mutex turns to starvation mode.
const STARVATION_THRESHOLD: Duration = Duration::from_millis(1);

/// The lock itself, without data: shared by `Mutex<T>` and `RwLock<T>`'s writer side.
#[derive(Debug, Default)]
pub(crate) struct RawMutex {
    state: AtomicU32,
    sema: Sema,
}

impl RawMutex {
    #[inline]
    pub(crate) fn lock(&self) {
        // Acquire: pairs with `unlock`'s Release, making the previous holder's writes visible.
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        let old = self.state.load(Ordering::Relaxed);
        old & (LOCKED | STARVING) == 0
            && self
                .state
                .compare_exchange(old, old | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    #[cold]
    fn lock_slow(&self) {
        let mut wait_start: Option<Instant> = None;
        let mut starving = false;
        let mut awoke = false;
        let mut iter = 0u32;
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            // Spin while the lock is held in normal mode, if spinning can pay off.
            if old & (LOCKED | STARVING) == LOCKED && can_spin(iter) {
                // Tell unlock not to wake another waiter while we are about to take it.
                if !awoke
                    && old & WOKEN == 0
                    && old >> WAITER_SHIFT != 0
                    && self
                        .state
                        .compare_exchange(old, old | WOKEN, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    awoke = true;
                }
                for _ in 0..30 {
                    crate::loom::spin_loop();
                }
                iter += 1;
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            let mut new = old;
            if old & STARVING == 0 {
                new |= LOCKED; // newcomers do not take a starving mutex
            }
            if old & (LOCKED | STARVING) != 0 {
                new += ONE_WAITER;
            }
            if starving && old & LOCKED != 0 {
                new |= STARVING;
            }
            if awoke {
                assert!(new & WOKEN != 0, "runtime: sync: inconsistent mutex state");
                new &= !WOKEN;
            }
            // Acquire: when this takes the lock, pairs with `unlock`'s Release.
            match self
                .state
                .compare_exchange(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    if old & (LOCKED | STARVING) == 0 {
                        return; // locked by the CAS
                    }
                    let lifo = wait_start.is_some();
                    let started = *wait_start.get_or_insert_with(Instant::now);
                    self.sema.acquire(lifo, WaitReason::SyncMutexLock);
                    // Under loom the clock is not part of the model: a waiter that waited once
                    // counts as starving, which exercises the hand-off path deterministically.
                    starving = starving || cfg!(loom) || started.elapsed() > STARVATION_THRESHOLD;
                    old = self.state.load(Ordering::Acquire);
                    if old & STARVING != 0 {
                        // Handed to us directly: the state still says unlocked with us
                        // counted as a waiter.
                        assert!(
                            old & (LOCKED | WOKEN) == 0 && old >> WAITER_SHIFT != 0,
                            "runtime: sync: inconsistent mutex state"
                        );
                        let mut delta = LOCKED.wrapping_sub(ONE_WAITER);
                        if !starving || old >> WAITER_SHIFT == 1 {
                            delta = delta.wrapping_sub(STARVING); // leave starvation mode
                        }
                        self.state.fetch_add(delta, Ordering::Acquire);
                        return;
                    }
                    awoke = true;
                    iter = 0;
                }
                Err(cur) => old = cur,
            }
        }
    }

    /// # Panics
    /// On an unlocked mutex (Go: "fatal error: sync: unlock of unlocked mutex").
    #[inline]
    pub(crate) fn unlock(&self) {
        // Release: pairs with the Acquire of the next `lock`.
        let new = self
            .state
            .fetch_sub(LOCKED, Ordering::Release)
            .wrapping_sub(LOCKED);
        if new != 0 {
            self.unlock_slow(new);
        }
    }

    #[cold]
    fn unlock_slow(&self, new: u32) {
        assert!(
            new.wrapping_add(LOCKED) & LOCKED != 0,
            "sync: unlock of unlocked mutex"
        );
        if new & STARVING != 0 {
            // Hand off to the first waiter; it sets LOCKED itself.
            self.sema.release();
            return;
        }
        let mut old = new;
        loop {
            // No waiters, or someone already took, woke or starves the lock: nothing to do.
            if old >> WAITER_SHIFT == 0 || old & (LOCKED | WOKEN | STARVING) != 0 {
                return;
            }
            let new = (old - ONE_WAITER) | WOKEN;
            match self
                .state
                .compare_exchange(old, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.sema.release();
                    return;
                }
                Err(cur) => old = cur,
            }
        }
    }
}

/// Spinning pays off only with another CPU that may release the lock soon, and only briefly.
fn can_spin(iter: u32) -> bool {
    use std::sync::OnceLock;
    static MULTICORE: OnceLock<bool> = OnceLock::new();
    iter < 4
        && !cfg!(loom)
        && *MULTICORE
            .get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// A mutual-exclusion lock for goroutines and threads (Go's `sync.Mutex`, holding its data
/// as Rust's do). A goroutine that waits parks; a thread blocks. No poisoning: a panic while
/// locked unlocks it (the guard is dropped during the unwind).
pub struct Mutex<T> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one party at a time access to `data`.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as above: `&Mutex<T>` only hands out `&mut T` under the lock.
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::default(),
            data: UnsafeCell::new(value),
        }
    }

    /// The value, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T> Mutex<T> {
    /// Locks, waiting while another holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.lock();
        MutexGuard { m: self }
    }

    /// Locks if it is free now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.raw.try_lock().then_some(MutexGuard { m: self })
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` excludes every other access.
        self.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex").finish_non_exhaustive()
    }
}

/// Holds a [`Mutex`] locked; unlocks when dropped.
#[must_use = "the mutex unlocks when the guard is dropped"]
pub struct MutexGuard<'a, T> {
    m: &'a Mutex<T>,
}

impl<'a, T> MutexGuard<'a, T> {
    pub(crate) fn mutex(guard: &Self) -> &'a Mutex<T> {
        guard.m
    }
}

impl<T> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock, so no `&mut` to the data exists elsewhere.
        self.m.data.with(|p| unsafe { &*p })
    }
}

impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock exclusively.
        self.m.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.m.raw.unlock();
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::{Arc, AtomicUsize};
    use loom::thread;

    /// Three parties increment a counter with a non-atomic read-modify-write under the mutex:
    /// mutual exclusion holds through the normal and the starvation (hand-off) paths, and
    /// every waiter is woken.
    #[test]
    fn loom_mutex_excludes_and_hands_off() {
        loom::model(|| {
            let m = Arc::new(RawMutex::default());
            let n = Arc::new(AtomicUsize::new(0));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (m, n) = (m.clone(), n.clone());
                    thread::spawn(move || {
                        m.lock();
                        let v = n.load(Ordering::Relaxed);
                        n.store(v + 1, Ordering::Relaxed);
                        m.unlock();
                    })
                })
                .collect();
            m.lock();
            let v = n.load(Ordering::Relaxed);
            n.store(v + 1, Ordering::Relaxed);
            m.unlock();
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(n.load(Ordering::Relaxed), 3);
        });
    }
}
