//! The page allocator: which pages of which arena are in use, and which free pages are known
//! to be zero (never touched, or released to the OS).
//!
//! Each arena keeps three 8192-bit bitmaps (128 words): `inuse` (1 = in a span, being
//! scavenged, or not yet grown into), `clean` (1 = free and reads as zeros without being
//! backed: fresh from the OS or released with `MADV_DONTNEED`) and `zeroed` (1 = free,
//! backed, and zeroed by whoever freed it: a background sweeper, see `sweep.rs`). A run
//! needs zeroing when it is taken unless every page of it is clean or zeroed; zeroed pages
//! are still resident, so they stay scavenger work (dirty) until released. Inside an arena
//! a search walks at most 128 words, skipping full and empty words whole.
//!
//! Costs do not grow with the number of arenas: a max-tree over the arenas (`RunTree`) keyed
//! by an upper bound on each arena's longest free run finds the first arena that may fit a
//! request in O(log arenas) (a bound that proves loose is made exact by the failed search, so
//! each arena fails at most once per free); a second tree keyed by dirty free pages finds work
//! for the scavenger the same way; a span's arena comes from the span itself. Go's radix tree
//! of summaries buys the same for terabyte heaps with finer granularity; this heap keeps the
//! 64 MiB arena as its unit. Runs never cross arenas, except the runs of whole, address-
//! contiguous arenas that objects larger than an arena get; freed, such arenas are reused by
//! the next huge object (or for ordinary spans) and scavenged like any others.
//!
//! Everything here is guarded by the heap lock, except the `madvise` of a scavenging step:
//! the step takes its pages out of the free pool under the lock (`pick_dirty`), returns them
//! to the OS with the lock released, and puts them back clean (`finish_scavenge`). It works
//! from the highest dirty pages down, as Go's scavenger does: first-fit allocation reuses low
//! pages first, so those are the last worth returning. (With a retained target below the
//! live heap every freed page must go back before it is reused, whatever the order: that
//! heap pays a fault per reused page — steady/1024/noscan 53 → ~95 ns/op with a 1 MiB target
//! and a 4 MiB live heap — which is what such a target asks for.)

use crate::arena::{ARENA_BYTES, Arena, PAGES_PER_ARENA, Reservation};
use crate::error::AllocError;
use crate::sizeclass::PAGE_SIZE;

const WORDS: usize = PAGES_PER_ARENA / 64;
/// Grow the heap by at least this many pages at a time (4 MiB, Go's palloc chunk).
const GROW_PAGES: usize = 512;

/// Page state of one arena.
#[derive(Debug)]
pub(crate) struct ArenaPages {
    pub(crate) arena: Box<Arena>,
    /// Index of the reservation holding this arena.
    pub(crate) res: usize,
    inuse: Box<[u64; WORDS]>,
    clean: Box<[u64; WORDS]>,
    /// Free, backed pages known to be zero (never also clean).
    zeroed: Box<[u64; WORDS]>,
    /// Pages grown into (available to the allocator); the rest are marked in use.
    grown: usize,
    /// Free pages among the grown ones.
    free: usize,
    /// Free pages that are not clean (scavenger work).
    ndirty: usize,
    /// Upper bound on the longest free run (exact after a failed search; raised on free).
    max_run: usize,
}

/// Where a run of pages was found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRun {
    pub(crate) arena: usize,
    pub(crate) page: usize,
    pub(crate) npages: usize,
}

/// Counters kept by the page allocator (pages, not bytes).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PageCounts {
    /// Pages grown into: HeapSys.
    pub(crate) sys: usize,
    /// Pages in spans: HeapInuse.
    pub(crate) inuse: usize,
    /// Free pages released to the OS (or never touched): HeapReleased.
    pub(crate) released: usize,
}

