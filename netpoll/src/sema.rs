//! The per-direction binary semaphore of a poll descriptor: empty, ready, reserved or a waiter.
//!
//! One word holds the whole state:
//!
//! | value      | meaning                                                          |
//! |------------|------------------------------------------------------------------|
//! | `EMPTY`    | no readiness recorded, nobody waiting                            |
//! | `READY`    | the kernel reported readiness that no waiter has consumed yet    |
//! | `RESERVED` | a waiter is on its way to park (between `reserve` and `commit`)  |
//! | any other  | the raw form of the parked waiter ([`crate::Waiter::into_raw`])  |
//!
//! Transitions (W = the one waiter of this direction, U = any unblocker: the poller on an
//! event, a deadline, a close):
//!
//! - W `reserve`: `READY → EMPTY` (readiness consumed, no park) or `EMPTY → RESERVED`.
//! - W `commit(raw)`: `RESERVED → raw`; fails when an unblocker got there first.
//! - W `finish`: after parking (or a failed commit) swap back to `EMPTY`; reports whether an
//!   unblocker left `READY`.
//! - U `unblock(ready)`: `EMPTY → READY` if `ready`; `RESERVED → READY/EMPTY`;
//!   `raw → READY/EMPTY` and the raw waiter is handed to the caller, who wakes it exactly once.
//!
//! The waiter is taken out of the word by a single read-modify-write, so at most one unblocker
//! can ever obtain it (no double wake), and a waiter only parks after a successful `commit`,
//! whose compare-exchange would have failed had any unblocker run since `reserve` (no lost
//! wake-up). The loom models in `desc.rs` check both against ready, close and deadline.

use crate::loom::{AtomicUsize, Ordering};

/// No readiness, no waiter.
pub(crate) const EMPTY: usize = 0;
/// Readiness recorded and not yet consumed.
pub(crate) const READY: usize = 1;
/// A waiter has reserved the semaphore and is about to commit its raw token and park.
pub(crate) const RESERVED: usize = 2;

/// What [`Sema::reserve`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// Readiness was pending and is now consumed: the operation may be retried at once.
    Ready,
    /// The semaphore is reserved for the caller, who must `commit` or `finish`.
    Reserved,
}

/// A binary semaphore for one direction of one poll descriptor.
#[derive(Debug)]
pub(crate) struct Sema {
    /// Written by the direction's single waiter (reserve / commit / finish) and by unblockers
    /// (poller, deadline, close); every write is a read-modify-write with AcqRel, so the raw
    /// waiter published by `commit` (Release) is acquired by the `unblock` that takes it.
    state: AtomicUsize,
}

impl Sema {
    pub(crate) fn new() -> Self {
        Sema {
            state: AtomicUsize::new(EMPTY),
        }
    }

    /// Consume pending readiness, or reserve the semaphore for a waiter.
    ///
    /// Panics when another waiter already holds this direction: the direction locks
    /// (`lock.rs`, Go's fdMutex) admit one reader and one writer at a time, so this is a
    /// broken invariant.
    #[inline]
    pub(crate) fn reserve(&self) -> Reserve {
        // One load, then one compare-exchange for the state seen; a race with an unblocker
        // (which only ever moves EMPTY/RESERVED/waiter to READY/EMPTY) just retries.
        // Acquire / AcqRel pair with the AcqRel RMW of `unblock` that stored READY.
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (new, res) = match cur {
                READY => (EMPTY, Reserve::Ready),
                EMPTY => (RESERVED, Reserve::Reserved),
                _ => double_wait(),
            };
            match self
                .state
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return res,
                Err(now) => cur = now,
            }
        }
    }

    /// Publish the raw waiter in place of the reservation. Returns `false` when an unblocker
    /// ran since `reserve`: the waiter must then not park, but call `finish`.
    #[inline]
    pub(crate) fn commit(&self, raw: usize) -> bool {
        debug_assert!(
            raw > RESERVED,
            "runtime: waiter token collides with a semaphore state"
        );
        // Release publishes the waiter to the `unblock` (AcqRel) that will take it.
        self.state
            .compare_exchange(RESERVED, raw, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// End a wait (after being woken, or after a failed commit / an error seen while
    /// reserved). Returns whether readiness was delivered to this waiter.
    #[inline]
    pub(crate) fn finish(&self) -> bool {
        // Pairs with `unblock`'s AcqRel RMW.
        match self.state.swap(EMPTY, Ordering::AcqRel) {
            READY => true,
            // RESERVED: the waiter saw an error before committing and withdraws.
            EMPTY | RESERVED => false,
            _ => panic!("runtime: poll semaphore finished while its waiter is still parked"),
        }
    }

    /// Record readiness (`ready == true`) or just release the waiter (`false`: close or
    /// deadline), returning the raw waiter that the caller must now wake, if one was parked.
    #[inline]
    pub(crate) fn unblock(&self, ready: bool) -> Option<usize> {
        let new = if ready { READY } else { EMPTY };
        let mut old = self.state.load(Ordering::Acquire);
        loop {
            if old == READY || (old == EMPTY && !ready) {
                return None;
            }
            // AcqRel: acquires the raw waiter published by `commit`, releases READY to the
            // waiter's `reserve` / `finish`.
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return if old > RESERVED { Some(old) } else { None },
                Err(now) => old = now,
            }
        }
    }

    /// Put a recycled semaphore back to `EMPTY` for its next owner; returns the state found.
    pub(crate) fn reset(&self) -> usize {
        // Relaxed: the descriptor is being reopened by its sole owner under the table lock.
        self.state.swap(EMPTY, Ordering::Relaxed)
    }

    /// Whether a waiter is reserved or parked (for debugging and tests).
    #[allow(dead_code)]
    pub(crate) fn has_waiter(&self) -> bool {
        self.state.load(Ordering::Relaxed) >= RESERVED
    }
}

#[cold]
#[inline(never)]
fn double_wait() -> ! {
    panic!(
        "runtime: two waiters on the same direction of one poll descriptor \
         (the direction lock should have serialised them)"
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ready_then_reserve_consumes() {
        let s = Sema::new();
        assert_eq!(s.unblock(true), None);
        assert_eq!(s.reserve(), Reserve::Ready);
        assert_eq!(s.reserve(), Reserve::Reserved);
        assert!(s.commit(64));
        assert_eq!(s.unblock(true), Some(64));
        assert!(s.finish());
    }

    #[test]
    fn unblock_before_commit_fails_commit() {
        let s = Sema::new();
        assert_eq!(s.reserve(), Reserve::Reserved);
        assert_eq!(s.unblock(false), None);
        assert!(!s.commit(64));
        assert!(!s.finish());
        assert_eq!(s.reserve(), Reserve::Reserved);
        assert_eq!(s.unblock(true), None);
        assert!(!s.commit(64));
        assert!(s.finish());
    }

    #[test]
    #[should_panic(expected = "two waiters")]
    fn double_wait_panics() {
        let s = Sema::new();
        assert_eq!(s.reserve(), Reserve::Reserved);
        let _ = s.reserve();
    }
}
