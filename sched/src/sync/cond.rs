//! A condition variable for goroutines and threads (Go's `sync.Cond`), used with
//! [`Mutex`](super::Mutex).

use super::mutex::MutexGuard;
use crate::WaitReason;
use crate::chan::waiter::Group;
use crate::loom::{Arc, Mutex as LockedList, lock};
use std::collections::VecDeque;

/// Parties wait for a condition, signalled by others.
#[derive(Debug, Default)]
pub struct Cond {
    waiters: LockedList<VecDeque<Arc<Group>>>,
}

impl Cond {
    /// A condition variable with no waiters.
    pub fn new() -> Cond {
        Cond::default()
    }

    /// Unlocks `guard`'s mutex, waits for a `signal` or `broadcast`, then locks it again.
    /// The waiter is queued before the mutex is released, so a signal sent after that
    /// release is never lost. As in Go, wake-ups may be spurious: wait in a loop.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let m = MutexGuard::mutex(&guard);
        let g = Group::current();
        lock(&self.waiters).push_back(g.clone());
        drop(guard);
        g.wait(WaitReason::SyncCondWait);
        Group::recycle(g);
        m.lock()
    }

    /// Wakes one waiter, if any.
    pub fn signal(&self) {
        let w = lock(&self.waiters).pop_front();
        if let Some(w) = w {
            let claimed = w.claim(0);
            debug_assert!(claimed, "runtime: a Cond waiter was claimed twice");
            w.finish();
        }
    }

    /// Wakes every waiter.
    pub fn broadcast(&self) {
        let all: Vec<_> = lock(&self.waiters).drain(..).collect();
        for w in all {
            if w.claim(0) {
                w.finish();
            }
        }
    }
}