/// All arenas' page state and the reservations behind them.
#[derive(Debug, Default)]
pub(crate) struct PageAlloc {
    pub(crate) arenas: Vec<ArenaPages>,
    /// Boxed: a scavenging step reaches its reservation without the lock, while another
    /// thread may grow this vector.
    #[allow(clippy::vec_box)]
    pub(crate) reservations: Vec<Box<Reservation>>,
    pub(crate) counts: PageCounts,
    /// Arenas already published in the heap's arena index.
    pub(crate) published: usize,
    /// Per arena: an upper bound on its longest free run, capped by its free pages.
    runs: RunTree,
    /// Per arena: its dirty free pages.
    dirty: RunTree,
}

fn set_range(bits: &mut [u64; WORDS], start: usize, n: usize, v: bool) {
    let mut i = start;
    let end = start + n;
    while i < end {
        let w = i / 64;
        let b = i % 64;
        let len = (64 - b).min(end - i);
        let mask = if len == 64 {
            u64::MAX
        } else {
            ((1u64 << len) - 1) << b
        };
        if v {
            bits[w] |= mask
        } else {
            bits[w] &= !mask
        }
        i += len;
    }
}

fn count_range(bits: &[u64; WORDS], start: usize, n: usize) -> usize {
    let mut i = start;
    let end = start + n;
    let mut c = 0;
    while i < end {
        let w = i / 64;
        let b = i % 64;
        let len = (64 - b).min(end - i);
        let mask = if len == 64 {
            u64::MAX
        } else {
            ((1u64 << len) - 1) << b
        };
        c += (bits[w] & mask).count_ones() as usize;
        i += len;
    }
    c
}

/// First run of `n` zero bits; also returns the longest run seen when none fits.
fn find_run(bits: &[u64; WORDS], n: usize) -> Result<usize, usize> {
    let mut run_start = 0;
    let mut run_len = 0;
    let mut longest = 0;
    for (w, &x) in bits.iter().enumerate() {
        if x == u64::MAX {
            run_len = 0;
            continue;
        }
        if x == 0 {
            if run_len == 0 {
                run_start = w * 64;
            }
            run_len += 64;
            longest = longest.max(run_len);
            if run_len >= n {
                return Ok(run_start);
            }
            continue;
        }
        let mut b = 0u32;
        while b < 64 {
            let rest = x >> b;
            if rest & 1 == 1 {
                b += (!rest).trailing_zeros();
                run_len = 0;
            } else {
                let zeros = if rest == 0 {
                    64 - b
                } else {
                    rest.trailing_zeros().min(64 - b)
                };
                if run_len == 0 {
                    run_start = w * 64 + b as usize;
                }
                run_len += zeros as usize;
                longest = longest.max(run_len);
                if run_len >= n {
                    return Ok(run_start);
                }
                b += zeros;
            }
        }
    }
    Err(longest)
}

/// A max-tree over arenas: leaf `i` holds a key of arena `i`; finds the first arena whose
/// key reaches a value in O(log n). Grows (rebuilding) when an arena is added, which only
/// happens while the heap grows, never with the world stopped.
#[derive(Debug, Default)]
pub(crate) struct RunTree {
    leaves: usize,
    t: Vec<u32>,
}

impl RunTree {
    /// Append a leaf (key 0).
    fn push(&mut self, n: usize) {
        if n <= self.leaves {
            return;
        }
        let leaves = n.next_power_of_two().max(1);
        let mut t = vec![0u32; 2 * leaves];
        for i in 0..self.leaves {
            t[leaves + i] = self.t[self.leaves + i];
        }
        for k in (1..leaves).rev() {
            t[k] = t[2 * k].max(t[2 * k + 1]);
        }
        self.leaves = leaves;
        self.t = t;
    }

    fn set(&mut self, i: usize, v: u32) {
        let mut k = self.leaves + i;
        self.t[k] = v;
        while k > 1 {
            k /= 2;
            self.t[k] = self.t[2 * k].max(self.t[2 * k + 1]);
        }
    }

