//! `GcCell`: a lock-protected, mutable composite value whose GC pointers (`Member`s) are
//! traced by code, for data a bitmap cannot describe (a `Vec` of pointers, a map).

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::handle::Local;
use crate::mutator::Scope;
use crate::trace::{PtrMap, Trace, TraceFn};

/// Invariant brand of one `GcCell::borrow_mut` call.
type Brand<'gc> = PhantomData<fn(&'gc ()) -> &'gc ()>;

/// A GC pointer inside a [`GcCell`]'s value, branded with the borrow that made it.
///
/// `'gc` is the invariant lifetime of one [`GcCell::borrow_mut`] closure, so a member cannot
/// leave it: not into a variable outside, not into another cell (whose closure has another
/// brand). That is what keeps every non-null member inside some cell's value, where the
/// collector traces it. Outside a borrow only [`Member::null`] exists (`Member<'static, _>`).
pub struct Member<'gc, T: Trace> {
    addr: usize,
    _t: PhantomData<fn() -> T>,
    _brand: Brand<'gc>,
}

impl<T: Trace> Member<'static, T> {
    /// A null member (what a cell's initial value may hold).
    pub const fn null() -> Member<'static, T> {
        Member {
            addr: 0,
            _t: PhantomData,
            _brand: PhantomData,
        }
    }
}

impl<'gc, T: Trace> Member<'gc, T> {
    /// The object's address, or 0.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Whether the member is null.
    pub fn is_null(&self) -> bool {
        self.addr == 0
    }
}

impl<T: Trace> std::fmt::Debug for Member<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Member({:#x})", self.addr)
    }
}

/// The pointers a cell's value holds, reported to the collector.
///
/// # Safety
/// `trace` must call `f` with the address of every non-null [`Member`] the value holds (an
/// omitted one may be freed while reachable). Implement it for your own value types by
/// calling `trace` on each field; it must not panic or block.
pub unsafe trait CellTrace {
    /// Report every member's address.
    fn trace(&self, f: &mut dyn FnMut(usize));
}

// SAFETY: reports its one pointer.
unsafe impl<T: Trace> CellTrace for Member<'_, T> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        if self.addr != 0 {
            f(self.addr)
        }
    }
}

macro_rules! cell_noscan {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: holds no member.
        unsafe impl CellTrace for $t {
            fn trace(&self, _: &mut dyn FnMut(usize)) {}
        }
    )*};
}

cell_noscan!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str
);

// SAFETY: each impl below visits every element (keys and values for maps).
unsafe impl<T: CellTrace> CellTrace for Option<T> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        if let Some(v) = self {
            v.trace(f)
        }
    }
}
// SAFETY: as above.
unsafe impl<T: CellTrace> CellTrace for Box<T> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        (**self).trace(f)
    }
}
// SAFETY: as above.
unsafe impl<T: CellTrace> CellTrace for Vec<T> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        self.iter().for_each(|v| v.trace(f))
    }
}
// SAFETY: as above.
unsafe impl<T: CellTrace> CellTrace for std::collections::VecDeque<T> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        self.iter().for_each(|v| v.trace(f))
    }
}
// SAFETY: as above.
unsafe impl<K: CellTrace, V: CellTrace, S> CellTrace for std::collections::HashMap<K, V, S> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        for (k, v) in self {
            k.trace(f);
            v.trace(f);
        }
    }
}
// SAFETY: as above.
unsafe impl<K: CellTrace, V: CellTrace> CellTrace for std::collections::BTreeMap<K, V> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        for (k, v) in self {
            k.trace(f);
            v.trace(f);
        }
    }
}
// SAFETY: as above.
unsafe impl<A: CellTrace, B: CellTrace> CellTrace for (A, B) {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        self.0.trace(f);
        self.1.trace(f);
    }
}

