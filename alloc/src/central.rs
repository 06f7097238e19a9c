//! mcentral: per span class, the spans not held by any cache, split into partial (some free
//! slots) and full, each in a swept and an unswept set indexed by the sweep generation's
//! parity — so advancing the generation turns every swept set into an unswept one at no cost.

use std::sync::atomic::Ordering;

use crate::error::AllocError;
use crate::heap::{HeapInner, SpanPtr};
use crate::sizeclass::{class_npages, class_size};
use crate::span::Span;
use crate::spanset::SpanSet;
use crate::sweep::Swept;

/// Unswept spans a refill sweeps before giving up and growing the heap (Go's budget).
const SPAN_BUDGET: usize = 100;

/// One span class's lists.
#[derive(Debug)]
pub(crate) struct Central {
    partial: [SpanSet<SpanPtr>; 2],
    full: [SpanSet<SpanPtr>; 2],
}

fn swept_index(sg: u32) -> usize {
    (sg / 2 % 2) as usize
}

fn unswept_index(sg: u32) -> usize {
    1 - swept_index(sg)
}

impl Central {
    pub(crate) fn new() -> Self {
        Central {
            partial: [SpanSet::new(), SpanSet::new()],
            full: [SpanSet::new(), SpanSet::new()],
        }
    }

    pub(crate) fn push_swept(&self, s: &Span, sg: u32, full: bool) {
        let set = if full {
            &self.full[swept_index(sg)]
        } else {
            &self.partial[swept_index(sg)]
        };
        set.push(SpanPtr(s));
    }

    pub(crate) fn pop_unswept(&self, sg: u32) -> Option<SpanPtr> {
        self.full[unswept_index(sg)]
            .pop()
            .or_else(|| self.partial[unswept_index(sg)].pop())
    }

    /// Make room for `n` entries in each set, so pushes up to that many never reallocate.
    pub(crate) fn reserve(&self, n: usize) {
        for set in self.partial.iter().chain(self.full.iter()) {
            set.reserve(n);
        }
    }

    pub(crate) fn push_unswept(&self, s: &Span, sg: u32) {
        self.partial[unswept_index(sg)].push(SpanPtr(s));
    }
}

impl HeapInner {
    /// A span of class `spc` with at least one free slot, swept this cycle and marked cached
    /// (`sg + 3`). Tries swept partial spans, then sweeps unswept ones, then grows the heap.
    pub(crate) fn cache_span(&self, spc: usize) -> Result<&Span, AllocError> {
        let sg = self.sweepgen();
        let c = &self.central[spc];
        if let Some(sp) = c.partial[swept_index(sg)].pop() {
            // SAFETY: span records live as long as the heap (see `SpanPtr`).
            let s = unsafe { &*sp.0 };
            s.sweepgen.set(sg.wrapping_add(3));
            return Ok(s);
        }
        let mut budget = SPAN_BUDGET;
        while budget > 0 {
            let Some(sp) = c.partial[unswept_index(sg)]
                .pop()
                .or_else(|| c.full[unswept_index(sg)].pop())
            else {
                break;
            };
            budget -= 1;
            // SAFETY: as above.
            let s = unsafe { &*sp.0 };
            if !s.sweepgen.try_claim(sg) {
                // A stale entry: someone else swept (and relinked) the span already.
                continue;
            }
            // Preserving: an emptied span of this class is just what we are looking for.
            match self.sweep_span(s, true) {
                Swept::Freed => continue,
                Swept::Kept { nalloc } => {
                    if nalloc < s.nelems.load(Ordering::Relaxed) {
                        s.sweepgen.set(sg.wrapping_add(3));
                        return Ok(s);
                    }
                    s.sweepgen.set(sg);
                    c.push_swept(s, sg, true);
                }
            }
        }
        let class = spc >> 1;
        let s = self.alloc_span(class_npages(class), spc, class_size(class))?;
        s.sweepgen.set(self.sweepgen().wrapping_add(3));
        Ok(s)
    }

    /// A cache gives a span back. If the span was cached before the generation advanced
    /// (`sg + 1`) it still needs this cycle's sweep: hand it to the sweepers as unswept.
    pub(crate) fn uncache_span(&self, s: &Span) {
        let sg = self.sweepgen();
        let spc = s.spc.load(Ordering::Relaxed) as usize;
        let c = &self.central[spc];
        if s.sweepgen.load() == sg.wrapping_add(1) {
            s.sweepgen.set(sg.wrapping_sub(2));
            // Push first, then rewind the sweepers' cursor, so no sweeper can pass this class
            // after the push without seeing the span.
            c.push_unswept(s, sg);
            self.sweep.rewind();
        } else {
            s.sweepgen.set(sg);
            let full = s.count_alloc() == s.nelems.load(Ordering::Relaxed);
            c.push_swept(s, sg, full);
        }
    }
}
