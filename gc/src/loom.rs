//! Loom shim: std's synchronisation primitives normally, loom's under `--cfg loom`.
//!
//! The protocols loom models — the world's stop handshake (`world.rs`), the grey pool and
//! mark termination (`work.rs`), the barrier against a marker (`barrier.rs`) — import their
//! atomics, locks and cells from here. Heap memory (object slots read through raw addresses)
//! stays on std atomics: loom cannot model memory it did not allocate.
#![allow(unused_imports)]

#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};

/// Threads: std's, or loom's inside a model.
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::{spawn, yield_now};

    #[cfg(loom)]
    pub(crate) use loom::thread::{spawn, yield_now};
}
