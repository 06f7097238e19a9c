//! A span: a run of pages holding objects of one span class (or one large object), with its
//! per-object bitmaps and its sweep generation.
//!
//! Span records live in the heap's span pool and are never returned to the system allocator
//! before the heap is dropped, so a pointer to one read from the arena's span table stays
//! dereferenceable for the heap's lifetime even if the span is freed and reused meanwhile; all
//! fields are atomics, so a reader racing with reuse sees stale values, never undefined
//! behaviour. Readers validate (`state`, address inside `[start, start + npages*PAGE)`).
//!
//! Ownership of the mutable fields at any moment: the heap (under its lock) while the span is
//! being created or freed; the cache that holds it; the party that won its sweep claim; or
//! mcentral's list (under the set lock) in between.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sizeclass::{PAGE_SIZE, SPAN_BITMAP_WORDS};
use crate::sweepgen::{SWEEPGEN_FREE, SweepGen};

/// A per-object bitmap of one span (1024 bits, enough for the densest class).
pub(crate) type SpanBits = [AtomicU64; SPAN_BITMAP_WORDS];

pub(crate) const STATE_FREE: u8 = 0;
pub(crate) const STATE_IN_USE: u8 = 1;

/// Span metadata. Which party writes each field is listed beside it.
#[derive(Debug)]
pub(crate) struct Span {
    /// First byte. Heap (locked) at creation; read by anyone.
    pub(crate) start: AtomicUsize,
    /// Length in pages. Heap (locked) at creation; read by anyone.
    pub(crate) npages: AtomicUsize,
    /// Span class (size class * 2 + noscan). Heap at creation.
    pub(crate) spc: AtomicU8,
    /// Bytes per object (the whole span for a large object). Heap at creation.
    pub(crate) elemsize: AtomicUsize,
    /// Objects in the span. Heap at creation.
    pub(crate) nelems: AtomicUsize,
    /// `(2^32 / elemsize) + 1`: division by multiplication for small classes. Heap at creation.
    pub(crate) divmagic: AtomicU32,
    /// FREE or IN_USE. Release store by the heap after every other field (paired with the
    /// Acquire load in `find_object`).
    pub(crate) state: AtomicU8,
    /// Whether free slots may hold old bytes (so allocation must zero them). Owner.
    pub(crate) needzero: AtomicBool,
    /// See `sweepgen.rs`.
    pub(crate) sweepgen: SweepGen,
    /// Allocated-and-published objects. The owning cache sets bits with a Release load/store
    /// (it is the only writer while it holds the span); the sweeper replaces them with the
    /// mark bits; `find_object` reads them with Acquire.
    pub(crate) alloc: SpanBits,
    /// Marked objects. Markers and allocate-black set bits with `fetch_or`; the sweeper
    /// (owning the span, no marker running) reads and clears them.
    pub(crate) mark: SpanBits,
    /// Objects with drop glue that must go to the drop queue when found dead. Set with
    /// `fetch_or` at allocation; cleared with `fetch_and` by `release_finalized` and by sweep.
    pub(crate) finalize: SpanBits,
    /// Objects handed to the drop queue and not yet released: kept alive by sweeps.
    pub(crate) queued: SpanBits,
    /// Objects whose first word is a header written at allocation. Owner writes; sweep clears.
    pub(crate) header: SpanBits,
}

fn zero_bits() -> SpanBits {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Span {
    pub(crate) fn new() -> Self {
        Span {
            start: AtomicUsize::new(0),
            npages: AtomicUsize::new(0),
            spc: AtomicU8::new(0),
            elemsize: AtomicUsize::new(0),
            nelems: AtomicUsize::new(0),
            divmagic: AtomicU32::new(0),
            state: AtomicU8::new(STATE_FREE),
            needzero: AtomicBool::new(false),
            sweepgen: SweepGen::new(SWEEPGEN_FREE),
            alloc: zero_bits(),
            mark: zero_bits(),
            finalize: zero_bits(),
            queued: zero_bits(),
            header: zero_bits(),
        }
    }

    /// Initialise a span record for a new use. Caller: the heap, holding its lock, before the
    /// span is published in the span table.
    pub(crate) fn init(
        &self,
        start: usize,
        npages: usize,
        spc: usize,
        elemsize: usize,
        sg: u32,
        needzero: bool,
    ) {
        let nelems = (npages * PAGE_SIZE).checked_div(elemsize).unwrap_or(0);
        self.start.store(start, Ordering::Relaxed);
        self.npages.store(npages, Ordering::Relaxed);
        self.spc.store(spc as u8, Ordering::Relaxed);
        self.elemsize.store(elemsize, Ordering::Relaxed);
        self.nelems.store(nelems, Ordering::Relaxed);
        let magic = if elemsize <= u32::MAX as usize {
            (u32::MAX as usize / elemsize + 1) as u32
        } else {
            0
        };
        self.divmagic.store(magic, Ordering::Relaxed);
        self.needzero.store(needzero, Ordering::Relaxed);
        for w in 0..SPAN_BITMAP_WORDS {
            self.alloc[w].store(0, Ordering::Relaxed);
            self.mark[w].store(0, Ordering::Relaxed);
            self.finalize[w].store(0, Ordering::Relaxed);
            self.queued[w].store(0, Ordering::Relaxed);
            self.header[w].store(0, Ordering::Relaxed);
        }
        self.sweepgen.set(sg);
        // Release: pairs with the Acquire load of `state` in `find_object`/`object_at`.
        self.state.store(STATE_IN_USE, Ordering::Release);
    }

    /// Object index of byte offset `off` from the span start.
    #[inline]
    pub(crate) fn index_of(&self, off: usize) -> usize {
        let npages = self.npages.load(Ordering::Relaxed);
        if self.spc.load(Ordering::Relaxed) >> 1 == 0 || npages * PAGE_SIZE > u32::MAX as usize {
            // Large objects: one per span.
            return 0;
        }
        ((off as u64 * self.divmagic.load(Ordering::Relaxed) as u64) >> 32) as usize
    }

    pub(crate) fn is_large(&self) -> bool {
        self.spc.load(Ordering::Relaxed) >> 1 == 0
    }

    #[inline]
    pub(crate) fn noscan(&self) -> bool {
        self.spc.load(Ordering::Relaxed) & 1 == 1
    }

    /// Number of words of the per-object bitmaps this span uses.
    pub(crate) fn bitmap_words(&self) -> usize {
        self.nelems.load(Ordering::Relaxed).div_ceil(64)
    }

    /// Count of allocated objects (popcount of the alloc bits).
    pub(crate) fn count_alloc(&self) -> usize {
        (0..self.bitmap_words())
            .map(|w| self.alloc[w].load(Ordering::Acquire).count_ones() as usize)
            .sum()
    }
}

/// Whether bit `i` of a span bitmap is set (Acquire: pairs with the Release publication).
#[inline]
pub(crate) fn test_bit(bits: &SpanBits, i: usize) -> bool {
    bits[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
}
