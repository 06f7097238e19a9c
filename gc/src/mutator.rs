//! Attached mutators: `Mutator` (an OS thread's attachment), `Scope` (the mutation token and
//! a frame of handles), safepoints, blocking regions and the write barrier's buffer.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence};

use gort_alloc::{AllocError, Cache};

use crate::desc::Desc;
use crate::handle::Local;
use crate::heap::{Heap, HeapShared};
use crate::trace::Trace;
use crate::world::{POLL_SCAN, POLL_STOP};

/// Entries of a mutator's write-barrier buffer before it is flushed into the marker.
const WBUF_LEN: usize = 256;

/// Bytes a mutator allocates between two looks at the collection trigger.
const TRIGGER_CHECK_BYTES: usize = 64 * 1024;

/// Scan work a mutator may owe before it assists (so an assist is worth its trip to the
/// grey pool).
const ASSIST_MIN: i64 = 64 * 1024;

/// One attached mutator, as the collector sees it.
pub(crate) struct MutatorShared {
    /// `world.rs`'s state word: written by this mutator's thread (leaving `RUNNING` /
    /// `PARKED`, CAS out of `BLOCKING`) and by the collector (`BLOCKING` <-> `HELD`).
    pub(crate) state: crate::loom::AtomicU32,
    /// The mark cycle whose roots were last scanned. Written by whoever owns `local` (the
    /// mutator while running, the collector while holding it); read by the barrier.
    pub(crate) scanned: AtomicU64,
    /// Nonzero while the mutator is between loading a pointer and rooting it, or appending
    /// to its barrier buffer (plain stores and compiler fences): a suspend-signal handler
    /// defers while it is set. Written by the mutator's thread only.
    pub(crate) busy: AtomicU32,
    /// The attaching thread's name (or id), for diagnostics.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) name: String,
    /// The mutator's private parts. Touched by its own thread while it is `RUNNING`, by the
    /// collector while it is `HELD` (or `PARKED` in a stopped world); every hand-off goes
    /// through the state word with Release / Acquire.
    pub(crate) local: UnsafeCell<MutatorLocal>,
}

// SAFETY: `local` is accessed by one party at a time as described on the field (the state
// word's CAS hands it over with Release / Acquire); the rest is atomics.
unsafe impl Sync for MutatorShared {}
// SAFETY: as above; the cache is `Send`.
unsafe impl Send for MutatorShared {}

/// A mutator's private state: standalone, each attached thread is both a mutator and a
/// processor.
pub(crate) struct MutatorLocal {
    pub(crate) roots: crate::embedder::MutatorRoots,
    pub(crate) p: crate::embedder::PState,
    /// The arena number (address / arena size) last found to belong to this heap: the
    /// ownership check of a slot or a handle that lies in it skips the arena index (arenas
    /// are never given back before the heap is dropped). `usize::MAX`: none yet.
    pub(crate) arena_ok: usize,
}

impl MutatorShared {
    pub(crate) fn new(cache: Option<Cache>, scanned: u64) -> MutatorShared {
        MutatorShared {
            state: crate::loom::AtomicU32::new(crate::world::BLOCKING),
            scanned: AtomicU64::new(scanned),
            busy: AtomicU32::new(0),
            name: {
                let t = std::thread::current();
                t.name()
                    .map_or_else(|| format!("{:?}", t.id()), |n| format!("`{n}`"))
            },
            local: UnsafeCell::new(MutatorLocal {
                roots: crate::embedder::MutatorRoots::default(),
                p: crate::embedder::PState {
                    cache,
                    wbuf: Vec::with_capacity(WBUF_LEN),
                    ..Default::default()
                },
                arena_ok: usize::MAX,
            }),
        }
    }
}

