//! Sweeping: turning a span's mark bits into its alloc bits once per cycle, freeing the
//! unmarked objects (and the span when nothing survives), queueing dead objects that carry
//! drop glue instead of freeing them (`finalize.rs`), and handing those to the drop queue
//! once the sweep is over.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use crate::finalize;
use crate::heap::{HeapInner, SpanPtr};
use crate::sizeclass::NUM_SPAN_CLASSES;
use crate::span::Span;
use crate::sweepgen::{SweepGen, SweepLists};

/// What a sweep left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swept {
    /// Nothing survived; the span went back to the page heap.
    Freed,
    /// `nalloc` objects survive.
    Kept { nalloc: usize },
}

/// Dead objects with drop glue recorded by sweeps and not yet handed to the drop queue, in
/// memory reserved outside stop-the-world (see `HeapInner::defer_drops`).
#[derive(Debug, Default)]
pub(crate) struct Drops {
    pub(crate) objs: Vec<(usize, usize)>,
    /// A coordinator's sweep found no room for some objects (they wait for a later sweep):
    /// grow before the next stop.
    pub(crate) starved: bool,
}

/// Entries `Drops` keeps room for from the start.
pub(crate) const DROPS_RESERVE: usize = 256;

thread_local! {
    /// Set on the thread running `start_mark` / `finish_mark`: while the world is stopped it
    /// must not call the system allocator or user code (a stopped thread may hold malloc's
    /// lock, or the drop queue's).
    static COORDINATOR: Cell<bool> = const { Cell::new(false) };
}

