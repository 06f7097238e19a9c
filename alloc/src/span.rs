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

use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use crate::arena::{Arena, PAGES_PER_ARENA, Words};

use crate::sizeclass::{CLASS_TO_SIZE, NUM_SIZE_CLASSES, PAGE_SIZE, SPAN_BITMAP_WORDS};
use crate::sweepgen::{SWEEPGEN_FREE, SweepGen};

/// Object bitmaps kept per span (each in its own region of `Arena::obj_bits`).
pub(crate) const ALLOC: usize = 0;
/// Mark bits.
pub(crate) const MARK: usize = 1;
/// Objects with drop glue.
pub(crate) const FINALIZE: usize = 2;
/// Objects handed to the drop queue and not yet released.
pub(crate) const QUEUED: usize = 3;
/// Objects with a header word.
pub(crate) const HEADER: usize = 4;
/// Number of bitmap kinds.
pub(crate) const KINDS: usize = 5;
/// Bitmap words each page owns (1024 bits: the densest class has 1024 objects per page).
pub(crate) const WORDS_PER_PAGE: usize = SPAN_BITMAP_WORDS;
/// Of those, the words kept in the *dense* part of the bitmaps: the first `DENSE` words of
/// each page of a span (128 objects per page, enough for every class of 64 bytes and more).
/// Only the five classes under 64 bytes (one-page spans of up to 1024 objects) use the
/// *overflow* part, `WORDS_PER_PAGE - DENSE` words per page kept elsewhere. The split keeps
/// a heap of larger objects from touching (and keeping resident) 128 bytes of bitmap per page
/// per kind: its bitmaps cost 16 bytes per page per kind, packed 256 pages to an OS page.
pub(crate) const DENSE: usize = 2;
/// Overflow words per page.
pub(crate) const OVERFLOW: usize = WORDS_PER_PAGE - DENSE;
/// Distance between two kinds' dense regions: a little more than a region, so that an
/// object's alloc and mark words do not share cache sets or the low 12 address bits (which
/// would make a load of one wait on a store to the other: 4K aliasing).
pub(crate) const DENSE_OFFSET: usize = PAGES_PER_ARENA * DENSE + 72;
/// Distance between two kinds' overflow regions (padded the same way).
pub(crate) const OVERFLOW_OFFSET: usize = PAGES_PER_ARENA * OVERFLOW + 72;
/// Where the overflow regions start in `Arena::obj_bits`.
pub(crate) const OVERFLOW_BASE: usize = KINDS * DENSE_OFFSET;
/// Words of `Arena::obj_bits`.
pub(crate) const OBJ_BITS_WORDS: usize = OVERFLOW_BASE + KINDS * OVERFLOW_OFFSET;

/// Index in `Arena::obj_bits` of word `w` of the bitmap `kind` of a span whose first page is
/// `page` and which has `npages` pages: its first `DENSE * npages` words lie in the dense
/// region from `page * DENSE` on, the rest (only one-page spans of small objects have more)
/// in the overflow region from `page * OVERFLOW` on. `None` past the span's words or the
/// arena. Each page's words belong to the span holding it, so spans never share a word.
#[inline(always)]
pub(crate) fn bits_index(kind: usize, page: usize, npages: usize, w: usize) -> Option<usize> {
    let npages = npages.min(PAGES_PER_ARENA);
    if page >= PAGES_PER_ARENA || kind >= KINDS {
        return None;
    }
    if w < DENSE * npages {
        let i = page * DENSE + w;
        (i < PAGES_PER_ARENA * DENSE).then_some(kind * DENSE_OFFSET + i)
    } else if w < WORDS_PER_PAGE * npages {
        let i = page * OVERFLOW + (w - DENSE * npages);
        (i < PAGES_PER_ARENA * OVERFLOW).then_some(OVERFLOW_BASE + kind * OVERFLOW_OFFSET + i)
    } else {
        None
    }
}

