//! The loom shim: std's synchronisation types, or loom's under `--cfg loom`.
//!
//! The facade's own protocol (the wake-up flag of a waiter cell, `waiter.rs`) imports its
//! atomics and threads from here, so the same code is model-checked by loom and run for real.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicBool;
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{Arc, atomic::AtomicU64};
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::thread;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicBool;
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{Arc, atomic::AtomicU64};
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::thread;

pub(crate) use std::sync::atomic::Ordering;