/// The family of a cell's value: `Value<'gc>` is the value with members branded `'gc`.
///
/// ```
/// use gort_gc::{CellFamily, CellTrace, Member, Trace, Slot};
/// #[derive(Trace)]
/// struct Node { next: Slot<Node>, v: u64 }
/// struct Adjacency<'gc> { edges: Vec<Member<'gc, Node>>, label: String }
/// // SAFETY: reports every member.
/// unsafe impl CellTrace for Adjacency<'_> {
///     fn trace(&self, f: &mut dyn FnMut(usize)) { self.edges.trace(f) }
/// }
/// struct AdjacencyF;
/// impl CellFamily for AdjacencyF { type Value<'gc> = Adjacency<'gc>; }
/// ```
pub trait CellFamily: 'static {
    /// The value, with members of brand `'gc`.
    type Value<'gc>: CellTrace + Send;
}

/// A mutable value in the heap, behind a lock, whose pointers are [`Member`]s traced by code.
///
/// Allocate it on its own (`scope.alloc(GcCell::new(value))`) and refer to it through a
/// [`crate::Slot`] or a handle: it cannot be a field of another traced type (a compile
/// error). Change it with [`GcCell::borrow_mut`], which takes the scope by `&mut` — nothing
/// under the borrow can allocate or reach a safepoint — and is a window a suspension must
/// not split. While marking, a borrow shades every member the value holds on entry (the
/// deletion half of the barrier, for the whole value) and re-greys the cell's object on
/// release (the insertion half: the marker scans the new value again). The marker takes the
/// lock with a try-lock and re-queues the cell rather than wait.
///
/// Members cannot leave the borrow that made them (the brand), so none survives in a place
/// the collector does not trace:
///
/// ```compile_fail
/// use gort_gc::{CellFamily, CellTrace, Config, GcCell, Heap, Member, Slot, Trace};
/// #[derive(Trace)]
/// struct Node { next: Slot<Node> }
/// struct One<'gc>(Member<'gc, Node>);
/// // SAFETY: reports its member.
/// unsafe impl CellTrace for One<'_> {
///     fn trace(&self, f: &mut dyn FnMut(usize)) { self.0.trace(f) }
/// }
/// struct OneF;
/// impl CellFamily for OneF { type Value<'gc> = One<'gc>; }
/// let heap = Heap::new(Config::default()).unwrap();
/// let mut m = heap.attach().unwrap();
/// m.scope(|s| {
///     let cell = s.alloc(GcCell::<OneF>::new(One(Member::null())));
///     let mut stolen = None;
///     cell.borrow_mut(s, |v, _| stolen = Some(std::mem::replace(&mut v.0, Member::null())));
/// });
/// ```
pub struct GcCell<F: CellFamily> {
    lock: AtomicBool,
    value: UnsafeCell<F::Value<'static>>,
}

// SAFETY: the value is only touched under `lock` (by one mutator's borrow, or the marker's
// try-lock), so sharing the cell is sharing a mutex; the value is `Send`.
unsafe impl<F: CellFamily> Sync for GcCell<F> {}
// SAFETY: as above.
unsafe impl<F: CellFamily> Send for GcCell<F> {}

impl<F: CellFamily> std::fmt::Debug for GcCell<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcCell")
            .field("locked", &self.lock.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CellCx<'_, '_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellCx").finish_non_exhaustive()
    }
}