thread_local! {
    /// Heaps this thread is attached to, and how many of their scopes are open here
    /// (`const`-initialised: no lazy initialisation, nothing a signal handler could trip on).
    static ATTACHED: std::cell::RefCell<Vec<(usize, usize)>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// Whether this thread is inside a scope of the heap with id `heap`.
pub(crate) fn in_scope_of(heap: usize) -> bool {
    ATTACHED.with(|a| a.borrow().iter().any(|&(h, n)| h == heap && n > 0))
}

fn scope_depth_add(heap: usize, d: isize) {
    ATTACHED.with(|a| {
        if let Some(e) = a.borrow_mut().iter_mut().find(|e| e.0 == heap) {
            e.1 = e.1.wrapping_add_signed(d);
        }
    })
}

/// This OS thread, attached to a heap as a mutator.
///
/// Made by [`Heap::attach`]; detaches when dropped. `!Send`: it stands for this thread. Work
/// with the heap happens in [`Mutator::scope`]; between scopes the thread counts as blocked,
/// so a thread that holds a `Mutator` but does other work never holds up a collection.
pub struct Mutator {
    heap: Heap,
    shared: crate::loom::Arc<MutatorShared>,
    _not_send: PhantomData<*mut ()>,
}

impl std::fmt::Debug for Mutator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutator").finish_non_exhaustive()
    }
}

impl Mutator {
    pub(crate) fn attach(heap: &Heap) -> Result<Mutator, crate::GcError> {
        let id = heap.shared.id();
        let dup = ATTACHED.with(|a| {
            let mut a = a.borrow_mut();
            if a.iter().any(|e| e.0 == id) {
                true
            } else {
                a.push((id, 0));
                false
            }
        });
        if dup {
            return Err(crate::GcError::AlreadyAttached);
        }
        let shared = heap.shared.register_mutator();
        Ok(Mutator {
            heap: heap.clone(),
            shared,
            _not_send: PhantomData,
        })
    }

    /// The heap this mutator is attached to.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// Opt in (or out) of conservative scanning: every word of this thread's stack, and its
    /// callee-saved registers, at each safepoint and blocking-region entry, is treated as a
    /// possible pointer (interior pointers included, resolved through the allocator), so raw
    /// [`crate::Gc`] pointers held there keep their objects alive. Handles stay precise.
    /// Costs a copy of the stack at every blocking-region entry and a scan of it per cycle.
    ///
    /// # Errors
    /// When the thread's stack bounds cannot be found (not Linux).
    pub fn set_conservative(&mut self, on: bool) -> Result<(), crate::GcError> {
        let bounds = if on {
            Some(crate::raw::StackBounds::current().ok_or_else(|| {
                crate::GcError::BadSetting(
                    "conservative scanning: this thread's stack bounds are unknown on this \
                     platform"
                        .into(),
                )
            })?)
        } else {
            None
        };
        let world = &self.heap.shared.world;
        // Own `local`: the collector may hold a blocked mutator to scan it.
        world.leave_blocking(&self.shared);
        // SAFETY: RUNNING: only this thread touches `local` (see `MutatorShared::local`).
        let l = unsafe { &mut *self.shared.local.get() };
        l.roots.stack = bounds;
        l.roots.stack_words.clear();
        if let Some(b) = bounds {
            crate::raw::snapshot_stack(b, &mut l.roots.stack_words);
        }
        world.enter_blocking(&self.shared);
        Ok(())
    }

    /// Run `f` with a fresh scope: the mutation token every heap access takes, and the frame
    /// its handles live in. Handles cannot leave `f`.
    ///
    /// Entering waits while the world is stopped; inside, the thread must reach a safepoint
    /// now and then (every allocation is one; [`Scope::safepoint`] for long loops) and must
    /// not block without [`Scope::blocking`] — the collector cannot stop the world while
    /// this thread neither polls nor says it is blocked.
    pub fn scope<R>(&mut self, f: impl for<'s> FnOnce(&mut Scope<'s>) -> R) -> R {
        let heap = &*self.heap.shared;
        heap.world.leave_blocking(&self.shared);
        scope_depth_add(heap.id(), 1);
        let mut s = Scope {
            heap,
            m: &self.shared,
            base: 0,
            outermost: true,
            _not_send: PhantomData,
        };
        s.safepoint();
        f(&mut s)
    }
}

impl Drop for Mutator {
    fn drop(&mut self) {
        let heap = &*self.heap.shared;
        heap.unregister_mutator(&self.shared);
        let id = heap.id();
        ATTACHED.with(|a| a.borrow_mut().retain(|e| e.0 != id));
    }
}

