//! Finding objects by address (interior pointers included) and marking them.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::heap::{Heap, HeapInner};
use crate::heapbits;
use crate::span::{ALLOC, AllocMarkWords, MARK, Span, UNIFORM_MAX_WORDS};

/// An allocated, published object of a heap, found by address.
///
/// Valid for one cycle: it records the sweep generation it was found in, and marking it
/// after the next `finish_mark` (when its slot may have been freed and reused) is refused —
/// a panic in debug builds, a no-op returning false in release builds. Find it again instead.
#[derive(Debug, Clone, Copy)]
pub struct Object<'h> {
    /// The word of the span's mark bits holding this object's bit.
    mark_word: &'h AtomicU64,
    base: usize,
    size: usize,
    index: usize,
    span: &'h Span,
    heap: &'h HeapInner,
    /// The heap's sweep generation when the object was found.
    cycle: u32,
}

/// Which objects of a span the iterators report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objects {
    /// Every allocated, published object (after a sweep: the live ones; before the span is
    /// swept, also those the last mark found dead).
    Allocated,
    /// Allocated objects whose mark bit is set (during or right after a mark phase: what
    /// marking reached; checkmark verification compares this with its own traversal).
    Marked,
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
    #[inline]
    pub fn addr(&self) -> usize {
        self.base
    }

    /// The slot size: the size class's size, or the pages of a large object.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The object's slot index in its span (the unit of marking).
    #[inline]
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
    #[inline]
    pub fn is_noscan(&self) -> bool {
        self.span.noscan()
    }

    /// Set the mark bit; true when this call marked it (it was white). Outside a mark phase
    /// this does nothing and returns false: a bit set then would survive into the next
    /// cycle (a span swept earlier keeps it) and make an unreached object look already
    /// marked, so its referents would never be scanned.
    #[inline]
    pub fn mark(&self) -> bool {
        if !self.heap.marking.load(Ordering::Relaxed) {
            return false;
        }
        if self.heap.sweepgen() != self.cycle {
            debug_assert!(
                false,
                "runtime: an Object found before finish_mark was marked after it (its slot may \
                 have been freed and reused): find the object again each cycle"
            );
            return false;
        }
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
            self.scan_slots(0, self.size / 8, f);
        }
    }

    /// As [`Object::for_each_pointer_slot`], for the words of bytes `[from, from + len)` of
    /// the object only (both rounded down to words, clamped to the object): a collector scans
    /// a large object in pieces (oblets) so that one object is never one long, unsplittable
    /// piece of work.
    #[inline]
    pub fn for_each_pointer_slot_in(&self, from: usize, len: usize, f: impl FnMut(usize)) {
        if self.span.noscan() {
            return;
        }
        let nwords = self.size / 8;
        let first = (from / 8).min(nwords);
        let n = (len / 8).min(nwords - first);
        self.scan_slots(first, n, f);
    }

    /// Pointer words `[first, first + n)` of the object.
    #[inline]
    fn scan_slots(&self, first: usize, n: usize, f: impl FnMut(usize)) {
        scan_slots(self.heap, self.span, self.base, first, n, f)
    }
}

/// Pointer words `[first, first + n)` of the object at `base` of span `span`, by the heap
/// bits written at allocation.
#[inline(always)]
fn scan_slots(
    heap: &HeapInner,
    span: &Span,
    base: usize,
    first: usize,
    n: usize,
    mut f: impl FnMut(usize),
) {
    if first + n <= UNIFORM_MAX_WORDS
        && let Some(layout) = span.uniform_layout()
    {
        // Every object of the span is laid out alike: no heap-bits load.
        let mut bits = (layout >> first) & ((1u64 << n) - 1);
        while bits != 0 {
            f(base + (first + bits.trailing_zeros() as usize) * 8);
            bits &= bits - 1;
        }
        return;
    }
    let arena = span.arena_ref();
    let lo = base + first * 8;
    if lo + n * 8 <= arena.base + crate::arena::ARENA_BYTES {
        // The common case: the words lie in its span's (first) arena.
        let start = (lo - arena.base) / 8;
        heapbits::for_each(arena.heap_bits.words(), start, n, |w| f(lo + w * 8));
        return;
    }
    scan_slots_huge(heap, lo, n, f)
}

