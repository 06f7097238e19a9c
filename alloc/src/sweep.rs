//! Sweeping: turning a span's mark bits into its alloc bits once per cycle, freeing the
//! unmarked objects (and the span when nothing survives), queueing dead objects that carry
//! drop glue instead of freeing them.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use crate::heap::HeapInner;
use crate::sizeclass::NUM_SPAN_CLASSES;
use crate::span::Span;
use crate::sweepgen::is_swept;

/// What a sweep left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swept {
    /// Nothing survived; the span went back to the page heap.
    Freed,
    /// `nalloc` objects survive.
    Kept { nalloc: usize },
}

impl HeapInner {
    /// Sweep a span whose claim this thread won (`sweepgen == sg - 1`). On `Kept` the caller
    /// publishes the new generation and relinks the span; on `Freed` the span is gone.
    pub(crate) fn sweep_span(&self, s: &Span) -> Swept {
        let start = s.start.load(Ordering::Relaxed);
        let elemsize = s.elemsize();
        let mut nalloc = 0;
        let mut nfreed = 0;
        for w in 0..s.bitmap_words() {
            // Relaxed throughout: we own the span (sweep claim), no marker runs during sweep,
            // and the final Release store of the sweep generation publishes all of it.
            let alloc = s.alloc_w(w).load(Ordering::Relaxed);
            let mark = s.mark_w(w).load(Ordering::Relaxed);
            let live = mark & alloc;
            let fin = s.finalize_w(w).load(Ordering::Relaxed);
            let queued = s.queued_w(w).load(Ordering::Relaxed);
            let waiting = alloc & fin & queued;
            let to_queue = alloc & !live & fin & !queued;
            let keep = live | waiting | to_queue;
            let dead = alloc & !keep;
            if to_queue != 0 {
                let q = self
                    .drop_queue
                    .as_ref()
                    .expect("runtime: object with drop glue but no drop queue");
                let mut bits = to_queue;
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let obj = start + i * elemsize;
                    // `obj` is a heap address, never 0.
                    q.push(
                        NonNull::new(obj as *mut u8).expect("runtime: null heap object"),
                        elemsize,
                    );
                }
            }
            // Store only what changes: untouched bitmap pages stay unbacked.
            let q = (queued | to_queue) & keep;
            if q != queued {
                s.queued_w(w).store(q, Ordering::Relaxed);
            }
            if fin & keep != fin {
                s.finalize_w(w).store(fin & keep, Ordering::Relaxed);
            }
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
            nalloc += keep.count_ones() as usize;
            nfreed += dead.count_ones() as usize;
        }
        if nfreed > 0 {
            if s.is_large() {
                self.counters
                    .add_large_free(s.npages.load(Ordering::Relaxed));
            } else {
                let class = (s.spc.load(Ordering::Relaxed) >> 1) as usize;
                self.counters.add_small_free(class, nfreed);
            }
            s.needzero.store(true, Ordering::Relaxed);
        }
        if nalloc == 0 {
            self.free_span(s);
            Swept::Freed
        } else {
            Swept::Kept { nalloc }
        }
    }

    /// Sweep one unswept span from the mcentral lists. Returns the pages it covered, or
    /// `None` when no unswept span is left this cycle.
    pub(crate) fn sweep_one(&self) -> Option<usize> {
        let _active = ActiveSweep::begin(self);
        let sg = self.sweepgen();
        loop {
            let cursor = self.sweep_cursor.load(Ordering::Relaxed);
            if cursor >= NUM_SPAN_CLASSES {
                self.sweep_pending.store(false, Ordering::Relaxed);
                return None;
            }
            let c = &self.central[cursor];
            let Some(sp) = c.pop_unswept(sg) else {
                // This class is drained for the cycle (nothing is added to unswept lists
                // except at the flip or by an uncache that also resets the cursor).
                let _ = self.sweep_cursor.compare_exchange(
                    cursor,
                    cursor + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                continue;
            };
            // SAFETY: span records live as long as the heap (see `SpanPtr`).
            let s = unsafe { &*sp.0 };
            if !s.sweepgen.try_claim(sg) {
                continue;
            }
            let npages = s.npages.load(Ordering::Relaxed);
            self.finish_sweep(s, sg);
            return Some(npages);
        }
    }

    /// After winning a claim: sweep, publish generation `sg` and relink into a swept list.
    fn finish_sweep(&self, s: &Span, sg: u32) {
        if let Swept::Kept { nalloc } = self.sweep_span(s) {
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

    /// Make sure `s` is swept this cycle, sweeping it here if nobody has.
    pub(crate) fn ensure_swept(&self, s: &Span) {
        let _active = ActiveSweep::begin(self);
        let sg = self.sweepgen();
        loop {
            let v = s.sweepgen.load();
            if is_swept(v, sg) || v == crate::sweepgen::SWEEPGEN_FREE {
                return;
            }
            if s.sweepgen.try_claim(sg) {
                // The span's unswept-list entry becomes stale: whoever pops it loses the claim.
                self.finish_sweep(s, sg);
                return;
            }
            if v == sg.wrapping_add(1) {
                // Held by a cache since before the flip; its bits are current for this cycle's
                // purposes (the cache sweeps it when it lets go).
                return;
            }
            std::thread::yield_now();
        }
    }
}

/// Counts a sweeper that is not a cache (background, `ensure_swept`) for the duration of its
/// work, so that `start_mark` can wait until no sweep is in flight before marking begins.
struct ActiveSweep<'a>(&'a HeapInner);

impl<'a> ActiveSweep<'a> {
    fn begin(h: &'a HeapInner) -> Self {
        // AcqRel: pairs with `wait_sweepers`' Acquire load, which must see our bit writes
        // once it sees the count drop.
        h.sweepers_active.fetch_add(1, Ordering::AcqRel);
        ActiveSweep(h)
    }
}

impl Drop for ActiveSweep<'_> {
    fn drop(&mut self) {
        // Release: publishes the sweep's writes to `wait_sweepers`.
        self.0.sweepers_active.fetch_sub(1, Ordering::Release);
    }
}

impl HeapInner {
    /// Wait until no background sweep is in flight.
    pub(crate) fn wait_sweepers(&self) {
        while self.sweepers_active.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
    }
}