/// A span's alloc and mark bitmap words, located once (see `Span::alloc_mark_words`): word
/// `w` is `w` words into the dense regions when `w < dense`, else `w - dense` words into the
/// overflow regions, exactly as `bits_index` says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AllocMarkWords<'a> {
    bits: Words<'a, AtomicU64>,
    /// Words in the dense regions, and in all.
    dense: usize,
    words: usize,
    /// Indexes in `bits` of the first dense and the first overflow word of each bitmap.
    alloc_dense: usize,
    mark_dense: usize,
    alloc_over: usize,
    mark_over: usize,
}

impl<'a> AllocMarkWords<'a> {
    /// Alloc and mark word `w`; `None` past the span's words.
    #[inline(always)]
    pub(crate) fn get(&self, w: usize) -> Option<(&'a AtomicU64, &'a AtomicU64)> {
        let (a, m) = self.index(w)?;
        Some((self.bits.get(a)?, self.bits.get(m)?))
    }

    /// Indexes in `Arena::obj_bits` of alloc and mark word `w` (`bits_index`'s answers).
    #[inline(always)]
    fn index(&self, w: usize) -> Option<(usize, usize)> {
        if w < self.dense {
            Some((self.alloc_dense + w, self.mark_dense + w))
        } else if w < self.words {
            let o = w - self.dense;
            Some((self.alloc_over + o, self.mark_over + o))
        } else {
            None
        }
    }
}

pub(crate) const STATE_FREE: u8 = 0;
pub(crate) const STATE_IN_USE: u8 = 1;

/// Span metadata. Which party writes each field is listed beside it.
///
/// 32 bytes: a heap keeps one record per span it ever had at once (records are never
/// deallocated, see the module docs), so after a burst the records of spans long freed stay
/// resident; at 8 KiB spans they cost 0.4% of the heap at their peak. The object size and
/// the division magic are therefore not stored but derived from the span class (a table
/// lookup), and counts are kept as narrow as their ranges allow.
#[derive(Debug)]
#[repr(align(32))] // half a cache line: lookups read several fields in a row
pub(crate) struct Span {
    /// First byte. Heap (locked) at creation; read by anyone.
    pub(crate) start: AtomicUsize,
    /// The arena holding the span: the span's object bitmaps live in the arena (see
    /// `Arena::obj_bits`). Heap at creation; never reset, so a racing reader of a recycled
    /// record still finds a live arena.
    pub(crate) arena: AtomicPtr<Arena>,
    /// Length in pages (a large object is limited to `u32::MAX` pages, 32 TiB). Heap
    /// (locked) at creation; read by anyone.
    pub(crate) npages: Narrow<AtomicU32>,
    /// See `sweepgen.rs`.
    pub(crate) sweepgen: SweepGen,
    /// Objects in the span (at most 1024). Heap at creation.
    pub(crate) nelems: Narrow<AtomicU16>,
    /// The span's first page in its arena. Heap at creation.
    pub(crate) page: Narrow<AtomicU16>,
    /// Span class (size class * 2 + noscan). Heap at creation.
    pub(crate) spc: AtomicU8,
    /// FREE or IN_USE. Release store by the heap after every other field (paired with the
    /// Acquire load in `find_object`).
    pub(crate) state: AtomicU8,
    /// Whether free slots may hold old bytes (so allocation must zero them). Owner.
    pub(crate) needzero: AtomicBool,
    /// The pointer layout shared by every pointerful object allocated in the span, for
    /// objects of at most `UNIFORM_MAX_WORDS` words: `UNIFORM | mask` (bit i = word i holds
    /// a pointer) while all agree, `PTRMASK_NONE` before the first and for other sizes,
    /// `PTRMASK_MIXED` once two differ (until the span is freed). A marker scans by it
    /// instead of loading the heap bits, the other cache miss of a small scan, and objects
    /// allocated while it is uniform get no heap bits: the cache that turns it mixed
    /// writes theirs first, then stores `PTRMASK_MIXED` with Release. Written by the owning
    /// cache before it publishes the object (the Release store of the alloc bit orders it);
    /// read (Acquire) by whoever acquired that bit, directly or through a grey list. Reset
    /// at `init`.
    pub(crate) ptrmask: AtomicU8,
}

