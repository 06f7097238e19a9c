//! The allocation cache (Go's mcache): one span per span class, owned by one thread (or P),
//! from which objects are handed out without locks or atomic read-modify-writes.
//!
//! A slot keeps a copy of one 64-bit word of its span's alloc bits, inverted (`1` = free and
//! not yet handed out): allocation is count-trailing-zeros, clear-lowest-bit, multiply. The
//! window from claiming a slot to publishing its alloc bit (zeroing, heap bits, the Release
//! store) is bracketed by the cache's `busy` word — a plain store and a compiler fence each
//! way — so that a suspend-signal handler on this thread can see it is inside an allocation
//! and defer.

use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence};

use crate::error::AllocError;
use crate::heap::{CachePtr, HeapInner, zero_size_addr};
use crate::heapbits;
use crate::shape::Shape;
use crate::sizeclass::{
    MAX_SMALL_SIZE, NUM_SPAN_CLASSES, PAGE_SIZE, TINY_CLASS, TINY_SIZE, class_size, size_to_class,
    span_class,
};
use crate::span::{PTRMASK_MIXED, PTRMASK_NONE, Span, UNIFORM, UNIFORM_MAX_WORDS};
use crate::stats::CacheCounts;

/// One cached span of one span class. The fields the fast path reads come first and share
/// one cache line; slots are line-aligned (128 bytes) so indexing is a shift.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    /// Free, not yet handed out slots of alloc-bit word `word` (bit i = slot `word*64 + i`).
    free: u64,
    /// Address of slot `word * 64`.
    word_base: usize,
    elemsize: usize,
    /// Alloc-bit and mark-bit words `word` of the span (in its arena's `obj_bits`).
    alloc_w: *const AtomicU64,
    mark_w: *const AtomicU64,
    word: usize,
    /// The arena's heap-bit words, and the arena word index of the span's first word.
    hb: *const AtomicU64,
    hb_start: usize,
    needzero: bool,
    noscan: bool,
    /// The span's `ptrmask` as this cache last read or wrote it (the cache is its only
    /// writer while it holds the span).
    ptrmask: u8,
    /// The value of alloc-bit word `word`: this cache is its only writer while it holds the
    /// span, so publication stores `alloc | bit` without loading the word first. (Adjacent
    /// pages' bitmap words share cache lines; another thread's span next door makes that
    /// line move between cores, and a load of it stalls the allocation where a store would
    /// only wait in the store buffer.)
    alloc: u64,
    hb_len: usize,
    nwords: usize,
    nelems: usize,
    base: usize,
    /// Null when the slot holds no span.
    span: *const Span,
}

const EMPTY_SLOT: Slot = Slot {
    free: 0,
    word_base: 0,
    alloc_w: ptr::null(),
    mark_w: ptr::null(),
    word: 0,
    nwords: 0,
    nelems: 0,
    base: 0,
    elemsize: 0,
    span: ptr::null(),
    hb: ptr::null(),
    hb_len: 0,
    hb_start: 0,
    needzero: false,
    noscan: true,
    ptrmask: PTRMASK_NONE,
    alloc: 0,
};

impl Slot {
    /// Word `self.word` of the span's alloc bits.
    #[inline(always)]
    fn alloc_word(&self) -> &AtomicU64 {
        // SAFETY: `alloc_w` is `Span::alloc_w(word)` of the span this slot holds (set with
        // `word`), inside its arena's `obj_bits`, which lives as long as the heap this cache
        // keeps alive. Access is atomic.
        unsafe { &*self.alloc_w }
    }

    /// Word `self.word` of the span's mark bits.
    #[inline(always)]
    fn mark_word(&self) -> &AtomicU64 {
        // SAFETY: as in `alloc_word`, for `Span::mark_w(word)`.
        unsafe { &*self.mark_w }
    }

    /// Allocate black the slots this cache will hand out from its current word (`free`),
    /// ahead of time: one atomic OR per word taken while marking instead of one per object.
    /// A marked slot that stays free is harmless: the sweep keeps only slots both allocated
    /// and marked (`finalize::sweep_word`), and a cache gives back its spans when marking
    /// ends (`finish_mark`), so no slot is allocated afterwards under a mark left from it.
    fn blacken(&self) {
        if !self.span.is_null() && self.free != 0 {
            // Relaxed, as a marker's OR: no data is published by a mark bit.
            self.mark_word().fetch_or(self.free, Ordering::Relaxed);
        }
    }

