//! Arenas: 64 MiB, 64 MiB-aligned regions of address space reserved with `MAP_NORESERVE`, and
//! the flat index that maps any address to its arena in one load.
//!
//! The index has one word per possible arena in a 48-bit address space (2^22 words, 32 MiB of
//! untouched `MAP_NORESERVE` memory: only the pages that hold live entries ever get backed).
//! Each arena carries its span table (one span pointer per page) and its heap bits (one
//! pointer bit per 8-byte word), both mapped the same lazy way.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::error::AllocError;
use crate::os::Mapping;
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
    map: Mapping,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T> LazyWords<T> {
    /// `T` must be an atomic integer or pointer type whose all-zero bit pattern is valid.
    pub(crate) fn new(len: usize) -> Result<Self, AllocError> {
        let bytes = (len * std::mem::size_of::<T>()).next_multiple_of(4096);
        let map = Mapping::new(bytes)?;
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
        if cfg!(miri) {
            // Miri supports no `madvise`, and zeroing by hand would race with the atomic
            // readers the caller allows: leave the values (their meaning does not change).
            return;
        }
        // SAFETY: the range lies inside the mapping; by the caller's guarantee no thread
        // writes it now and its observable meaning does not change when it reads back as
        // zeros. Concurrent readers only ever use atomic loads.
        unsafe { self.map.discard(lo, hi - lo) };
    }

    pub(crate) fn words(&self) -> Words<'_, T> {
        // SAFETY: the mapping is page-aligned (so aligned for `T`), `len * size_of::<T>()`
        // bytes long, zero-filled by the kernel, and lives as long as `self`. `T` is only ever
        // instantiated with atomic types (AtomicUsize, AtomicU64, AtomicPtr) for which all-zero
        // is a valid value and through which every access is atomic, so shared references
        // from several threads are sound. No `&mut` to the bytes is ever created.
        unsafe { Words::from_raw(self.map.base() as *const T, self.len) }
    }
}

/// A view of `len` words at `ptr`, indexed one word at a time: unlike a slice, using it never
/// creates a reference to the whole range (a multi-megabyte slice reference would be retagged
/// over its whole length at each use under Miri, and the heap holds such views everywhere).
#[derive(Debug)]
pub(crate) struct Words<'a, T> {
    ptr: *const T,
    len: usize,
    _l: std::marker::PhantomData<&'a [T]>,
}

impl<T> Clone for Words<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Words<'_, T> {}

impl<'a, T> Words<'a, T> {
    /// # Safety
    /// `ptr..ptr + len` must be valid, aligned, initialised `T`s for `'a`, only ever accessed
    /// through shared references (`T` is an atomic type).
    pub(crate) unsafe fn from_raw(ptr: *const T, len: usize) -> Self {
        Words {
            ptr,
            len,
            _l: std::marker::PhantomData,
        }
    }

    /// The words of a slice (tests, and small arrays).
    #[cfg(test)]
    pub(crate) fn of(s: &'a [T]) -> Self {
        // SAFETY: a slice is valid for its lifetime.
        unsafe { Self::from_raw(s.as_ptr(), s.len()) }
    }

    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> Option<&'a T> {
        if i < self.len {
            // SAFETY: in bounds of the range `from_raw`'s caller vouched for, for `'a`.
            Some(unsafe { &*self.ptr.add(i) })
        } else {
            None
        }
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_ptr(&self) -> *const T {
        self.ptr
    }
}

impl<T> std::ops::Index<usize> for Words<'_, T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, i: usize) -> &T {
        self.get(i)
            .expect("runtime: heap metadata index out of range")
    }
}

/// One arena's metadata.
#[derive(Debug)]
pub(crate) struct Arena {
    /// First byte of the arena (64 MiB-aligned). Immutable.
    pub(crate) base: usize,
    /// Position in the page allocator's arena list. Immutable.
    pub(crate) index: usize,
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

    pub(crate) fn new(base: usize, index: usize) -> Result<Self, AllocError> {
        Ok(Arena {
            base,
            index,
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

/// A reservation of `n` consecutive arenas, aligned to the arena size, with no slack kept
/// (the unaligned ends of the mapping are unmapped at once), so the heap's address space is
/// what its arenas span. Unmapped when the heap is dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) map: Mapping,
    pub(crate) base: usize,
}

impl Reservation {
    pub(crate) fn new(n: usize) -> Result<Self, AllocError> {
        let bytes = n
            .checked_mul(ARENA_BYTES)
            .filter(|&b| b < (1usize << ADDR_BITS))
            .ok_or_else(|| AllocError::too_large(n.saturating_mul(ARENA_BYTES)))?;
        let map = Mapping::aligned(bytes, ARENA_BYTES)?;
        let base = map.base();
        if base + bytes > (1usize << ADDR_BITS) {
            return Err(AllocError::too_large(bytes));
        }
        Ok(Reservation { map, base })
    }

    /// Return `[addr, addr+len)` to the OS; the range reads as zeros afterwards.
    pub(crate) fn release(&self, addr: usize, len: usize) {
        // SAFETY: the range lies inside this mapping (the caller passes free pages of one of
        // its arenas) and holds no live object: the page allocator has them out of every
        // span, so nothing accesses them while they are discarded, and free memory reads as
        // zero afterwards, which the allocator relies on.
        unsafe { self.map.discard(addr - self.base, len) };
    }
}
