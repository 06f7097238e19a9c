//! G: a goroutine — its stack, saved context, entry closure, park state and local storage.

use crate::arch::Context;
use crate::gstate::GState;
use crate::parker::Parker;
use crate::stack::Stack;
use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

pub(crate) use crate::entry::Entry;

/// Goroutine-local values of one G: (key address, boxed value). Boxes keep each value's
/// address stable while the vector grows.
pub(crate) type LocalValues = Vec<(usize, Box<dyn Any>)>;

/// A goroutine. Shared through `Arc<G>`: the scheduler holds one reference (the *scheduling
/// reference*: in a run queue, on the M running the G, or owned by the parked state), and
/// `Goroutine` handles hold others.
///
/// Fields in `UnsafeCell`s belong to whoever currently runs or schedules the G: the M that
/// popped its scheduling reference from a run queue (or won `GState::ready`), which is
/// exclusive by the run-queue and park protocols. Only `id`, `state` and `pinned_waiter` are
/// touched by other threads.
///
/// `repr(C)` keeps the fields a channel hand-off touches — park state, saved context, id,
/// stack, group cache, wait reason — together in the first 64 bytes, so they span one or two
/// cache lines: a pipeline of thousands of goroutines touches a cold G at every hop. (Aligning
/// G to a cache line would make it one line, but an over-aligned `Arc` allocation made
/// spawning 60% slower.)
#[derive(Debug)]
#[repr(C)]
pub(crate) struct G {
    pub(crate) state: GState,
    /// Saved registers while switched out. Written by `switch`, on the thread running the G.
    pub(crate) ctx: UnsafeCell<Context>,
    /// Goroutine id. Written by the M that (re)initialises the G before it is published to a
    /// run queue (Release through the queue); read by anyone holding the G.
    pub(crate) id: AtomicU64,
    /// Given when the G first runs; returned to the P's cache when it exits.
    pub(crate) stack: UnsafeCell<Option<Stack>>,
    /// The goroutine's last blocking group, reused by its next blocking channel or `sync`
    /// operation (`chan::waiter::Group::current`). Touched only by
    /// the running goroutine; emptied when the goroutine ends (it holds a handle to the G).
    pub(crate) group_cache: UnsafeCell<Option<crate::loom::Arc<crate::chan::waiter::Group>>>,
    /// Why the G last parked (`WaitReason as u8`), `0` when it never parked since it
    /// started, or `NOT_LIVE` while no goroutine uses the G (free, or exited). Written by the
    /// G before it parks and by the scheduler when the G starts and exits; read by goroutine
    /// dumps (Relaxed: a hint — the deadlock report reads it with every M idle).
    pub(crate) wait_reason: AtomicU8,
    /// While the G waits for a token without leaving its thread (during a panic unwind), the
    /// parker of that thread's M. Set and cleared by the G; read by readiers (SeqCst: pairs
    /// with the token handshake, see `park.rs`).
    pub(crate) pinned_waiter: AtomicPtr<Parker>,
    /// This G's slot in its runtime's registry of Gs (`AllGs`). Written under the registry's
    /// lock only.
    pub(crate) registry_slot: AtomicUsize,
    /// Set during the last round of local destruction (`spawn::destroy_locals`): from then
    /// on `GoroutineLocal::with` refuses to create values. Cleared when the G is reused.
    pub(crate) locals_closed: UnsafeCell<bool>,
    /// `lock_os_thread` nesting depth: while non-zero the goroutine never leaves its thread.
    /// Written only by the goroutine itself (and reset by its M when it exits); Relaxed.
    pub(crate) locked: std::sync::atomic::AtomicU32,
    pub(crate) entry: UnsafeCell<Option<Entry>>,
    pub(crate) locals: UnsafeCell<LocalValues>,
}

// The hand-off's fields lie within the G's first 64 bytes (see `G`; loom's atomics are larger).
#[cfg(not(loom))]
const _: () = assert!(std::mem::offset_of!(G, wait_reason) < 64);

/// `G::wait_reason` of a G that runs no goroutine.
pub(crate) const NOT_LIVE: u8 = u8::MAX;

// SAFETY: the cells are accessed only by the party holding the scheduling reference, which
// the run queues and the park protocol hand over with Release/Acquire; the rest is atomic.
// The entry closure is `Send`; goroutine-local values travel with their G between threads
// under the migration contract that `Runtime` construction makes the caller accept.
unsafe impl Send for G {}
// SAFETY: as above.
unsafe impl Sync for G {}