    /// Move to word `word` of span `s`.
    #[inline]
    fn set_word(&mut self, s: &Span, word: usize) {
        self.word = word;
        self.alloc_w = s.alloc_w(word);
        self.mark_w = s.mark_w(word);
        self.word_base = self.base + word * 64 * self.elemsize;
        // Relaxed: we own the span's alloc bits (see the field).
        self.alloc = self.alloc_word().load(Ordering::Relaxed);
    }
}

/// The cache proper, at a stable address (registered with the heap).
#[derive(Debug)]
pub(crate) struct CacheCore {
    /// The busy word (see `Cache::busy`), reachable from the core for the slow paths.
    busy: NonNull<BusyLine>,
    /// Allocate black (a mark phase is on). Written with the world stopped.
    black: bool,
    /// The current tiny block and the offset of its first free byte.
    tiny: usize,
    tiny_off: usize,
    counts: CacheCounts,
    slots: [Slot; NUM_SPAN_CLASSES],
}

impl CacheCore {
    pub(crate) fn set_black(&mut self, on: bool) {
        self.black = on;
        if on {
            for slot in &self.slots {
                slot.blacken();
            }
        }
        // A tiny block allocated before the phase change must not receive new objects: under
        // marking they would be born in a white block.
        self.tiny = 0;
        self.tiny_off = 0;
    }

    /// Give every cached span back to mcentral and flush the counters into the heap.
    pub(crate) fn release_all(&mut self, heap: &HeapInner) {
        for spc in 0..NUM_SPAN_CLASSES {
            self.release_slot(heap, spc);
        }
        self.tiny = 0;
        self.tiny_off = 0;
        heap.counters.flush(&mut self.counts);
    }

    fn release_slot(&mut self, heap: &HeapInner, spc: usize) {
        let slot = self.slots[spc];
        if slot.span.is_null() {
            return;
        }
        // SAFETY: span records live as long as the heap, which `heap` borrows.
        let s = unsafe { &*slot.span };
        // Take back the slots counted at refill but never handed out.
        let unused = slot.nelems - s.count_alloc();
        self.counts.small_alloc[spc >> 1] -= unused as i64;
        heap.counters.live_sub((unused * slot.elemsize) as u64);
        self.slots[spc] = EMPTY_SLOT;
        heap.uncache_span(s);
    }
}

/// A per-thread (or per-P) allocation cache of a [`crate::Heap`].
///
/// `Send` (a cache may move to another thread between uses) but not `Sync`: one thread
/// allocates from it at a time. Dropping it returns its spans and flushes its counters.
#[derive(Debug)]
pub struct Cache {
    core: NonNull<CacheCore>,
    /// Nonzero while this cache is between claiming a slot and publishing it. Written only by
    /// the owning thread (plain store + compiler fence); read by a signal handler on that
    /// thread through `busy_word`. A separate allocation, only ever accessed through shared
    /// references, so a handler may read it while the owner holds `&mut` to the core.
    busy: NonNull<BusyLine>,
    heap: Arc<HeapInner>,
}

// SAFETY: the core is owned by this `Cache`; the heap touches it only under the
// stop-the-world contract (no thread inside a `Cache` method), so moving the owner to another
// thread cannot create concurrent access.
unsafe impl Send for Cache {}

impl Cache {
    pub(crate) fn new(heap: Arc<HeapInner>) -> Cache {
        let busy = NonNull::from(Box::leak(Box::new(BusyLine(AtomicU32::new(0)))));
        let core = Box::new(CacheCore {
            busy,
            // Set by `register`, under the registry lock.
            black: false,
            tiny: 0,
            tiny_off: 0,
            counts: CacheCounts::default(),
            slots: [EMPTY_SLOT; NUM_SPAN_CLASSES],
        });
        let core = NonNull::from(Box::leak(core));
        heap.register(CachePtr(core.as_ptr()));
        Cache { core, busy, heap }
    }

    /// The word a suspend-signal handler reads: nonzero while an allocation is between
    /// claiming and publishing a slot.
    pub fn busy_word(&self) -> &AtomicU32 {
        // SAFETY: the word lives until `self` drops and is only ever accessed through shared
        // references (it is an atomic), so handing out another one is sound.
        unsafe { &self.busy.as_ref().0 }
    }