    /// The last leaf whose key is at least `v` (`v >= 1`).
    fn last_at_least(&self, v: u32) -> Option<usize> {
        if self.leaves == 0 || self.t[1] < v {
            return None;
        }
        let mut k = 1;
        while k < self.leaves {
            k = if self.t[2 * k + 1] >= v {
                2 * k + 1
            } else {
                2 * k
            };
        }
        Some(k - self.leaves)
    }

    /// The first leaf whose key is at least `v` (`v >= 1`).
    fn first_at_least(&self, v: u32) -> Option<usize> {
        if self.leaves == 0 || self.t[1] < v {
            return None;
        }
        let mut k = 1;
        while k < self.leaves {
            k = if self.t[2 * k] >= v { 2 * k } else { 2 * k + 1 };
        }
        Some(k - self.leaves)
    }
}

/// A run of pages taken out of the free pool by a scavenging step, to be returned to the OS
/// with the heap lock released.
#[derive(Debug)]
pub(crate) struct Scavenging {
    pub(crate) run: PageRun,
    /// The arena (boxed, never freed before the heap) and the run's first byte.
    arena: *const Arena,
    addr: usize,
    res: *const Reservation,
}

impl Scavenging {
    /// Return the run's pages and their metadata to the OS. Call without the heap lock.
    pub(crate) fn release(&self) {
        // SAFETY: arenas and reservations are boxed in the page allocator and live until the
        // heap drops, which cannot happen while a heap method runs.
        let (arena, res) = unsafe { (&*self.arena, &*self.res) };
        // The pages are marked in use (by the scavenger), so nobody allocates, frees or
        // touches them or their metadata until `finish_scavenge`.
        res.release(self.addr, self.run.npages * PAGE_SIZE);
        arena.release_meta(self.run.page, self.run.npages);
    }
}

impl PageAlloc {
    /// Set arena `ai`'s keys in the trees from its state.
    fn rekey(&mut self, ai: usize) {
        let a = &self.arenas[ai];
        self.runs.set(ai, a.max_run.min(a.free) as u32);
        self.dirty.set(ai, a.ndirty as u32);
    }

    /// Find and take `npages` contiguous pages. Returns the run and whether it must be zeroed.
    pub(crate) fn alloc(&mut self, npages: usize) -> Result<(PageRun, bool), AllocError> {
        if npages > PAGES_PER_ARENA {
            return self.alloc_huge(npages);
        }
        if let Some(run) = self.find(npages) {
            return Ok((run, self.take(run)));
        }
        self.grow(npages)?;
        let run = self
            .find(npages)
            .expect("runtime: page allocator grew but found no run");
        Ok((run, self.take(run)))
    }

    fn find(&mut self, npages: usize) -> Option<PageRun> {
        while let Some(ai) = self.runs.first_at_least(npages as u32) {
            match find_run(&self.arenas[ai].inuse, npages) {
                Ok(page) => {
                    return Some(PageRun {
                        arena: ai,
                        page,
                        npages,
                    });
                }
                Err(longest) => {
                    self.arenas[ai].max_run = longest;
                    self.rekey(ai);
                }
            }
        }
        None
    }

    /// Mark a run (inside one arena) in use; returns whether any page of it may hold old
    /// bytes.
    fn take(&mut self, run: PageRun) -> bool {
        let a = &mut self.arenas[run.arena];
        set_range(&mut a.inuse, run.page, run.npages, true);
        let clean = count_range(&a.clean, run.page, run.npages);
        let zeroed = count_range(&a.zeroed, run.page, run.npages);
        set_range(&mut a.clean, run.page, run.npages, false);
        set_range(&mut a.zeroed, run.page, run.npages, false);
        a.free -= run.npages;
        a.ndirty -= run.npages - clean;
        self.counts.inuse += run.npages;
        self.counts.released -= clean;
        self.rekey(run.arena);
        // No page is both (`zeroed` is cleared whenever `clean` is set).
        clean + zeroed != run.npages
    }

