//! Preempt requests: the process-wide word `safepoint()` tests, and the per-P request flag.
//!
//! A request is a flag on a P (`P::preempt`): "the goroutine running on you should yield at
//! its next safepoint". Sysmon sets it when a goroutine overstays its slice; stop-the-world
//! asks for more (`P::stop`, `stw.rs`), and also counts here. `PENDING` counts the
//! outstanding requests of every runtime in the process, so the check a long loop makes —
//! [`safepoint`] — is one load of one word and a branch while nobody asks for anything.
//!
//! The flag is cleared (and the count dropped) by whoever ends the slice: the P's holder
//! when it starts running another goroutine (`M::note_switch`), or the goroutine itself when
//! it honours the request at a safepoint. A clear is a swap, so only one of them drops the
//! count.

use crate::m::{M, current_m};
use crate::p::P;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Outstanding preempt and stop requests across all runtimes. Incremented by sysmon and
/// stop-the-world, decremented by the party that clears a request. Relaxed everywhere: it is
/// a hint that sends `safepoint` to its slow path, which reads the per-P words themselves;
/// a request a safepoint misses by a few nanoseconds is seen at the next one, and a P that
/// never reaches one is suspended by signal (stop-the-world) or helped by a spare (sysmon).
pub(crate) static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Asks the goroutine running on `p` to yield at its next safepoint. Returns false when a
/// request was already pending.
pub(crate) fn request(p: &P) -> bool {
    // Relaxed: the flag itself carries no data; the goroutine reacts by yielding.
    if p.preempt.swap(true, Ordering::Relaxed) {
        return false;
    }
    PENDING.fetch_add(1, Ordering::Relaxed);
    true
}

/// Clears `p`'s request if one is pending. Returns whether it was.
#[inline]
pub(crate) fn clear(p: &P) -> bool {
    // A load first: the common case (no request) writes nothing to a shared line.
    if !p.preempt.load(Ordering::Relaxed) {
        return false;
    }
    clear_slow(p)
}

#[cold]
fn clear_slow(p: &P) -> bool {
    if p.preempt.swap(false, Ordering::Relaxed) {
        PENDING.fetch_sub(1, Ordering::Relaxed);
        return true;
    }
    false
}

/// A safepoint: where a goroutine in a long loop without other runtime calls lets the
/// scheduler preempt it (sysmon's 10 ms slice) or stop it (stop-the-world). Costs one load of
/// a process-wide word and a branch while nothing is requested. On a plain thread, inside
/// [`blocking`](crate::blocking) and while a panic unwinds it does nothing.
#[inline]
pub fn safepoint() {
    if PENDING.load(Ordering::Relaxed) != 0 {
        safepoint_slow();
    }
}

#[cold]
#[inline(never)]
fn safepoint_slow() {
    let m = current_m();
    if m.is_null() {
        return;
    }
    // SAFETY: a non-null current M is this thread's live M; the borrow ends before any
    // switch below.
    let this: &M = unsafe { &*m };
    if this.curg.get().is_null() || !this.has_p() {
        return;
    }
    let p = this.p_ref();
    if crate::stw::stop_requested(p) {
        crate::stw::stop_at_safepoint(this, p);
    }
    if clear(p) {
        crate::park::preempt_yield();
    }
}
