//! The heap (Go's mheap): arenas, the page allocator, the span pool, the mcentrals, the cache
//! registry, the sweep generation and the counters; and `Heap`, its public face.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as StdOrdering};

use crate::arena::{Arena, ArenaIndex};
use crate::cache::{Cache, CacheCore};
use crate::central::Central;
use crate::error::AllocError;
use crate::nopreempt::NoPreempt;
use crate::pages::{PageAlloc, PageRun};
use crate::sizeclass::{NUM_SPAN_CLASSES, PAGE_SIZE};
use crate::span::{STATE_FREE, STATE_IN_USE, Span};
use crate::stats::{BY_SIZE_ENTRIES, BySize, Counters, HeapStats};
use crate::sweep::{DROPS_RESERVE, Drops, Role};
use crate::sweepgen::SWEEPGEN_FREE;
use crate::sweepgen::SweepState;

/// Where dead objects with drop glue go (the collector's finalizer queue).
///
/// `push` is called after a sweep found the object dead, outside every heap lock and never
/// by the stop-the-world coordinator: by `Heap::sweep_one` / `sweep_all` / `push_drops`, or
/// by a cache refill (with its busy word clear). It must not allocate from this heap and
/// should only enqueue. The object is recorded as queued before `push` is called, so the
/// consumer may call `Heap::release_finalized(obj)` at once; it stays allocated (and its
/// bytes intact) until then and a later sweep finds it unmarked. A `push` that panics
/// unwinds into its caller; that one object stays allocated and queued (nothing is wedged),
/// the others wait for the next push.
pub trait DropQueue: Send + Sync {
    /// Take a dead object (its base address and size) whose drop glue must run.
    fn push(&self, obj: NonNull<u8>, size: usize);
}

impl<T: DropQueue + ?Sized> DropQueue for std::sync::Arc<T> {
    fn push(&self, obj: NonNull<u8>, size: usize) {
        (**self).push(obj, size)
    }
}

/// A span pointer kept in lists and registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanPtr(pub(crate) *const Span);

// SAFETY: a `SpanPtr` points into the heap's span pool, whose records are never deallocated
// before the heap; all their fields are atomics, so sharing the pointer between threads is
// sound. Who may *mutate* a span is decided by the sweep-generation protocol, not by `Send`.
unsafe impl Send for SpanPtr {}
// SAFETY: as above.
unsafe impl Sync for SpanPtr {}

/// A registered cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachePtr(pub(crate) *mut CacheCore);

// SAFETY: the registry only dereferences a `CachePtr` under the stop-the-world contract of
// `start_mark`/`finish_mark`/`flush_caches` (no thread is inside a method of that cache) or
// from the cache's own thread; the pointer itself may travel.
unsafe impl Send for CachePtr {}

/// Span records, made 64 at a time in boxed chunks (whose addresses stay put as the vector
/// grows, and which cost the system allocator one allocation per 64 records), and the free
/// ones.
#[derive(Debug, Default)]
pub(crate) struct SpanPool {
    pub(crate) chunks: Vec<Chunk>,
    free: Vec<SpanPtr>,
}

const SPAN_CHUNK: usize = 64;

/// A chunk of span records, owned through a raw pointer (not a `Box`, which moving asserts
/// unique: pointers to the records are handed out while the chunk list grows). Freed with
/// the heap.
#[derive(Debug)]
pub(crate) struct Chunk(std::ptr::NonNull<[Span]>);