    /// Return a run to the free pool. Its pages are dirty until released; with `zeroed`
    /// the caller has zeroed every byte of them, and the run's next taker need not.
    pub(crate) fn free(&mut self, arena: usize, page: usize, npages: usize, zeroed: bool) {
        let mut ai = arena;
        let mut page = page;
        let mut left = npages;
        while left > 0 {
            let a = &mut self.arenas[ai];
            let n = left.min(PAGES_PER_ARENA - page);
            set_range(&mut a.inuse, page, n, false);
            set_range(&mut a.zeroed, page, n, zeroed);
            a.free += n;
            a.ndirty += n;
            a.max_run = PAGES_PER_ARENA;
            self.counts.inuse -= n;
            self.rekey(ai);
            left -= n;
            page = 0;
            ai += 1;
        }
    }

    /// Make at least `npages` more pages available, in the last arena if it has room.
    fn grow(&mut self, npages: usize) -> Result<(), AllocError> {
        let want = npages.max(GROW_PAGES);
        if let Some(a) = self.arenas.last()
            && PAGES_PER_ARENA - a.grown >= npages
        {
            self.grow_arena(self.arenas.len() - 1, want);
            return Ok(());
        }
        let ai = self.new_arenas(1)?;
        self.grow_arena(ai, want);
        Ok(())
    }

    fn grow_arena(&mut self, ai: usize, n: usize) {
        let a = &mut self.arenas[ai];
        let n = n.min(PAGES_PER_ARENA - a.grown);
        set_range(&mut a.inuse, a.grown, n, false);
        set_range(&mut a.clean, a.grown, n, true);
        a.grown += n;
        a.free += n;
        a.max_run = PAGES_PER_ARENA;
        self.counts.sys += n;
        self.counts.released += n;
        self.rekey(ai);
    }

    /// Reserve `n` consecutive arenas; their pages start ungrown. Returns the first's index.
    fn new_arenas(&mut self, n: usize) -> Result<usize, AllocError> {
        let res = Box::new(Reservation::new(n)?);
        let first = self.arenas.len();
        let mut built = Vec::with_capacity(n);
        for i in 0..n {
            let arena = Box::new(Arena::new(res.base + i * ARENA_BYTES, first + i)?);
            built.push(ArenaPages {
                arena,
                res: self.reservations.len(),
                inuse: Box::new([u64::MAX; WORDS]),
                clean: Box::new([0; WORDS]),
                zeroed: Box::new([0; WORDS]),
                grown: 0,
                free: 0,
                ndirty: 0,
                max_run: 0,
            });
        }
        self.reservations.push(res);
        self.arenas.extend(built);
        self.runs.push(self.arenas.len());
        self.dirty.push(self.arenas.len());
        Ok(first)
    }

    /// The first of `n` address-contiguous arenas with no page in use, if any. Linear in the
    /// arenas, but only objects larger than an arena (64 MiB each) search it.
    fn free_arenas(&self, n: usize) -> Option<usize> {
        let mut run = 0;
        for (i, a) in self.arenas.iter().enumerate() {
            let empty = a.free == a.grown;
            let follows = i > 0 && self.arenas[i - 1].arena.base + ARENA_BYTES == a.arena.base;
            run = match (empty, follows && run > 0) {
                (false, _) => 0,
                (true, true) => run + 1,
                (true, false) => 1,
            };
            if run == n {
                return Some(i + 1 - n);
            }
        }
        None
    }

    /// An object larger than one arena: a run of whole, address-contiguous arenas, reused
    /// when enough free ones exist, else freshly reserved.
    fn alloc_huge(&mut self, npages: usize) -> Result<(PageRun, bool), AllocError> {
        let n = npages.div_ceil(PAGES_PER_ARENA);
        let first = match self.free_arenas(n) {
            Some(first) => first,
            None => self.new_arenas(n)?,
        };
        let mut left = npages;
        let mut needzero = false;
        for ai in first..first + n {
            self.grow_arena(ai, PAGES_PER_ARENA);
            let k = left.min(PAGES_PER_ARENA);
            needzero |= self.take(PageRun {
                arena: ai,
                page: 0,
                npages: k,
            });
            left -= k;
        }
        Ok((
            PageRun {
                arena: first,
                page: 0,
                npages,
            },
            needzero,
        ))
    }

