//! A one-token parker for OS threads (idle Ms, threads joining goroutines): no lost wake-up.
//!
//! `unpark` leaves a token; `park` consumes it or sleeps until one arrives. The state word is
//! the handshake: the sleeper announces PARKED under the lock before waiting, and the waker,
//! seeing PARKED after its swap, takes the lock before notifying, so the notification cannot
//! fall between the sleeper's check and its wait.

use crate::loom::{AtomicU32, Condvar, Mutex, Ordering, lock};
use std::time::Duration;

const EMPTY: u32 = 0;
const PARKED: u32 = 1;
const NOTIFIED: u32 = 2;

#[derive(Debug)]
pub(crate) struct Parker {
    /// EMPTY / PARKED / NOTIFIED. Swapped by wakers, CAS'd by the one parking thread.
    state: AtomicU32,
    lock: Mutex<()>,
    cvar: Condvar,
}

impl Default for Parker {
    fn default() -> Self {
        Parker {
            state: AtomicU32::new(EMPTY),
            lock: Mutex::new(()),
            cvar: Condvar::new(),
        }
    }
}

impl Parker {
    /// Blocks until a token is available (or `timeout` passes), then consumes it.
    /// Returns whether a token was consumed. Only one thread may park on a `Parker`.
    pub(crate) fn park(&self, timeout: Option<Duration>) -> bool {
        // Acquire: pairs with `unpark`'s Release swap, so the waker's writes are visible.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        let mut guard = lock(&self.lock);
        if let Err(actual) =
            self.state
                .compare_exchange(EMPTY, PARKED, Ordering::Relaxed, Ordering::Relaxed)
        {
            debug_assert_eq!(
                actual, NOTIFIED,
                "runtime: two threads parked on one parker"
            );
            // Acquire: as above.
            self.state.swap(EMPTY, Ordering::Acquire);
            return true;
        }
        loop {
            guard = match timeout {
                None => self.cvar.wait(guard).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    #[cfg(not(loom))]
                    {
                        self.cvar
                            .wait_timeout(guard, t)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                    #[cfg(loom)]
                    {
                        let _ = t;
                        self.cvar.wait(guard).unwrap_or_else(|p| p.into_inner())
                    }
                }
            };
            // Acquire: pairs with `unpark`'s Release swap.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
            if timeout.is_some() {
                // Timed out (or spurious): withdraw; a token that raced in is kept for later.
                let got = self.state.swap(EMPTY, Ordering::Acquire) == NOTIFIED;
                drop(guard);
                return got;
            }
        }
    }

    /// Leaves a token and wakes the parked thread, if any.
    pub(crate) fn unpark(&self) {
        // Release: pairs with the Acquire in `park`.
        if self.state.swap(NOTIFIED, Ordering::Release) == PARKED {
            // Taking the lock orders this notify after the sleeper's wait began.
            drop(lock(&self.lock));
            self.cvar.notify_one();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::{Arc, AtomicBool};
    use loom::thread;

    /// The classic lost-wake-up shape: a flag set then unpark, against check-then-park.
    #[test]
    fn loom_parker_no_lost_wakeup() {
        loom::model(|| {
            let p = Arc::new(Parker::default());
            let flag = Arc::new(AtomicBool::new(false));
            let th = {
                let (p, flag) = (p.clone(), flag.clone());
                thread::spawn(move || {
                    flag.store(true, Ordering::Release);
                    p.unpark();
                })
            };
            while !flag.load(Ordering::Acquire) {
                p.park(None);
            }
            th.join().unwrap();
        });
    }

    /// Two unparks before one park leave one token: the first park returns at once.
    #[test]
    fn loom_parker_token_is_binary() {
        loom::model(|| {
            let p = Arc::new(Parker::default());
            let th = {
                let p = p.clone();
                thread::spawn(move || {
                    p.unpark();
                    p.unpark();
                })
            };
            th.join().unwrap();
            assert!(p.park(None));
            assert_eq!(p.state.load(Ordering::Relaxed), EMPTY);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_token_left_before_park_is_consumed_once() {
        let p = Parker::default();
        p.unpark();
        p.unpark();
        assert!(p.park(None));
        assert_eq!(p.state.load(Ordering::Relaxed), EMPTY);
        // No token left: a timed park times out empty-handed.
        assert!(!p.park(Some(Duration::from_millis(1))));
        assert_eq!(p.state.load(Ordering::Relaxed), EMPTY);
    }

    /// Flag-then-unpark from other threads against check-then-park: no lost wake-up.
    #[test]
    fn unpark_from_another_thread_wakes_the_sleeper() {
        let rounds = if cfg!(miri) { 10 } else { 1_000 };
        for _ in 0..rounds {
            let p = Arc::new(Parker::default());
            let flag = Arc::new(AtomicBool::new(false));
            let th = {
                let (p, flag) = (p.clone(), flag.clone());
                std::thread::spawn(move || {
                    flag.store(true, Ordering::Release);
                    p.unpark();
                })
            };
            while !flag.load(Ordering::Acquire) {
                p.park(None);
            }
            th.join().unwrap();
        }
    }
}
