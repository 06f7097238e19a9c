//! The heap (Go's mheap): arenas, the page allocator, the span pool, the mcentrals, the cache
//! registry, the sweep generation and the counters; and `Heap`, its public face.

use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as StdOrdering};

use crate::arena::{Arena, ArenaIndex};
use crate::cache::{Cache, CacheCore};
use crate::central::Central;
use crate::error::AllocError;
use crate::loom::{AtomicU32, Ordering};
use crate::pages::{PageAlloc, PageRun};
use crate::sizeclass::{NUM_SPAN_CLASSES, PAGE_SIZE};
use crate::span::{STATE_FREE, STATE_IN_USE, Span};
use crate::stats::{BY_SIZE_ENTRIES, BySize, Counters, HeapStats};
use crate::sweepgen::SWEEPGEN_FREE;

/// Where dead objects with drop glue go (the collector's finalizer queue).
///
/// `push` is called by whichever thread sweeps the span: a cache refilling inside an
/// allocation, a background sweeper, or `Heap::finish_mark`/`start_mark` with the world
/// stopped. It must not allocate from this heap and should only enqueue. The object stays
/// allocated (and its bytes intact) until `Heap::release_finalized(obj)` is called and a later
/// sweep finds it unmarked.
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
    chunks: Vec<Box<[Span]>>,
    free: Vec<SpanPtr>,
}

const SPAN_CHUNK: usize = 64;

/// State under the heap lock.
#[derive(Debug, Default)]
pub(crate) struct Locked {
    pub(crate) pages: PageAlloc,
    pub(crate) spans: SpanPool,
    pub(crate) spans_inuse: usize,
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
    /// The sweep generation (even). Written only by `finish_mark` with the world stopped
    /// (Release); read by sweepers and caches (Acquire) — pairs so that a party seeing the new
    /// generation also sees the lists as they were at the flip.
    pub(crate) sweepgen: AtomicU32,
    /// Whether a mark phase is on (allocate-black). Written with the world stopped.
    pub(crate) marking: AtomicBool,
    /// Whether unswept spans may remain this cycle (a hint; Relaxed).
    pub(crate) sweep_pending: AtomicBool,
    /// First span class whose unswept lists may be non-empty (sweepers advance it). On a
    /// line of its own, with the next field, away from the read-mostly fields above, which
    /// every refill reads.
    pub(crate) sweep_cursor: Padded<AtomicUsize>,
    /// Background sweeps in flight (see `sweep::ActiveSweep`).
    pub(crate) sweepers_active: Padded<AtomicUsize>,
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
            .field("sweepgen", &self.sweepgen)
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
            sweepgen: AtomicU32::new(2),
            marking: AtomicBool::new(false),
            sweep_pending: AtomicBool::new(false),
            sweep_cursor: Padded(AtomicUsize::new(0)),
            sweepers_active: Padded(AtomicUsize::new(0)),
            index: ArenaIndex::new()?,
            locked: Padded(Mutex::new(Locked::default())),
            central: (0..NUM_SPAN_CLASSES).map(|_| Central::new()).collect(),
            caches: Mutex::new(Vec::new()),
            counters: Counters::new(),
            drop_queue,
            retained_target: AtomicUsize::new(usize::MAX),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Locked> {
        self.locked.lock().expect("runtime: heap lock poisoned")
    }

    #[inline]
    pub(crate) fn sweepgen(&self) -> u32 {
        self.sweepgen.load(Ordering::Acquire)
    }

