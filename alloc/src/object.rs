//! Finding objects by address (interior pointers included) and marking them.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::heap::{Heap, HeapInner};
use crate::heapbits;
use crate::span::{ALLOC, MARK, Span};

/// An allocated, published object of a heap, found by address.
#[derive(Debug, Clone, Copy)]
pub struct Object<'h> {
    /// The word of the span's mark bits holding this object's bit.
    mark_word: &'h AtomicU64,
    base: usize,
    size: usize,
    index: usize,
    span: &'h Span,
    heap: &'h HeapInner,
}

/// Facts about the span holding an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanInfo {
    /// First byte of the span.
    pub base: usize,
    /// Length in pages.
    pub npages: usize,
    /// Size class (0 for a large object).
    pub size_class: usize,
    /// Whether the span holds no pointers.
    pub noscan: bool,
    /// Object slots in the span.
    pub nelems: usize,
}

impl<'h> Object<'h> {
    /// The object's first byte (the header, when it has one).
    pub fn base(&self) -> NonNull<u8> {
        NonNull::new(self.base as *mut u8).expect("runtime: null heap object")
    }

    /// The object's first byte, as an address.
    pub fn addr(&self) -> usize {
        self.base
    }

    /// The slot size: the size class's size, or the pages of a large object.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The object's slot index in its span (the unit of marking).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The span holding the object.
    pub fn span(&self) -> SpanInfo {
        let s = self.span;
        SpanInfo {
            base: s.start.load(Ordering::Relaxed),
            npages: s.npages.load(Ordering::Relaxed),
            size_class: (s.spc.load(Ordering::Relaxed) >> 1) as usize,
            noscan: s.noscan(),
            nelems: s.nelems.load(Ordering::Relaxed),
        }
    }

    /// Whether the object holds no pointers (never scanned).
    pub fn is_noscan(&self) -> bool {
        self.span.noscan()
    }

    /// Set the mark bit; true when this call marked it (it was white).
    #[inline]
    pub fn mark(&self) -> bool {
        let m = 1u64 << (self.index % 64);
        // Relaxed: marking only needs atomicity between markers; the sweep that reads the bits
        // is ordered after marking by the stop-the-world `finish_mark`.
        self.mark_word.fetch_or(m, Ordering::Relaxed) & m == 0
    }

    /// Whether the mark bit is set.
    #[inline]
    pub fn is_marked(&self) -> bool {
        self.mark_word.load(Ordering::Relaxed) & (1 << (self.index % 64)) != 0
    }

    /// The header word written at allocation, when the object was allocated with one.
    ///
    /// # Safety
    /// The object must still be allocated for the duration of the call (not freed by a sweep
    /// since it was found): the header lives in the object's memory, which a later
    /// allocation of the slot would overwrite. Holding the object reachable for the current
    /// cycle, or calling this while the world is stopped or marking, satisfies it; and no
    /// code may write the header word (it belongs to the allocator).
    pub unsafe fn header(&self) -> Option<usize> {
        if !self.span.test_bit(crate::span::HEADER, self.index) {
            return None;
        }
        // SAFETY: the header bit is set, so the allocating cache wrote the header word at
        // `base` before the Release store of the alloc bit that `find_object` acquired (and
        // the header bit's own store precedes it too); the caller guarantees the object is
        // still allocated and that nobody writes the word. It is 8-aligned and mapped.
        Some(unsafe { std::ptr::read(self.base as *const usize) })
    }

    /// Call `f` with the address of every word of the object that holds a pointer, as the
    /// heap bits written at allocation say. Noscan objects have none.
    #[inline]
    pub fn for_each_pointer_slot(&self, f: impl FnMut(usize)) {
        if !self.span.noscan() {
            self.scan_slots(f);
        }
    }

    #[inline]
    fn scan_slots(&self, mut f: impl FnMut(usize)) {
        let nwords = self.size / 8;
        let arena = self.span.arena_ref();
        if self.base + self.size <= arena.base + crate::arena::ARENA_BYTES {
            // The common case: the object lies in its span's (first) arena.
            let base = self.base;
            let start = (base - arena.base) / 8;
            heapbits::for_each(arena.heap_bits.words(), start, nwords, |w| f(base + w * 8));
            return;
        }
        self.scan_slots_huge(f)
    }

    /// An object larger than an arena: walk the heap bits arena by arena.
    #[cold]
    fn scan_slots_huge(&self, mut f: impl FnMut(usize)) {
        let nwords = self.size / 8;
        let mut addr = self.base;
        let mut done = 0;
        while done < nwords {
            let arena = self.heap.arena_of(addr);
            let arena_end = arena.base + crate::arena::ARENA_BYTES;
            let n = ((arena_end - addr) / 8).min(nwords - done);
            let start = (addr - arena.base) / 8;
            let base = addr;
            heapbits::for_each(arena.heap_bits.words(), start, n, |w| f(base + w * 8));
            done += n;
            addr += n * 8;
        }
    }
}

