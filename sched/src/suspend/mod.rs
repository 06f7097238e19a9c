//! Thread suspension by signal for stopping the world (Boehm GC's method).
//!
//! A coordinator asks one registered OS thread to stop ([`SuspendSlot::request`]); a signal
//! handler on that thread records the interrupted context (general and vector registers) in
//! the thread's pre-allocated [`SuspendSlot`], publishes `SUSPENDED`, and waits there until
//! [`SuspendSlot::resume`]. While the thread is inside runtime code — a [`NoPreempt`] window,
//! or a window the busy hook reports — the handler defers instead, and the window's end
//! re-raises the request. The handler never switches stacks or goroutines.
//!
//! **Using it.** A thread calls [`register_current`] with a slot allocated in advance and
//! keeps the returned [`Registration`] while it may be suspended. A coordinator calls
//! `request`, then `poll`s: `Suspended` (read `context` — unsafe, see its contract — and the
//! stack from `SavedContext::stack_scan_start`, then `resume`), `Deferred` (the thread is in
//! runtime code: a `NoPreempt` window re-raises the request when it ends, a busy-hook window
//! needs `retry_deferred`), `Pending` (the signal has not been handled yet: a thread in an
//! uninterruptible sleep or with the signal blocked stays there) or `Unregistered` (the
//! thread left). `resume` also cancels a request not yet honoured. None of these allocate,
//! lock or print, so a coordinator can use them while other threads are stopped holding
//! malloc's or stdout's lock. A thread must not request its own suspension (nobody would
//! resume it).
//!
//! `slot.rs` holds the state machine (model-checked with loom), `registration.rs` the
//! thread-local link from a thread to its slot, `signal.rs` the handler and the sending,
//! `wait.rs` how a suspended handler sleeps, `context.rs` the saved registers, and
//! `nopreempt.rs` the per-thread no-preempt counter.

mod context;
#[cfg(not(loom))]
mod nopreempt;
#[cfg(not(loom))]
pub(crate) mod progress;
#[cfg(not(loom))]
mod registration;
#[cfg(not(loom))]
mod signal;
mod slot;
#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests;
mod wait;

#[allow(unused_imports)] // the type of `SuspendSlot::context`, named by its tests
pub(crate) use context::SavedContext;
#[cfg(not(loom))]
pub(crate) use nopreempt::{NoPreempt, set_busy_hook};
#[cfg(not(loom))]
pub(crate) use registration::{Registration, register_current};
#[cfg(not(loom))]
#[allow(unused_imports)] // named by its tests
pub(crate) use signal::{SUSPEND_SIGNAL, install};
pub(crate) use slot::{Status, SuspendSlot};
