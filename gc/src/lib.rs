//! gort-gc: a concurrent tri-color mark-sweep collector over gort-alloc's heap.
#![deny(unsafe_op_in_unsafe_fn)]

// The derive macro names `::gort_gc::...`; this makes those paths work inside the crate too.
extern crate self as gort_gc;

mod collector;
mod config;
#[cfg(doctest)]
mod derive_docs;
mod desc;
mod finalizer;
mod handle;
mod heap;
mod loom;
mod mark;
mod mutator;
mod root;
mod slot;
mod stats;
mod trace;
mod work;
mod world;

pub use collector::{BACKGROUND_UTILIZATION, WorkerPlan};
pub use config::{Config, GcError};
pub use gort_alloc::AllocError;
pub use gort_gc_derive::Trace;
pub use handle::Local;
pub use heap::Heap;
pub use mutator::{Mutator, Scope};
pub use root::Root;
pub use slot::Slot;
pub use stats::{GcStats, PAUSE_RING};
pub use trace::{PTRMAP_WORDS, PtrMap, Trace};