/// Words of an object larger than an arena: walk the heap bits arena by arena.
#[cold]
fn scan_slots_huge(heap: &HeapInner, lo: usize, nwords: usize, mut f: impl FnMut(usize)) {
    let mut addr = lo;
    let mut done = 0;
    while done < nwords {
        let arena = heap.arena_of(addr);
        let arena_end = arena.base + crate::arena::ARENA_BYTES;
        let n = ((arena_end - addr) / 8).min(nwords - done);
        let start = (addr - arena.base) / 8;
        let base = addr;
        heapbits::for_each(arena.heap_bits.words(), start, n, |w| f(base + w * 8));
        done += n;
        addr += n * 8;
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
        let size = s.elemsize();
        Some(Object {
            mark_word,
            base: start + i * size,
            size,
            index: i,
            span: s,
            heap: self,
            cycle: self.sweepgen(),
        })
    }

    /// Call `f` on the objects of span `s` selected by `which` (see [`Objects`]). `s` may be
    /// racing with a sweep or a reuse of its record: every read is an atomic of memory that
    /// lives as long as the heap, and bounds come from validated fields, so a racing walk
    /// reports a stale view, never anything undefined.
    pub(crate) fn walk_span<'h>(
        &'h self,
        s: &'h Span,
        which: Objects,
        f: &mut impl FnMut(Object<'h>),
    ) {
        if s.state.load(Ordering::Acquire) != crate::span::STATE_IN_USE {
            return;
        }
        let start = s.start.load(Ordering::Relaxed);
        let size = s.elemsize();
        let nelems = s.nelems.load(Ordering::Relaxed);
        let cycle = self.sweepgen();
        for w in 0..nelems.div_ceil(64) {
            let (Some(aw), Some(mw)) = (s.word_checked(ALLOC, w), s.word_checked(MARK, w)) else {
                return;
            };
            // Acquire: pairs with the publication of each object (see `Cache`).
            let mut bits = aw.load(Ordering::Acquire);
            if which == Objects::Marked {
                bits &= mw.load(Ordering::Relaxed);
            }
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if i >= nelems {
                    break;
                }
                f(Object {
                    mark_word: mw,
                    base: start + i * size,
                    size,
                    index: i,
                    span: s,
                    heap: self,
                    cycle,
                });
            }
        }
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
    /// no such object, it was already marked, or no mark phase is on (see [`Object::mark`]).
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
    /// Outside a mark phase it marks nothing (see [`Object::mark`]).
    pub fn mark_batch(
        &self,
        addrs: impl IntoIterator<Item = usize>,
        mut newly_marked: impl FnMut(Object<'_>),
    ) {
        let heap = &*self.inner;
        if !heap.marking.load(Ordering::Relaxed) {
            return;
        }
        let cycle = heap.sweepgen();
        // The span of the previous address, with the fields the index computation needs: a
        // batch tends to stay in one span, so most addresses skip the span lookup.
        let mut cur: Option<Cur<'_>> = None;
        // `cur`'s alloc and mark words (`None`: the record read is not a valid span).
        let mut span_words: Option<AllocMarkWords<'_>> = None;
        // The mark word being gathered, kept in locals so the loop runs in registers: its
        // index in `cur`'s span (`NO_WORD` when none; a change of span flushes it first), the
        // bits to skip (marked when first touched, or gathered since), the alloc bits
        // acquired then, and the bits to set.
        const NO_WORD: usize = usize::MAX;
        let mut pw = NO_WORD;
        let mut skip = 0u64;
        let mut alloc = 0u64;
        let mut bits = 0u64;
        let mut words: Option<(&AtomicU64, &AtomicU64)> = None;
        for addr in addrs {
            if !matches!(&cur, Some(c) if addr.wrapping_sub(c.lo) < c.len) {
                let Some((s, _)) = heap.span_of(addr) else {
                    continue;
                };
                if let (Some(c), Some((mw, _))) = (&cur, words.take()) {
                    Pending::flush(heap, c, pw, mw, bits, cycle, &mut newly_marked);
                }
                pw = NO_WORD;
                cur = Some(Cur::of(s));
                span_words = s.alloc_mark_words();
            }
            let Some(c) = &cur else { continue };
            let i = c.index(addr);
            if i >= c.nelems {
                continue;
            }
            let (w, m) = (i / 64, 1u64 << (i % 64));
            if w != pw {
                if let Some((mw, _)) = words.take() {
                    Pending::flush(heap, c, pw, mw, bits, cycle, &mut newly_marked);
                }
                pw = NO_WORD;
                let Some((aw, mw)) = span_words.and_then(|b| b.get(w)) else {
                    continue;
                };
                pw = w;
                words = Some((mw, aw));
                // Relaxed, as in `Object::mark`: a plain load to skip marked objects.
                skip = mw.load(Ordering::Relaxed);
                // Acquire: pairs with the Release store that published the objects (see
                // `Cache`), as in `object_in`.
                alloc = aw.load(Ordering::Acquire);
                bits = 0;
            }
            if skip & m != 0 {
                continue;
            }
            if alloc & m == 0 {
                // Published since we looked? Look again (Acquire, as above).
                if let Some((_, aw)) = words {
                    alloc = aw.load(Ordering::Acquire);
                }
                if alloc & m == 0 {
                    continue;
                }
            }
            bits |= m;
            skip |= m;
        }
        if let (Some(c), Some((mw, _))) = (&cur, words) {
            Pending::flush(heap, c, pw, mw, bits, cycle, &mut newly_marked);
        }
    }

    /// Whether `addr` lies in an arena of this heap (allocated or not): one lookup in the
    /// arena index. A collector uses it to refuse pointers and slots of another heap.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        self.inner.index.lookup(addr).is_some()
    }

    /// Whether the object containing `addr` is marked (false when there is none).
    pub fn is_marked(&self, addr: usize) -> bool {
        self.find_object(addr).is_some_and(|o| o.is_marked())
    }

    /// Call `f` on the objects selected by `which` of the span holding `addr` (any address;
    /// false when it lies in no span in use). See [`Heap::for_each_object`] for what a walk
    /// racing with allocation or sweeping sees.
    pub fn for_each_object_in_span(
        &self,
        addr: usize,
        which: Objects,
        mut f: impl FnMut(Object<'_>),
    ) -> bool {
        let Some((s, _)) = self.inner.span_of(addr) else {
            return false;
        };
        self.inner.walk_span(s, which, &mut f);
        true
    }

    /// Call `f` on every object of the heap selected by `which` (heap profiles, heap dumps,
    /// checkmark verification), span by span.
    ///
    /// Exact while the world is stopped for this heap (no cache allocates) and no sweep runs
    /// — after `sweep_all`, [`Objects::Allocated`] is the live heap; between `start_mark` and
    /// `finish_mark`, [`Objects::Marked`] is what marking reached. Run concurrently with
    /// mutators or sweepers it is a consistent-per-word snapshot: objects allocated or freed
    /// meanwhile may or may not appear. `f` runs with no heap lock held, so it may allocate.
    pub fn for_each_object(&self, which: Objects, mut f: impl FnMut(Object<'_>)) {
        let inner = &*self.inner;
        let mut ci = 0;
        loop {
            // The chunk's address under the lock (the chunk list may grow meanwhile); chunks
            // themselves never move or go away before the heap.
            let chunk: *const [Span] = {
                let l = inner.lock();
                match l.spans.chunks.get(ci) {
                    Some(c) => c.spans(),
                    None => return,
                }
            };
            // SAFETY: span chunks are boxed, never freed before the heap, which `self`
            // borrows; every field of a span is atomic.
            for s in unsafe { &*chunk } {
                inner.walk_span(s, which, &mut f);
            }
            ci += 1;
        }
    }
}

/// A span in use with the fields an object lookup needs read once: a marker scanning
/// objects of one span in a row (a tree built depth-first, an array of small objects) looks
/// the span up once instead of once per object (see [`Heap::span_cursor`]).
///
/// A cursor describes the span as it was when made. Use it within one mark phase for
/// objects known to be live (a marker's grey objects keep their span in use until the
/// sweep); a span freed and reused meanwhile would be described wrongly — harmless to the
/// heap, since [`SpanCursor::object`] still checks the alloc bits, but the answer may name
/// a different object than [`Heap::find_object`] would. [`SpanCursor::marked_slot`] checks
/// nothing: it is for addresses of objects marked this cycle, whose span cannot be freed
/// before the cycle's sweep.
#[derive(Clone, Copy)]
pub struct SpanCursor<'h> {
    cur: Cur<'h>,
    heap: &'h HeapInner,
    cycle: u32,
}

impl std::fmt::Debug for SpanCursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanCursor")
            .field("base", &self.cur.lo)
            .field("bytes", &self.cur.len)
            .field("elemsize", &self.cur.elemsize)
            .finish()
    }
}