/// `Span::ptrmask`: no pointerful object yet (or objects too large to be described).
pub(crate) const PTRMASK_NONE: u8 = 0;
/// `Span::ptrmask`: objects of different layouts; scan by the heap bits.
pub(crate) const PTRMASK_MIXED: u8 = 0x7F;
/// `Span::ptrmask`: set when the low bits are the layout of every object of the span.
pub(crate) const UNIFORM: u8 = 0x80;
/// Objects of at most this many words have their layout kept in `Span::ptrmask`.
pub(crate) const UNIFORM_MAX_WORDS: usize = 7;

// (Under loom the sweep generation is a model atomic, larger than a `u32`.)
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Span>() == 32);

/// An atomic integer narrower than `usize`, read and written as `usize` (a field of a span
/// record whose range is known to fit).
#[derive(Debug)]
pub(crate) struct Narrow<A>(A);

macro_rules! narrow {
    ($a:ty, $t:ty) => {
        impl Narrow<$a> {
            const fn new() -> Self {
                Narrow(<$a>::new(0))
            }

            #[inline(always)]
            pub(crate) fn load(&self, o: Ordering) -> usize {
                self.0.load(o) as usize
            }

            /// Panics when `v` does not fit: callers check ranges first.
            #[inline]
            pub(crate) fn store(&self, v: usize, o: Ordering) {
                let v = <$t>::try_from(v).expect("runtime: span field out of range");
                self.0.store(v, o)
            }
        }
    };
}
narrow!(AtomicU32, u32);
narrow!(AtomicU16, u16);

/// `(2^32 / size) + 1` for each size class (0 for class 0, the large objects): division of
/// an offset by the object size as a multiply and a shift, exact for offsets inside a span.
static DIVMAGIC: [u32; NUM_SIZE_CLASSES] = {
    let mut t = [0u32; NUM_SIZE_CLASSES];
    let mut c = 1;
    while c < NUM_SIZE_CLASSES {
        t[c] = (u32::MAX / CLASS_TO_SIZE[c] as u32) + 1;
        c += 1;
    }
    t
};

impl Span {
    pub(crate) fn new() -> Self {
        Span {
            start: AtomicUsize::new(0),
            arena: AtomicPtr::new(std::ptr::null_mut()),
            npages: Narrow::<AtomicU32>::new(),
            sweepgen: SweepGen::new(SWEEPGEN_FREE),
            nelems: Narrow::<AtomicU16>::new(),
            page: Narrow::<AtomicU16>::new(),
            spc: AtomicU8::new(0),
            state: AtomicU8::new(STATE_FREE),
            needzero: AtomicBool::new(false),
            ptrmask: AtomicU8::new(PTRMASK_NONE),
        }
    }

    /// Bytes per object: the size class's size, or the whole span for a large object.
    #[inline(always)]
    pub(crate) fn elemsize(&self) -> usize {
        let class = (self.spc.load(Ordering::Relaxed) >> 1) as usize;
        if class == 0 {
            self.npages.load(Ordering::Relaxed) * PAGE_SIZE
        } else {
            crate::sizeclass::class_size(class)
        }
    }