/// The mutation token of an attached mutator, and a frame of its handle block.
///
/// Every read or write of a [`crate::Slot`] takes a `&Scope` of the slot's heap; the scope is
/// `!Send + !Sync`, so only the attached thread can use it. Handles ([`Local`]) made through
/// it live until it ends. Nest scopes with [`Scope::scope`] to release handles early in a
/// long loop.
pub struct Scope<'s> {
    pub(crate) heap: &'s HeapShared,
    pub(crate) m: &'s MutatorShared,
    /// Length of the handle block when this scope began.
    base: usize,
    outermost: bool,
    _not_send: PhantomData<*mut ()>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").field("base", &self.base).finish()
    }
}

impl Drop for Scope<'_> {
    /// Inlined: a nested scope ends at every level of a recursive walk (binary-trees ends
    /// one per node), and its end is one store.
    #[inline]
    fn drop(&mut self) {
        self.with_local(|l| l.roots.handles.truncate(self.base));
        if self.outermost {
            self.end_outermost();
        }
    }
}

impl Scope<'_> {
    /// The end of a mutator's outermost scope: the thread becomes a blocking region.
    #[cold]
    #[inline(never)]
    fn end_outermost(&self) {
        self.prepare_to_block();
        self.heap.world.enter_blocking(self.m);
        scope_depth_add(self.heap.id(), -1);
    }
}

impl<'s> Scope<'s> {
    /// The mutator's private state. Only the owning thread, while `RUNNING`, calls this, and
    /// no caller holds the reference across another call into the scope.
    #[inline(always)]
    pub(crate) fn with_local<R>(&self, f: impl FnOnce(&mut MutatorLocal) -> R) -> R {
        // SAFETY: this scope exists only on the mutator's own thread (`!Send`), between
        // `leave_blocking` and `enter_blocking`, i.e. while it is RUNNING: the collector
        // touches `local` only while it holds the mutator (HELD) or the world is stopped
        // with the mutator PARKED, never while it runs. `f` does not re-enter the scope.
        f(unsafe { &mut *self.m.local.get() })
    }