impl<'h> SpanCursor<'h> {
    /// Whether `addr` lies in the span's pages.
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.cur.lo) < self.cur.len
    }

    /// The base and size of the object slot of this span holding `addr`, without looking at
    /// the alloc bits: for a marker's grey entries, which are objects it marked this cycle
    /// (or pieces of one) and so stay allocated until the cycle's sweep — [`Self::object`]
    /// costs two bitmap lookups more. `None` when `addr` is outside the span or past its
    /// last slot.
    #[inline(always)]
    pub fn marked_slot(&self, addr: usize) -> Option<(usize, usize)> {
        let i = self.slot_index(addr)?;
        Some((self.cur.lo + i * self.cur.elemsize, self.cur.elemsize))
    }

    /// The index of the slot of this span holding `addr`: `None` outside the span's pages
    /// or past its last slot.
    #[inline(always)]
    fn slot_index(&self, addr: usize) -> Option<usize> {
        if !self.contains(addr) {
            return None;
        }
        let i = self.cur.index(addr);
        (i < self.cur.nelems).then_some(i)
    }

    /// For a span whose objects all share one layout (`Span::ptrmask`: objects of at most
    /// seven words), the object size and the mask of its pointer words (bit i: word i);
    /// `None` for other spans, or when `base` is outside this one. The marker's shortcut
    /// for a grey entry: `base` is taken to be an object's base, as the entries of small
    /// spans are — the mask says nothing about words of any other address.
    #[inline(always)]
    pub fn uniform_pointers(&self, base: usize) -> Option<(usize, u64)> {
        if !self.contains(base) {
            return None;
        }
        let layout = self.cur.span.uniform_layout()?;
        debug_assert_eq!(self.marked_slot(base).map(|(b, _)| b), Some(base));
        Some((self.cur.elemsize, layout))
    }

    /// As [`Object::for_each_pointer_slot`], for the object of this span at `base` (from
    /// [`Self::marked_slot`]) of size `size`.
    #[inline]
    pub fn for_each_pointer_slot(&self, base: usize, size: usize, f: impl FnMut(usize)) {
        if self.cur.span.noscan() {
            return;
        }
        scan_slots(self.heap, self.cur.span, base, 0, size / 8, f);
    }

    /// As [`Object::for_each_pointer_slot_in`], for the object of this span at `base` (from
    /// [`Self::marked_slot`]) of size `size`.
    #[inline]
    pub fn for_each_pointer_slot_in(
        &self,
        base: usize,
        size: usize,
        from: usize,
        len: usize,
        f: impl FnMut(usize),
    ) {
        if self.cur.span.noscan() {
            return;
        }
        let nwords = size / 8;
        let first = (from / 8).min(nwords);
        let n = (len / 8).min(nwords - first);
        scan_slots(self.heap, self.cur.span, base, first, n, f);
    }

    /// The allocated, published object of this span containing `addr` (see
    /// [`Heap::find_object`]; `None` when `addr` is outside the span or in no such object).
    #[inline]
    pub fn object(&self, addr: usize) -> Option<Object<'h>> {
        let i = self.slot_index(addr)?;
        let c = self.cur;
        let bit = 1u64 << (i % 64);
        // Acquire: pairs with the Release store that published the object, as in `object_in`.
        let (alloc_word, mark_word) = c.span.alloc_mark_words()?.get(i / 64)?;
        if alloc_word.load(Ordering::Acquire) & bit == 0 {
            return None;
        }
        Some(Object {
            mark_word,
            base: c.lo + i * c.elemsize,
            size: c.elemsize,
            index: i,
            span: c.span,
            heap: self.heap,
            cycle: self.cycle,
        })
    }
}

