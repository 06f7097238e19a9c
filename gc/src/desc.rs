//! How a traced type is laid out in the heap: its allocation shape and, for types with drop
//! glue, the header word naming their destructor.

use std::marker::PhantomData;

use gort_alloc::{Ptrs, Shape};

use crate::trace::{PtrMap, Trace};

/// What the finalizer thread needs to destroy a dead object: written as the header word of
/// objects whose type has drop glue (the only objects that carry a header).
#[derive(Debug)]
pub(crate) struct TypeDesc {
    /// Runs the drop glue of the payload at the given address.
    pub(crate) drop: unsafe fn(*mut u8),
    /// The type's name, for diagnostics.
    pub(crate) name: fn() -> &'static str,
    /// Traces objects of types traced by code (see `Trace::TRACE`).
    pub(crate) trace: Option<crate::trace::TraceFn>,
}

/// # Safety
/// `p` must point to a valid, initialised `T` that nothing uses afterwards.
unsafe fn drop_erased<T>(p: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::drop_in_place(p as *mut T) }
}

/// Per-type constants, computed once at compile time.
pub(crate) struct Desc<T>(PhantomData<T>);

impl<T: Trace> Desc<T> {
    /// Objects are 8-aligned (16 for sizes that are multiples of 16, but not behind a header).
    const CHECK: () = assert!(
        std::mem::align_of::<T>() <= 8,
        "gort-gc: a traced type's alignment must be at most 8 bytes"
    );

    /// The pointer map as a `'static` reference (the allocator keeps a slice of it).
    pub(crate) const PTRS: &'static PtrMap = &T::PTRS;

    /// The words of the map that hold pointer bits, computed at compile time (the map's
    /// methods loop over all of its words; nothing of that may run per allocation).
    pub(crate) const BITMAP: &'static [u64] = Self::PTRS.bitmap();

    /// Whether objects have pointer words the allocator must record (not noscan, not a
    /// type traced by code).
    pub(crate) const HAS_PTRS: bool = !Self::BITMAP.is_empty();

    /// Whether the type has drop glue (then objects carry a header and are finalized).
    pub(crate) const FINALIZE: bool = std::mem::needs_drop::<T>();

    /// The destructor record named by the header of such objects.
    pub(crate) const DESC: &'static TypeDesc = &TypeDesc {
        drop: drop_erased::<T>,
        name: std::any::type_name::<T>,
        trace: T::TRACE,
    };

    /// Whether objects carry a header: drop glue, or tracing by code.
    pub(crate) const HEADER: bool = Self::FINALIZE || T::TRACE.is_some();

    /// The shape to allocate a `T` with.
    #[inline(always)]
    pub(crate) fn shape() -> Shape<'static> {
        #[allow(clippy::let_unit_value)]
        let () = Self::CHECK;
        let ptrs = if Self::HAS_PTRS {
            Ptrs::Bitmap(Self::BITMAP)
        } else {
            Ptrs::None
        };
        Shape {
            ptrs,
            header: if Self::HEADER {
                Some(Self::DESC as *const TypeDesc as usize)
            } else {
                None
            },
            finalize: Self::FINALIZE,
        }
    }

    /// Bytes from the object's base to the `T` (the header, when there is one).
    pub(crate) const PAYLOAD_OFFSET: usize = if Self::HEADER { 8 } else { 0 };
}