    /// `(2^32 / elemsize) + 1` for a small span, 0 for a large one (see `DIVMAGIC`).
    #[inline(always)]
    pub(crate) fn divmagic(&self) -> u32 {
        // `spc >> 1` is below `NUM_SIZE_CLASSES` for every value a `u8` span class can hold
        // that `init` stores; `get` keeps a racing reader of a recycled record in bounds.
        DIVMAGIC
            .get((self.spc.load(Ordering::Relaxed) >> 1) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Initialise a span record for a new use. Caller: the heap, holding its lock, before the
    /// span is published in the span table.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn init(
        &self,
        arena: &Arena,
        page: usize,
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
        debug_assert_eq!(self.elemsize(), elemsize, "runtime: span of a foreign size");
        self.nelems.store(nelems, Ordering::Relaxed);
        self.needzero.store(needzero, Ordering::Relaxed);
        self.ptrmask.store(PTRMASK_NONE, Ordering::Relaxed);
        self.arena
            .store(arena as *const Arena as *mut Arena, Ordering::Relaxed);
        self.page.store(page, Ordering::Relaxed);
        // The object bitmaps of free pages are all zero (sweep clears every bit of a dead
        // object, and only empty spans are freed), so there is nothing to clear here, and
        // pages of bitmap that were never used stay untouched.
        debug_assert!(
            (0..self.bitmap_words())
                .all(|w| (0..KINDS).all(|k| self.word(k, w).load(Ordering::Relaxed) == 0))
        );
        self.sweepgen.set(sg);
        // Release: pairs with the Acquire load of `state` in `find_object`/`object_at`.
        self.state.store(STATE_IN_USE, Ordering::Release);
    }

    /// Object index of byte offset `off` from the span start.
    #[inline(always)]
    pub(crate) fn index_of(&self, off: usize) -> usize {
        let npages = self.npages.load(Ordering::Relaxed);
        if self.spc.load(Ordering::Relaxed) >> 1 == 0 || npages * PAGE_SIZE > u32::MAX as usize {
            // Large objects: one per span.
            return 0;
        }
        ((off as u64 * self.divmagic() as u64) >> 32) as usize
    }

    #[inline]
    pub(crate) fn is_large(&self) -> bool {
        self.spc.load(Ordering::Relaxed) >> 1 == 0
    }

    #[inline]
    pub(crate) fn noscan(&self) -> bool {
        self.spc.load(Ordering::Relaxed) & 1 == 1
    }

    /// The pointer words every object of the span shares (bit i: word i holds a pointer),
    /// when the span records one layout (`ptrmask`); `None` while it has none or once it is
    /// mixed. Scans call it for each object: a span can turn mixed while they run.
    #[inline(always)]
    pub(crate) fn uniform_layout(&self) -> Option<u64> {
        // Acquire: the caller acquired an object's alloc bit (or reached it through a grey
        // list whose hand-offs synchronise with whoever did), which the allocating cache
        // released after writing the record; and "mixed" pairs with the Release store in
        // `Cache::note_layout`, made after the heap bits of the objects allocated while the
        // span was uniform.
        let pm = self.ptrmask.load(Ordering::Acquire);
        (pm & UNIFORM != 0).then_some(u64::from(pm & !UNIFORM))
    }

    /// Number of words of the per-object bitmaps this span uses.
    pub(crate) fn bitmap_words(&self) -> usize {
        self.nelems.load(Ordering::Relaxed).div_ceil(64)
    }

    #[inline(always)]
    pub(crate) fn arena_ref(&self) -> &Arena {
        // SAFETY: set at `init` (before the span is reachable by anyone) to an arena boxed in
        // the page allocator, which lives as long as the heap, as does this record; never
        // reset. A record is only reached after its first `init`.
        unsafe { &*self.arena.load(Ordering::Relaxed) }
    }

    /// Word `w` of the span's bitmap of `kind`. For a span the caller owns or whose fields
    /// it has validated; panics rather than reading outside the arena.
    #[inline(always)]
    pub(crate) fn word(&self, kind: usize, w: usize) -> &AtomicU64 {
        self.word_checked(kind, w)
            .expect("runtime: span bitmap word out of range")
    }

    /// Like `word`, for racing readers: `None` when `w` lies outside the span's pages.
    #[inline(always)]
    pub(crate) fn word_checked(&self, kind: usize, w: usize) -> Option<&AtomicU64> {
        let p = self.page.load(Ordering::Relaxed);
        let npages = self.npages.load(Ordering::Relaxed);
        let i = bits_index(kind, p, npages, w)?;
        self.arena_ref().obj_bits.words().get(i)
    }

    /// The alloc and mark words of this span as one snapshot of its pages: a marker that
    /// looks up many words of one span resolves the dense / overflow split once here instead
    /// of per word. `None` when the fields read are not a valid span of the arena (a racing
    /// reader of a recycled record).
    #[inline]
    pub(crate) fn alloc_mark_words(&self) -> Option<AllocMarkWords<'_>> {
        let page = self.page.load(Ordering::Relaxed);
        let npages = self.npages.load(Ordering::Relaxed);
        if npages == 0 || page >= PAGES_PER_ARENA {
            return None;
        }
        // A span lies in one arena, except an object larger than the rest of it, whose one
        // word is dense: its words stop at the arena's end.
        let (dense, words) = if npages <= PAGES_PER_ARENA - page {
            (DENSE * npages, WORDS_PER_PAGE * npages)
        } else {
            let d = DENSE * (PAGES_PER_ARENA - page);
            (d, d)
        };
        let m = AllocMarkWords {
            bits: self.arena_ref().obj_bits.words(),
            dense,
            words,
            alloc_dense: ALLOC * DENSE_OFFSET + page * DENSE,
            mark_dense: MARK * DENSE_OFFSET + page * DENSE,
            alloc_over: OVERFLOW_BASE + ALLOC * OVERFLOW_OFFSET + page * OVERFLOW,
            mark_over: OVERFLOW_BASE + MARK * OVERFLOW_OFFSET + page * OVERFLOW,
        };
        debug_assert!((0..words.min(WORDS_PER_PAGE + 1)).all(|w| {
            let (a, k) = m.index(w).unwrap();
            Some(a) == bits_index(ALLOC, page, npages, w)
                && Some(k) == bits_index(MARK, page, npages, w)
        }));
        Some(m)
    }

