//! The idle hook: how an M with nothing to run waits, and how it is woken.
//!
//! One idle M at a time calls `poll` with the time until the earliest timer (`None`: no
//! timer); the others park on their own parkers. `wake` interrupts a `poll` in progress (or
//! makes the next one return at once). `has_waiters` tells whether anything outside the
//! scheduler (a netpoller's registered descriptors) may still ready a goroutine, which the
//! deadlock detector consults. The default is a futex-backed event; `gort` plugs the
//! netpoller in through `Builder::idle_hook`.

use crate::parker::Parker;
use std::any::Any;
use std::time::Duration;

/// What an idle M blocks in. Implementations must be thread-safe; `poll` is called by at most
/// one M at a time.
pub trait IdleHook: Send + Sync + 'static {
    /// Blocks until `wake` is called, `timeout` passes (`None`: no timeout; zero: do not
    /// block), or an event of the hook's own readies goroutines (through `Goroutine::ready`,
    /// which, on an M holding no P, puts them on the global run queue).
    fn poll(&self, timeout: Option<Duration>);
    /// Interrupts the current or next `poll`.
    fn wake(&self);
    /// Whether anything outside the scheduler may still ready a goroutine.
    fn has_waiters(&self) -> bool;
    /// The hook as `Any`, so that its owner can find its own state again from inside a
    /// goroutine ([`with_idle_hook`]); `None` (the default) hides it.
    fn as_any(&self) -> Option<&(dyn Any + Send + Sync)> {
        None
    }
}

/// Runs `f` with the idle hook of the calling goroutine's runtime (the netpoller under
/// `gort`, which keeps its poller there); `None` on a plain thread.
pub fn with_idle_hook<R>(f: impl FnOnce(&dyn IdleHook) -> R) -> Option<R> {
    let m = crate::m::current_m();
    if m.is_null() {
        return None;
    }
    // SAFETY: a non-null current M is this thread's live M, and its `shared` (which owns the
    // hook) lives at least as long as the M; `f` runs before we return.
    let shared = unsafe { &(*m).shared };
    Some(f(&*shared.hook))
}

/// The default hook: a one-token event on a futex (through `Parker`); there is nothing to
/// poll, so `has_waiters` is always false.
#[derive(Debug, Default)]
pub struct FutexIdle {
    parker: Parker,
}

impl IdleHook for FutexIdle {
    fn poll(&self, timeout: Option<Duration>) {
        if timeout != Some(Duration::ZERO) {
            self.parker.park(timeout);
        }
    }

    fn wake(&self) {
        self.parker.unpark();
    }

    fn has_waiters(&self) -> bool {
        false
    }
}
