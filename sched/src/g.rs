//! G: a goroutine — its stack, saved context, entry closure, park state and local storage.

use crate::arch::Context;
use crate::gstate::GState;
use crate::parker::Parker;
use crate::stack::Stack;
use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};

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
#[derive(Debug)]
pub(crate) struct G {
    /// Goroutine id. Written by the M that (re)initialises the G before it is published to a
    /// run queue (Release through the queue); read by anyone holding the G.
    pub(crate) id: AtomicU64,
    pub(crate) state: GState,
    /// Saved registers while switched out. Written by `switch`, on the thread running the G.
    pub(crate) ctx: UnsafeCell<Context>,
    /// Given when the G first runs; returned to the P's cache when it exits.
    pub(crate) stack: UnsafeCell<Option<Stack>>,
    pub(crate) entry: UnsafeCell<Option<Entry>>,
    pub(crate) locals: UnsafeCell<LocalValues>,
    /// Set during the last round of local destruction (`spawn::destroy_locals`): from then
    /// on `GoroutineLocal::with` refuses to create values. Cleared when the G is reused.
    pub(crate) locals_closed: UnsafeCell<bool>,
    /// While the G waits for a token without leaving its thread (during a panic unwind), the
    /// parker of that thread's M. Set and cleared by the G; read by readiers (SeqCst: pairs
    /// with the token handshake, see `park.rs`).
    pub(crate) pinned_waiter: AtomicPtr<Parker>,
    /// The goroutine's last blocking group, reused by its next blocking channel or `sync`
    /// operation when nobody else holds it (`chan::waiter::Group::current`). Touched only by
    /// the running goroutine; emptied when the goroutine ends (it holds a handle to the G).
    pub(crate) group_cache: UnsafeCell<Option<crate::loom::Arc<crate::chan::waiter::Group>>>,
    /// Why the G last parked (`WaitReason as u8`). Written by the G before it parks; read by
    /// goroutine dumps (Relaxed: a hint).
    pub(crate) wait_reason: AtomicU8,
}

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
            pinned_waiter: AtomicPtr::new(std::ptr::null_mut()),
            group_cache: UnsafeCell::new(None),
            wait_reason: AtomicU8::new(0),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }
}