    #[inline(always)]
    pub(crate) fn alloc_w(&self, w: usize) -> &AtomicU64 {
        self.word(ALLOC, w)
    }
    #[inline(always)]
    pub(crate) fn mark_w(&self, w: usize) -> &AtomicU64 {
        self.word(MARK, w)
    }
    #[inline(always)]
    pub(crate) fn finalize_w(&self, w: usize) -> &AtomicU64 {
        self.word(FINALIZE, w)
    }
    #[inline(always)]
    pub(crate) fn queued_w(&self, w: usize) -> &AtomicU64 {
        self.word(QUEUED, w)
    }
    #[inline(always)]
    pub(crate) fn header_w(&self, w: usize) -> &AtomicU64 {
        self.word(HEADER, w)
    }

    /// Whether bit `i` of bitmap `kind` is set (Acquire: pairs with the Release publication).
    pub(crate) fn test_bit(&self, kind: usize, i: usize) -> bool {
        self.word(kind, i / 64).load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Count of allocated objects (popcount of the alloc bits).
    pub(crate) fn count_alloc(&self) -> usize {
        (0..self.bitmap_words())
            .map(|w| self.alloc_w(w).load(Ordering::Acquire).count_ones() as usize)
            .sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bitmap_words_of_different_spans_and_kinds_never_collide() {
        // Tile the arena with spans of one length, for several lengths: every word of every
        // kind of every span maps to its own index inside `obj_bits`.
        // Under Miri: two lengths, the arena's first and last 24 spans.
        let lengths: &[usize] = if cfg!(miri) {
            &[1, 3]
        } else {
            &[1, 2, 3, 7, 10]
        };
        for &npages in lengths {
            let mut used = vec![false; OBJ_BITS_WORDS];
            let mut page = 0;
            while page + npages <= PAGES_PER_ARENA {
                let last = PAGES_PER_ARENA - PAGES_PER_ARENA % npages;
                if cfg!(miri) && page >= 24 * npages && page + 24 * npages < last {
                    page = last - 24 * npages;
                }
                for kind in 0..KINDS {
                    for w in 0..WORDS_PER_PAGE * npages {
                        let i = bits_index(kind, page, npages, w).expect("word in range");
                        assert!(!used[i], "npages {npages} page {page} kind {kind} word {w}");
                        used[i] = true;
                    }
                    assert_eq!(
                        bits_index(kind, page, npages, WORDS_PER_PAGE * npages),
                        None
                    );
                }
                page += npages;
            }
        }
        assert_eq!(bits_index(ALLOC, PAGES_PER_ARENA, 1, 0), None);
        assert_eq!(bits_index(KINDS, 0, 1, 0), None);
    }
}
