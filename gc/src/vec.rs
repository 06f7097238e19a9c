//! `GcVec<T>`: a growable vector of GC pointers living in the heap, with per-element slots.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gort_alloc::Shape;

use crate::handle::Local;
use crate::mutator::Scope;
use crate::slot::Slot;
use crate::trace::{PtrMap, Trace};

/// A growable vector of pointers to `T`s, itself a collected object (allocate it with
/// [`Scope::alloc`], or make it a field of a traced type).
///
/// The elements live in a backing array in the heap, every word of which is a [`Slot`]:
/// reading one roots it in the reader's scope, writing one runs the write barrier, so the
/// marker can scan the array while mutators change it (what a `Vec<Slot<T>>` could not
/// offer: its buffer moves and is written through `&mut`). Growing copies the slots into a
/// new array with a bulk barrier (every copied pointer is shaded while marking). Arrays
/// larger than 128 KiB are scanned in oblets.
///
/// Readers (`get`, `len`) take no lock. Writers that change the length or the backing array
/// (`push`, `pop`, `clear`) serialise on a small lock, spinning at safepoints, and never
/// reach a safepoint while they hold it (a new array is allocated before the lock is
/// taken), so a collection never waits for a lock holder.
pub struct GcVec<T: Trace> {
    /// The backing array: a pointer word (the only one).
    backing: AtomicUsize,
    /// Elements in use. Written under `lock`; read by anyone.
    len: AtomicUsize,
    /// Elements the backing array holds. Written under `lock`.
    cap: AtomicUsize,
    lock: AtomicBool,
    _t: PhantomData<fn() -> T>,
}

// SAFETY: word 0 (`backing`) is a pointer word holding a heap object (or null), written only
// through the barrier below; the other words are integers.
unsafe impl<T: Trace> Trace for GcVec<T> {
    const PTRS: PtrMap = PtrMap::EMPTY.with(std::mem::offset_of!(GcVec<T>, backing), PtrMap::ONE);
}

impl<T: Trace> Default for GcVec<T> {
    fn default() -> Self {
        GcVec::new()
    }
}

