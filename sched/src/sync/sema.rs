//! A counting semaphore with a FIFO (or, on request, LIFO) queue of blocked parties, and
//! direct hand-off: a release with a waiter queued gives the permit to that waiter instead
//! of returning it to the count (Go's runtime `sema`, under a lock instead of a treap).

use crate::WaitReason;
use crate::chan::waiter::Group;
use crate::loom::{Arc, Mutex, lock};
use std::collections::VecDeque;

#[derive(Debug, Default)]
struct State {
    permits: usize,
    waiters: VecDeque<Arc<Group>>,
}

/// The semaphore every `sync` primitive parks on.
#[derive(Debug, Default)]
pub(crate) struct Sema {
    state: Mutex<State>,
}

impl Sema {
    pub(crate) fn new(permits: usize) -> Sema {
        Sema {
            state: Mutex::new(State {
                permits,
                waiters: VecDeque::new(),
            }),
        }
    }

    /// Takes a permit, waiting for one. `lifo` queues at the front (a waiter that already
    /// waited once goes back first, as Go's mutex does).
    pub(crate) fn acquire(&self, lifo: bool, reason: WaitReason) {
        let group = {
            let mut s = lock(&self.state);
            if s.permits > 0 && s.waiters.is_empty() {
                s.permits -= 1;
                return;
            }
            let g = Group::current();
            if lifo {
                s.waiters.push_front(g.clone());
            } else {
                s.waiters.push_back(g.clone());
            }
            g
        };
        group.wait(reason);
        Group::recycle(group);
    }

    /// Takes a permit if one is free now.
    pub(crate) fn try_acquire(&self) -> bool {
        let mut s = lock(&self.state);
        if s.permits > 0 && s.waiters.is_empty() {
            s.permits -= 1;
            return true;
        }
        false
    }

    /// Returns a permit: to the first waiter, else to the count.
    pub(crate) fn release(&self) {
        let waiter = {
            let mut s = lock(&self.state);
            match s.waiters.pop_front() {
                Some(w) => Some(w),
                None => {
                    s.permits += 1;
                    None
                }
            }
        };
        if let Some(w) = waiter {
            // A plain waiter's group has one case: the claim always succeeds.
            let claimed = w.claim(0);
            debug_assert!(claimed, "runtime: a semaphore waiter was claimed twice");
            w.finish();
        }
    }

    /// Permits free now.
    pub(crate) fn available(&self) -> usize {
        lock(&self.state).permits
    }
}