    /// Begin a window a suspend-signal handler must not interrupt (a loaded pointer not yet
    /// rooted, a barrier-buffer append).
    #[inline(always)]
    pub(crate) fn window_begin(&self) {
        self.m.busy.store(1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    }

    #[inline(always)]
    pub(crate) fn window_end(&self) {
        compiler_fence(Ordering::SeqCst);
        self.m.busy.store(0, Ordering::Relaxed);
    }

    /// Put the object holding `payload` back on the grey list (it changed after the marker
    /// may have scanned it). Called while marking, inside a window.
    pub(crate) fn regrey(&self, payload: usize) {
        let heap = self.heap;
        let Some(o) = heap.alloc.find_object(payload) else {
            return;
        };
        o.mark();
        let base = o.addr();
        self.with_local(|l| l.p.grey.push(base));
    }

    /// Panic unless `addr` lies in this scope's heap (a slot, or an object a handle refers
    /// to): one compare when it lies in the arena checked last.
    #[inline(always)]
    pub(crate) fn check_ours(&self, addr: usize, what: &str) {
        let arena = addr / gort_alloc::ARENA_BYTES;
        if self.with_local(|l| l.arena_ok) != arena {
            self.check_ours_slow(addr, arena, what);
        }
    }

    #[cold]
    #[inline(never)]
    fn check_ours_slow(&self, addr: usize, arena: usize, what: &str) {
        self.heap.check_ours(addr, what);
        if addr != gort_alloc::zero_size_addr().as_ptr() as usize {
            self.with_local(|l| l.arena_ok = arena);
        }
    }

    /// Root `addr` in this frame. Called inside a window.
    #[inline(always)]
    pub(crate) fn push_handle(&self, addr: usize) {
        self.with_local(|l| l.roots.handles.push(addr));
    }

    /// A safepoint: the collector may stop the world or ask for this mutator's roots here.
    /// Call it in long loops that do not allocate. Costs one load and a branch when nothing
    /// is asked.
    #[inline(always)]
    pub fn safepoint(&self) {
        // Relaxed: a request seen late is seen at the next poll; what the collector wrote
        // before the request is acquired by the slow path's locks.
        if self.heap.world.poll.load(Ordering::Relaxed) != 0 {
            self.safepoint_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn safepoint_slow(&self) {
        let poll = self.heap.world.poll.load(Ordering::Acquire);
        if poll & POLL_SCAN != 0 {
            self.scan_self();
        }
        if poll & POLL_STOP != 0 {
            self.flush_for_stop();
            self.heap.world.park(self.m);
            // The world may have started marking meanwhile: scan now rather than at the
            // next poll.
            if self.heap.world.poll.load(Ordering::Acquire) & POLL_SCAN != 0 {
                self.scan_self();
            }
        }
    }

    /// Scan this mutator's roots for the current cycle, if marking and not done yet.
    #[inline(never)]
    fn scan_self(&self) {
        let heap = self.heap;
        let cycle = heap.cycle.load(Ordering::Acquire);
        if !heap.is_marking() || self.m.scanned.load(Ordering::Relaxed) == cycle {
            return;
        }
        self.with_local(|l| {
            if let Some(b) = l.roots.stack {
                // This very moment's stack and registers (we are at a safepoint).
                l.roots.stack_words.clear();
                crate::raw::snapshot_stack(b, &mut l.roots.stack_words);
            }
            heap.scan_mutator_roots(&l.roots)
        });
        self.m.scanned.store(cycle, Ordering::Relaxed);
        heap.mutator_scanned();
    }

    /// Flush the barrier buffer and hand grey work to the pool (before parking or blocking,
    /// so a stopped world sees every grey object).
    fn flush_for_stop(&self) {
        let heap = self.heap;
        self.with_local(|l| heap.flush_barrier(&mut l.p, true));
    }

    /// Before entering a blocking region: flush, and for a conservative mutator record the
    /// stack and registers the collector will scan while it is blocked.
    #[inline(never)]
    fn prepare_to_block(&self) {
        self.flush_for_stop();
        self.with_local(|l| {
            if let Some(b) = l.roots.stack {
                l.roots.stack_words.clear();
                crate::raw::snapshot_stack(b, &mut l.roots.stack_words);
            }
        });
    }

    /// Append to the barrier buffer the object(s) a pointer store must shade: `old` always
    /// (the deletion half), `new` while this mutator's roots are not yet scanned (the
    /// insertion half). Called while marking, inside a window.
    #[inline]
    pub(crate) fn barrier(&self, old: usize, new: usize) {
        let grey_stack =
            self.m.scanned.load(Ordering::Relaxed) != self.heap.cycle.load(Ordering::Relaxed);
        let heap = self.heap;
        self.with_local(|l| {
            if old != 0 {
                l.p.wbuf.push(old);
            }
            if grey_stack && new != 0 {
                l.p.wbuf.push(new);
            }
            if l.p.wbuf.len() >= WBUF_LEN - 1 {
                heap.flush_barrier(&mut l.p, false);
            }
        });
    }

    /// Allocate `value` in the heap and root it in this scope. A safepoint.
    ///
    /// # Panics
    /// When the heap cannot grow (see [`Scope::try_alloc`] for the error instead).
    #[inline]
    pub fn alloc<T: Trace>(&self, value: T) -> Local<'s, T> {
        match self.try_alloc(value) {
            Ok(l) => l,
            Err(e) => alloc_failed(e),
        }
    }

    /// Allocate `value` in the heap and root it in this scope, or say why the heap could not
    /// grow (the value is dropped then). A safepoint.
    #[inline]
    pub fn try_alloc<T: Trace>(&self, value: T) -> Result<Local<'s, T>, AllocError> {
        let init = |addr: usize| {
            // SAFETY: `addr` is the payload of the new object: `size_of::<T>()` zeroed
            // bytes, aligned for `T` (`Desc::CHECK`: alignment <= 8), that nobody else can
            // reach yet (see `alloc_object`).
            unsafe { std::ptr::write(addr as *mut T, value) }
        };
        // SAFETY: `init` writes a whole `T` over the zeroed object.
        let addr = unsafe { self.alloc_object::<T>(init)? };
        if Desc::<T>::HAS_PTRS && self.heap.is_marking() && may_point(addr, Desc::<T>::BITMAP) {
            // Born black, so never scanned: shade what it already points to.
            self.shade_initial(addr, Desc::<T>::BITMAP);
        }
        self.after_alloc(std::mem::size_of::<T>());
        // SAFETY: `addr` holds an initialised `T`, published by the allocator, and is rooted
        // in this scope's frame (pushed by `alloc_object`) for `'s`.
        Ok(unsafe { Local::from_addr(addr) })
    }

    /// Allocate a `T` whose bytes are all zero — Go's `new(T)` — and root it in this scope.
    /// No value is built on the stack and copied in, so a large array costs one pass of
    /// zeroing (none on pages fresh from the OS) instead of three. A safepoint.
    ///
    /// `T` is `bytemuck::Zeroable` (derive it, or use arrays and integers; a null [`Slot`]
    /// is all zeros too).
    ///
    /// # Panics
    /// When the heap cannot grow (see [`Scope::try_alloc_zeroed`] for the error instead).
    ///
    /// [`Slot`]: crate::Slot
    #[inline]
    pub fn alloc_zeroed<T: Trace + bytemuck::Zeroable>(&self) -> Local<'s, T> {
        match self.try_alloc_zeroed() {
            Ok(l) => l,
            Err(e) => alloc_failed(e),
        }
    }

