//! Arenas: 64 MiB, 64 MiB-aligned regions of address space reserved with `MAP_NORESERVE`, and
//! the flat index that maps any address to its arena in one load.
//!
//! The index has one word per possible arena in a 48-bit address space (2^22 words, 32 MiB of
//! untouched `MAP_NORESERVE` memory: only the pages that hold live entries ever get backed).
//! Each arena carries its span table (one span pointer per page) and its heap bits (one
//! pointer bit per 8-byte word), both mapped the same lazy way.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use memmap2::{MmapMut, MmapOptions};

use crate::error::AllocError;
use crate::sizeclass::PAGE_SIZE;
use crate::span::Span;

/// log2 of the arena size.
pub const ARENA_SHIFT: u32 = 26;
/// Bytes per arena (64 MiB).
pub const ARENA_BYTES: usize = 1 << ARENA_SHIFT;
/// Pages per arena.
pub const PAGES_PER_ARENA: usize = ARENA_BYTES / PAGE_SIZE;
/// Addresses at or above `1 << ADDR_BITS` are never heap addresses.
pub const ADDR_BITS: u32 = 48;
const INDEX_LEN: usize = 1 << (ADDR_BITS - ARENA_SHIFT);

/// Anonymous `MAP_NORESERVE` memory seen as a slice of atomic words: zero until written, and
/// backed by the OS only where touched.
#[derive(Debug)]
pub(crate) struct LazyWords<T> {
    map: MmapMut,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T> LazyWords<T> {
    /// `T` must be an atomic integer or pointer type whose all-zero bit pattern is valid.
    pub(crate) fn new(len: usize) -> Result<Self, AllocError> {
        let bytes = len * std::mem::size_of::<T>();
        let map = MmapOptions::new()
            .len(bytes)
            .no_reserve_swap()
            .map_anon()
            .map_err(|e| AllocError::os(bytes, &e))?;
        Ok(LazyWords {
            map,
            len,
            _t: std::marker::PhantomData,
        })
    }

    /// Return to the OS the whole OS pages inside words `[first, first + n)`; they read as
    /// zero afterwards.
    ///
    /// The caller (holding the heap lock) guarantees that nobody writes those words
    /// meanwhile, and that reading them as zero instead of their current values is correct:
    /// metadata of free pages only (object bitmaps and span-table entries, which are already
    /// zero, and heap bits, which are rewritten before any object there is published).
    pub(crate) fn release(&self, first: usize, n: usize) {
        const OS_PAGE: usize = 4096;
        let sz = std::mem::size_of::<T>();
        let lo = (first * sz).next_multiple_of(OS_PAGE);
        let hi = ((first + n) * sz) / OS_PAGE * OS_PAGE;
        if hi <= lo || hi > self.map.len() {
            return;
        }
        // SAFETY: the range lies inside the mapping; by the caller's guarantee no thread
        // writes it now and its observable meaning does not change when it reads back as
        // zeros. Concurrent readers only ever use atomic loads.
        let r = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo)
        };
        if let Err(e) = r {
            panic!("runtime: madvise(MADV_DONTNEED) on free heap metadata failed: {e}");
        }
    }

    pub(crate) fn words(&self) -> &[T] {
        // SAFETY: the mapping is page-aligned (so aligned for `T`), `len * size_of::<T>()`
        // bytes long, zero-filled by the kernel, and lives as long as `self`. `T` is only ever
        // instantiated with atomic types (AtomicUsize, AtomicU64, AtomicPtr) for which all-zero
        // is a valid value and through which every access is atomic, so shared references
        // from several threads are sound. No `&mut` to the bytes is ever created.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<T>(), self.len) }
    }
}

/// One arena's metadata.
#[derive(Debug)]
pub(crate) struct Arena {
    /// First byte of the arena (64 MiB-aligned). Immutable.
    pub(crate) base: usize,
    /// Span owning each page, or null. Written by the heap under its lock (Release), read by
    /// `find_object` (Acquire).
    pub(crate) spans: LazyWords<AtomicPtr<Span>>,
    /// One bit per word of the arena: 1 = the word holds a GC pointer. Written by the cache
    /// that allocates the object (single writer per span; plain load+store), published by the
    /// Release store of the object's alloc bit; read by markers after an Acquire of that bit.
    pub(crate) heap_bits: LazyWords<AtomicU64>,
    /// The spans' object bitmaps (alloc, mark, finalize, queued, header: one region each),
    /// 1024 bits per page per kind, split in a dense and an overflow part (see
    /// `span::bits_index`). Words of free pages are zero. Touched only where used: 16 bytes
    /// per page per kind, plus 112 for pages of objects under 64 bytes. Who writes which bits is documented on `Span`.
    pub(crate) obj_bits: LazyWords<AtomicU64>,
}