/// A role the current thread plays until the guard drops: a flag in a thread-local.
pub(crate) struct Role(&'static std::thread::LocalKey<Cell<bool>>);

impl Role {
    /// The stop-the-world coordinator (`COORDINATOR`).
    pub(crate) fn coordinating() -> Role {
        Role::begin(&COORDINATOR)
    }

    /// A zeroing background sweeper (`ZEROING`).
    pub(crate) fn zeroing() -> Role {
        Role::begin(&ZEROING)
    }

    fn begin(flag: &'static std::thread::LocalKey<Cell<bool>>) -> Role {
        flag.with(|c| c.set(true));
        Role(flag)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.0.with(|c| c.set(false));
    }
}

fn coordinating() -> bool {
    COORDINATOR.with(|c| c.get())
}

thread_local! {
    /// Set on a background sweeper's thread while it sweeps (`Heap::sweep_one_zeroing`): the
    /// spans it frees are zeroed first, so the next taker of their pages need not zero them.
    static ZEROING: Cell<bool> = const { Cell::new(false) };
}

/// The largest span a zeroing sweeper zeroes: small-object spans (80 KiB at most) and large
/// objects up to 128 KiB. A sweep holds off a stop of the world for the length of one span,
/// and zeroing 128 KiB takes a few microseconds; larger runs are left to their taker (or to
/// the scavenger, which returns them to the OS zeroed).
///
/// Spans of slots up to `STORE_ZERO_MAX` bytes are not zeroed at all: allocation zeroes
/// such a slot with a few stores into the cache line it is about to write, while a memset
/// here pulls the whole span through this thread's cache only for it to be evicted before
/// the next taker writes it. Binary-trees (16-byte nodes) runs 0.925× the time without
/// them (median of 10 paired runs; the sweeper's memset was 2.5% of its profile).
const ZERO_MAX_BYTES: usize = 128 << 10;

/// Debug builds fill freed objects with `0xdb` bytes, so a collector bug that frees a
/// reachable object shows up as garbage values (and a poisoned pointer faults) instead of
/// plausible old data. Allocation zeroes reused slots (`needzero`), so it never leaks out.
/// Only the first 4 KiB of a large object is filled (enough to catch a stale read, without
/// making debug sweeps of huge objects touch every page).
#[cold]
fn poison(base: usize, size: usize, mut dead: u64) {
    let len = size.min(4096);
    while dead != 0 {
        let i = dead.trailing_zeros() as usize;
        dead &= dead - 1;
        // SAFETY: slot `i` was allocated and is now freed by this sweep, which owns the span
        // (its sweep claim): nothing reachable refers to it, no cache can hand it out before
        // the span's new generation is published, and its memory is mapped.
        unsafe { std::ptr::write_bytes((base + i * size) as *mut u8, 0xdb, len) };
    }
}

impl HeapInner {
    /// Sweep a span whose claim this thread won (`sweepgen == sg - 1`). On `Kept` the caller
    /// publishes the new generation and relinks the span; on `Freed` the span is gone.
    /// Objects with drop glue found dead are recorded as queued and appended to the deferred
    /// drops, which `push_drops` hands to the drop queue after the sweep.
    ///
    /// With `preserve`, a span left empty is kept (`Kept { nalloc: 0 }`) rather than freed:
    /// an allocating cache that swept it for a span of this class takes it as it is, which
    /// spares a trip through the page heap and back (Go's `mspan.sweep(preserve)`).
    pub(crate) fn sweep_span(&self, s: &Span, preserve: bool) -> Swept {
        let start = s.start.load(Ordering::Relaxed);
        let elemsize = s.elemsize();
        let mut nalloc = 0;
        let mut nfreed = 0;
        for w in 0..s.bitmap_words() {
            // Relaxed: we own the span (sweep claim), no marker runs during sweep, and the
            // final Release store of the sweep generation publishes all of it.
            let alloc = s.alloc_w(w).load(Ordering::Relaxed);
            let mark = s.mark_w(w).load(Ordering::Relaxed);
            let ws = finalize::sweep_word(
                alloc,
                mark,
                s.finalize_w(w),
                s.queued_w(w),
                |bits, record| self.defer_drops(start + w * 64 * elemsize, elemsize, bits, record),
            );
            let keep = ws.keep;
            // Store only what changes: untouched bitmap pages stay unbacked.
            let h = s.header_w(w).load(Ordering::Relaxed);
            if h & keep != h {
                s.header_w(w).store(h & keep, Ordering::Relaxed);
            }
            if mark != 0 {
                s.mark_w(w).store(0, Ordering::Relaxed);
            }
            if keep != alloc {
                s.alloc_w(w).store(keep, Ordering::Release);
            }
            if cfg!(debug_assertions) && ws.dead != 0 {
                poison(start + w * 64 * elemsize, elemsize, ws.dead);
            }
            nalloc += keep.count_ones() as usize;
            nfreed += ws.dead.count_ones() as usize;
        }
        if nfreed > 0 {
            if s.is_large() {
                self.counters
                    .add_large_free(s.npages.load(Ordering::Relaxed));
            } else {
                let class = (s.spc.load(Ordering::Relaxed) >> 1) as usize;
                self.counters.add_small_free(class, nfreed);
            }
            self.counters.live_sub((nfreed * elemsize) as u64);
            s.needzero.store(true, Ordering::Relaxed);
        }
        if nalloc == 0 && !preserve {
            let zeroed = !s.needzero.load(Ordering::Relaxed) || Self::zero_if_zeroing(s);
            self.free_span(s, zeroed);
            Swept::Freed
        } else {
            Swept::Kept { nalloc }
        }
    }

    /// On a zeroing sweeper's thread, zero a span about to be freed (if it is small enough)
    /// and return true; else false. With no live objects a span's free slots read as zero
    /// exactly when `needzero` is clear, and then so does all of it (its pages were zero
    /// when it was made, and nothing else writes to them): the caller frees it as zeroed
    /// without calling this.
    fn zero_if_zeroing(s: &Span) -> bool {
        let bytes = s.npages.load(Ordering::Relaxed) * crate::sizeclass::PAGE_SIZE;
        if bytes > ZERO_MAX_BYTES
            || s.elemsize() <= crate::cache::STORE_ZERO_MAX
            || !ZEROING.with(|z| z.get())
        {
            return false;
        }
        let start = s.start.load(Ordering::Relaxed);
        // SAFETY: we own the span (its sweep claim) and none of its objects survived: nothing
        // reachable points into it, it is in no list, and no cache can hand out a slot of it
        // (a cache only takes spans from lists). Its pages are in use, hence backed and
        // writable, until `free_span` returns them.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, bytes) };
        true
    }

    /// Record the objects `bits` (slot `i` at `base + i * size`) for the drop queue; returns
    /// the ones recorded. The stop-the-world coordinator only uses the room reserved in
    /// advance; others grow the list as needed.
    ///
    /// `record(taken)` marks them queued; it runs under the drop list's lock, before they
    /// join the list, because any thread's `push_drops` may hand them to the drop queue as
    /// soon as the lock is released.
    fn defer_drops(&self, base: usize, size: usize, bits: u64, record: &dyn Fn(u64)) -> u64 {
        let _np = crate::nopreempt::NoPreempt::enter();
        let mut d = self.drops.lock().expect("runtime: drop list poisoned");
        let room = if coordinating() {
            d.objs.capacity() - d.objs.len()
        } else {
            usize::MAX
        };
        let mut taken = 0u64;
        let mut left = bits;
        while left != 0 {
            if taken.count_ones() as usize >= room {
                d.starved = true;
                break;
            }
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            taken |= 1 << i;
            d.objs.push((base + i * size, size));
        }
        // Still under the lock: nobody can pop these entries before they are recorded.
        record(taken);
        if taken != 0 {
            self.drops_waiting
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        taken
    }

    /// Hand the deferred drops to the drop queue. Called outside every lock and outside the
    /// sweep gate, never by the stop-the-world coordinator. A `push` that panics loses that
    /// one object (it stays allocated and queued, never released); the rest stay deferred.
    pub(crate) fn push_drops(&self) {
        if !self.drops_waiting.load(Ordering::Relaxed) || coordinating() {
            return;
        }
        let Some(q) = self.drop_queue.as_ref() else {
            return;
        };
        loop {
            let next = {
                let _np = crate::nopreempt::NoPreempt::enter();
                let mut d = self.drops.lock().expect("runtime: drop list poisoned");
                let next = d.objs.pop();
                if next.is_none() {
                    self.drops_waiting.store(false, Ordering::Relaxed);
                    if d.starved {
                        // Grow the room coordinators may use, while the world runs.
                        let more = d.objs.capacity().max(DROPS_RESERVE);
                        d.objs.reserve(more);
                        d.starved = false;
                    }
                }
                next
            };
            let Some((obj, size)) = next else { return };
            // A heap address, never 0.
            q.push(
                NonNull::new(obj as *mut u8).expect("runtime: null heap object"),
                size,
            );
        }
    }

    /// Sweep one unswept span from the mcentral lists, inside the sweep gate. Returns the
    /// pages it covered, or `None` when no unswept span is left this cycle.
    pub(crate) fn sweep_one(&self) -> Option<usize> {
        self.sweep.sweep_one(self)
    }

    /// After winning a claim: sweep, publish generation `sg` and relink into a swept list.
    fn finish_sweep(&self, s: &Span, sg: u32) {
        if let Swept::Kept { nalloc } = self.sweep_span(s, false) {
            s.sweepgen.set(sg);
            let spc = s.spc.load(Ordering::Relaxed) as usize;
            let full = nalloc == s.nelems.load(Ordering::Relaxed);
            self.central[spc].push_swept(s, sg, full);
        }
    }

    /// Proportional sweep: sweep spans covering at least `npages` pages (or until none left).
    pub(crate) fn sweep_pages(&self, npages: usize) {
        let mut done = 0;
        while done < npages {
            match self.sweep_one() {
                Some(n) => done += n,
                None => break,
            }
        }
    }
}

impl SweepLists for HeapInner {
    type Span = SpanPtr;

    fn classes(&self) -> usize {
        NUM_SPAN_CLASSES
    }

    fn pop_unswept(&self, class: usize, sg: u32) -> Option<SpanPtr> {
        self.central[class].pop_unswept(sg)
    }

    fn gen_of(&self, s: SpanPtr) -> &SweepGen {
        // SAFETY: span records live as long as the heap (see `SpanPtr`).
        unsafe { &(*s.0).sweepgen }
    }

    fn sweep(&self, s: SpanPtr, sg: u32) -> usize {
        // SAFETY: as above.
        let s = unsafe { &*s.0 };
        let npages = s.npages.load(Ordering::Relaxed);
        self.finish_sweep(s, sg);
        npages
    }
}
