//! P: a logical processor — a local run queue, free Gs, a stack cache and scheduling ticks.

use crate::g::G;
use crate::m::MNote;
use crate::runq::RunQueue;
use crate::stack::Stack;
use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

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
    /// The other Ps' ticks at this P's last look at them (`M::rescue_stalled_ps`),
    /// indexed by P id (grown on demand).
    pub(crate) seen_ticks: Vec<u32>,
    /// The ring's head at the last fairness look (every 61st round of the fast path and of
    /// `find_runnable`): the same head at the next look, with the ring not empty, means two
    /// goroutines handing the P to each other through `runnext` are starving the ring.
    pub(crate) ring_seen: u32,
}

/// Spare Ps: a pool outside GOMAXPROCS that sysmon activates behind a P whose goroutine
/// overstays its slice or sits in a blocking call (see `sysmon.rs`). Two: one for the
/// GOMAXPROCS=1 case the design needs, one more so that a hog and a blocked call at once
/// are both covered. Their ids follow the regular Ps' (`MAX_PROCS..MAX_PROCS + SPARE_PS`), so
/// per-P slots elsewhere (allocation caches, barrier buffers) are indexed the same way.
pub const SPARE_PS: usize = 2;

/// Whether P id `id` is a spare.
#[inline]
pub(crate) fn is_spare(id: usize) -> bool {
    id >= crate::sched::MAX_PROCS
}

/// The timer heap a P's goroutines arm timers on: its own, or the foreign heap for a spare
/// (a spare retires soon; its timers must not retire with it).
#[inline]
pub(crate) fn timer_heap(id: usize) -> usize {
    if is_spare(id) {
        crate::timer::FOREIGN_HEAP
    } else {
        id
    }
}

#[derive(Debug)]
pub(crate) struct P {
    pub(crate) id: usize,
    pub(crate) runq: RunQueue<G>,
    /// Owner-only state: accessed only by the M holding this P. A P changes hands only under
    /// the scheduler lock or through a parker hand-off, both of which order the accesses.
    pub(crate) owned: UnsafeCell<Owned>,
    /// Scheduling events: bumped by the holder each time it starts running a goroutine
    /// (`M::note_switch`) and each time the P changes hands (`M::set_p`). Written by the
    /// holder (Relaxed); read by sysmon (Relaxed), which only compares it with what it saw
    /// on an earlier round: unchanged for 10 ms means one goroutine has run that long.
    pub(crate) tick: AtomicU32,
    /// The note of the M holding this P, or null. Written by the holder in `M::set_p`
    /// (Release: pairs with the Acquire loads of sysmon and stop-the-world, which then read
    /// the note's thread id); notes live as long as the runtime, so a stale pointer still
    /// points at a live note (of an M that moved on, which the readers tolerate).
    pub(crate) holder: AtomicPtr<MNote>,
    /// Preempt request for the running goroutine (`preempt.rs`). Set by sysmon, cleared by
    /// the holder at its next switch or by the goroutine at a safepoint.
    pub(crate) preempt: AtomicBool,
    /// Stop-the-world word (`stw.rs`): `NONE`, `REQUESTED` by the coordinator, `STOPPED`
    /// by the holder that answered.
    pub(crate) stop: crate::stw::StopWord,
    /// For an active spare P: `(helped P id) << 32 | its tick when the spare was
    /// activated`. Written by sysmon under the scheduler lock before the spare is handed to
    /// an M (the hand-off orders it); read by the spare's holder.
    pub(crate) spare_for: AtomicU64,
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
            tick: AtomicU32::new(0),
            holder: AtomicPtr::new(std::ptr::null_mut()),
            preempt: AtomicBool::new(false),
            stop: crate::stw::StopWord::default(),
            spare_for: AtomicU64::new(0),
        }
    }

    /// Whether this is a spare P (outside GOMAXPROCS, lent by sysmon behind a stuck one).
    #[inline]
    pub(crate) fn is_spare(&self) -> bool {
        is_spare(self.id)
    }

    /// The tick, for sysmon.
    pub(crate) fn tick(&self) -> u32 {
        self.tick.load(Ordering::Relaxed)
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