impl Arena {
    /// Return the metadata of free pages `[page, page + n)` to the OS along with the pages.
    pub(crate) fn release_meta(&self, page: usize, n: usize) {
        use crate::span::{DENSE, DENSE_OFFSET, KINDS, OVERFLOW, OVERFLOW_BASE, OVERFLOW_OFFSET};
        for k in 0..KINDS {
            self.obj_bits
                .release(k * DENSE_OFFSET + page * DENSE, n * DENSE);
            self.obj_bits.release(
                OVERFLOW_BASE + k * OVERFLOW_OFFSET + page * OVERFLOW,
                n * OVERFLOW,
            );
        }
        let hb_per_page = PAGE_SIZE / 8 / 64;
        self.heap_bits.release(page * hb_per_page, n * hb_per_page);
        self.spans.release(page, n);
    }

    pub(crate) fn new(base: usize) -> Result<Self, AllocError> {
        Ok(Arena {
            base,
            spans: LazyWords::new(PAGES_PER_ARENA)?,
            heap_bits: LazyWords::new(ARENA_BYTES / 8 / 64)?,
            obj_bits: LazyWords::new(crate::span::OBJ_BITS_WORDS)?,
        })
    }

    #[inline]
    pub(crate) fn page_of(&self, addr: usize) -> usize {
        (addr - self.base) / PAGE_SIZE
    }
}

/// The address → arena index.
#[derive(Debug)]
pub(crate) struct ArenaIndex {
    /// `*const Arena` per 64 MiB of address space, or 0. Written by the heap under its lock
    /// (Release, after the arena is fully built), read lock-free (Acquire).
    slots: LazyWords<AtomicUsize>,
}

impl ArenaIndex {
    pub(crate) fn new() -> Result<Self, AllocError> {
        Ok(ArenaIndex {
            slots: LazyWords::new(INDEX_LEN)?,
        })
    }

    /// The arena holding `addr`, if any. Any address at all is accepted.
    #[inline]
    pub(crate) fn lookup(&self, addr: usize) -> Option<*const Arena> {
        let i = addr >> ARENA_SHIFT;
        let p = self.slots.words().get(i)?.load(Ordering::Acquire);
        if p == 0 {
            None
        } else {
            Some(p as *const Arena)
        }
    }

    /// Publish `arena` for its address range. The pointee must outlive the index.
    pub(crate) fn publish(&self, arena: *const Arena, base: usize) {
        self.slots.words()[base >> ARENA_SHIFT].store(arena as usize, Ordering::Release);
    }
}

/// A reservation of `n` consecutive arenas, aligned to the arena size. The mapping is kept
/// whole (with its alignment slack, never touched) until the heap is dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) map: MmapMut,
    pub(crate) base: usize,
}

impl Reservation {
    pub(crate) fn new(n: usize) -> Result<Self, AllocError> {
        let bytes = n
            .checked_mul(ARENA_BYTES)
            .and_then(|b| b.checked_add(ARENA_BYTES))
            .filter(|&b| b < (1usize << ADDR_BITS))
            .ok_or_else(|| AllocError::too_large(n.saturating_mul(ARENA_BYTES)))?;
        let map = MmapOptions::new()
            .len(bytes)
            .no_reserve_swap()
            .map_anon()
            .map_err(|e| AllocError::os(bytes, &e))?;
        let raw = map.as_ptr() as usize;
        let base = (raw + ARENA_BYTES - 1) & !(ARENA_BYTES - 1);
        if base + n * ARENA_BYTES > (1usize << ADDR_BITS) {
            return Err(AllocError::too_large(bytes));
        }
        Ok(Reservation { map, base })
    }

    /// Return `[addr, addr+len)` to the OS; the range reads as zeros afterwards.
    pub(crate) fn release(&self, addr: usize, len: usize) {
        let off = addr - self.map.as_ptr() as usize;
        // SAFETY: the range lies inside this mapping (the caller passes free pages of one of
        // its arenas) and holds no live object: the page allocator marks it free and nothing
        // may access free pages, so discarding their contents (MADV_DONTNEED makes them read
        // back as zeros) cannot change any value a live reference observes.
        let r = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, off, len)
        };
        if let Err(e) = r {
            panic!("runtime: madvise(MADV_DONTNEED) on free heap pages failed: {e}");
        }
    }
}