impl<T: Trace> std::fmt::Debug for GcVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcVec")
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: Trace> GcVec<T> {
    /// An empty vector (no backing array until the first push).
    pub const fn new() -> GcVec<T> {
        GcVec {
            backing: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            cap: AtomicUsize::new(0),
            lock: AtomicBool::new(false),
            _t: PhantomData,
        }
    }

    /// Elements in use.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot of element `i` of the array at `backing`.
    ///
    /// # Safety
    /// `backing` must be a backing array of this vector with more than `i` elements, kept
    /// alive by the caller (it is reachable from `self`, which the caller's handle roots, or
    /// was, within this no-safepoint window).
    unsafe fn slot_at<'a>(backing: usize, i: usize) -> &'a Slot<T> {
        // SAFETY: the caller's contract; a backing array's words are `Slot`s (all-pointer
        // shape) and `Slot<T>` is one transparent atomic word.
        unsafe { &*((backing + i * 8) as *const Slot<T>) }
    }

    /// Element `i`, rooted in `scope`; `None` when out of range or null.
    pub fn get<'s>(&self, scope: &Scope<'s>, i: usize) -> Option<Local<'s, T>> {
        scope.safepoint();
        // Acquire (both): pairs with the Release stores of `push` / grow, so the array and
        // its elements up to `len` are visible.
        let len = self.len.load(Ordering::Acquire);
        if i >= len {
            return None;
        }
        // The array published with (or after) that length: arrays are replaced only by
        // larger ones, so it holds more than `len > i` slots.
        let b = self.backing.load(Ordering::Acquire);
        // SAFETY: `b` is the current or a replaced backing array longer than `i`; a replaced
        // one stays allocated until a cycle ends, which needs this thread at a safepoint, and
        // there is none between the load above and the read (`get_no_poll`).
        unsafe { Self::slot_at(b, i) }.get_no_poll(scope)
    }

    /// Overwrite element `i` (barriered).
    ///
    /// # Panics
    /// When `i >= len`.
    pub fn set(&self, scope: &Scope<'_>, i: usize, value: Option<Local<'_, T>>) {
        scope.safepoint();
        self.with_lock(scope, |_| {
            let len = self.len.load(Ordering::Relaxed);
            assert!(
                i < len,
                "GcVec::set: index {i} out of range for length {len}"
            );
            let b = self.backing.load(Ordering::Relaxed);
            // SAFETY: under the lock, `b` is the current array, longer than `len > i`. The
            // array is this heap's (`with_lock` checked the vector, and its heap made it).
            unsafe { Self::slot_at(b, i) }.set_in_heap(scope, value);
        });
    }

    /// Append `value`. May allocate a larger array (a safepoint, before the lock).
    ///
    /// # Panics
    /// When the vector does not lie in `scope`'s heap, or `value` belongs to another heap.
    pub fn push(&self, scope: &Scope<'_>, value: Option<Local<'_, T>>) {
        scope.check_ours(self as *const GcVec<T> as usize, "GcVec::push");
        loop {
            let (len, cap) = (self.len(), self.cap.load(Ordering::Acquire));
            let fresh = if len >= cap {
                let ncap = (cap * 2).max(4);
                let Ok(a) = scope.alloc_raw(ncap * 8, Shape::ALL_POINTERS) else {
                    panic!("runtime: out of memory: GcVec of {ncap} elements");
                };
                Some((a, ncap))
            } else {
                None
            };
            let done = self.with_lock(scope, |_| {
                let len = self.len.load(Ordering::Relaxed);
                let cap = self.cap.load(Ordering::Relaxed);
                if len >= cap {
                    let Some((a, ncap)) = fresh else { return false };
                    if ncap <= cap {
                        return false; // another writer grew it; retry
                    }
                    self.grow_into(scope, a, ncap, len);
                }
                let b = self.backing.load(Ordering::Relaxed);
                // SAFETY: under the lock `b` is the current array, longer than `len`.
                unsafe { Self::slot_at(b, len) }.set_in_heap(scope, value);
                // Release: publishes the element (and a new array) to lock-free readers.
                self.len.store(len + 1, Ordering::Release);
                true
            });
            if done {
                return;
            }
        }
    }

    /// Remove and return the last element.
    pub fn pop<'s>(&self, scope: &Scope<'s>) -> Option<Local<'s, T>> {
        scope.safepoint();
        self.with_lock(scope, |_| {
            let len = self.len.load(Ordering::Relaxed);
            if len == 0 {
                return None;
            }
            let b = self.backing.load(Ordering::Relaxed);
            // SAFETY: under the lock `b` is the current array, longer than `len - 1`.
            let slot = unsafe { Self::slot_at(b, len - 1) };
            let v = slot.get_no_poll(scope);
            slot.set_in_heap(scope, None);
            self.len.store(len - 1, Ordering::Release);
            v
        })
    }

    /// Remove every element (the array is kept).
    pub fn clear(&self, scope: &Scope<'_>) {
        scope.safepoint();
        self.with_lock(scope, |_| {
            let len = self.len.load(Ordering::Relaxed);
            let b = self.backing.load(Ordering::Relaxed);
            for i in 0..len {
                // SAFETY: under the lock `b` is the current array, longer than `len`.
                unsafe { Self::slot_at(b, i) }.set_in_heap(scope, None);
            }
            self.len.store(0, Ordering::Release);
        });
    }

    /// Copy the first `len` slots into the new array `a` (rooted by the caller's scope) and
    /// publish it. Under the lock.
    fn grow_into(&self, scope: &Scope<'_>, a: usize, ncap: usize, len: usize) {
        let old = self.backing.load(Ordering::Relaxed);
        let marking = scope.heap.is_marking();
        for i in 0..len {
            // SAFETY: `old` is the current array (under the lock), longer than `len`; `a` is
            // the fresh array of `ncap > len` slots, reachable by no one else yet.
            let (from, to) = unsafe { (Self::slot_at(old, i), Self::slot_at(a, i)) };
            let v = from.word.load(Ordering::Relaxed);
            // A plain copy into an array nobody else can see yet; while marking, the bulk
            // barrier shades each copied pointer (the new array is born black and will not be
            // scanned this cycle).
            to.word.store(v, Ordering::Relaxed);
            if marking && v != 0 {
                scope.window_begin();
                scope.barrier(v, 0);
                scope.window_end();
            }
        }
        // The backing word is a pointer word of this object: the same barrier as a slot.
        // SAFETY: `backing` is an `AtomicUsize` with `Slot`'s layout, inside this object.
        let slot: &Slot<T> = unsafe { &*(&self.backing as *const AtomicUsize as *const Slot<T>) };
        // `a` is a live allocation of this heap, rooted in `scope`'s frame. The array first,
        // its capacity after: whatever happens in between, the capacity never promises more
        // than the array published.
        slot.set_addr(scope, a);
        self.cap.store(ncap, Ordering::Release);
    }

    /// Run `f` holding the writers' lock; spins at safepoints while another writer holds it.
    ///
    /// # Panics
    /// When this vector does not lie in `scope`'s heap (a `GcVec` on the stack or in a Rust
    /// collection cannot hold pointers: nothing would trace them).
    fn with_lock<R>(&self, scope: &Scope<'_>, f: impl FnOnce(()) -> R) -> R {
        scope.check_ours(self as *const GcVec<T> as usize, "GcVec");
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            scope.safepoint();
            std::hint::spin_loop();
        }
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            #[inline]
            fn drop(&mut self) {
                // Release: pairs with the Acquire of the next writer.
                self.0.store(false, Ordering::Release);
            }
        }
        let _u = Unlock(&self.lock);
        f(())
    }
}