// SAFETY: the chunk owns its records, whose fields are all atomics; it is shared like them.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new() -> Chunk {
        let b: Box<[Span]> = (0..SPAN_CHUNK).map(|_| Span::new()).collect();
        Chunk(std::ptr::NonNull::from(Box::leak(b)))
    }

    /// The records. They live until the heap drops (which outlives every borrow of it).
    pub(crate) fn spans(&self) -> &[Span] {
        // SAFETY: leaked from a box in `new`, freed only in `drop`; only shared references
        // to the records are ever made.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: from `Box::leak` in `new`; the heap is being dropped, so no reference to a
        // record remains.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// State under the heap lock.
#[derive(Debug)]
pub(crate) struct Locked {
    pub(crate) pages: PageAlloc,
    pub(crate) spans: SpanPool,
    pub(crate) spans_inuse: usize,
    /// Spans in use per span class (the room `alloc_span` reserves in the class's sets).
    pub(crate) class_spans: Vec<usize>,
}

/// Most pages one scavenging step returns to the OS (2 MiB).
const SCAVENGE_STEP: usize = 256;

/// A lock guard counted in `heap_locks_held` (the guard drops first, then the count).
pub(crate) struct Counted<G> {
    g: G,
    _np: NoPreempt,
}

/// The heap lock's guard.
pub(crate) type HeapGuard<'a> = Counted<std::sync::MutexGuard<'a, Locked>>;

impl<G: std::ops::Deref> std::ops::Deref for Counted<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.g
    }
}

impl<G: std::ops::DerefMut> std::ops::DerefMut for Counted<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.g
    }
}

/// A value alone on its cache lines (128 bytes: adjacent-line prefetch pairs lines), so
/// writes to it do not invalidate lines other threads read.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shared heap. Lives in an `Arc` held by the `Heap` and by every `Cache`.
pub(crate) struct HeapInner {
    /// The sweep generation, the sweepers' cursor and the sweep gate (see `sweepgen.rs`).
    /// The cursor and the gate's count sit on lines of their own, away from the read-mostly
    /// generation every refill reads.
    pub(crate) sweep: SweepState,
    /// Whether a mark phase is on (allocate-black). Written with the world stopped.
    pub(crate) marking: AtomicBool,
    /// Dead objects with drop glue waiting to be handed to the drop queue (see
    /// `sweep::Drops`), and whether any are.
    pub(crate) drops: Mutex<Drops>,
    pub(crate) drops_waiting: AtomicBool,
    pub(crate) index: ArenaIndex,
    /// The heap lock, on a line of its own for the same reason.
    pub(crate) locked: Padded<Mutex<Locked>>,
    pub(crate) central: Box<[Central]>,
    pub(crate) caches: Mutex<Vec<CachePtr>>,
    pub(crate) counters: Counters,
    pub(crate) drop_queue: Option<Box<dyn DropQueue>>,
    /// Bytes of memory (HeapSys − HeapReleased) the scavenger tries to stay under.
    pub(crate) retained_target: AtomicUsize,
}

impl std::fmt::Debug for HeapInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("sweepgen", &self.sweepgen())
            .finish_non_exhaustive()
    }
}

/// The backing of zero-size allocations: one shared address, never written.
static ZERO_BASE: u64 = 0;

/// The address returned for every zero-size allocation.
pub fn zero_size_addr() -> NonNull<u8> {
    NonNull::from(&ZERO_BASE).cast()
}

impl HeapInner {
    fn new(drop_queue: Option<Box<dyn DropQueue>>) -> Result<Self, AllocError> {
        Ok(HeapInner {
            sweep: SweepState::new(2),
            marking: AtomicBool::new(false),
            drops: Mutex::new(Drops {
                objs: Vec::with_capacity(DROPS_RESERVE),
                starved: false,
            }),
            drops_waiting: AtomicBool::new(false),
            index: ArenaIndex::new()?,
            locked: Padded(Mutex::new(Locked {
                pages: PageAlloc::default(),
                spans: SpanPool::default(),
                spans_inuse: 0,
                class_spans: vec![0; NUM_SPAN_CLASSES],
            })),
            central: (0..NUM_SPAN_CLASSES).map(|_| Central::new()).collect(),
            caches: Mutex::new(Vec::new()),
            counters: Counters::new(),
            drop_queue,
            retained_target: AtomicUsize::new(usize::MAX),
        })
    }

