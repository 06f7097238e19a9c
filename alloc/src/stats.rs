//! Heap statistics: Go's MemStats heap fields.
//!
//! Allocation counts are kept per cache in plain fields and only at span granularity, as Go
//! does: when a cache takes a span it counts every free slot of it as allocated, and when it
//! releases the span it takes back the slots it did not use. The allocation fast path thus
//! touches no counter at all (the tiny allocator bumps one cache-local field when it packs an
//! object into an existing block). Caches add their counts into the heap's atomics when they
//! release their spans (on drop, `Heap::flush_caches`, `Heap::finish_mark`). Sweeps add their
//! frees into the heap's atomics once per span. So the figures are exact whenever no cache
//! holds a span — after `finish_mark` or `flush_caches`, with the world stopped — and otherwise
//! count the free slots of cached spans as allocated, as Go's do between flushes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sizeclass::{CLASS_TO_SIZE, NUM_SIZE_CLASSES, PAGE_SIZE};

/// Entries in [`HeapStats::by_size`], as in Go's `MemStats.BySize`.
pub const BY_SIZE_ENTRIES: usize = 61;

/// Allocation counts of one size class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BySize {
    /// Largest object size of the class.
    pub size: u32,
    /// Cumulative objects allocated.
    pub mallocs: u64,
    /// Cumulative objects freed.
    pub frees: u64,
}

/// The heap fields of Go's `runtime.MemStats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of allocated heap objects.
    pub heap_alloc: u64,
    /// Bytes of heap memory obtained from the OS (in use, idle or released).
    pub heap_sys: u64,
    /// Bytes in idle (free) spans.
    pub heap_idle: u64,
    /// Bytes in in-use spans.
    pub heap_inuse: u64,
    /// Bytes of idle memory returned to the OS.
    pub heap_released: u64,
    /// Allocated heap objects.
    pub heap_objects: u64,
    /// Cumulative objects allocated (tiny allocations included, as Go counts them).
    pub mallocs: u64,
    /// Cumulative objects freed (tiny allocations included, as Go counts them).
    pub frees: u64,
    /// Cumulative bytes allocated.
    pub total_alloc: u64,
    /// Pointer lookups done by the runtime; always 0, as in Go.
    pub lookups: u64,
    /// Bytes of span records in use.
    pub mspan_inuse: u64,
    /// Bytes of span records obtained.
    pub mspan_sys: u64,
    /// Bytes of cache structures in use.
    pub mcache_inuse: u64,
    /// Bytes of cache structures obtained (the peak in use).
    pub mcache_sys: u64,
    /// Per size class counts (Go's 61 entries; entry 0 is size 0 and stays empty).
    pub by_size: [BySize; BY_SIZE_ENTRIES],
}

/// Per-cache counts, plain fields written only by the owning cache.
#[derive(Debug, Clone)]
pub(crate) struct CacheCounts {
    /// Small objects counted as allocated, per size class (may go negative between a refill
    /// and a release within one flush period, hence signed).
    pub(crate) small_alloc: [i64; NUM_SIZE_CLASSES],
    pub(crate) large_alloc: u64,
    pub(crate) large_alloc_bytes: u64,
    pub(crate) tiny_allocs: u64,
}

impl Default for CacheCounts {
    fn default() -> Self {
        CacheCounts {
            small_alloc: [0; NUM_SIZE_CLASSES],
            large_alloc: 0,
            large_alloc_bytes: 0,
            tiny_allocs: 0,
        }
    }
}