impl<F: CellFamily> GcCell<F> {
    /// A cell holding `value` (whose members can only be null: `Member::null`).
    pub fn new(value: F::Value<'static>) -> GcCell<F> {
        GcCell {
            lock: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The collector's side: trace the value if the lock is free.
    ///
    /// # Safety
    /// `payload` must be the address of a live `GcCell<F>`.
    unsafe fn trace_raw(payload: usize, f: &mut dyn FnMut(usize)) -> bool {
        // SAFETY: the caller's contract.
        let cell = unsafe { &*(payload as *const GcCell<F>) };
        // Acquire: pairs with the Release of the last borrow, whose writes we read.
        if cell
            .lock
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: we hold the lock; the value is only read here.
        unsafe { &*cell.value.get() }.trace(f);
        cell.lock.store(false, Ordering::Release);
        true
    }

    /// Borrow the value mutably for `f`, which receives it with a fresh brand and a context
    /// to turn handles into members and members into handles.
    ///
    /// Waits (at safepoints) while another mutator holds the cell.
    pub fn borrow_mut<'s, R>(
        &self,
        scope: &mut Scope<'s>,
        f: impl for<'gc> FnOnce(&mut F::Value<'gc>, &CellCx<'_, 's, 'gc>) -> R,
    ) -> R {
        // Before the lock: a panic here must leave the cell unlocked.
        let me = self as *const GcCell<F> as usize;
        scope.check_ours(me, "GcCell::borrow_mut");
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            scope.safepoint();
            std::hint::spin_loop();
        }
        struct Release<'a, 's, F: CellFamily> {
            cell: &'a GcCell<F>,
            scope: &'a Scope<'s>,
            me: usize,
        }
        impl<F: CellFamily> Drop for Release<'_, '_, F> {
            fn drop(&mut self) {
                if self.scope.heap.is_marking() {
                    // Insertion half: scan the (new) value again this cycle.
                    self.scope.regrey(self.me);
                }
                self.scope.window_end();
                // Release: publishes the value's writes to the next holder.
                self.cell.lock.store(false, Ordering::Release);
            }
        }
        let scope: &Scope<'s> = scope;
        scope.window_begin();
        let _release = Release {
            cell: self,
            scope,
            me,
        };
        // SAFETY: we hold the lock, so nobody else reads or writes the value until the
        // release; the brand is erased to a fresh one, which is what the value's members were
        // made with (`'static` only for nulls).
        let value: &mut F::Value<'_> = unsafe { &mut *self.value.get() };
        if scope.heap.is_marking() {
            // Deletion half: whatever the value holds now may be dropped under the borrow.
            value.trace(&mut |v| scope.barrier(v, 0));
        }
        let cx = CellCx {
            scope,
            _brand: PhantomData,
        };
        f(value, &cx)
    }
}

/// What a [`GcCell::borrow_mut`] closure gets besides the value: members from handles and
/// handles from members.
pub struct CellCx<'a, 's, 'gc> {
    scope: &'a Scope<'s>,
    _brand: Brand<'gc>,
}

impl<'s, 'gc> CellCx<'_, 's, 'gc> {
    /// A member for `local` (of this heap), to store in the value.
    ///
    /// # Panics
    /// When `local` belongs to another heap.
    pub fn member<T: Trace>(&self, local: Local<'_, T>) -> Member<'gc, T> {
        self.scope.check_ours(local.addr(), "CellCx::member");
        Member {
            addr: local.addr(),
            _t: PhantomData,
            _brand: PhantomData,
        }
    }

    /// A null member.
    pub fn null<T: Trace>(&self) -> Member<'gc, T> {
        Member {
            addr: 0,
            _t: PhantomData,
            _brand: PhantomData,
        }
    }

    /// The object `m` points to, rooted in the borrowing scope.
    pub fn get<T: Trace>(&self, m: &Member<'gc, T>) -> Option<Local<'s, T>> {
        if m.addr == 0 {
            return None;
        }
        self.scope.push_handle(m.addr);
        // SAFETY: a non-null member of this brand was made by `member` from a handle of this
        // heap and has lived only in this cell's value (the brand keeps it there), which the
        // collector traces; the handle just pushed roots it for `'s`.
        Some(unsafe { Local::from_addr(m.addr) })
    }
}

// SAFETY: a cell's pointers are traced by code (`TRACE`), not by a map; the opaque map keeps
// it from being a field whose tracing nobody would run.
unsafe impl<F: CellFamily> Trace for GcCell<F>
where
    GcCell<F>: Send + Sync,
{
    const PTRS: PtrMap = PtrMap::OPAQUE;
    const TRACE: Option<TraceFn> = Some(GcCell::<F>::trace_raw);
}
