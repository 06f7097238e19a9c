//! `Local`: a handle rooted in its scope's frame of the mutator's handle block.

use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use crate::trace::Trace;

/// A reference to a collected object, rooted for the lifetime `'s` of the [`crate::Scope`]
/// that made it.
///
/// The scope's frame of the mutator's handle block holds the object's address; the collector
/// scans handle blocks as roots, so the object lives at least as long as the handle. `Local`
/// is `Copy`, and can be kept anywhere within the scope — a `Vec<Local<'s, T>>` is fine —
/// but cannot leave it (the scope's closure is generic over `'s`), and cannot cross to
/// another thread (`!Send`, `!Sync`: it belongs to this mutator's handle block).
///
/// It dereferences to `&T`: objects are immutable apart from their [`crate::Slot`]s and
/// whatever `Sync` interior mutability (atomics, locks) their plain data has.
pub struct Local<'s, T: Trace> {
    ptr: NonNull<T>,
    /// Covariant in `'s` (an outer scope's handle may be used in an inner scope), and
    /// `!Send + !Sync` through the raw pointer.
    _s: PhantomData<(&'s (), *const ())>,
}

impl<'s, T: Trace> Local<'s, T> {
    /// # Safety
    /// `addr` must be the address of a `T` that is published and initialised, and rooted in
    /// a handle frame (or root) that lives for `'s`.
    #[inline(always)]
    pub(crate) unsafe fn from_addr(addr: usize) -> Local<'s, T> {
        Local {
            // SAFETY: the caller passes an object address, never zero.
            ptr: unsafe { NonNull::new_unchecked(addr as *mut T) },
            _s: PhantomData,
        }
    }

    /// The object's address (the same for every handle to it: objects never move).
    #[inline(always)]
    pub fn addr(self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Whether two handles refer to the same object.
    #[inline(always)]
    pub fn ptr_eq(self, other: Local<'_, T>) -> bool {
        self.ptr == other.ptr
    }

    /// The object, for all of `'s`.
    #[inline(always)]
    pub fn into_ref(self) -> &'s T {
        // SAFETY: the object is rooted for `'s` (the construction contract), initialised,
        // and only ever shared (no `&mut` to an object exists); `T: Sync`.
        unsafe { &*self.ptr.as_ptr() }
    }
}

impl<T: Trace> Clone for Local<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Trace> Copy for Local<'_, T> {}

impl<T: Trace> Deref for Local<'_, T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: as in `into_ref`.
        unsafe { &*self.ptr.as_ptr() }
    }
}

impl<T: Trace + std::fmt::Debug> std::fmt::Debug for Local<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Local").field(&**self).finish()
    }
}