    /// Take the heap lock (counted in `heap_locks_held` while held).
    pub(crate) fn lock(&self) -> HeapGuard<'_> {
        let np = NoPreempt::enter();
        HeapGuard {
            g: self.locked.lock().expect("runtime: heap lock poisoned"),
            _np: np,
        }
    }

    /// Take the cache registry's lock (counted in `heap_locks_held` while held).
    pub(crate) fn registry(&self) -> Counted<std::sync::MutexGuard<'_, Vec<CachePtr>>> {
        let np = NoPreempt::enter();
        Counted {
            g: self
                .caches
                .lock()
                .expect("runtime: cache registry poisoned"),
            _np: np,
        }
    }

    #[inline]
    pub(crate) fn sweepgen(&self) -> u32 {
        self.sweep.sweepgen()
    }

    /// Allocate a span of `npages` pages for span class `spc` with objects of `elemsize`.
    /// The span is published in the span table; its sweep generation is the current one.
    pub(crate) fn alloc_span(
        &self,
        npages: usize,
        spc: usize,
        elemsize: usize,
    ) -> Result<&Span, AllocError> {
        if self.sweep.pending.load(StdOrdering::Relaxed) != 0 {
            // Proportional sweep: sweep at least as many pages as we are about to take, so
            // the heap does not grow while garbage waits to be swept.
            self.sweep_pages(npages);
        }
        let mut l = self.lock();
        let (run, needzero) = l.pages.alloc(npages)?;
        while l.pages.published < l.pages.arenas.len() {
            let a = &l.pages.arenas[l.pages.published].arena;
            // The arena is boxed in the page allocator and lives until the heap drops.
            self.index.publish(&**a, a.base);
            l.pages.published += 1;
        }
        if l.spans.free.is_empty() {
            let chunk = Chunk::new();
            let ptrs: Vec<SpanPtr> = chunk.spans().iter().rev().map(|s| SpanPtr(s)).collect();
            l.spans.free.extend(ptrs);
            l.spans.chunks.push(chunk);
            // Room for every record in the free list, so `free_span` (which a sweep run by
            // `start_mark` calls with the world stopped) never grows it.
            let total = l.spans.chunks.len() * SPAN_CHUNK;
            let len = l.spans.free.len();
            l.spans.free.reserve(total - len);
        }
        let sp = l
            .spans
            .free
            .pop()
            .expect("runtime: span pool empty after refill");
        l.spans_inuse += 1;
        // SAFETY: `sp` points into the span pool (a boxed chunk owned by `self`), never freed
        // before the heap; we hold the heap lock and the record is free, so no one else
        // initialises it.
        let s: &Span = unsafe { &*sp.0 };
        let arena = &l.pages.arenas[run.arena].arena;
        let start = arena.base + run.page * PAGE_SIZE;
        s.init(
            arena,
            run.page,
            start,
            npages,
            spc,
            elemsize,
            self.sweepgen(),
            needzero,
        );
        Self::set_span_table(&l, run, sp.0);
        // Room in the class's span sets for every span of the class, so that pushes made
        // with the world stopped (sweeps in `start_mark`, cache releases in `finish_mark`)
        // never grow them (see `SpanSet::reserve`).
        l.class_spans[spc] += 1;
        let nclass = l.class_spans[spc];
        drop(l);
        self.central[spc].reserve(nclass);
        self.maybe_scavenge();
        Ok(s)
    }

    fn set_span_table(l: &Locked, run: PageRun, s: *const Span) {
        let mut ai = run.arena;
        let mut page = run.page;
        let mut left = run.npages;
        while left > 0 {
            let a: &Arena = &l.pages.arenas[ai].arena;
            let n = left.min(crate::arena::PAGES_PER_ARENA - page);
            for p in page..page + n {
                // Release: pairs with the Acquire in `span_of`, publishing `init`'s stores.
                a.spans.words()[p].store(s as *mut Span, StdOrdering::Release);
            }
            left -= n;
            page = 0;
            ai += 1;
        }
    }

    /// Return a span's pages to the page allocator and its record to the pool. The caller
    /// owns the span (won its sweep) and it is in no swept list; `zeroed` says every byte of
    /// it is zero.
    pub(crate) fn free_span(&self, s: &Span, zeroed: bool) {
        let mut l = self.lock();
        let start = s.start.load(StdOrdering::Relaxed);
        let npages = s.npages.load(StdOrdering::Relaxed);
        let ai = s.arena_ref().index;
        let page = s.page.load(StdOrdering::Relaxed);
        debug_assert_eq!(l.pages.arenas[ai].arena.page_of(start), page);
        let run = PageRun {
            arena: ai,
            page,
            npages,
        };
        Self::set_span_table(&l, run, std::ptr::null());
        s.state.store(STATE_FREE, StdOrdering::Release);
        s.sweepgen.set(SWEEPGEN_FREE);
        l.pages.free(ai, page, npages, zeroed);
        l.spans.free.push(SpanPtr(s));
        l.spans_inuse -= 1;
        l.class_spans[s.spc.load(StdOrdering::Relaxed) as usize] -= 1;
        drop(l);
        self.maybe_scavenge();
    }

    /// The in-use span containing `addr`, if any. Any address at all is accepted.
    #[inline]
    pub(crate) fn span_of(&self, addr: usize) -> Option<(&Span, &Arena)> {
        let ap = self.index.lookup(addr)?;
        // SAFETY: arenas published in the index are boxed in the page allocator and never
        // freed before the heap, and `self` is borrowed for the result's lifetime.
        let arena: &Arena = unsafe { &*ap };
        let sp = arena.spans.words()[arena.page_of(addr)].load(StdOrdering::Acquire);
        if sp.is_null() {
            return None;
        }
        // SAFETY: span table entries point into the span pool, never freed before the heap.
        let s: &Span = unsafe { &*sp };
        if s.state.load(StdOrdering::Acquire) != STATE_IN_USE {
            return None;
        }
        let start = s.start.load(StdOrdering::Relaxed);
        let end = start + s.npages.load(StdOrdering::Relaxed) * PAGE_SIZE;
        if addr < start || addr >= end {
            return None;
        }
        Some((s, arena))
    }

    /// The arena holding `addr` (which must be a heap address).
    pub(crate) fn arena_of(&self, addr: usize) -> &Arena {
        let ap = self
            .index
            .lookup(addr)
            .expect("runtime: address outside the heap");
        // SAFETY: as in `span_of`.
        unsafe { &*ap }
    }

    /// One bounded scavenging step when retained memory (HeapSys − HeapReleased) exceeds
    /// the target by more than 1 MiB: at most `SCAVENGE_STEP` pages, returned to the OS with
    /// the heap lock released. Called after each span allocation or free, so the work tracks
    /// the heap's own page traffic. Returns the pages released.
    pub(crate) fn maybe_scavenge(&self) -> usize {
        let target = self.retained_target.load(StdOrdering::Relaxed);
        if target == usize::MAX {
            return 0;
        }
        self.scavenge_step(|l| {
            let c = l.pages.counts;
            let retained = (c.sys - c.released) * PAGE_SIZE;
            if retained > target.saturating_add(1 << 20) {
                (retained - target).div_ceil(PAGE_SIZE)
            } else {
                0
            }
        })
    }

    /// Release up to `SCAVENGE_STEP` dirty free pages (and no more than `want` says, given
    /// the locked state): pick them under the lock, `madvise` without it, put them back
    /// clean. Returns the pages released.
    pub(crate) fn scavenge_step(&self, want: impl FnOnce(&Locked) -> usize) -> usize {
        let picked = {
            let mut l = self.lock();
            let n = want(&l).min(SCAVENGE_STEP);
            if n == 0 || l.pages.dirty() == 0 {
                return 0;
            }
            l.pages.pick_dirty(n)
        };
        let Some(run) = picked else { return 0 };
        run.release();
        let n = run.run.npages;
        self.lock().pages.finish_scavenge(run);
        n
    }

    /// Register a new cache and set its allocate-black flag. The flag is read under the
    /// registry lock, after the cache is in the registry: `start_mark` / `finish_mark` store
    /// `marking` before they take the lock to update every registered cache, so either they
    /// find this cache, or it reads their store.
    pub(crate) fn register(&self, c: CachePtr) {
        let mut reg = self.registry();
        reg.push(c);
        // SAFETY: `c` is a core just leaked by `Cache::new`, not yet handed to any thread;
        // the registry (the only other way to it) is locked by us.
        unsafe { (*c.0).set_black(self.marking.load(StdOrdering::Relaxed)) };
        drop(reg);
        let live = self.counters.caches_live.fetch_add(1, StdOrdering::Relaxed) + 1;
        self.counters
            .caches_peak
            .fetch_max(live, StdOrdering::Relaxed);
    }
}

