//! The link from an OS thread to its suspension slot: a `const`-initialised thread-local pointer and its guard.

use super::slot::SuspendSlot;
use std::marker::PhantomData;
use std::sync::Arc;
// Not `crate::loom`: these atomics talk to a signal handler on the same thread, which loom
// does not model (the memory model asks for atomics, not `Cell`, between the two).
use std::sync::atomic::{AtomicPtr, Ordering, compiler_fence};

thread_local! {
    /// The slot of the registered thread, null when none. Written by the thread itself
    /// (registration and its guard's drop); read by the suspend handler and the no-preempt
    /// exit on the same thread. `const`-initialised with no destructor, so reading it from a
    /// signal handler allocates nothing. Relaxed accesses: writer and reader are one thread,
    /// and `compiler_fence`s order the writes against the slot's own state changes.
    static CURRENT: AtomicPtr<SuspendSlot> = const { AtomicPtr::new(std::ptr::null_mut()) };
}

/// Unregisters the thread at its exit if its [`Registration`] was leaked (`mem::forget`), so
/// no coordinator ever signals a thread that is gone (its id may be reused; on macOS a
/// `pthread_t` of an exited thread must not be used at all). The leaked guard's reference
/// keeps the slot alive, so the link is still valid here.
struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        let slot = current();
        if !slot.is_null() {
            unlink();
            // SAFETY: a link still set at thread exit belongs to a leaked Registration,
            // whose leaked `Arc` keeps the slot alive; only this thread clears the link.
            unsafe { &*slot }.detach();
        }
    }
}

thread_local! {
    /// Its destructor runs at thread exit (registered by the first `register_current`).
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

fn unlink() {
    CURRENT.with(|c| c.store(std::ptr::null_mut(), Ordering::Relaxed));
    // The slot's state changes that follow stay after the unlink as the handler sees it.
    compiler_fence(Ordering::SeqCst);
}

/// The calling thread's slot, if it is registered. The slot stays alive while the pointer is
/// set: the thread's [`Registration`] holds a reference to it.
#[inline]
pub(super) fn current() -> *const SuspendSlot {
    CURRENT.with(|c| c.load(Ordering::Relaxed))
}

/// Keeps the calling thread registered with its slot; dropping it unregisters. Not `Send`:
/// it must be dropped on the thread that registered.
#[derive(Debug)]
pub(crate) struct Registration {
    /// Keeps the slot alive while the thread-local pointer refers to it (even if the
    /// guard is leaked).
    slot: Arc<SuspendSlot>,
    _not_send: PhantomData<*const ()>,
}

/// Registers the calling thread with `slot`, so coordinators can suspend it; installs the
/// signal handler first if needed.
///
/// # Panics
///
/// If the thread is registered already, or `slot` is registered with a thread.
pub(crate) fn register_current(slot: &Arc<SuspendSlot>) -> Registration {
    super::signal::install();
    assert!(current().is_null(), "suspend: thread registered twice");
    // Arms the exit hook; fails only while the thread's locals are being destroyed, when
    // its exit is under way anyway and the guard's drop still unregisters it.
    let _ = EXIT_HOOK.try_with(|_| ());
    // Link before attaching: once attached, a request's signal may arrive at once, and the
    // handler must find the slot (a signal before the attach finds it UNREGISTERED: ignored).
    CURRENT.with(|c| c.store(Arc::as_ptr(slot).cast_mut(), Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    if !slot.attach(super::signal::current_tid()) {
        unlink();
        panic!("suspend: slot already registered with a thread");
    }
    Registration {
        slot: Arc::clone(slot),
        _not_send: PhantomData,
    }
}

impl Registration {
    /// The registered slot.
    #[allow(dead_code)]
    pub(crate) fn slot(&self) -> &Arc<SuspendSlot> {
        &self.slot
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Already unregistered by the exit hook (the guard outlived it in another
        // thread-local's destructor): the slot may belong to another thread by now.
        if current() != Arc::as_ptr(&self.slot).cast_mut() {
            return;
        }
        // Unlink first, so a signal arriving from here on is ignored, then mark the slot
        // unregistered and wait out coordinators still sending to this thread.
        unlink();
        self.slot.detach();
    }
}
