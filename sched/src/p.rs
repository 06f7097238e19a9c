//! P: a logical processor — a local run queue, free Gs, a stack cache and goroutine counters.

use crate::g::G;
use crate::runq::RunQueue;
use crate::stack::Stack;
use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    pub(crate) sched_tick: u32,
}

#[derive(Debug)]
pub(crate) struct P {
    pub(crate) id: usize,
    pub(crate) runq: RunQueue<G>,
    /// Goroutines created and exited while this P was held. Written (Relaxed store, no
    /// read-modify-write) only by the holder; summed by `num_goroutine` (Relaxed: a snapshot,
    /// as Go's NumGoroutine).
    pub(crate) created: AtomicU64,
    pub(crate) exited: AtomicU64,
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
            created: AtomicU64::new(0),
            exited: AtomicU64::new(0),
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

    #[inline]
    pub(crate) fn count_created(&self) {
        self.created
            .store(self.created.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn count_exited(&self) {
        self.exited
            .store(self.exited.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}
