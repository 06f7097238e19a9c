//! `Slot<T>`: a barriered GC pointer field — an atomic word the marker reads concurrently.

use std::marker::PhantomData;
use std::sync::atomic::AtomicUsize;

use crate::trace::{PtrMap, Trace};

/// A field of a collected object that holds a pointer to another collected object, or null.
///
/// The only place a GC pointer may live inside the heap. It is an atomic word, so a marker
/// can read it while a mutator writes it; reading it yields a [`crate::Local`] rooted in the
/// reader's scope, writing it runs the write barrier. Both take the mutation token (the
/// [`crate::Scope`]) of an attached mutator of the slot's heap.
///
/// A `Slot` created outside the heap ([`Slot::null`]) is null, and writing one that does not
/// lie in the heap panics, so a slot on the Rust stack or in a `Vec` never holds a pointer
/// the collector cannot see.
#[repr(transparent)]
pub struct Slot<T: Trace> {
    pub(crate) word: AtomicUsize,
    _t: PhantomData<fn() -> T>,
}

impl<T: Trace> Slot<T> {
    /// A null slot (the initial value of every pointer field).
    pub const fn null() -> Slot<T> {
        Slot {
            word: AtomicUsize::new(0),
            _t: PhantomData,
        }
    }
}

impl<T: Trace> Default for Slot<T> {
    fn default() -> Self {
        Slot::null()
    }
}

impl<T: Trace> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.word.load(std::sync::atomic::Ordering::Relaxed);
        write!(f, "Slot({w:#x})")
    }
}

// SAFETY: a `Slot` is one word, and it is a pointer word.
unsafe impl<T: Trace> Trace for Slot<T> {
    const PTRS: PtrMap = PtrMap::ONE;
}
