//! gort-gc: a concurrent tri-color mark-sweep collector over gort-alloc's heap.
#![deny(unsafe_op_in_unsafe_fn)]

// The derive macro names `::gort_gc::...`; this makes those paths work inside the crate too.
extern crate self as gort_gc;

#[cfg(doctest)]
mod derive_docs;
mod slot;
mod trace;

pub use gort_gc_derive::Trace;
pub use slot::Slot;
pub use trace::{PTRMAP_WORDS, PtrMap, Trace};
