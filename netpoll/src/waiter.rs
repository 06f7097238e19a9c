//! The abstract waiter a poll descriptor parks, and the thread waiter used standalone.
//!
//! A semaphore stores its waiter as one machine word, so a waiter is anything that converts to
//! a word and back: the facade stores a goroutine (its G pointer), standalone code a parked
//! thread ([`ThreadWaiter`]). Whoever takes the word out of the semaphore owns the waiter and
//! wakes it exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};

/// A party that can be parked on a poll descriptor and woken by the poller.
///
/// # Safety
///
/// Implementors promise that
/// - [`into_raw`](Waiter::into_raw) returns a value greater than 2 (any non-null pointer to a
///   type aligned to at least 4 bytes qualifies): 0, 1 and 2 are the semaphore's own states;
/// - [`from_raw`](Waiter::from_raw) applied to a value returned by `into_raw` gives back the
///   same waiter, taking ownership of it.
pub unsafe trait Waiter: Send + Sized {
    /// Turn the waiter into a word that the semaphore can hold.
    fn into_raw(self) -> usize;

    /// Rebuild a waiter from [`into_raw`](Waiter::into_raw)'s word.
    ///
    /// # Safety
    ///
    /// `raw` must come from `into_raw` and must not have been passed to `from_raw` before
    /// (each word is converted back exactly once).
    unsafe fn from_raw(raw: usize) -> Self;

    /// Make the parked party runnable again. Called exactly once per successful commit.
    fn wake(self);
}

/// The per-thread parking spot behind [`ThreadWaiter`].
///
/// It uses std's `park` / `unpark` directly (like the syscalls, it is outside loom's models):
/// `notified` is written by the waker (Release, before `unpark`) and swapped by the parked
/// thread (Acquire), so the thread never returns from [`ThreadWaiter::park`] before the wake
/// that its commit arranged.
#[derive(Debug)]
struct Parker {
    thread: Thread,
    notified: AtomicBool,
}

thread_local! {
    static PARKER: Arc<Parker> = Arc::new(Parker {
        thread: thread::current(),
        notified: AtomicBool::new(false),
    });
}

/// A plain OS thread parked on a poll descriptor (standalone use).
///
/// Obtaining one clones the calling thread's cached parker (no allocation after the thread's
/// first wait).
#[derive(Debug)]
pub struct ThreadWaiter(Arc<Parker>);

impl ThreadWaiter {
    /// The waiter for the calling thread.
    pub fn current() -> Self {
        ThreadWaiter(PARKER.with(Arc::clone))
    }

    /// Block the calling thread until a waiter for it (committed earlier) has been woken.
    ///
    /// Returns at once if that wake already happened.
    pub fn park() {
        PARKER.with(|p| {
            // Acquire pairs with the Release store in `wake`.
            while !p.notified.swap(false, Ordering::Acquire) {
                thread::park();
            }
        });
    }
}

// SAFETY: `Arc::into_raw` yields a non-null pointer to the Arc's data, a `Parker` whose
// alignment is that of `Thread` (a pointer, 8 bytes on 64-bit and 4 on 32-bit targets), so it
// is greater than 2; `from_raw` rebuilds the same `Arc`.
unsafe impl Waiter for ThreadWaiter {
    fn into_raw(self) -> usize {
        // Exposed, so that `from_raw` may rebuild the pointer from the bare word (the
        // semaphore holds a `usize`); Miri checks this under permissive provenance.
        Arc::into_raw(self.0).expose_provenance()
    }

    unsafe fn from_raw(raw: usize) -> Self {
        let ptr = std::ptr::with_exposed_provenance::<Parker>(raw);
        // SAFETY: the caller passes a word made by `into_raw` exactly once, so this takes back
        // the one strong count that `into_raw` leaked (`ptr` has the provenance it exposed).
        ThreadWaiter(unsafe { Arc::from_raw(ptr) })
    }

    fn wake(self) {
        // Release pairs with the Acquire swap in `park`.
        self.0.notified.store(true, Ordering::Release);
        self.0.thread.unpark();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_and_wake_before_park() {
        let w = ThreadWaiter::current();
        let raw = w.into_raw();
        assert!(raw > 2);
        // SAFETY: `raw` came from `into_raw` just above and is converted back once.
        let w = unsafe { ThreadWaiter::from_raw(raw) };
        w.wake();
        ThreadWaiter::park(); // returns at once: the wake is remembered
    }

    #[test]
    fn wake_from_other_thread() {
        let w = ThreadWaiter::current();
        let h = std::thread::spawn(move || w.wake());
        ThreadWaiter::park();
        h.join().unwrap();
    }
}