impl G {
    pub(crate) fn new() -> G {
        G {
            id: AtomicU64::new(0),
            state: GState::default(),
            ctx: UnsafeCell::new(Context::empty()),
            stack: UnsafeCell::new(None),
            entry: UnsafeCell::new(None),
            locals: UnsafeCell::new(Vec::new()),
            locals_closed: UnsafeCell::new(false),
            locked: std::sync::atomic::AtomicU32::new(0),
            pinned_waiter: AtomicPtr::new(std::ptr::null_mut()),
            group_cache: UnsafeCell::new(None),
            wait_reason: AtomicU8::new(NOT_LIVE),
            registry_slot: AtomicUsize::new(usize::MAX),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }
}

/// Every G object of a runtime (Go's `allgs`), for goroutine dumps and the deadlock report.
///
/// Registration follows the G *object*, not the goroutine: a G is registered when it is
/// allocated and unregistered just before the runtime drops its own reference to it (a free
/// G released after idling, or an exited G that a handle still refers to). Spawning on a
/// recycled G and exiting touch no registry at all — only the G's own `wait_reason` says
/// whether a goroutine lives on it — so the registry costs nothing on the spawn path.
///
/// A registered G is always alive: the runtime holds a reference to it (its scheduling
/// reference, or a free list's) until after it is unregistered, and unregistering takes the
/// lock a dump holds while it reads the Gs.
#[derive(Debug, Default)]
pub(crate) struct AllGs {
    gs: std::sync::Mutex<Vec<GPtr>>,
}

/// A registered G (see `AllGs` for why it stays valid while registered).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GPtr(pub(crate) *const G);

// SAFETY: only dereferenced under the registry's lock, while the G is registered and hence
// alive (`AllGs`); `G` is `Sync`.
unsafe impl Send for GPtr {}

impl AllGs {
    /// The registry itself (stop-the-world snapshots iterate it under its lock).
    pub(crate) fn list(&self) -> &std::sync::Mutex<Vec<GPtr>> {
        &self.gs
    }

    /// Registers a newly allocated G.
    pub(crate) fn register(&self, g: &std::sync::Arc<G>) {
        let mut gs = crate::sched::lock(&self.gs);
        g.registry_slot.store(gs.len(), Ordering::Relaxed);
        gs.push(GPtr(std::sync::Arc::as_ptr(g)));
    }

    /// Unregisters `g`, which the runtime is about to drop its reference to.
    pub(crate) fn unregister(&self, g: &G) {
        let mut gs = crate::sched::lock(&self.gs);
        Self::remove(&mut gs, g);
    }

    /// Unregisters a batch of Gs about to be dropped.
    pub(crate) fn unregister_all(&self, batch: &[std::sync::Arc<G>]) {
        let mut gs = crate::sched::lock(&self.gs);
        for g in batch {
            Self::remove(&mut gs, g);
        }
        // The registry's own buffer (8 bytes a G) goes back too once a burst is gone, as the
        // free list's does (`release.rs`).
        let keep = 2 * gs.len().max(1024);
        if gs.capacity() > 2 * keep {
            gs.shrink_to(keep);
        }
    }

    fn remove(gs: &mut Vec<GPtr>, g: &G) {
        let slot = g.registry_slot.swap(usize::MAX, Ordering::Relaxed);
        assert!(
            slot < gs.len() && std::ptr::eq(gs[slot].0, g),
            "runtime: unregistering a G that is not registered"
        );
        gs.swap_remove(slot);
        if let Some(moved) = gs.get(slot) {
            // SAFETY: registered, hence alive, and we hold the lock (see `AllGs`).
            unsafe { &*moved.0 }
                .registry_slot
                .store(slot, Ordering::Relaxed);
        }
    }

    /// Calls `f` with every G that runs a goroutine now, and why it is parked (`None`: not
    /// parked), under the registry's lock.
    pub(crate) fn for_each_live(&self, mut f: impl FnMut(&G, Option<crate::park::WaitReason>)) {
        let gs = crate::sched::lock(&self.gs);
        for p in gs.iter() {
            // SAFETY: registered, hence alive, and we hold the lock (see `AllGs`).
            let g = unsafe { &*p.0 };
            let reason = g.wait_reason.load(Ordering::Relaxed);
            if reason != NOT_LIVE {
                let waiting = g
                    .state
                    .is_parked()
                    .then(|| crate::park::WaitReason::from_u8(reason))
                    .flatten();
                f(g, waiting);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn g(id: u64, reason: u8) -> Arc<G> {
        let g = Arc::new(G::new());
        g.id.store(id, Ordering::Relaxed);
        g.wait_reason.store(reason, Ordering::Relaxed);
        g
    }

    /// Registration survives removals in any order (slots move on `swap_remove`), and only
    /// Gs a goroutine lives on are listed, by id, parked ones with their reason.
    #[test]
    fn registry_tracks_gs_through_removals_and_lists_live_goroutines() {
        let live = |all: &AllGs| {
            let mut v = Vec::new();
            all.for_each_live(|g, waiting| v.push((g.id(), waiting)));
            v.sort_by_key(|e| e.0);
            v
        };
        let all = AllGs::default();
        let gs: Vec<_> = (1..=5).map(|i| g(i, NOT_LIVE)).collect();
        for g in &gs {
            all.register(g);
        }
        gs[4].wait_reason.store(0, Ordering::Relaxed); // running, never parked
        gs[1]
            .wait_reason
            .store(crate::WaitReason::Select as u8, Ordering::Relaxed);
        assert!(gs[1].state.commit_park());
        gs[2]
            .wait_reason
            .store(crate::WaitReason::ChanSend as u8, Ordering::Relaxed);
        assert!(gs[2].state.commit_park());
        all.unregister(&gs[0]);
        all.unregister_all(&gs[3..4]);
        let ids = live(&all);
        assert_eq!(
            ids,
            [
                (2, Some(crate::WaitReason::Select)),
                (3, Some(crate::WaitReason::ChanSend)),
                (5, None)
            ]
        );
        all.unregister(&gs[4]);
        all.unregister(&gs[1]);
        all.unregister(&gs[2]);
        assert!(live(&all).is_empty());
        assert!(crate::sched::lock(&all.gs).is_empty());
    }
}
