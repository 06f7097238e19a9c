//! Spare Ps: lent by sysmon behind a stuck P, returned when the stuck goroutine moves on.
//!
//! Sysmon never takes a P from a goroutine that is still running on it (the design's
//! "sysmon adds a P, it never takes one"): the stuck goroutine keeps its P — run queue,
//! caches and buffers — and a *spare* P from a small pool outside GOMAXPROCS is handed to an
//! M instead. That M steals the stuck P's queued goroutines and runs its due timers (through
//! the lockable timer heaps, like any stealing M), and runs the global queue. Timers armed by
//! goroutines on a spare go to the foreign heap, so nothing is stranded when it retires.
//!
//! The spare retires — queue to the global queue, P back to the pool — at its holder's next
//! scheduling point once the P it helps has moved on (its tick changed: the goroutine
//! yielded, parked, or its blocking call returned) or has no holder, or when it finds
//! nothing to run. Activation happens under the scheduler lock and never while a stop of the
//! world is pending (`SchedState::stw`); an active spare takes part in stop-the-world like
//! any P. With the pool empty, queued work waits, as it would in Go with every P busy.

use crate::p::P;
use crate::sched::{PStatus, Shared, lock};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// `P::spare_for` of a spare lent behind P `id` whose tick was `tick`.
fn pack(id: usize, tick: u32) -> u64 {
    ((id as u64) << 32) | u64::from(tick)
}

impl Shared {
    /// Lends a spare P behind P `stuck`, last seen with tick `tick`, to an M. Returns false
    /// when the pool is empty, the world is being stopped, the runtime shuts down, or a spare
    /// already helps `stuck`.
    pub(crate) fn activate_spare(self: &Arc<Self>, stuck: usize, tick: u32) -> bool {
        let mut s = lock(&self.sched);
        if s.stw || self.shutdown.load(Ordering::Relaxed) || self.spare_helping(&s, stuck) {
            return false;
        }
        let Some(i) = s
            .spare_pool
            .iter()
            .rposition(|&id| self.p(id).stop.is_clear())
        else {
            return false;
        };
        let id = s.spare_pool.swap_remove(i);
        s.pstatus[id] = PStatus::Running;
        // Relaxed: the hand-off to the M below (under `sched`, then the note's Release)
        // orders it before the spare's holder reads it.
        self.p(id)
            .spare_for
            .store(pack(stuck, tick), Ordering::Relaxed);
        drop(s);
        self.start_m(Some(id), false)
    }

    /// The holder of P `id` is about to give it up (a spare's loan ends, a P beyond
    /// GOMAXPROCS retires): runs the `on_p_retire` hook on this thread.
    #[cold]
    pub(crate) fn p_retiring(&self, id: usize) {
        if let Some(f) = &self.on_p_retire {
            f(id);
        }
    }

    /// Whether an active spare already helps P `stuck`. Caller holds `sched`.
    fn spare_helping(&self, s: &crate::sched::SchedState, stuck: usize) -> bool {
        self.spares().any(|p| {
            s.pstatus[p.id] == PStatus::Running
                && (p.spare_for.load(Ordering::Relaxed) >> 32) as usize == stuck
        })
    }

    /// The spare Ps (lent out or not).
    pub(crate) fn spares(&self) -> impl Iterator<Item = &P> {
        self.ps[crate::sched::MAX_PROCS..]
            .iter()
            .filter_map(|p| p.get().map(|b| &**b))
    }

    /// Whether spare `p` (held by the caller) should retire: the P it helps has moved on
    /// since the spare was lent (its tick changed) or has no holder any more.
    pub(crate) fn spare_done(&self, p: &P) -> bool {
        let word = p.spare_for.load(Ordering::Relaxed);
        let helped = self.p((word >> 32) as usize);
        helped.tick() != word as u32 || helped.holder.load(Ordering::Acquire).is_null()
    }
}