    /// Allocate `size` zeroed bytes with no GC pointers.
    #[inline]
    pub fn alloc_noscan(&mut self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.alloc(size, Shape::NOSCAN)
    }

    /// Allocate a zeroed object of `size` bytes laid out as `shape` says.
    ///
    /// Alignment: a small object is aligned to the largest power of two dividing its class
    /// size (so 8 bytes always, 16 for every class that is a multiple of 16); a tiny object
    /// (noscan, under 16 bytes) to the largest power of two up to 8 dividing its size; a
    /// large object to a page. With a header the payload starts 8 bytes in.
    ///
    /// Errors: too large for the address space, refused by the OS, or `shape.finalize` on a
    /// heap without a drop queue (nothing could run the drop glue).
    #[inline(always)]
    pub fn alloc(&mut self, size: usize, shape: Shape<'_>) -> Result<NonNull<u8>, AllocError> {
        if shape.finalize && self.heap.drop_queue.is_none() {
            return Err(AllocError::no_drop_queue(size));
        }
        let total = if shape.header.is_some() {
            size.saturating_add(8)
        } else {
            size
        };
        if total <= MAX_SMALL_SIZE {
            if total == 0 {
                return Ok(zero_size_addr());
            }
            let noscan = shape.is_noscan();
            if noscan && total < TINY_SIZE && !shape.finalize {
                return self.alloc_tiny(total);
            }
            let spc = span_class(size_to_class(total), noscan);
            self.alloc_small(spc, shape)
        } else {
            self.alloc_large(total, shape)
        }
    }

    #[inline(always)]
    fn core(&mut self) -> &mut CacheCore {
        // SAFETY: the core is owned by this `Cache` and `&mut self` excludes other users on
        // this side; the heap only touches it when no thread is inside a `Cache` method.
        unsafe { self.core.as_mut() }
    }