/// The heap's shared counters. Written by cache flushes and sweeps (Relaxed `fetch_add`: no
/// ordering is needed, readers want totals), read by `Heap::stats`.
#[derive(Debug)]
pub(crate) struct Counters {
    small_alloc: [AtomicU64; NUM_SIZE_CLASSES],
    small_free: [AtomicU64; NUM_SIZE_CLASSES],
    large_alloc: AtomicU64,
    large_alloc_bytes: AtomicU64,
    large_free: AtomicU64,
    large_free_bytes: AtomicU64,
    tiny_allocs: AtomicU64,
    pub(crate) caches_live: AtomicUsize,
    pub(crate) caches_peak: AtomicUsize,
    /// Bytes of allocated objects plus the free slots of spans held by caches (Go's
    /// `heapLive`): raised by a cache once per span it takes (all its free slots) and per
    /// large object, lowered when a cache gives a span back (the slots it did not use) and by
    /// sweeps (the objects they free). On a line of its own: it is written once per refill.
    live: crate::heap::Padded<AtomicU64>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            small_alloc: std::array::from_fn(|_| AtomicU64::new(0)),
            small_free: std::array::from_fn(|_| AtomicU64::new(0)),
            large_alloc: AtomicU64::new(0),
            large_alloc_bytes: AtomicU64::new(0),
            large_free: AtomicU64::new(0),
            large_free_bytes: AtomicU64::new(0),
            tiny_allocs: AtomicU64::new(0),
            caches_live: AtomicUsize::new(0),
            caches_peak: AtomicUsize::new(0),
            live: crate::heap::Padded(AtomicU64::new(0)),
        }
    }

    /// Add a cache's counts and zero them.
    pub(crate) fn flush(&self, c: &mut CacheCounts) {
        for (class, n) in c.small_alloc.iter_mut().enumerate() {
            if *n != 0 {
                self.small_alloc[class].fetch_add(*n as u64, Ordering::Relaxed);
                *n = 0;
            }
        }
        if c.large_alloc != 0 {
            self.large_alloc.fetch_add(c.large_alloc, Ordering::Relaxed);
            self.large_alloc_bytes
                .fetch_add(c.large_alloc_bytes, Ordering::Relaxed);
        }
        if c.tiny_allocs != 0 {
            self.tiny_allocs.fetch_add(c.tiny_allocs, Ordering::Relaxed);
        }
        c.large_alloc = 0;
        c.large_alloc_bytes = 0;
        c.tiny_allocs = 0;
    }

    #[inline]
    pub(crate) fn live_add(&self, bytes: u64) {
        self.live.fetch_add(bytes, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn live_sub(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// See `live`. Relaxed: a figure for the pacer, not a synchronisation point; it may lag
    /// a concurrent refill or sweep by one span.
    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    pub(crate) fn add_small_free(&self, class: usize, n: usize) {
        self.small_free[class].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_large_free(&self, npages: usize) {
        self.large_free.fetch_add(1, Ordering::Relaxed);
        self.large_free_bytes
            .fetch_add((npages * PAGE_SIZE) as u64, Ordering::Relaxed);
    }

    /// Fill the object counts of `s` (the page and structure figures come from the heap).
    pub(crate) fn fill(&self, s: &mut HeapStats) {
        let mut total_alloc = self.large_alloc_bytes.load(Ordering::Relaxed);
        let mut total_free = self.large_free_bytes.load(Ordering::Relaxed);
        let mut mallocs = self.large_alloc.load(Ordering::Relaxed);
        let mut frees = self.large_free.load(Ordering::Relaxed);
        for (class, &size) in CLASS_TO_SIZE.iter().enumerate() {
            let size = size as u64;
            let a = self.small_alloc[class].load(Ordering::Relaxed);
            let f = self.small_free[class].load(Ordering::Relaxed);
            total_alloc += a * size;
            total_free += f * size;
            mallocs += a;
            frees += f;
            if class < BY_SIZE_ENTRIES {
                s.by_size[class] = BySize {
                    size: size as u32,
                    mallocs: a,
                    frees: f,
                };
            }
        }
        let tiny = self.tiny_allocs.load(Ordering::Relaxed);
        mallocs += tiny;
        frees += tiny;
        s.total_alloc = total_alloc;
        s.heap_alloc = total_alloc.saturating_sub(total_free);
        s.mallocs = mallocs;
        s.frees = frees;
        s.heap_objects = mallocs.saturating_sub(frees);
    }
}