impl Heap {
    /// A cursor over the span in use holding `addr` (`None` when there is none), for
    /// looking up many objects of one span (see [`SpanCursor`]).
    #[inline]
    pub fn span_cursor(&self, addr: usize) -> Option<SpanCursor<'_>> {
        let inner = &*self.inner;
        let (s, _) = inner.span_of(addr)?;
        Some(SpanCursor {
            cur: Cur::of(s),
            heap: inner,
            cycle: inner.sweepgen(),
        })
    }
}

/// `mark_batch`'s view of the span of the previous address.
#[derive(Clone, Copy)]
struct Cur<'h> {
    span: &'h Span,
    lo: usize,
    /// Bytes of the span's pages (`addr - lo < len` = inside).
    len: usize,
    elemsize: usize,
    nelems: usize,
    /// `Span::divmagic`, or 0 for a span of one object (see `Span::index_of`).
    magic: u64,
}

impl<'h> Cur<'h> {
    #[inline]
    fn of(s: &'h Span) -> Self {
        let lo = s.start.load(Ordering::Relaxed);
        let npages = s.npages.load(Ordering::Relaxed);
        let len = npages * crate::sizeclass::PAGE_SIZE;
        let large = s.is_large() || len > u32::MAX as usize;
        Cur {
            span: s,
            lo,
            len,
            elemsize: s.elemsize(),
            nelems: s.nelems.load(Ordering::Relaxed),
            magic: if large { 0 } else { s.divmagic() as u64 },
        }
    }