    #[inline(always)]
    fn alloc_small(&mut self, spc: usize, shape: Shape<'_>) -> Result<NonNull<u8>, AllocError> {
        let busy = self.busy;
        busy_ref(busy).store(1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let r = self.alloc_small_busy(spc, shape);
        compiler_fence(Ordering::SeqCst);
        busy_ref(busy).store(0, Ordering::Relaxed);
        r
    }

    /// `alloc_small` inside the busy window, which the caller opens and closes.
    #[inline(always)]
    fn alloc_small_busy(
        &mut self,
        spc: usize,
        shape: Shape<'_>,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: see `core()`; borrowing the field alone leaves `self.heap` usable.
        let core = unsafe { self.core.as_mut() };
        if core.slots[spc].free == 0 {
            // Out of line and shape-free, so the caller's constant shape stays folded.
            self.refill(spc)?;
        }
        let heap: &HeapInner = &self.heap;
        // SAFETY: as above.
        let core = unsafe { self.core.as_mut() };
        let slot = &mut core.slots[spc];
        let free = slot.free;
        let bit = free.trailing_zeros() as usize;
        slot.free = free & (free - 1);
        // The class's size, a constant when the caller's size is: the multiply becomes a
        // shift and the zeroing straight-line stores.
        let elemsize = class_size(spc >> 1);
        let addr = slot.word_base + bit * elemsize;
        // Allocate-black is done: while marking, the word's free slots were marked when
        // this cache took the word (`Slot::blacken`).
        Self::finish(heap, slot, addr, bit, elemsize, shape, false);
        // SAFETY: `addr` lies inside a mapped arena, so it is not 0.
        Ok(unsafe { NonNull::new_unchecked(addr as *mut u8) })
    }

    /// Zero, write heap bits and special bits, mark (`mark_now`: a large object allocated
    /// while marking; a small one's slot was marked when its cache took the word), publish.
    /// `elemsize` is the slot's size (`slot.elemsize`, passed apart so that a constant can
    /// fold).
    #[inline(always)]
    fn finish(
        heap: &HeapInner,
        slot: &mut Slot,
        addr: usize,
        bit: usize,
        elemsize: usize,
        shape: Shape<'_>,
        mark_now: bool,
    ) {
        debug_assert_eq!(elemsize, slot.elemsize);
        debug_assert_eq!(shape.is_noscan(), slot.noscan);
        if slot.needzero {
            if elemsize <= STORE_ZERO_MAX {
                zero_small(addr, elemsize);
            } else {
                // SAFETY: `addr..addr+elemsize` is a slot of a span this cache owns; the slot
                // was free (its alloc bit clear), so no reference to it exists, and the arena
                // is mapped read-write for the heap's lifetime.
                unsafe { ptr::write_bytes(addr as *mut u8, 0, elemsize) };
            }
        }
        let idx = slot.word * 64 + bit;
        // The shape decides the span class's noscan bit, so testing it (usually a constant)
        // is testing the slot's.
        if !shape.is_noscan() {
            let nwords = elemsize / 8;
            // A small object laid out as the span records needs no heap bits: scans read
            // the record (`Span::ptrmask`). Both usually constants, so the test is one
            // compare of the slot's copy.
            let write_bits = if nwords <= UNIFORM_MAX_WORDS {
                let pm = UNIFORM | shape.bits(0, nwords) as u8;
                slot.ptrmask != pm
                    && (slot.ptrmask == PTRMASK_MIXED || Self::note_layout(slot, pm, nwords))
            } else {
                true
            };
            if write_bits {
                // SAFETY: `hb`/`hb_len` describe the arena's heap-bit array, alive with the
                // heap.
                let hb = unsafe { crate::arena::Words::from_raw(slot.hb, slot.hb_len) };
                let start = slot.hb_start + idx * nwords;
                if start + nwords <= hb.len() * 64 {
                    heapbits::write(hb, start, 0, nwords, shape);
                } else {
                    // SAFETY: span records live as long as the heap, which this cache
                    // keeps alive.
                    Self::write_huge_bits(heap, unsafe { &*slot.span }, nwords, shape);
                }
            }
        }
        if !shape.is_plain() {
            // SAFETY: as above.
            let s = unsafe { &*slot.span };
            Self::finish_special(s, addr, idx, shape);
        }
        let m = 1u64 << bit;
        if mark_now {
            // Allocate-black: an atomic OR, because markers set other bits of this word.
            slot.mark_word().fetch_or(m, Ordering::Relaxed);
        }
        // Publish. We are the only writer of this span's alloc bits while we hold it, so a
        // load and a store suffice; Release pairs with the Acquire in `find_object`, making
        // the zeroing, header and heap bits above visible to whoever finds the object.
        slot.alloc |= m;
        slot.alloc_word().store(slot.alloc, Ordering::Release);
    }

    /// The span's first pointerful object, or one laid out unlike those before it: record
    /// its layout, or that the span's objects differ (see `Span::ptrmask`). Returns whether
    /// the object needs heap bits: a span becomes mixed here, and its objects so far, which
    /// were allocated without heap bits, get theirs from the layout they shared before the
    /// span says so. Before the object is published, so whoever acquires its alloc bit sees
    /// the new value.
    #[cold]
    fn note_layout(slot: &mut Slot, pm: u8, objwords: usize) -> bool {
        // SAFETY: span records live as long as the heap, which this cache keeps alive.
        let s = unsafe { &*slot.span };
        if slot.ptrmask == PTRMASK_NONE {
            // Relaxed: the Release store of the object's alloc bit publishes it.
            s.ptrmask.store(pm, Ordering::Relaxed);
            slot.ptrmask = pm;
            return false;
        }
        // SAFETY: as in `finish`.
        let hb = unsafe { crate::arena::Words::from_raw(slot.hb, slot.hb_len) };
        let old = u64::from(slot.ptrmask & !UNIFORM);
        for w in 0..slot.nwords {
            // Relaxed: we are the span's only allocator (its alloc bits' only writer) while
            // we hold it; sweeps that cleared bits finished before we took it.
            let mut bits = s.alloc_w(w).load(Ordering::Relaxed);
            while bits != 0 {
                let idx = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                heapbits::write_mask(hb, slot.hb_start + idx * objwords, objwords, old);
            }
        }
        // Release: pairs with the Acquire in `object::scan_slots`; a marker that reads
        // "mixed" for one of the objects above reads the heap bits just written.
        s.ptrmask.store(PTRMASK_MIXED, Ordering::Release);
        slot.ptrmask = PTRMASK_MIXED;
        true
    }

    /// Heap bits of an object larger than an arena: one run per arena it covers.
    #[cold]
    fn write_huge_bits(heap: &HeapInner, s: &Span, nwords: usize, shape: Shape<'_>) {
        let mut addr = s.start.load(Ordering::Relaxed);
        let mut first = 0;
        while first < nwords {
            let arena_end = (addr | (crate::arena::ARENA_BYTES - 1)) + 1;
            let n = ((arena_end - addr) / 8).min(nwords - first);
            let base = addr & !(crate::arena::ARENA_BYTES - 1);
            let hb = heap.arena_of(addr).heap_bits.words();
            heapbits::write(hb, (addr - base) / 8, first, n, shape);
            first += n;
            addr += n * 8;
        }
    }

    #[cold]
    fn finish_special(s: &Span, addr: usize, idx: usize, shape: Shape<'_>) {
        let m = 1u64 << (idx % 64);
        if let Some(h) = shape.header {
            // SAFETY: `addr` is the start of a slot this cache owns and has not published;
            // it is at least 16 bytes long and 8-aligned.
            unsafe { ptr::write(addr as *mut usize, h) };
            let w = &s.header_w(idx / 64);
            w.store(w.load(Ordering::Relaxed) | m, Ordering::Relaxed);
        }
        if shape.finalize {
            // fetch_or: `release_finalized` may clear other bits of this word concurrently.
            s.finalize_w(idx / 64).fetch_or(m, Ordering::Relaxed);
        }
    }

    /// Make slot `spc`'s `free` word nonzero: move to the cached span's next word with a free
    /// slot, or give the span back and take another from mcentral.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, spc: usize) -> Result<(), AllocError> {
        // Borrowed, not cloned: an `Arc` clone is an atomic increment on a line every cache's
        // refills share.
        let heap: &HeapInner = &self.heap;
        // SAFETY: see `core()`; borrowing the field alone leaves `self.heap` usable.
        let core = unsafe { self.core.as_mut() };
        let slot = &mut core.slots[spc];
        if !slot.span.is_null() {
            // SAFETY: span records live as long as the heap.
            let s = unsafe { &*slot.span };
            let mut word = slot.word;
            while word + 1 < slot.nwords {
                word += 1;
                let free = !s.alloc_w(word).load(Ordering::Relaxed) & valid_mask(word, slot.nelems);
                if free != 0 {
                    slot.set_word(s, word);
                    slot.free = free;
                    if core.black {
                        slot.blacken();
                    }
                    return Ok(());
                }
            }
            core.release_slot(heap, spc);
        }
        let s = heap.cache_span(spc)?;
        core.load_slot(heap, spc, s);
        if heap.drops_waiting.load(Ordering::Relaxed) {
            // Sweeps found dead objects with drop glue: hand them over now, outside the
            // allocation window (the slot is consistent and no slot is claimed), so that the
            // queue's code runs with `busy` clear and a panic in it leaves the cache whole.
            busy_ref(core.busy).store(0, Ordering::Relaxed);
            heap.push_drops();
            busy_ref(core.busy).store(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A tiny object: packed into the current tiny block, or a new block. The whole of it is
    /// a busy window: the block pointer and offset are cache state that `start_mark` /
    /// `finish_mark` reset (a thread suspended between reading and writing them would
    /// otherwise resume into a block the collector dropped — a white block during marking).
    #[inline]
    fn alloc_tiny(&mut self, size: usize) -> Result<NonNull<u8>, AllocError> {
        let busy = self.busy;
        busy_ref(busy).store(1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let r = self.alloc_tiny_busy(size);
        compiler_fence(Ordering::SeqCst);
        busy_ref(busy).store(0, Ordering::Relaxed);
        r
    }

    #[inline(always)]
    fn alloc_tiny_busy(&mut self, size: usize) -> Result<NonNull<u8>, AllocError> {
        let core = self.core();
        let align = if size & 7 == 0 {
            8
        } else if size & 3 == 0 {
            4
        } else if size & 1 == 0 {
            2
        } else {
            1
        };
        let off = (core.tiny_off + align - 1) & !(align - 1);
        if core.tiny != 0 && off + size <= TINY_SIZE {
            core.tiny_off = off + size;
            core.counts.tiny_allocs += 1;
            // Inside a published, zeroed 16-byte block: nothing to claim or publish.
            return Ok(
                NonNull::new((core.tiny + off) as *mut u8).expect("runtime: null tiny block")
            );
        }
        let block = self.alloc_small_busy(span_class(TINY_CLASS, true), Shape::NOSCAN)?;
        let core = self.core();
        // Keep whichever block has more room left.
        if core.tiny == 0 || size < core.tiny_off {
            core.tiny = block.as_ptr() as usize;
            core.tiny_off = size;
        }
        Ok(block)
    }

    #[cold]
    fn alloc_large(&mut self, size: usize, shape: Shape<'_>) -> Result<NonNull<u8>, AllocError> {
        // Span records count pages in 32 bits (see `Span::npages`): 32 TiB, beyond any
        // address space this heap maps anyway.
        if size > (1usize << (crate::arena::ADDR_BITS - 1)) || size / PAGE_SIZE >= u32::MAX as usize
        {
            return Err(AllocError::too_large(size));
        }
        let heap: &HeapInner = &self.heap;
        let npages = size.div_ceil(PAGE_SIZE);
        let noscan = shape.is_noscan();
        let spc = span_class(0, noscan);
        // SAFETY: see `core()`; borrowing the field alone leaves `self.heap` usable.
        let core = unsafe { self.core.as_mut() };
        busy_ref(core.busy).store(1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        let s = match heap.alloc_span(npages, spc, npages * PAGE_SIZE) {
            Ok(s) => s,
            Err(e) => {
                busy_ref(core.busy).store(0, Ordering::Relaxed);
                return Err(e);
            }
        };
        let base = s.start.load(Ordering::Relaxed);
        let arena = heap.arena_of(base);
        let hb = arena.heap_bits.words();
        let mut slot = Slot {
            free: 0,
            word_base: base,
            alloc_w: s.alloc_w(0),
            mark_w: s.mark_w(0),
            word: 0,
            nwords: 1,
            nelems: 1,
            base,
            elemsize: npages * PAGE_SIZE,
            span: s,
            hb: hb.as_ptr(),
            hb_len: hb.len(),
            hb_start: (base - arena.base) / 8,
            needzero: s.needzero.load(Ordering::Relaxed),
            noscan,
            ptrmask: PTRMASK_NONE,
            // Relaxed: the span is fresh and ours (see `Slot::alloc`).
            alloc: s.alloc_w(0).load(Ordering::Relaxed),
        };
        let elemsize = slot.elemsize;
        Self::finish(heap, &mut slot, base, 0, elemsize, shape, core.black);
        core.counts.large_alloc += 1;
        core.counts.large_alloc_bytes += (npages * PAGE_SIZE) as u64;
        compiler_fence(Ordering::SeqCst);
        busy_ref(core.busy).store(0, Ordering::Relaxed);
        heap.central[spc].push_swept(s, heap.sweepgen(), true);
        heap.counters.live_add((npages * PAGE_SIZE) as u64);
        heap.push_drops();
        Ok(NonNull::new(base as *mut u8).expect("runtime: null heap address"))
    }

    /// Give back every cached span and flush counters into the heap (so `Heap::stats` is
    /// exact for this cache's allocations).
    pub fn flush(&mut self) {
        // SAFETY: see `core()`; borrowing the field alone leaves `self.heap` usable.
        let core = unsafe { self.core.as_mut() };
        core.release_all(&self.heap);
    }
}

impl CacheCore {
    fn load_slot(&mut self, heap: &HeapInner, spc: usize, s: &Span) {
        let nelems = s.nelems.load(Ordering::Relaxed);
        let base = s.start.load(Ordering::Relaxed);
        let arena = heap.arena_of(base);
        let hb = arena.heap_bits.words();
        let nwords = nelems.div_ceil(64);
        let mut word = 0;
        let mut free = 0;
        let mut alloc = 0;
        while word < nwords {
            // Relaxed: we own the span's alloc bits (see `Slot::alloc`).
            alloc = s.alloc_w(word).load(Ordering::Relaxed);
            free = !alloc & valid_mask(word, nelems);
            if free != 0 {
                break;
            }
            word += 1;
        }
        debug_assert!(free != 0, "runtime: cached a span with no free slot");
        let nalloc = s.count_alloc();
        self.counts.small_alloc[spc >> 1] += (nelems - nalloc) as i64;
        let elemsize = class_size(spc >> 1);
        // One shared atomic per refill, never per object (see `Heap::live_bytes`).
        heap.counters
            .live_add(((nelems - nalloc) * elemsize) as u64);
        let needzero = s.needzero.load(Ordering::Relaxed);
        if spc & 1 == 0 && !needzero && nalloc == 0 {
            prefault(base, s.npages.load(Ordering::Relaxed) * PAGE_SIZE);
        }
        self.slots[spc] = Slot {
            free,
            word_base: base + word * 64 * elemsize,
            alloc_w: s.alloc_w(word),
            mark_w: s.mark_w(word),
            word,
            nwords,
            nelems,
            base,
            elemsize,
            span: s,
            hb: hb.as_ptr(),
            hb_len: hb.len(),
            hb_start: (base - arena.base) / 8,
            needzero,
            noscan: spc & 1 == 1,
            ptrmask: s.ptrmask.load(Ordering::Relaxed),
            alloc,
        };
        if self.black {
            self.slots[spc].blacken();
        }
    }
}

/// A cache's busy word, alone on its cache lines: it is stored twice per allocation, and two
/// threads' words sharing a line (as two small neighbouring allocations would) made every
/// allocation on one thread invalidate the other's line.
#[derive(Debug)]
#[repr(align(128))]
struct BusyLine(AtomicU32);

/// The busy word behind a cache's pointer.
#[inline(always)]
fn busy_ref<'a>(p: NonNull<BusyLine>) -> &'a AtomicU32 {
    // SAFETY: `p` comes from the cache's `busy` allocation, freed only in `Cache::drop` after
    // the last use; it is only ever accessed through shared references.
    unsafe { &p.as_ref().0 }
}

/// The largest slot that allocation zeroes with straight-line stores (`zero_small`) when
/// its span needs zeroing: a store or four into the line the caller is about to write
/// anyway. Spans of such slots are therefore never zeroed ahead by a zeroing sweeper (see
/// `sweep.rs`), which would only pull their lines through the cache twice.
pub(crate) const STORE_ZERO_MAX: usize = 64;

/// Zero a slot of at most `STORE_ZERO_MAX` bytes with straight-line stores (a loop would
/// become a call to memset).
#[inline(always)]
fn zero_small(addr: usize, size: usize) {
    #[inline(always)]
    fn z<const N: usize>(addr: usize) {
        // SAFETY: the caller's slot is `N * 8` bytes at the 8-aligned `addr`, free and owned by
        // this cache (see `Cache::finish`).
        unsafe { (addr as *mut [u64; N]).write([0; N]) }
    }
    match size / 8 {
        1 => z::<1>(addr),
        2 => z::<2>(addr),
        3 => z::<3>(addr),
        4 => z::<4>(addr),
        5 => z::<5>(addr),
        6 => z::<6>(addr),
        7 => z::<7>(addr),
        _ => z::<8>(addr),
    }
}

/// Write a zero into each OS page of a fresh span of pointerful objects before any object
/// in it is handed out.
///
/// A collector reads the pointer slots of every object it marks, also of objects the program
/// never wrote. On a fresh page that first read maps the kernel's shared zero page, and the
/// first write after it — the program's, or the zeroing when the slot is reused — is a
/// copy-on-write fault whose TLB flush interrupts every CPU running the process. Faulting the
/// page in for writing here costs the one fault the page would take anyway, and no flush.
#[cold]
fn prefault(base: usize, len: usize) {
    const OS_PAGE: usize = 4096;
    let mut a = base;
    while a < base + len {
        // SAFETY: `[base, base + len)` is a span this cache owns with no object allocated
        // (so nothing references its memory) whose pages read as zero (fresh from the OS);
        // storing a zero leaves every byte as it was. 8-aligned, mapped read-write.
        unsafe { ptr::write_volatile(a as *mut u64, 0) };
        a += OS_PAGE;
    }
}

/// Bits of alloc-bit word `w` that name real slots (`< nelems`).
#[inline]
fn valid_mask(w: usize, nelems: usize) -> u64 {
    let lo = w * 64;
    if lo + 64 <= nelems {
        u64::MAX
    } else {
        (1u64 << (nelems - lo)) - 1
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let heap = self.heap.clone();
        let mut reg = heap.registry();
        self.core().release_all(&heap);
        reg.retain(|c| c.0 != self.core.as_ptr());
        drop(reg);
        heap.counters.caches_live.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the core came from `Box::leak` in `new`, is deregistered (so the heap will
        // never touch it again) and nothing else points to it.
        drop(unsafe { Box::from_raw(self.core.as_ptr()) });
        // SAFETY: the busy word came from `Box::leak` in `new`; the core that pointed to it is
        // gone and `busy_word`'s borrows ended with `&self`.
        drop(unsafe { Box::from_raw(self.busy.as_ptr()) });
    }
}