/// A Go-style collected heap: size classes, spans, per-thread caches, sweeping, scavenging.
///
/// Cloning a `Heap` gives another handle to the same heap.
#[derive(Debug, Clone)]
pub struct Heap {
    pub(crate) inner: std::sync::Arc<HeapInner>,
}

impl Heap {
    /// A new, empty heap. Reserves only the arena index (virtual memory) until the first
    /// allocation.
    pub fn new() -> Result<Heap, AllocError> {
        Ok(Heap {
            inner: std::sync::Arc::new(HeapInner::new(None)?),
        })
    }

    /// A heap whose sweeps hand dead objects with drop glue to `queue`.
    pub fn with_drop_queue(queue: impl DropQueue + 'static) -> Result<Heap, AllocError> {
        Ok(Heap {
            inner: std::sync::Arc::new(HeapInner::new(Some(Box::new(queue)))?),
        })
    }

    /// A new allocation cache (one per thread standalone, one per P under a scheduler).
    pub fn cache(&self) -> Cache {
        Cache::new(self.inner.clone())
    }

    /// The current sweep generation (even; grows by 2 at each `finish_mark`).
    pub fn sweepgen(&self) -> u32 {
        self.inner.sweepgen()
    }

    /// Whether a mark phase is on.
    pub fn is_marking(&self) -> bool {
        self.inner.marking.load(StdOrdering::Relaxed)
    }