    /// Object index of `addr` (inside the span): `Span::index_of` with the fields cached.
    #[inline(always)]
    fn index(&self, addr: usize) -> usize {
        (((addr - self.lo) as u64 * self.magic) >> 32) as usize
    }
}

/// Flushing one mark word's worth of objects gathered by `mark_batch`.
struct Pending;

impl Pending {
    /// Set `bits` of mark word `w` (`mark_word`) of `cur`'s span with one atomic OR and
    /// report the objects this call marked.
    #[inline]
    fn flush<'h>(
        heap: &'h HeapInner,
        cur: &Cur<'h>,
        w: usize,
        mark_word: &'h AtomicU64,
        bits: u64,
        cycle: u32,
        f: &mut impl FnMut(Object<'_>),
    ) {
        if bits == 0 {
            return;
        }
        // Relaxed, as in `Object::mark`.
        let old = mark_word.fetch_or(bits, Ordering::Relaxed);
        let mut new = bits & !old;
        while new != 0 {
            let i = w * 64 + new.trailing_zeros() as usize;
            new &= new - 1;
            f(Object {
                mark_word,
                base: cur.lo + i * cur.elemsize,
                size: cur.elemsize,
                index: i,
                span: cur.span,
                heap,
                cycle,
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! `find_object` and marking on a real heap, sized to run under Miri.
    use crate::{Heap, Objects, PAGE_SIZE, Shape};

    #[test]
    fn a_span_cursor_answers_as_find_object_does_within_its_span() {
        let heap = Heap::new().unwrap();
        let mut c = heap.cache();
        // Every other slot allocated in a small-object span, and one large object.
        let small: Vec<usize> = (0..64)
            .map(|_| c.alloc(48, Shape::ALL_POINTERS).unwrap().as_ptr() as usize)
            .collect();
        let large = c.alloc(40_000, Shape::ALL_POINTERS).unwrap().as_ptr() as usize;
        for base in [small[0], large] {
            let cur = heap.span_cursor(base).expect("a span in use");
            let lo = base & !(PAGE_SIZE - 1);
            let mut inside = 0;
            for a in (lo..lo + 8 * PAGE_SIZE).step_by(40) {
                let want = heap.find_object(a).map(|o| (o.addr(), o.size()));
                if cur.contains(a) {
                    inside += 1;
                    assert_eq!(cur.object(a).map(|o| (o.addr(), o.size())), want, "{a:#x}");
                } else {
                    assert!(cur.object(a).is_none(), "{a:#x} is outside the span");
                }
            }
            assert!(inside > 0);
        }
        assert!(heap.span_cursor(0).is_none());
        assert!(heap.span_cursor(usize::MAX).is_none());
    }

    #[test]
    fn find_object_answers_only_for_published_objects() {
        let heap = Heap::new().unwrap();
        let mut c = heap.cache();
        let sizes = [16usize, 48, 1024, 40_000];
        let objs: Vec<(usize, usize)> = sizes
            .iter()
            .flat_map(|&n| [n, n])
            .map(|n| {
                (
                    c.alloc(n, Shape::ALL_POINTERS).unwrap().as_ptr() as usize,
                    n,
                )
            })
            .collect();
        for &(p, n) in &objs {
            for a in [p, p + 7, p + n - 1] {
                let o = heap.find_object(a).expect("interior pointer");
                assert_eq!(o.addr(), p);
                assert!(o.size() >= n);
            }
        }
        let (p, n) = objs[0];
        // The next slot of the first span is free: not an object.
        assert!(heap.find_object(p + 2 * n + 2 * 16).is_none());
        for a in [0, 8, usize::MAX, p & !(PAGE_SIZE - 1)] {
            if a != p {
                assert!(heap.find_object(a).is_none(), "{a:#x}");
            }
        }
        assert!(!heap.mark(p), "no mark outside a mark phase");
        // SAFETY: single-threaded: no cache method runs during these calls.
        unsafe { heap.start_mark() };
        let mut newly = Vec::new();
        heap.mark_batch(objs.iter().map(|o| o.0 + 1), |o| newly.push(o.addr()));
        assert_eq!(newly.len(), objs.len());
        let mut marked = 0;
        heap.for_each_object(Objects::Marked, |_| marked += 1);
        assert_eq!(marked, objs.len());
        // SAFETY: as above.
        unsafe { heap.finish_mark() };
        heap.sweep_all();
        let mut live = 0;
        heap.for_each_object(Objects::Allocated, |_| live += 1);
        assert_eq!(live, objs.len());
    }
}