impl HeapInner {
    /// See [`Heap::find_object`].
    #[inline]
    pub(crate) fn find_object(&self, addr: usize) -> Option<Object<'_>> {
        let (s, _) = self.span_of(addr)?;
        self.object_in(s, addr)
    }

    /// The published object of span `s` containing `addr`, which lies in `s`'s pages.
    #[inline]
    pub(crate) fn object_in<'h>(&'h self, s: &'h Span, addr: usize) -> Option<Object<'h>> {
        let start = s.start.load(Ordering::Relaxed);
        let i = s.index_of(addr - start);
        if i >= s.nelems.load(Ordering::Relaxed) {
            return None;
        }
        let bit = 1u64 << (i % 64);
        // Acquire: pairs with the Release store that published the object (see `Cache`).
        if s.word_checked(ALLOC, i / 64)?.load(Ordering::Acquire) & bit == 0 {
            return None;
        }
        let mark_word = s.word_checked(MARK, i / 64)?;
        let size = s.elemsize.load(Ordering::Relaxed);
        Some(Object {
            mark_word,
            base: start + i * size,
            size,
            index: i,
            span: s,
            heap: self,
        })
    }
}

impl Heap {
    /// The object containing `addr` (any interior address), if `addr` lies in an object that
    /// is allocated and published. `None` for free slots, slots a cache has claimed but not
    /// yet published, span tails, free pages, and any address outside the heap — never a
    /// crash, whatever the address.
    #[inline]
    pub fn find_object(&self, addr: usize) -> Option<Object<'_>> {
        self.inner.find_object(addr)
    }

    /// Mark the object containing `addr`; true when this call marked it. False when there is
    /// no such object or it was already marked.
    pub fn mark(&self, addr: usize) -> bool {
        self.find_object(addr).is_some_and(|o| o.mark())
    }

    /// Mark the objects containing each of `addrs` (addresses that are not in an object are
    /// skipped) and call `newly_marked` once for every object this call marked — the ones the
    /// collector must now scan.
    ///
    /// Equivalent to calling [`Heap::mark`] on each address, but objects whose bits share a
    /// mark word (up to 64 neighbours) are marked with one atomic OR: a batch of roots or of
    /// a scanned object's referents, which tend to be allocated together, costs a fraction of
    /// the read-modify-writes. Objects already marked are skipped with a plain load.
    pub fn mark_batch(
        &self,
        addrs: impl IntoIterator<Item = usize>,
        mut newly_marked: impl FnMut(Object<'_>),
    ) {
        let mut pending: Vec<Object<'_>> = Vec::new();
        let mut word: Option<&AtomicU64> = None;
        let mut bits = 0u64;
        let mut flush = |word: &AtomicU64, bits: u64, pending: &mut Vec<Object<'_>>| {
            // Relaxed, as in `Object::mark`.
            let old = word.fetch_or(bits, Ordering::Relaxed);
            for o in pending.drain(..) {
                if old & (1 << (o.index % 64)) == 0 {
                    newly_marked(o);
                }
            }
        };
        // The span of the previous address and its bounds: a batch tends to stay in a span.
        let mut last: Option<(usize, usize, &Span)> = None;
        for addr in addrs {
            let s = match last {
                Some((lo, hi, s)) if addr >= lo && addr < hi => s,
                _ => {
                    let Some((s, _)) = self.inner.span_of(addr) else {
                        continue;
                    };
                    let lo = s.start.load(Ordering::Relaxed);
                    let hi = lo + s.npages.load(Ordering::Relaxed) * crate::sizeclass::PAGE_SIZE;
                    last = Some((lo, hi, s));
                    s
                }
            };
            let Some(o) = self.inner.object_in(s, addr) else {
                continue;
            };
            let m = 1u64 << (o.index % 64);
            if o.mark_word.load(Ordering::Relaxed) & m != 0 {
                continue;
            }
            match word {
                Some(w) if std::ptr::eq(w, o.mark_word) => {
                    if bits & m != 0 {
                        continue;
                    }
                }
                Some(w) => {
                    flush(w, bits, &mut pending);
                    bits = 0;
                    word = Some(o.mark_word);
                }
                None => word = Some(o.mark_word),
            }
            bits |= m;
            pending.push(o);
        }
        if let Some(w) = word {
            flush(w, bits, &mut pending);
        }
    }

    /// Whether the object containing `addr` is marked (false when there is none).
    pub fn is_marked(&self, addr: usize) -> bool {
        self.find_object(addr).is_some_and(|o| o.is_marked())
    }
}
