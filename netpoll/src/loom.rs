//! The loom shim: std's synchronisation types, or loom's under `--cfg loom`.
//!
//! Every concurrent protocol in this crate imports its atomics, cells, locks and threads from
//! here, so the same code is model-checked by loom and run for real otherwise.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, fence};
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::{hint::spin_loop, thread};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, fence};
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::{hint::spin_loop, thread};

pub(crate) use std::sync::atomic::Ordering;

/// Descriptors per chunk of the descriptor table (small under loom so models stay cheap, and
/// under Miri so a table's unit tests do not spend seconds initialising it).
#[cfg(not(any(loom, miri)))]
pub(crate) const CHUNK: usize = 256;
#[cfg(all(miri, not(loom)))]
pub(crate) const CHUNK: usize = 16;
#[cfg(loom)]
pub(crate) const CHUNK: usize = 4;

/// Chunks in the descriptor table: `CHUNK * MAX_CHUNKS` descriptors per poller at most.
#[cfg(not(any(loom, miri)))]
pub(crate) const MAX_CHUNKS: usize = 16384;
#[cfg(all(miri, not(loom)))]
pub(crate) const MAX_CHUNKS: usize = 64;
#[cfg(loom)]
pub(crate) const MAX_CHUNKS: usize = 4;
