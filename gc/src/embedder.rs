//! The embedder trait: what the collector needs from whoever runs the mutators, with the
//! state split the way an embedder owns it — per mutator, per processor, and the world.
//!
//! Standalone, OS threads are the mutators and each thread is its own processor
//! (`world.rs` implements [`Embedder`] for that); under a scheduler (the facade), goroutines
//! are the mutators and Ps the processors, and the scheduler implements it.

use gort_alloc::Cache;

use crate::raw::StackBounds;

/// Per mutator (an attached thread; a goroutine under a scheduler): what its root scan
/// reads.
#[derive(Debug, Default)]
pub struct MutatorRoots {
    /// The handle block: every `Local` of every live scope, innermost frame last.
    pub(crate) handles: Vec<usize>,
    /// Conservative scanning (opt-in): the stack's bounds.
    pub(crate) stack: Option<StackBounds>,
    /// The saved context: stack words and spilled registers recorded when the mutator last
    /// stopped (its conservative roots while it is stopped).
    pub(crate) stack_words: Vec<usize>,
    /// Allocation not yet paid for with mark work (mark assists come with the pacer).
    pub(crate) assist_credit: i64,
}

impl MutatorRoots {
    /// Handles held (tests and diagnostics).
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// Assist credit in bytes (positive: allocation paid for in advance).
    pub fn assist_credit(&self) -> i64 {
        self.assist_credit
    }
}

/// Per processor (an attached thread standalone; a P under a scheduler): the allocation
/// cache and the write-barrier buffer, never shared by two threads at once.
#[derive(Debug, Default)]
pub struct PState {
    /// The allocation cache.
    pub(crate) cache: Option<Cache>,
    /// Write-barrier buffer: addresses to shade.
    pub(crate) wbuf: Vec<usize>,
    /// Grey objects found while flushing `wbuf`, not yet handed to the pool.
    pub(crate) grey: Vec<usize>,
    /// Bytes allocated since the trigger was last looked at.
    pub(crate) since_check: usize,
}

impl PState {
    /// Entries waiting in the barrier buffer (tests and diagnostics).
    pub fn barrier_len(&self) -> usize {
        self.wbuf.len()
    }
}

/// What a collector needs from the runtime around it.
///
/// # Safety
/// The collector frees what it did not mark, so the implementation's promises are what
/// soundness rests on: `stop_the_world` returns only when no mutator runs and every
/// processor's barrier buffer and grey work has been handed over; `scan_blocked` passes
/// each mutator's roots only while that mutator cannot run, and reports it scanned once per
/// cycle; no mutator runs between `stop_the_world` and `start_the_world`.
pub unsafe trait Embedder {
    /// Stop every mutator at a safepoint (or suspended), every processor flushed.
    fn stop_the_world(&self);

    /// Restart after `stop_the_world`; returns when the world was released (the pause's
    /// end, before any wake-up the restart issues).
    fn start_the_world(&self) -> std::time::Instant;

    /// With the world stopped: mutators whose roots must be scanned this cycle.
    fn mutator_count(&self) -> usize;

    /// Scan, through `scan`, the roots of mutators not yet scanned in `cycle` that can be
    /// held still now (blocked ones); the others scan themselves at their next safepoint.
    /// Returns how many were scanned.
    fn scan_blocked(&self, cycle: u64, scan: &mut dyn FnMut(&MutatorRoots)) -> usize;

    /// Mutators running user code right now (for the worker plan's idle-CPU rule).
    fn running_mutators(&self) -> usize;

    /// With the world stopped: visit every mutator's roots (checkmark).
    fn for_each_stopped(&self, f: &mut dyn FnMut(&MutatorRoots));
}
