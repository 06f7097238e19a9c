//! The per-thread no-preempt counter: while it is above zero the suspend handler defers, and its return to zero re-raises a deferred request.
//!
//! The counter wraps every scheduler lock and lock-free window, so its fast path is a
//! thread-local increment, and on exit a decrement plus one branch on a thread-local
//! "deferred pending" flag that only the handler sets. The slot's shared state is touched
//! only on the slow path, after a deferral.
//!
//! A window must not span a goroutine switch (the counter belongs to the OS thread).

use std::marker::PhantomData;
// Not `crate::loom`: these atomics talk to a signal handler on the same thread, which loom
// does not model; Relaxed loads and stores compile to plain moves, and `compiler_fence`
// keeps the window's memory accesses between the increment and the decrement.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, compiler_fence};

/// One thread's no-preempt state.
struct State {
    /// Nesting depth of `NoPreempt` windows. Written by the thread; read by its handler.
    depth: AtomicU32,
    /// Set by the handler when it defers a request (the window's end must re-raise it);
    /// read and cleared by the thread when a window ends.
    deferred: AtomicBool,
}

thread_local! {
    /// `const`-initialised with no destructor: the handler reads it without allocating.
    static STATE: State = const {
        State {
            depth: AtomicU32::new(0),
            deferred: AtomicBool::new(false),
        }
    };
}

/// A no-preempt window: while one is alive on a thread, the suspend handler defers. Not
/// `Send`: dropped on the thread that entered it.
#[derive(Debug)]
#[must_use = "the window ends when the guard is dropped"]
pub(crate) struct NoPreempt {
    _not_send: PhantomData<*const ()>,
}

impl NoPreempt {
    /// Enters a window (windows nest).
    #[inline]
    pub(crate) fn enter() -> NoPreempt {
        STATE.with(|s| {
            let d = s.depth.load(Ordering::Relaxed);
            // Relaxed: only this thread writes; the handler reads it on this thread.
            s.depth.store(d + 1, Ordering::Relaxed);
        });
        // The window's accesses stay after the increment as the handler sees them.
        compiler_fence(Ordering::SeqCst);
        NoPreempt {
            _not_send: PhantomData,
        }
    }

    /// The calling thread's window depth.
    #[allow(dead_code)]
    #[inline]
    pub(crate) fn depth() -> u32 {
        STATE.with(|s| s.depth.load(Ordering::Relaxed))
    }
}

impl Drop for NoPreempt {
    #[inline]
    fn drop(&mut self) {
        // The window's accesses stay before the decrement as the handler sees them.
        compiler_fence(Ordering::SeqCst);
        STATE.with(|s| {
            let d = s.depth.load(Ordering::Relaxed);
            debug_assert!(d > 0, "NoPreempt: unbalanced exit");
            // Relaxed: as in `enter`.
            s.depth.store(d.wrapping_sub(1), Ordering::Relaxed);
            // Relaxed: set by the handler on this thread.
            if s.deferred.load(Ordering::Relaxed) {
                deferred_exit(s);
            }
        });
    }
}

/// The slow path of a window's end after the handler deferred: at depth zero, re-raise the
/// request to this thread, so the deferral ends as soon as the window does.
#[cold]
#[inline(never)]
fn deferred_exit(s: &State) {
    if s.depth.load(Ordering::Relaxed) != 0 {
        return;
    }
    // The handler sets the flag only at depth > 0, so it cannot set it again before this
    // store; a handler that suspends meanwhile clears it (harmless).
    s.deferred.store(false, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    let slot = super::registration::current();
    if slot.is_null() {
        return;
    }
    // SAFETY: a non-null link means this thread is registered; its Registration keeps the
    // slot alive until it unlinks, which this thread would have to do itself.
    let slot = unsafe { &*slot };
    // Fails if the coordinator retried (its signal is on the way) or resumed meanwhile.
    slot.retry_deferred();
}

/// Whether the handler must defer now: inside a window, or the busy hook says so. Records
/// the deferral for the window's end. Called only by the suspend handler.
pub(super) fn should_defer() -> bool {
    let busy = STATE.with(|s| s.depth.load(Ordering::Relaxed)) > 0 || busy_hook();
    if busy {
        STATE.with(|s| s.deferred.store(true, Ordering::Relaxed));
    }
    busy
}

/// Clears the deferral record (the handler is about to suspend).
pub(super) fn clear_deferred() {
    STATE.with(|s| s.deferred.store(false, Ordering::Relaxed));
}

/// The busy hook as a `fn() -> bool` address, 0 when none. Written by `set_busy_hook`; read
/// by the handler.
static BUSY_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs (or with `None` removes) the hook the handler calls to learn whether the thread
/// is inside a window of alloc or gc (their `busy` words); true defers the suspension. Such
/// a deferral is not re-raised by a `NoPreempt` exit unless one follows: the coordinator
/// retries with `retry_deferred`.
///
/// # Safety
///
/// `hook` runs inside a signal handler on any registered thread: it must be
/// async-signal-safe (atomics, pre-allocated memory, `const`-initialised thread-locals; no
/// allocation, locks or printing) and must not panic.
pub(crate) unsafe fn set_busy_hook(hook: Option<fn() -> bool>) {
    // Release: pairs with the handler's Acquire load, so whatever the hook reads was set up
    // before it can be called.
    BUSY_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
}

fn busy_hook() -> bool {
    // Acquire: pairs with `set_busy_hook`'s Release store.
    let f = BUSY_HOOK.load(Ordering::Acquire);
    if f == 0 {
        return false;
    }
    // SAFETY: a non-zero value was stored from a `fn() -> bool` by `set_busy_hook`, whose
    // caller promised it is async-signal-safe.
    let f: fn() -> bool = unsafe { std::mem::transmute::<usize, fn() -> bool>(f) };
    f()
}