    /// [`Scope::alloc_zeroed`], or say why the heap could not grow.
    #[inline]
    pub fn try_alloc_zeroed<T: Trace + bytemuck::Zeroable>(
        &self,
    ) -> Result<Local<'s, T>, AllocError> {
        // SAFETY: the allocator's zeroed bytes are a valid `T` (`Zeroable`'s contract), so
        // there is nothing to write; and with every pointer word null there is nothing to
        // shade either.
        let addr = unsafe { self.alloc_object::<T>(|_| {})? };
        self.after_alloc(std::mem::size_of::<T>());
        // SAFETY: as in `try_alloc`.
        Ok(unsafe { Local::from_addr(addr) })
    }

    /// Allocate a zeroed object laid out for `T`, let `init` fill its payload (given its
    /// address), and root it in this scope's frame; returns the payload's address. A
    /// safepoint. The caller runs the pacing (`after_alloc`) and, for an object holding
    /// pointers while marking, shades them (it is born black).
    ///
    /// # Safety
    /// When `init` returns, the payload must hold a valid `T`: `init` writes one, or the
    /// all-zero bytes already are one. `init` must not reach the scope.
    #[inline(always)]
    unsafe fn alloc_object<T: Trace>(&self, init: impl FnOnce(usize)) -> Result<usize, AllocError> {
        self.safepoint();
        if T::TRACE.is_some() && !crate::mark::CELLS.load(Ordering::Relaxed) {
            // Before the object exists: a marker that could reach it tests headers.
            crate::mark::CELLS.store(true, Ordering::SeqCst);
        }
        let shape = Desc::<T>::shape();
        let size = std::mem::size_of::<T>();
        self.window_begin();
        let r = self.with_local(|l| {
            let cache =
                l.p.cache
                    .as_mut()
                    .expect("runtime: mutator without a cache");
            let p = cache.alloc(size, shape)?;
            let addr = p.as_ptr() as usize + Desc::<T>::PAYLOAD_OFFSET;
            // The allocator returned `size` (+ header) zeroed bytes that nobody else can
            // reach yet: no handle or slot holds the address, and an object allocated while
            // marking is born marked, so no marker scans it.
            init(addr);
            l.roots.handles.push(addr);
            l.p.since_check += size;
            Ok(addr)
        });
        self.window_end();
        r
    }

    /// Pacing after an allocation of `size` bytes: count it toward the trigger every 64 KiB,
    /// and while marking pay for it with scan work (a mark assist) once the debt is large
    /// enough to be worth a trip to the grey pool.
    #[inline(always)]
    fn after_alloc(&self, size: usize) {
        let heap = self.heap;
        let (check, debt) = self.with_local(|l| {
            let mut debt = 0;
            if heap.is_marking() {
                let ratio = f64::from_bits(heap.assist_ratio.load(Ordering::Relaxed));
                l.roots.assist_credit -= (size as f64 * ratio) as i64;
                if l.roots.assist_credit < -ASSIST_MIN {
                    debt = (-l.roots.assist_credit) as u64;
                }
            }
            (l.p.since_check >= TRIGGER_CHECK_BYTES, debt)
        });
        if check {
            self.count_allocation();
        }
        if debt > 0 {
            self.pay_assist(debt);
        }
    }

    /// Pay `debt` bytes of scan work. When the grey pool is momentarily empty while others
    /// still mark, wait for work rather than allocate on; when nothing is left to mark but
    /// the heap is over its goal, wait for the collector to end the mark (Go's assists park
    /// on its assist queue): the heap must not outrun the collector. Both waits are
    /// blocking regions, so the collector can stop the world without this thread. Stops
    /// when paid, when marking ends, or when the debt is forgiven (`HeapShared::assist`).
    #[cold]
    #[inline(never)]
    fn pay_assist(&self, mut debt: u64) {
        let heap = self.heap;
        loop {
            // Our own barrier buffer and grey objects first: they are work too, and the
            // pool looks empty without them.
            self.flush_for_stop();
            let done = heap.assist(debt);
            self.with_local(|l| l.roots.assist_credit += done as i64);
            debt = debt.saturating_sub(done);
            if debt < ASSIST_MIN as u64
                || !heap.is_marking()
                || heap.limiter_on.load(Ordering::Relaxed)
            {
                return;
            }
            // Woken by a queued buffer, by the last busy marker going idle, or by the end of
            // marking; the loop re-checks what changed.
            self.wait_blocked(true, |done, has_work| {
                has_work || !heap.is_marking() || (done && !heap.over_goal())
            });
        }
    }

    #[cold]
    fn count_allocation(&self) {
        let heap = self.heap;
        let n = self.with_local(|l| std::mem::take(&mut l.p.since_check));
        heap.allocated.fetch_add(n as u64, Ordering::Relaxed);
        heap.maybe_trigger();
        if heap.over_goal() {
            if heap.is_marking() {
                // Past the goal while marking: pay now, whatever the assist ratio (the
                // collector refreshes it only as often as it runs), or wait for the end.
                self.pay_assist(ASSIST_MIN as u64);
            } else if heap.trigger_sent.load(Ordering::Relaxed) {
                self.wait_for_mark_start();
            }
        }
    }

    /// The heap reached its next goal before the cycle its trigger asked for has begun
    /// marking (the collector thread is finishing the last sweep, or waits for a CPU): help
    /// with that sweep, then wait for marking to start rather than run further ahead.
    #[cold]
    #[inline(never)]
    fn wait_for_mark_start(&self) {
        let heap = self.heap;
        while !heap.is_marking() && heap.alloc.sweep_one() {}
        let held_back =
            || heap.trigger_sent.load(Ordering::Relaxed) && !heap.is_marking() && heap.over_goal();
        while held_back() {
            self.wait_blocked(false, |_, _| !held_back());
        }
    }

    /// Wait in the grey pool (`WorkPool::wait_until`, at most 1 ms a time) as a blocking
    /// region: flushed, roots frozen, so a stop of the world or a scan of this mutator's
    /// roots proceeds without it. Then a safepoint.
    #[cold]
    fn wait_blocked(&self, want_work: bool, ready: impl Fn(bool, bool) -> bool) {
        let heap = self.heap;
        self.prepare_to_block();
        heap.world.enter_blocking(self.m);
        scope_depth_add(heap.id(), -1);
        heap.pool
            .wait_until(want_work, std::time::Duration::from_millis(1), ready);
        heap.world.leave_blocking(self.m);
        scope_depth_add(heap.id(), 1);
        self.safepoint();
    }

    /// Allocate `size` zeroed bytes laid out as `shape` (a GC-heap collection's backing
    /// store), rooted in this scope's frame; returns the address. A safepoint. The caller
    /// initialises it before storing it anywhere; while marking it is born black, and the
    /// caller shades whatever it copies into it.
    pub(crate) fn alloc_raw(
        &self,
        size: usize,
        shape: gort_alloc::Shape<'_>,
    ) -> Result<usize, AllocError> {
        self.safepoint();
        self.window_begin();
        let r = self.with_local(|l| {
            let cache =
                l.p.cache
                    .as_mut()
                    .expect("runtime: mutator without a cache");
            let addr = cache.alloc(size, shape)?.as_ptr() as usize;
            l.roots.handles.push(addr);
            l.p.since_check += size;
            Ok(addr)
        });
        self.window_end();
        if r.is_ok() {
            self.after_alloc(size);
        }
        r
    }

    /// Shade the referents of a new object (pointer words `bitmap`) at `addr`.
    #[cold]
    fn shade_initial(&self, addr: usize, bitmap: &[u64]) {
        self.window_begin();
        for (k, &word) in bitmap.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let w = k * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // SAFETY: word `w` of the new `T` is a `Slot` (the `Trace` contract), inside
                // the object we just initialised and rooted.
                let v = unsafe { crate::mark::load_slot(addr + w * 8) };
                if v != 0 {
                    self.barrier(v, 0);
                }
            }
        }
        self.window_end();
    }

    /// Run `f` with a nested scope whose handles are released when it returns. Handles of
    /// this scope stay usable inside it.
    // Always inlined: a recursive walk with a scope per level (binary-trees) would otherwise
    // pay a second call frame per level, its register saves and restores, for a length read.
    #[inline(always)]
    pub fn scope<R>(&mut self, f: impl for<'t> FnOnce(&mut Scope<'t>) -> R) -> R {
        let base = self.with_local(|l| l.roots.handles.len());
        let mut s = Scope {
            heap: self.heap,
            m: self.m,
            base,
            outermost: false,
            _not_send: PhantomData,
        };
        f(&mut s)
    }

    /// Run `f`, which may block (I/O, a lock, waiting for another thread), as a blocking
    /// region: the collector may stop the world and scan this mutator's roots meanwhile.
    /// `f` cannot reach the heap's slots (the scope is borrowed); handles stay valid.
    pub fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.prepare_to_block();
        self.heap.world.enter_blocking(self.m);
        scope_depth_add(self.heap.id(), -1);
        struct Back<'a, 's>(&'a Scope<'s>);
        impl Drop for Back<'_, '_> {
            fn drop(&mut self) {
                let s = self.0;
                s.heap.world.leave_blocking(s.m);
                scope_depth_add(s.heap.id(), 1);
                s.safepoint();
            }
        }
        let back = Back(self);
        let r = f();
        drop(back);
        r
    }

    /// Run a full collection and wait for it (Go's `runtime.GC`): a cycle that starts after
    /// this call marks and sweeps the whole heap. Runs as a blocking region; this thread
    /// helps with marking and sweeping while it waits.
    pub fn gc(&mut self) {
        let heap = self.heap;
        self.blocking(|| heap.collect_and_wait());
    }

    /// The heap this scope belongs to.
    pub fn heap(&self) -> Heap {
        Heap::from_arc(self.heap.arc())
    }
}

