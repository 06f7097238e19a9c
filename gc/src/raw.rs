//! Raw `Gc` pointers for `unsafe` embedder code, and opt-in conservative scanning of a
//! mutator's stack and registers.

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::handle::Local;
use crate::mutator::Scope;
use crate::slot::Slot;
use crate::trace::Trace;

/// A raw pointer to a collected object: `Copy`, `Send`, and *not* a root.
///
/// For embedder code (a language VM) that keeps its own roots, or lets the collector find
/// them conservatively on its stack ([`crate::Mutator::set_conservative`]). Making one is
/// safe; everything that dereferences or roots it is `unsafe`: the caller vouches that the
/// object is still alive.
pub struct Gc<T: Trace> {
    ptr: NonNull<T>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Trace> Clone for Gc<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Trace> Copy for Gc<T> {}

// SAFETY: a `Gc` is an address; using it is `unsafe` and subject to the same rules on every
// thread (objects are `Send + Sync`).
unsafe impl<T: Trace> Send for Gc<T> {}
// SAFETY: as above.
unsafe impl<T: Trace> Sync for Gc<T> {}

impl<T: Trace> std::fmt::Debug for Gc<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gc({:p})", self.ptr)
    }
}

impl<T: Trace> Gc<T> {
    /// The object's address.
    pub fn addr(self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The object.
    ///
    /// # Safety
    /// The object must be alive for `'a`: reachable from a root, a handle, a slot of a
    /// live object, or (for a mutator that opted in to conservative scanning) a word of its
    /// stack or registers at every safepoint of `'a`.
    pub unsafe fn as_ref<'a>(self) -> &'a T {
        // SAFETY: the caller's contract; the object is initialised and only shared.
        unsafe { &*self.ptr.as_ptr() }
    }

    /// A handle to the object in `scope`.
    ///
    /// # Safety
    /// The object must be alive now (as for [`Gc::as_ref`]) and belong to `scope`'s heap.
    pub unsafe fn root<'s>(self, scope: &Scope<'s>) -> Local<'s, T> {
        scope.check_ours(self.addr(), "Gc::root");
        scope.window_begin();
        scope.push_handle(self.addr());
        scope.window_end();
        // SAFETY: alive (the caller's contract) and now rooted in `scope`.
        unsafe { Local::from_addr(self.addr()) }
    }
}

impl<T: Trace> Local<'_, T> {
    /// The raw pointer (not a root: keep the handle, or a root, while you use it).
    pub fn as_gc(self) -> Gc<T> {
        Gc {
            // SAFETY: a handle's address is never null.
            ptr: unsafe { NonNull::new_unchecked(self.addr() as *mut T) },
            _t: PhantomData,
        }
    }
}

impl<T: Trace> Slot<T> {
    /// The raw pointer the slot holds (no handle is made; see [`Gc`]).
    pub fn get_gc(&self) -> Option<Gc<T>> {
        let v = self.word.load(std::sync::atomic::Ordering::Acquire);
        NonNull::new(v as *mut T).map(|ptr| Gc {
            ptr,
            _t: PhantomData,
        })
    }

    /// Store a raw pointer (barriered, as [`Slot::set`]).
    ///
    /// # Safety
    /// `value` must be alive now (see [`Gc::as_ref`]).
    ///
    /// # Panics
    /// As [`Slot::set`].
    pub unsafe fn set_gc(&self, scope: &Scope<'_>, value: Option<Gc<T>>) {
        self.set_addr(scope, value.map_or(0, |g| g.addr()));
    }
}

/// A thread's stack: `[lo, hi)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackBounds {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
}

impl StackBounds {
    /// The calling thread's stack.
    pub(crate) fn current() -> Option<StackBounds> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `attr` is initialised by `pthread_getattr_np` before use and destroyed
            // after; the out-pointers are valid locals.
            unsafe {
                let mut attr: libc::pthread_attr_t = std::mem::zeroed();
                if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                    return None;
                }
                let mut addr: *mut libc::c_void = std::ptr::null_mut();
                let mut size: libc::size_t = 0;
                let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
                libc::pthread_attr_destroy(&mut attr);
                if r != 0 {
                    return None;
                }
                Some(StackBounds {
                    lo: addr as usize,
                    hi: addr as usize + size,
                })
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

/// Copy the words of the calling thread's stack from here to its top, after spilling the
/// callee-saved registers onto it, into `out` (the conservative roots of this moment).
#[inline(never)]
pub(crate) fn snapshot_stack(bounds: StackBounds, out: &mut Vec<usize>) {
    let mut regs = [0usize; 12];
    spill_registers(&mut regs);
    out.extend_from_slice(&regs);
    let here = std::hint::black_box(&regs) as *const _ as usize;
    let lo = here.max(bounds.lo) & !7;
    let hi = bounds.hi & !7;
    let mut p = lo;
    while p < hi {
        // SAFETY: `[lo, hi)` lies in this thread's own stack, between this frame and the
        // top: mapped, 8-aligned, and only this thread writes it (the frames above ours do
        // not run while we do). A volatile read: the compiler may not assume anything about
        // these words.
        out.push(unsafe { std::ptr::read_volatile(p as *const usize) });
        p += 8;
    }
}

/// Store the callee-saved registers into `regs` (caller-saved ones were spilled by the
/// callers already, if they held anything live).
#[inline(never)]
fn spill_registers(regs: &mut [usize; 12]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only stores into `regs` (12 words), through a pointer in a register.
    unsafe {
        std::arch::asm!(
            "mov [{p}], rbx",
            "mov [{p} + 8], rbp",
            "mov [{p} + 16], r12",
            "mov [{p} + 24], r13",
            "mov [{p} + 32], r14",
            "mov [{p} + 40], r15",
            p = in(reg) regs.as_mut_ptr(),
            options(nostack, preserves_flags)
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: only stores into `regs` (12 words), through a pointer in a register.
    unsafe {
        std::arch::asm!(
            "stp x19, x20, [{p}]",
            "stp x21, x22, [{p}, #16]",
            "stp x23, x24, [{p}, #32]",
            "stp x25, x26, [{p}, #48]",
            "stp x27, x28, [{p}, #64]",
            "stp x29, x30, [{p}, #80]",
            p = in(reg) regs.as_mut_ptr(),
            options(nostack, preserves_flags)
        );
    }
    std::hint::black_box(regs);
}