    /// Take the highest run (at most `max_pages`) of free, dirty pages out of the free pool
    /// for a scavenging step, or `None` when every free page is clean.
    pub(crate) fn pick_dirty(&mut self, max_pages: usize) -> Option<Scavenging> {
        // From the top of the heap down: first-fit allocation reuses low addresses first, so
        // the pages released first are the ones least likely to be faulted back at once.
        let ai = self.dirty.last_at_least(1)?;
        let a = &mut self.arenas[ai];
        let free_dirty =
            |a: &ArenaPages, p: usize| (a.inuse[p / 64] | a.clean[p / 64]) & (1 << (p % 64)) == 0;
        for w in (0..a.grown.div_ceil(64)).rev() {
            // Free and dirty: inuse 0, clean 0 (pages not grown into are marked in use).
            let bits = !(a.inuse[w] | a.clean[w]);
            if bits == 0 {
                continue;
            }
            let end = w * 64 + 64 - bits.leading_zeros() as usize;
            let mut start = end - 1;
            while start > 0 && end - start < max_pages && free_dirty(a, start - 1) {
                start -= 1;
            }
            let n = end - start;
            set_range(&mut a.inuse, start, n, true);
            // Released, they will be clean (and `zeroed` never overlaps `clean`).
            set_range(&mut a.zeroed, start, n, false);
            a.free -= n;
            a.ndirty -= n;
            let addr = a.arena.base + start * PAGE_SIZE;
            let arena: *const Arena = &*a.arena;
            let res: *const Reservation = &*self.reservations[a.res];
            self.rekey(ai);
            return Some(Scavenging {
                run: PageRun {
                    arena: ai,
                    page: start,
                    npages: n,
                },
                arena,
                addr,
                res,
            });
        }
        unreachable!("runtime: arena {ai} counts dirty pages it does not have");
    }

    /// Put a scavenged run back into the free pool, clean.
    pub(crate) fn finish_scavenge(&mut self, s: Scavenging) {
        let PageRun {
            arena: ai,
            page,
            npages,
        } = s.run;
        let a = &mut self.arenas[ai];
        set_range(&mut a.inuse, page, npages, false);
        set_range(&mut a.clean, page, npages, true);
        a.free += npages;
        self.counts.released += npages;
        self.rekey(ai);
    }

    /// Release free, dirty pages until `max_pages` are released (single-threaded use: the
    /// caller holds the only reference); returns the count.
    #[cfg(test)]
    pub(crate) fn scavenge(&mut self, max_pages: usize) -> usize {
        let mut done = 0;
        while done < max_pages {
            let Some(s) = self.pick_dirty(max_pages - done) else {
                break;
            };
            s.release();
            done += s.run.npages;
            self.finish_scavenge(s);
        }
        done
    }

    /// Free pages (grown, not in spans): HeapIdle in pages.
    pub(crate) fn idle(&self) -> usize {
        self.counts.sys - self.counts.inuse
    }

