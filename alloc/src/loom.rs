//! Loom shim: std's synchronisation primitives normally, loom's under `--cfg loom`.
//!
//! Only the concurrent protocols that loom models (sweep generations, the mcentral span sets)
//! import from here. Memory-mapped bitmaps and the arena index use std atomics directly: loom
//! cannot model memory it did not allocate, and those words are never part of a model.
#![allow(unused_imports)]

#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicUsize, Ordering, fence},
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicUsize, Ordering, fence},
};

/// Threads: std's, or loom's inside a model.
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::{spawn, yield_now};

    #[cfg(loom)]
    pub(crate) use loom::thread::{spawn, yield_now};
}