    /// Keep retained memory (HeapSys − HeapReleased) near `bytes`: whenever it exceeds the
    /// target by more than 1 MiB, free pages are returned to the OS until it does not.
    /// `usize::MAX` (the default) turns this off.
    pub fn set_retained_target(&self, bytes: usize) {
        self.inner
            .retained_target
            .store(bytes, StdOrdering::Relaxed);
        while self.inner.maybe_scavenge() > 0 {}
    }

    /// Return every free page to the OS now (`MADV_DONTNEED`), in bounded steps that do not
    /// hold the heap lock across the system calls. Returns the bytes released.
    pub fn release_free_pages(&self) -> usize {
        let mut pages = 0;
        loop {
            let n = self.inner.scavenge_step(|_| usize::MAX);
            if n == 0 {
                return pages * PAGE_SIZE;
            }
            pages += n;
        }
    }

    /// Bytes of live heap as the pacer sees it (Go's `heapLive`): allocated objects plus the
    /// free slots of spans that caches hold (a cache counts a whole span when it takes it and
    /// gives back what it did not use when it lets go). One relaxed load, at any time, from
    /// any thread: no lock, no cache flush; caches and sweeps keep it current at span
    /// granularity.
    pub fn live_bytes(&self) -> u64 {
        self.inner.counters.live()
    }

