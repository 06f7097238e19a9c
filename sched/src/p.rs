//! P: a logical processor — a local run queue, free Gs, a stack cache and scheduling ticks.

use crate::g::G;
use crate::runq::RunQueue;
use crate::stack::Stack;
use std::cell::UnsafeCell;
use std::sync::Arc;

/// Free Gs a P keeps before handing half to the runtime-wide list.
pub(crate) const FREE_G_MAX: usize = 64;
/// Free stacks a P keeps before handing half back to the pool.
pub(crate) const STACK_CACHE_MAX: usize = 32;
/// Goroutine ids a P reserves at once from the runtime-wide counter.
pub(crate) const GOID_BATCH: u64 = 16;

/// The part of a P only its holder touches.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    pub(crate) free_gs: Vec<Arc<G>>,
    pub(crate) stacks: Vec<Stack>,
    /// Next goroutine id to hand out and the end of the reserved batch.
    pub(crate) goid_next: u64,
    pub(crate) goid_end: u64,
    /// Scheduling rounds through `find_runnable`; every 61st looks at the global queue first.
    pub(crate) sched_tick: u32,
    /// Yields taken by `gosched`'s fast path: its own count, so that the fast path cannot
    /// eat `find_runnable`'s fairness tick (they once shared one and the global queue starved).
    pub(crate) yield_tick: u32,
    /// Set by the yield fast path when it defers to the scheduler for fairness: the next
    /// `find_runnable` looks at the global queue first whatever its own tick says.
    pub(crate) check_global: bool,
}

#[derive(Debug)]
pub(crate) struct P {
    pub(crate) id: usize,
    pub(crate) runq: RunQueue<G>,
    /// Owner-only state: accessed only by the M holding this P. A P changes hands only under
    /// the scheduler lock or through a parker hand-off, both of which order the accesses.
    pub(crate) owned: UnsafeCell<Owned>,
}

// SAFETY: `owned` is only touched by the P's current holder (see the field docs); the rest
// is atomic.
unsafe impl Sync for P {}
// SAFETY: as above.
unsafe impl Send for P {}

impl P {
    pub(crate) fn new(id: usize) -> P {
        P {
            id,
            runq: RunQueue::default(),
            owned: UnsafeCell::new(Owned::default()),
        }
    }

    /// # Safety
    /// The caller must hold this P (be the M it is assigned to) and must not call `owned`
    /// again while the returned reference is live.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn owned(&self) -> &mut Owned {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.owned.get() }
    }
}
