//! The page allocator: which pages of which arena are in use, and which free pages are known
//! to be zero (never touched, or released to the OS).
//!
//! Each arena keeps two 8192-bit bitmaps (128 words): `inuse` (1 = in a span, or not yet
//! grown into) and `clean` (1 = free and reads as zeros without being backed: fresh from the
//! OS or released with `MADV_DONTNEED`). A search is first-fit over the arenas, skipping any
//! arena whose free count or cached longest run is too small, and inside an arena walks at
//! most 128 words, skipping full and empty words whole. So a search is bounded by
//! 128 words × arenas, and heaps here have few arenas (each is 64 MiB); Go's radix tree of
//! summaries buys logarithmic search over terabyte heaps, which this heap does not target.
//! Runs never cross arenas, except the dedicated reservations of objects larger than an arena.
//!
//! Everything here is guarded by the heap lock.

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
    /// Pages grown into (available to the allocator); the rest are marked in use.
    grown: usize,
    /// Free pages among the grown ones.
    free: usize,
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
    pub(crate) reservations: Vec<Reservation>,
    pub(crate) counts: PageCounts,
    /// Arenas already published in the heap's arena index.
    pub(crate) published: usize,
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

impl PageAlloc {
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
        for (ai, a) in self.arenas.iter_mut().enumerate() {
            if a.free < npages || a.max_run < npages {
                continue;
            }
            match find_run(&a.inuse, npages) {
                Ok(page) => {
                    return Some(PageRun {
                        arena: ai,
                        page,
                        npages,
                    });
                }
                Err(longest) => a.max_run = longest,
            }
        }
        None
    }

    /// Mark a run in use; returns whether any page of it may hold old bytes.
    fn take(&mut self, run: PageRun) -> bool {
        let a = &mut self.arenas[run.arena];
        set_range(&mut a.inuse, run.page, run.npages, true);
        let clean = count_range(&a.clean, run.page, run.npages);
        set_range(&mut a.clean, run.page, run.npages, false);
        a.free -= run.npages;
        self.counts.inuse += run.npages;
        self.counts.released -= clean;
        clean != run.npages
    }

    /// Return a run to the free pool. Its pages are dirty until released.
    pub(crate) fn free(&mut self, arena: usize, page: usize, npages: usize) {
        let mut ai = arena;
        let mut page = page;
        let mut left = npages;
        while left > 0 {
            let a = &mut self.arenas[ai];
            let n = left.min(PAGES_PER_ARENA - page);
            set_range(&mut a.inuse, page, n, false);
            a.free += n;
            a.max_run = PAGES_PER_ARENA;
            self.counts.inuse -= n;
            left -= n;
            page = 0;
            ai += 1;
        }
    }

    /// Make at least `npages` more pages available, in the last arena if it has room.
    fn grow(&mut self, npages: usize) -> Result<(), AllocError> {
        let want = npages.max(GROW_PAGES);
        if let Some(a) = self.arenas.last_mut()
            && PAGES_PER_ARENA - a.grown >= npages
        {
            Self::grow_arena(a, want, &mut self.counts);
            return Ok(());
        }
        self.new_arenas(1)?;
        let a = self
            .arenas
            .last_mut()
            .expect("runtime: no arena after reserving one");
        Self::grow_arena(a, want, &mut self.counts);
        Ok(())
    }

    fn grow_arena(a: &mut ArenaPages, n: usize, counts: &mut PageCounts) {
        let n = n.min(PAGES_PER_ARENA - a.grown);
        set_range(&mut a.inuse, a.grown, n, false);
        set_range(&mut a.clean, a.grown, n, true);
        a.grown += n;
        a.free += n;
        a.max_run = PAGES_PER_ARENA;
        counts.sys += n;
        counts.released += n;
    }

    /// Reserve `n` consecutive arenas; their pages start ungrown. Returns the first's index.
    fn new_arenas(&mut self, n: usize) -> Result<usize, AllocError> {
        let res = Reservation::new(n)?;
        let mut built = Vec::with_capacity(n);
        for i in 0..n {
            let arena = Box::new(Arena::new(res.base + i * ARENA_BYTES)?);
            built.push(ArenaPages {
                arena,
                res: self.reservations.len(),
                inuse: Box::new([u64::MAX; WORDS]),
                clean: Box::new([0; WORDS]),
                grown: 0,
                free: 0,
                max_run: 0,
            });
        }
        self.reservations.push(res);
        let first = self.arenas.len();
        self.arenas.extend(built);
        Ok(first)
    }

    /// An object larger than one arena: a dedicated run of whole arenas.
    fn alloc_huge(&mut self, npages: usize) -> Result<(PageRun, bool), AllocError> {
        let n = npages.div_ceil(PAGES_PER_ARENA);
        let first = self.new_arenas(n)?;
        for ai in first..first + n {
            let a = &mut self.arenas[ai];
            Self::grow_arena(a, PAGES_PER_ARENA, &mut self.counts);
        }
        let mut left = npages;
        let mut clean = 0;
        for ai in first..first + n {
            let a = &mut self.arenas[ai];
            let k = left.min(PAGES_PER_ARENA);
            set_range(&mut a.inuse, 0, k, true);
            clean += count_range(&a.clean, 0, k);
            set_range(&mut a.clean, 0, k, false);
            a.free -= k;
            left -= k;
        }
        self.counts.inuse += npages;
        self.counts.released -= clean;
        Ok((
            PageRun {
                arena: first,
                page: 0,
                npages,
            },
            clean != npages,
        ))
    }

    /// Release free, dirty pages to the OS until `max_pages` are released; returns the count.
    pub(crate) fn scavenge(&mut self, max_pages: usize) -> usize {
        let mut done = 0;
        for a in self.arenas.iter_mut() {
            if done >= max_pages {
                break;
            }
            let mut p = 0;
            while p < a.grown && done < max_pages {
                let w = p / 64;
                // Free and dirty: inuse 0, clean 0.
                let dirty_free = !(a.inuse[w] | a.clean[w]) >> (p % 64);
                if dirty_free == 0 {
                    p = (w + 1) * 64;
                    continue;
                }
                let skip = dirty_free.trailing_zeros() as usize;
                if skip > 0 {
                    p += skip;
                    continue;
                }
                // Extend the run while pages stay free and dirty.
                let start = p;
                while p < a.grown && p - start < max_pages - done {
                    let w = p / 64;
                    let bit = 1u64 << (p % 64);
                    if (a.inuse[w] | a.clean[w]) & bit != 0 {
                        break;
                    }
                    p += 1;
                }
                let n = p - start;
                self.reservations[a.res].release(a.arena.base + start * PAGE_SIZE, n * PAGE_SIZE);
                a.arena.release_meta(start, n);
                set_range(&mut a.clean, start, n, true);
                self.counts.released += n;
                done += n;
            }
        }
        done
    }

    /// Free pages (grown, not in spans): HeapIdle in pages.
    pub(crate) fn idle(&self) -> usize {
        self.counts.sys - self.counts.inuse
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

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
        p.free(a.arena, a.page, a.npages);
        let (c, dirty) = p.alloc(2).unwrap();
        assert_eq!((c.arena, c.page), (a.arena, a.page));
        assert!(dirty, "reused pages are dirty");
        p.free(c.arena, c.page, 2);
        p.free(b.arena, b.page, 10);
        assert_eq!(p.counts.inuse, 0);
        assert!(p.counts.released < p.counts.sys);
        p.scavenge(usize::MAX);
        assert_eq!(p.counts.released, p.counts.sys);
        let (_, dirty) = p.alloc(3).unwrap();
        assert!(!dirty, "released pages come back zeroed");
    }
}