    /// Heap statistics (Go's MemStats heap fields). Exact when no cache holds spans (see the
    /// `stats` module docs).
    pub fn stats(&self) -> HeapStats {
        let mut s = HeapStats {
            heap_alloc: 0,
            heap_sys: 0,
            heap_idle: 0,
            heap_inuse: 0,
            heap_released: 0,
            heap_objects: 0,
            mallocs: 0,
            frees: 0,
            total_alloc: 0,
            lookups: 0,
            mspan_inuse: 0,
            mspan_sys: 0,
            mcache_inuse: 0,
            mcache_sys: 0,
            by_size: [BySize::default(); BY_SIZE_ENTRIES],
        };
        {
            let l = self.inner.lock();
            let c = l.pages.counts;
            s.heap_sys = (c.sys * PAGE_SIZE) as u64;
            s.heap_inuse = (c.inuse * PAGE_SIZE) as u64;
            s.heap_idle = (l.pages.idle() * PAGE_SIZE) as u64;
            s.heap_released = (c.released * PAGE_SIZE) as u64;
            let sz = std::mem::size_of::<Span>() as u64;
            s.mspan_inuse = l.spans_inuse as u64 * sz;
            s.mspan_sys = (l.spans.chunks.len() * SPAN_CHUNK) as u64 * sz;
        }
        let csz = std::mem::size_of::<CacheCore>() as u64;
        s.mcache_inuse = self.inner.counters.caches_live.load(StdOrdering::Relaxed) as u64 * csz;
        s.mcache_sys = self.inner.counters.caches_peak.load(StdOrdering::Relaxed) as u64 * csz;
        self.inner.counters.fill(&mut s);
        s
    }

    /// Start a mark phase: finish sweeping the previous cycle, then turn on allocate-black in
    /// every cache (objects allocated from now until `finish_mark` are born marked).
    ///
    /// Background sweepers are held at the sweep gate for the duration (none is mid-span when
    /// marking begins). Nothing here calls the system allocator or user code: dead objects
    /// with drop glue found by this sweep are handed to the drop queue later, by the next
    /// `sweep_one` / `sweep_all` / `push_drops` or cache refill after the world restarts.
    ///
    /// # Panics
    /// When a mark phase is already on (each `start_mark` pairs with one `finish_mark`).
    ///
    /// # Safety
    /// The world must be stopped for this heap: no thread may be inside any method of any
    /// `Cache` of this heap (including its drop) for the duration of the call.
    pub unsafe fn start_mark(&self) {
        let inner = &*self.inner;
        assert!(
            !inner.marking.load(StdOrdering::Relaxed),
            "runtime: start_mark during a mark phase: each start_mark must be followed by one \
             finish_mark"
        );
        let _stw = Role::coordinating();
        inner.sweep.close();
        while inner.sweep.sweep_one_closed(inner).is_some() {}
        inner.marking.store(true, StdOrdering::Relaxed);
        // SAFETY: forwarded from our caller (the world is stopped).
        unsafe { self.for_each_cache(|core| core.set_black(true)) };
        inner.sweep.open();
    }

    /// Runs `f` on every registered cache's core, under the registry lock.
    ///
    /// # Safety
    /// No thread may be inside a method of any cache of this heap (the world is stopped).
    unsafe fn for_each_cache(&self, mut f: impl FnMut(&mut CacheCore)) {
        let caches = self.inner.registry();
        for c in caches.iter() {
            // SAFETY: the caller guarantees no thread is inside a method of this cache, so we
            // have exclusive access; the registry lock keeps it from being dropped meanwhile.
            f(unsafe { &mut *c.0 });
        }
    }