#[cold]
#[inline(never)]
fn alloc_failed(e: AllocError) -> ! {
    panic!("runtime: out of memory: {e}")
}

/// Whether a new object at `addr` (pointer words `bitmap`, the type's constant) may point
/// anywhere. A type of at most eight pointer words is checked here, inlined, so a node born
/// with null slots (the common case: a tree's node before its children) skips the call to
/// `shade_initial` while marking; a larger type answers true and is checked there.
#[inline(always)]
fn may_point(addr: usize, bitmap: &[u64]) -> bool {
    let [word] = bitmap else { return true };
    if word.count_ones() > 8 {
        return true;
    }
    let (mut bits, mut any) = (*word, 0);
    while bits != 0 {
        let w = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        // SAFETY: word `w` of the new object is a `Slot` (the `Trace` contract), inside the
        // object we just initialised and rooted, which no other thread can reach yet.
        any |= unsafe { crate::mark::load_slot(addr + w * 8) };
    }
    any != 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::may_point;

    #[test]
    fn may_point_reads_only_the_pointer_words_of_small_types() {
        // Mutable: the slots are read as atomics, which need write provenance (Miri).
        let mut words = [0xdead_usize, 0, 0x1000, 0];
        let at = words.as_mut_ptr().expose_provenance();
        // Word 0 holds a non-address but is no pointer word; 1 and 3 are null.
        assert!(!may_point(at, &[0b1010]));
        assert!(may_point(at, &[0b0100]));
        assert!(may_point(at, &[0b1110]));
        // More than eight pointer words, or a bitmap of several words: checked elsewhere.
        let mut many = [0usize; 9];
        let at = many.as_mut_ptr().expose_provenance();
        assert!(may_point(at, &[0x1ff]));
        assert!(!may_point(at, &[0xff]));
        assert!(may_point(at, &[0, 1]));
    }
}