    /// Dirty free pages (HeapIdle − HeapReleased, in pages).
    pub(crate) fn dirty(&self) -> usize {
        self.counts.sys - self.counts.inuse - self.counts.released
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn run_trees_find_the_first_and_last_arena_that_fits() {
        let mut t = RunTree::default();
        assert_eq!(t.first_at_least(1), None);
        t.push(5);
        for (i, v) in [3, 0, 9, 9, 1].into_iter().enumerate() {
            t.set(i, v);
        }
        assert_eq!(t.first_at_least(1), Some(0));
        assert_eq!(t.first_at_least(4), Some(2));
        assert_eq!(t.last_at_least(4), Some(3));
        assert_eq!(t.last_at_least(1), Some(4));
        assert_eq!(t.first_at_least(10), None);
        // Growing keeps the keys.
        t.push(9);
        t.set(8, 12);
        assert_eq!(t.first_at_least(10), Some(8));
        assert_eq!(t.first_at_least(9), Some(2));
        t.set(2, 0);
        t.set(3, 0);
        assert_eq!(t.first_at_least(9), Some(8));
    }

    #[test]
    fn find_run_first_fit_across_words() {
        let mut bits = [u64::MAX; WORDS];
        bits[3] = !(0b111 << 61);
        bits[4] = !0b11;
        assert_eq!(find_run(&bits, 5), Ok(3 * 64 + 61));
        assert_eq!(find_run(&bits, 6), Err(5));
        let zero = [0u64; WORDS];
        assert_eq!(find_run(&zero, PAGES_PER_ARENA), Ok(0));
    }

    #[test]
    fn alloc_free_and_scavenge_keep_the_counts() {
        let mut p = PageAlloc::default();
        let (a, dirty) = p.alloc(3).unwrap();
        assert!(!dirty, "fresh pages are clean");
        let (b, _) = p.alloc(10).unwrap();
        assert_eq!(p.counts.inuse, 13);
        p.free(a.arena, a.page, a.npages, false);
        let (c, dirty) = p.alloc(2).unwrap();
        assert_eq!((c.arena, c.page), (a.arena, a.page));
        assert!(dirty, "reused pages are dirty");
        p.free(c.arena, c.page, 2, false);
        p.free(b.arena, b.page, 10, false);
        assert_eq!(p.counts.inuse, 0);
        assert!(p.counts.released < p.counts.sys);
        p.scavenge(usize::MAX);
        assert_eq!(p.counts.released, p.counts.sys);
        let (_, dirty) = p.alloc(3).unwrap();
        assert!(!dirty, "released pages come back zeroed");
    }

    #[test]
    fn a_run_freed_zeroed_needs_no_zeroing_only_while_every_page_of_a_taker_is_zero() {
        let mut p = PageAlloc::default();
        let (a, _) = p.alloc(4).unwrap();
        let (b, _) = p.alloc(4).unwrap();
        assert_eq!((a.arena, a.page + 4), (b.arena, b.page));
        p.free(a.arena, a.page, 4, true);
        p.free(b.arena, b.page, 4, false);
        let dirty_before = p.dirty();
        assert_eq!(
            dirty_before, 8,
            "zeroed pages are still resident: scavenger work"
        );
        // Inside the zeroed run: no zeroing.
        let (c, dirty) = p.alloc(3).unwrap();
        assert_eq!(c.page, a.page);
        assert!(!dirty, "a run of zeroed pages is handed out as zero");
        // Straddling the zeroed page left and the dirty run: zeroing.
        let (d, dirty) = p.alloc(2).unwrap();
        assert_eq!(d.page, a.page + 3);
        assert!(dirty, "one dirty page makes the run dirty");
        // Taking pages clears their state: freed dirty again, they need zeroing.
        p.free(c.arena, c.page, 3, false);
        let (e, dirty) = p.alloc(3).unwrap();
        assert_eq!(e.page, c.page);
        assert!(dirty, "a zeroed page taken and freed dirty is dirty");
        // Released pages are clean, never also zeroed: counts hold through a scavenge.
        p.free(e.arena, e.page, 3, true);
        p.free(d.arena, d.page, 2, true);
        p.scavenge(usize::MAX);
        assert_eq!(p.dirty(), 0);
        let (f, dirty) = p.alloc(8).unwrap();
        assert_eq!(f.page, a.page);
        assert!(!dirty);
        assert_eq!(p.counts.released, p.counts.sys - p.counts.inuse);
    }
}