    /// End a mark phase: every mark bit set now decides what survives. Advances the sweep
    /// generation (all spans become unswept), releases every cache's spans and flushes its
    /// counters, and turns allocate-black off. Sweeping then proceeds lazily (cache refills,
    /// proportional sweep in span allocation) and through `sweep_one` / `sweep_all`.
    ///
    /// # Safety
    /// As for [`Heap::start_mark`]: the world must be stopped for this heap. And every
    /// object that is not marked now (and carries no drop glue) is freed: its slot will be
    /// zeroed and handed out again, so the caller must ensure nothing accesses an unmarked
    /// object after this call.
    pub unsafe fn finish_mark(&self) {
        let inner = &*self.inner;
        assert!(
            inner.marking.load(StdOrdering::Relaxed),
            "runtime: finish_mark outside a mark phase: call start_mark first (each finish_mark \
             pairs with one start_mark, which finishes the previous cycle's sweep; two \
             finish_marks in a row would leave the first cycle's dead objects unswept)"
        );
        let _stw = Role::coordinating();
        // No sweeper may hold the old generation across the flip (see `SweepState`).
        inner.sweep.close();
        inner.marking.store(false, StdOrdering::Relaxed);
        inner.sweep.advance();
        // SAFETY: forwarded from our caller (the world is stopped).
        unsafe {
            self.for_each_cache(|core| {
                core.release_all(inner);
                core.set_black(false);
            })
        };
        inner.sweep.open();
    }

    /// Release every cache's spans and flush its counters, making `stats` exact.
    ///
    /// # Safety
    /// As for [`Heap::start_mark`]: the world must be stopped for this heap.
    pub unsafe fn flush_caches(&self) {
        // SAFETY: forwarded from our caller (the world is stopped).
        unsafe { self.for_each_cache(|core| core.release_all(&self.inner)) };
    }

    /// Sweep one unswept span, if any is left this cycle, then hand any dead objects with
    /// drop glue that sweeps have found to the drop queue. Returns whether a span was swept.
    ///
    /// Safe to call from any thread at any time, also while the world is stopped (a sweep in
    /// progress holds off `start_mark` / `finish_mark` for the length of one span).
    pub fn sweep_one(&self) -> bool {
        let r = self.inner.sweep_one().is_some();
        self.inner.push_drops();
        r
    }

    /// [`sweep_one`](Self::sweep_one) for a background sweeper with a CPU of its own: a span
    /// it frees (up to 128 KiB, of slots over 64 bytes) is zeroed first, so the allocation
    /// that takes those pages again skips zeroing them. The zeroing moves off the allocating threads onto the
    /// sweeper's CPU (and is wasted only when the scavenger releases the pages first).
    /// Do not use it on a thread that allocates: there it only zeroes earlier what the
    /// allocation would have zeroed, and maybe in vain.
    pub fn sweep_one_zeroing(&self) -> bool {
        let _z = Role::zeroing();
        self.sweep_one()
    }

    /// Sweep every span left unswept this cycle (then hand deferred drops to the queue).
    pub fn sweep_all(&self) {
        while self.inner.sweep_one().is_some() {}
        self.inner.push_drops();
    }

    /// Hand the dead objects with drop glue that sweeps have recorded to the drop queue.
    /// Sweeps run by `start_mark` / `finish_mark` (world stopped) only record them; the next
    /// `sweep_one`, `sweep_all` or cache refill pushes them, or this call, which a collector
    /// makes after restarting the world.
    pub fn push_drops(&self) {
        self.inner.push_drops();
    }

    /// Whether this cycle's sweep is complete.
    pub fn is_sweep_done(&self) -> bool {
        self.inner.sweep.pending.load(StdOrdering::Relaxed) == 0
    }

    /// Declare that the drop glue of a queued object has run: a later sweep that finds it
    /// unmarked frees it. Returns false when `obj` is not a queued, unreleased object of this
    /// heap (never queued, released already, or not a heap object).
    ///
    /// One atomic step (see `finalize.rs`): a sweep running at the same time neither queues
    /// the object again nor misses the release. Releasing the same object twice at once is
    /// answered true once.
    pub fn release_finalized(&self, obj: NonNull<u8>) -> bool {
        let addr = obj.as_ptr() as usize;
        let Some((s, _)) = self.inner.span_of(addr) else {
            return false;
        };
        let off = addr - s.start.load(StdOrdering::Relaxed);
        let i = s.index_of(off);
        if i >= s.nelems.load(StdOrdering::Relaxed) {
            return false;
        }
        crate::finalize::release(s.finalize_w(i / 64), s.queued_w(i / 64), 1u64 << (i % 64))
    }
}