    /// Allocate a span of `npages` pages for span class `spc` with objects of `elemsize`.
    /// The span is published in the span table; its sweep generation is the current one.
    pub(crate) fn alloc_span(
        &self,
        npages: usize,
        spc: usize,
        elemsize: usize,
    ) -> Result<&Span, AllocError> {
        if self.sweep_pending.load(StdOrdering::Relaxed) {
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
            let chunk: Box<[Span]> = (0..SPAN_CHUNK).map(|_| Span::new()).collect();
            let ptrs: Vec<SpanPtr> = chunk.iter().rev().map(|s| SpanPtr(s)).collect();
            l.spans.free.extend(ptrs);
            l.spans.chunks.push(chunk);
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
        self.maybe_scavenge(&mut l);
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
    /// owns the span (won its sweep) and it is in no swept list.
    pub(crate) fn free_span(&self, s: &Span) {
        let mut l = self.lock();
        let start = s.start.load(StdOrdering::Relaxed);
        let npages = s.npages.load(StdOrdering::Relaxed);
        let ai = l
            .pages
            .arenas
            .iter()
            .position(|a| a.arena.base <= start && start < a.arena.base + crate::arena::ARENA_BYTES)
            .expect("runtime: freeing a span outside every arena");
        let page = l.pages.arenas[ai].arena.page_of(start);
        let run = PageRun {
            arena: ai,
            page,
            npages,
        };
        Self::set_span_table(&l, run, std::ptr::null());
        s.state.store(STATE_FREE, StdOrdering::Release);
        s.sweepgen.set(SWEEPGEN_FREE);
        l.pages.free(ai, page, npages);
        l.spans.free.push(SpanPtr(s));
        l.spans_inuse -= 1;
        self.maybe_scavenge(&mut l);
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

    fn maybe_scavenge(&self, l: &mut Locked) {
        let target = self.retained_target.load(StdOrdering::Relaxed);
        if target == usize::MAX {
            return;
        }
        let c = l.pages.counts;
        let retained = (c.sys - c.released) * PAGE_SIZE;
        // Hysteresis: act only when over the target by at least 1 MiB, then go under it.
        if retained > target.saturating_add(1 << 20) {
            let over = (retained - target).div_ceil(PAGE_SIZE);
            l.pages.scavenge(over);
        }
    }

    pub(crate) fn register(&self, c: CachePtr) {
        self.caches
            .lock()
            .expect("runtime: cache registry poisoned")
            .push(c);
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
        let mut l = self.inner.lock();
        self.inner.maybe_scavenge(&mut l);
    }

    /// Return every free page to the OS now (`MADV_DONTNEED`). Returns the bytes released.
    pub fn release_free_pages(&self) -> usize {
        self.inner.lock().pages.scavenge(usize::MAX) * PAGE_SIZE
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
    /// # Safety
    /// The world must be stopped for this heap: no thread may be inside any method of any
    /// `Cache` of this heap (including its drop) for the duration of the call.
    pub unsafe fn start_mark(&self) {
        self.sweep_all();
        self.inner.wait_sweepers();
        // A sweeper that was mid-way may have relinked spans; anything it left is swept now.
        self.sweep_all();
        self.inner.wait_sweepers();
        self.inner.marking.store(true, StdOrdering::Relaxed);
        // SAFETY: forwarded from our caller (the world is stopped).
        unsafe { self.for_each_cache(|core| core.set_black(true)) };
    }

    /// Runs `f` on every registered cache's core, under the registry lock.
    ///
    /// # Safety
    /// No thread may be inside a method of any cache of this heap (the world is stopped).
    unsafe fn for_each_cache(&self, mut f: impl FnMut(&mut CacheCore)) {
        let caches = self
            .inner
            .caches
            .lock()
            .expect("runtime: cache registry poisoned");
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
        inner.marking.store(false, StdOrdering::Relaxed);
        let sg = inner.sweepgen.load(Ordering::Relaxed).wrapping_add(2);
        // Release: pairs with the Acquire loads in `HeapInner::sweepgen`.
        inner.sweepgen.store(sg, Ordering::Release);
        inner.sweep_cursor.store(0, StdOrdering::Relaxed);
        inner.sweep_pending.store(true, StdOrdering::Relaxed);
        // SAFETY: forwarded from our caller (the world is stopped).
        unsafe {
            self.for_each_cache(|core| {
                core.release_all(inner);
                core.set_black(false);
            })
        };
    }

    /// Release every cache's spans and flush its counters, making `stats` exact.
    ///
    /// # Safety
    /// As for [`Heap::start_mark`]: the world must be stopped for this heap.
    pub unsafe fn flush_caches(&self) {
        // SAFETY: forwarded from our caller (the world is stopped).
        unsafe { self.for_each_cache(|core| core.release_all(&self.inner)) };
    }

    /// Sweep one unswept span, if any is left this cycle. Returns whether one was found.
    pub fn sweep_one(&self) -> bool {
        self.inner.sweep_one().is_some()
    }

    /// Sweep every span left unswept this cycle.
    pub fn sweep_all(&self) {
        while self.inner.sweep_one().is_some() {}
    }

    /// Whether this cycle's sweep is complete.
    pub fn is_sweep_done(&self) -> bool {
        !self.inner.sweep_pending.load(StdOrdering::Relaxed)
    }

    /// Declare that the drop glue of a queued object has run: a later sweep that finds it
    /// unmarked frees it. Returns false when `obj` is not a queued object of this heap.
    pub fn release_finalized(&self, obj: NonNull<u8>) -> bool {
        let addr = obj.as_ptr() as usize;
        let Some((s, _)) = self.inner.span_of(addr) else {
            return false;
        };
        self.inner.ensure_swept(s);
        let off = addr - s.start.load(StdOrdering::Relaxed);
        let i = s.index_of(off);
        let bit = 1u64 << (i % 64);
        if i >= s.nelems.load(StdOrdering::Relaxed) {
            return false;
        }
        // Only an object a sweep queued may be released: anything else keeps its drop glue.
        // Clear "queued" first, with fetch_and (the owning cache may be setting other
        // objects' bits in the same word); only the caller that cleared it goes on.
        let was = s.queued_w(i / 64).fetch_and(!bit, StdOrdering::AcqRel);
        if was & bit == 0 {
            return false;
        }
        s.finalize_w(i / 64).fetch_and(!bit, StdOrdering::AcqRel);
        true
    }
}
