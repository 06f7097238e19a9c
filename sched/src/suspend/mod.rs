//! Thread suspension by signal for stopping the world (Boehm GC's method).
//!
//! A coordinator asks one registered OS thread to stop ([`SuspendSlot::request`]); a signal
//! handler on that thread records the interrupted context (general and vector registers) in
//! the thread's pre-allocated [`SuspendSlot`], publishes `SUSPENDED`, and waits there until
//! [`SuspendSlot::resume`]. While the thread is inside runtime code — a [`NoPreempt`] window,
//! or a window the busy hook reports — the handler defers instead, and the window's end
//! re-raises the request. The handler never switches stacks or goroutines.
//!
//! `slot.rs` holds the state machine (model-checked with loom), `registration.rs` the
//! thread-local link from a thread to its slot, `signal.rs` the handler and the sending,
//! `wait.rs` how a suspended handler sleeps, `context.rs` the saved registers, and
//! `nopreempt.rs` the per-thread no-preempt counter.

mod context;
#[cfg(not(loom))]
mod nopreempt;
#[cfg(not(loom))]
mod registration;
#[cfg(not(loom))]
mod signal;
mod slot;
#[cfg(all(test, not(loom)))]
mod tests;
mod wait;

#[allow(unused_imports)] // until the scheduler uses it
pub(crate) use context::SavedContext;
#[cfg(not(loom))]
#[allow(unused_imports)] // until the scheduler uses it
pub(crate) use nopreempt::{NoPreempt, set_busy_hook};
#[cfg(not(loom))]
#[allow(unused_imports)] // until the scheduler uses it
pub(crate) use registration::{Registration, register_current};
#[cfg(not(loom))]
#[allow(unused_imports)] // until the scheduler uses it
pub(crate) use signal::{SUSPEND_SIGNAL, install};
#[allow(unused_imports)] // until the scheduler uses it
pub(crate) use slot::{Status, SuspendSlot};
