//! `Slot<T>`: a barriered GC pointer field — an atomic word the marker reads concurrently.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::handle::Local;
use crate::mutator::Scope;
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

// SAFETY: a slot is one `AtomicUsize` (`repr(transparent)` over it and a zero-sized
// marker), and the word 0 is the null slot (`Slot::null`).
unsafe impl<T: Trace> bytemuck::Zeroable for Slot<T> {}

impl<T: Trace> Slot<T> {
    /// A null slot (the initial value of every pointer field).
    pub const fn null() -> Slot<T> {
        Slot {
            word: AtomicUsize::new(0),
            _t: PhantomData,
        }
    }
}

impl<T: Trace> Slot<T> {
    /// The object the slot points to, rooted in `scope`; `None` when null. A safepoint.
    ///
    /// # Panics
    /// When the slot holds a pointer and lies outside `scope`'s heap (an object of another
    /// heap).
    #[inline]
    pub fn get<'s>(&self, scope: &Scope<'s>) -> Option<Local<'s, T>> {
        // A safepoint (a load and a branch): a loop that only walks the heap still lets the
        // world stop promptly.
        scope.safepoint();
        self.get_no_poll(scope)
    }

    /// `get` without the safepoint, for callers that hold an unrooted address (a
    /// collection's backing array) across the call.
    #[inline]
    pub(crate) fn get_no_poll<'s>(&self, scope: &Scope<'s>) -> Option<Local<'s, T>> {
        // Loading the pointer and rooting it is one window a suspension must not split.
        scope.window_begin();
        // Acquire: pairs with the Release in `set`, so the referent's initialisation (its
        // allocation and the writes before it was stored here) is visible to our reads.
        let v = self.word.load(Ordering::Acquire);
        if v != 0 {
            scope.check_ours(self as *const Slot<T> as usize, "Slot::get");
            scope.push_handle(v);
        }
        scope.window_end();
        if v == 0 {
            return None;
        }
        // SAFETY: a non-null slot lies in `scope`'s heap (checked) and was written by `set`,
        // which stores only objects of that heap of type `T`; the object is reachable from
        // the slot's object (rooted by the caller's handle) and is now rooted in `scope`.
        Some(unsafe { Local::from_addr(v) })
    }

    /// Whether the slot is null. Needs no token: it reads no object.
    #[inline]
    pub fn is_null(&self) -> bool {
        self.word.load(Ordering::Relaxed) == 0
    }

    /// Store `value` (or null), running the write barrier while the collector marks.
    ///
    /// # Panics
    /// When the slot does not lie in `scope`'s heap (a `Slot` on the stack or in a Rust
    /// collection, or in an object of another heap), or `value` belongs to another heap.
    #[inline]
    pub fn set(&self, scope: &Scope<'_>, value: Option<Local<'_, T>>) {
        self.set_addr(scope, value.map_or(0, |l| l.addr()));
    }

    /// `set` with an address: an object of `scope`'s heap that the caller keeps alive, of
    /// the slot's type (or 0).
    #[inline]
    pub(crate) fn set_addr(&self, scope: &Scope<'_>, new: usize) {
        scope.check_ours(self as *const Slot<T> as usize, "Slot::set");
        self.set_addr_in_heap(scope, new);
    }

    /// `set` for a slot the caller knows lies in `scope`'s heap — an element of a `GcVec`
    /// whose own address was checked, in a backing array that heap allocated — so only the
    /// value is checked.
    #[inline]
    pub(crate) fn set_in_heap(&self, scope: &Scope<'_>, value: Option<Local<'_, T>>) {
        self.set_addr_in_heap(scope, value.map_or(0, |l| l.addr()));
    }

    #[inline]
    fn set_addr_in_heap(&self, scope: &Scope<'_>, new: usize) {
        let heap = scope.heap;
        if new != 0 {
            scope.check_ours(new, "Slot::set (value)");
        }
        if heap.is_marking() {
            self.set_marking(scope, new);
        } else {
            // Release: pairs with the Acquire in `get` (publishes the referent's
            // initialisation to other mutators) and with the stop of the world that starts
            // marking (orders it before the marker's loads).
            self.word.store(new, Ordering::Release);
        }
    }

    /// The barriered store (Go's hybrid barrier; see the crate docs): shade the value
    /// overwritten, and the value stored while this mutator's roots are unscanned.
    #[cold]
    #[inline(never)]
    fn set_marking(&self, scope: &Scope<'_>, new: usize) {
        scope.window_begin();
        // A swap, not a load and a store: with two racing writers each shades exactly the
        // value it removed.
        let old = self.word.swap(new, Ordering::AcqRel);
        scope.barrier(old, new);
        scope.window_end();
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
