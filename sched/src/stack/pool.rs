//! A runtime's stack pool: slabs reserved with MAP_NORESERVE, carved in batches, reused warm
//! first, and handed back to the OS in address-sorted batches once they sit unused.

use super::advise::{self, Fallback, MADV_POPULATE_WRITE};
use super::region::{Stack, guard_bytes, page_size, region_bytes_for};
use super::{guard, registry};
use crate::release::Aging;
use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

/// Virtual size of one slab. Slabs are reserved, not committed: a stack costs memory only for
/// the pages its goroutine touched.
const SLAB_BYTES: usize = 256 << 20;

/// Stacks carved (and guarded, in one batched call) at once.
const CARVE_BATCH: usize = 256;

/// Warm stacks the pool never releases: the working reserve that lets a steady program reuse
/// stacks without refaulting them.
const HOT_KEEP: usize = 256;

/// Most stacks one release step hands back to the OS (1-2 ms of `madvise` on the 2-core test
/// VM for stacks that touched a page or two).
const RELEASE_BATCH: usize = 4096;

#[derive(Debug)]
struct Slab {
    base: *mut u8,
    len: usize,
    /// Stacks carved so far; the next one starts at `base + carved * stack_size`.
    carved: usize,
    registry_index: usize,
    /// One bit per stack: free, guarded, and no page resident (released, or carved and never
    /// used). A bitmap rather than a list of `Stack`s: a million released stacks cost 128
    /// bytes a slab instead of 16 MiB of bookkeeping.
    cold: Vec<u64>,
    ncold: usize,
}

#[derive(Debug, Default)]
struct Inner {
    slabs: Vec<Slab>,
    /// `(base, index)` of every slab, sorted by address.
    by_addr: Vec<(usize, usize)>,
    /// Indices of the slabs that have cold stacks, each once.
    cold_slabs: Vec<usize>,
    /// Free stacks whose touched pages are still resident; most recently freed at the back.
    hot: VecDeque<Stack>,
    /// How many of `hot` sat unused through a whole period.
    aging: Aging,
}

/// Owner of every stack of one runtime. The per-P caches in `P` sit in front of it.
#[derive(Debug)]
pub(crate) struct StackPool {
    stack_size: usize,
    inner: Mutex<Inner>,
}

// SAFETY: the raw slab pointers are only dereferenced through `Stack`s handed out under the
// lock; the pool itself is just bookkeeping protected by `inner`.
unsafe impl Send for StackPool {}
// SAFETY: as above; all mutable state is behind the mutex.
unsafe impl Sync for StackPool {}

impl StackPool {
    /// A pool of stacks of `stack_size` bytes (rounded to whole pages, and up to leave room
    /// above a guard of a large page).
    pub(crate) fn new(stack_size: usize) -> StackPool {
        super::install_overflow_handler();
        StackPool {
            stack_size: region_bytes_for(stack_size, page_size()),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Moves `n` free stacks into `out`: warm ones first, then released or freshly carved
    /// ones, whose top pages (where the first frame goes) are faulted in with one batched
    /// `MADV_POPULATE_WRITE` instead of one page fault per goroutine start.
    #[cold]
    pub(crate) fn get_batch(&self, out: &mut Vec<Stack>, n: usize) -> io::Result<()> {
        let mut inner = crate::sched::lock(&self.inner);
        let warm = n.min(inner.hot.len());
        let at = inner.hot.len() - warm;
        out.extend(inner.hot.drain(at..));
        let len = inner.hot.len();
        inner.aging.saw(len);
        let first_cold = out.len();
        for _ in warm..n {
            let s = match self.pop_cold(&mut inner) {
                Some(s) => s,
                None => {
                    self.carve(&mut inner)?;
                    self.pop_cold(&mut inner).expect("carve adds stacks")
                }
            };
            out.push(s);
        }
        drop(inner);
        let page = page_size();
        let tops: Vec<(usize, usize)> = out[first_cold..]
            .iter()
            .map(|s| (s.top() as usize - page, page))
            .collect();
        // SAFETY: each range is the top page of a stack we now own exclusively; populating
        // it only makes zero pages resident. Failure just leaves the page to the first touch.
        let _ = unsafe { advise::advise_ranges(&tops, MADV_POPULATE_WRITE, Fallback::Skip) };
        Ok(())
    }

    /// Returns stacks to the pool.
    #[cold]
    pub(crate) fn put_batch(&self, stacks: impl Iterator<Item = Stack>) {
        crate::sched::lock(&self.inner).hot.extend(stacks);
    }

    /// One bounded step of handing idle memory back: releases the pages (the top one too) of
    /// up to `RELEASE_BATCH` warm stacks that sat unused for a whole period, beyond the
    /// `HOT_KEEP` reserve, sorted by address so that adjacent stacks go back in one `madvise`.
    /// Called by idle Ms, never on a goroutine's exit path. Returns when to call again, or
    /// `None` when nothing is left to release.
    #[cold]
    pub(crate) fn release_step(&self) -> Option<Duration> {
        let (mut batch, next): (Vec<Stack>, _) = {
            let mut inner = crate::sched::lock(&self.inner);
            let len = inner.hot.len();
            let (n, next) = inner.aging.step(len, HOT_KEEP, RELEASE_BATCH);
            if n == 0 {
                return next;
            }
            // The oldest first: the back of `hot` is what the next spawns reuse.
            let batch = inner.hot.drain(..n).collect();
            // Give back the bookkeeping of a burst too (16 bytes a stack).
            let keep = (2 * inner.hot.len()).max(2 * HOT_KEEP);
            if inner.hot.capacity() > 4 * keep {
                inner.hot.shrink_to(keep);
            }
            (batch, next)
        };
        batch.sort_unstable_by_key(|s| s.base() as usize);
        let guard = guard_bytes();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for s in &batch {
            let (start, end) = (s.base() as usize + guard, s.top() as usize);
            // A stack right after the previous one extends its range over its own guard:
            // MADV_DONTNEED leaves guard regions (and PROT_NONE pages) faulting.
            match ranges.last_mut() {
                Some((prev, len)) if *prev + *len + guard == start => *len = end - *prev,
                _ => ranges.push((start, end - start)),
            }
        }
        for (start, len) in ranges {
            // SAFETY: the ranges cover stacks in `batch`, which we own and nothing runs on,
            // and the guards between adjacent ones, which hold nothing. A failure only means
            // the pages stay resident; the stacks are still usable.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
        let mut inner = crate::sched::lock(&self.inner);
        for s in batch.drain(..) {
            self.push_cold(&mut inner, s);
        }
        next
    }

    /// Takes a cold stack: the lowest of the most recently listed slab.
    fn pop_cold(&self, inner: &mut Inner) -> Option<Stack> {
        let &i = inner.cold_slabs.last()?;
        let slab = &mut inner.slabs[i];
        let w = slab
            .cold
            .iter()
            .position(|&w| w != 0)
            .expect("a listed slab has a cold stack");
        let bit = slab.cold[w].trailing_zeros() as usize;
        slab.cold[w] &= !(1 << bit);
        slab.ncold -= 1;
        if slab.ncold == 0 {
            inner.cold_slabs.pop();
        }
        let base = slab.base.wrapping_add((w * 64 + bit) * self.stack_size);
        // SAFETY: the bit was set, so the stack is carved, guarded and claimed by nobody;
        // clearing it makes this `Stack` the only claim.
        Some(unsafe { Stack::from_raw(base, self.stack_size) })
    }

    /// Records a free stack with no resident page in its slab's bitmap.
    fn push_cold(&self, inner: &mut Inner, s: Stack) {
        let addr = s.base() as usize;
        let at = inner.by_addr.partition_point(|&(base, _)| base <= addr) - 1;
        let i = inner.by_addr[at].1;
        let slab = &mut inner.slabs[i];
        let k = (addr - slab.base as usize) / self.stack_size;
        debug_assert_eq!(
            slab.cold[k / 64] & (1 << (k % 64)),
            0,
            "a stack pooled twice"
        );
        slab.cold[k / 64] |= 1 << (k % 64);
        slab.ncold += 1;
        if slab.ncold == 1 {
            inner.cold_slabs.push(i);
        }
    }

    /// Carves up to `CARVE_BATCH` new stacks as cold ones, their guards installed together.
    #[cold]
    fn carve(&self, inner: &mut Inner) -> io::Result<()> {
        let size = self.stack_size;
        if inner
            .slabs
            .last()
            .is_none_or(|s| (s.carved + 1) * size > s.len)
        {
            let slab = self.map_slab()?;
            let entry = (slab.base as usize, inner.slabs.len());
            let at = inner.by_addr.partition_point(|&(base, _)| base < entry.0);
            inner.by_addr.insert(at, entry);
            inner.slabs.push(slab);
        }
        let i = inner.slabs.len() - 1;
        let slab = &mut inner.slabs[i];
        let mut n = (slab.len / size - slab.carved).min(CARVE_BATCH);
        let (first, base) = (slab.carved, slab.base as usize);
        let guard = guard_bytes();
        let guards: Vec<(usize, usize)> = (first..first + n)
            .map(|k| (base + k * size, guard))
            .collect();
        // SAFETY: each range is the page-aligned guard of a stack of our slab that nobody has
        // been given yet.
        if let Err(e) = unsafe { guard::install_many(&guards) } {
            // Near vm.max_map_count (mprotect guards) a whole batch may not fit where one
            // more stack still does: carve just that one, or report why not.
            if n == 1 {
                return Err(e);
            }
            n = 1;
            // SAFETY: as above.
            unsafe { guard::install_many(&guards[..1])? };
        }
        slab.carved += n;
        for k in first..first + n {
            // SAFETY: the region was carved exactly once, just now, and its guard installed.
            let s = unsafe { Stack::from_raw((base + k * size) as *mut u8, size) };
            self.push_cold(inner, s);
        }
        Ok(())
    }

    #[cold]
    fn map_slab(&self) -> io::Result<Slab> {
        let size = self.stack_size;
        let len = (SLAB_BYTES / size).max(1) * size;
        // SAFETY: a fresh anonymous reservation; nothing else knows its address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("cannot reserve {len} bytes of goroutine stacks: {err}"),
            ));
        }
        // Huge pages would commit 2 MiB for a goroutine that touched 4 KiB. Advisory only.
        // SAFETY: advising our own fresh mapping.
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        let Some(registry_index) = registry::register(p as usize, len, size, guard_bytes()) else {
            // SAFETY: unmapping the mapping we just made and told nobody about.
            unsafe { libc::munmap(p, len) };
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "too many goroutine stack slabs in this process; use smaller stacks or fewer goroutines",
            ));
        };
        Ok(Slab {
            base: p.cast(),
            len,
            carved: 0,
            registry_index,
            cold: vec![0; (len / size).div_ceil(64)],
            ncold: 0,
        })
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        for slab in inner.slabs.drain(..) {
            registry::unregister(slab.registry_index);
            // SAFETY: the pool is dropped only once no goroutine of its runtime is alive (the
            // runtime leaks itself otherwise), so no stack of this slab is in use.
            unsafe { libc::munmap(slab.base.cast(), slab.len) };
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Whether reading `addr` faults, asked of the kernel (a `write` from it into a pipe fails
    /// with EFAULT) so the test process gets no signal.
    fn faults(addr: usize) -> bool {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid two-element array for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the kernel validates the source address.
        let n = unsafe { libc::write(fds[1], addr as *const libc::c_void, 1) };
        let err = io::Error::last_os_error().raw_os_error();
        // SAFETY: closing the descriptors pipe(2) just gave us.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        n == -1 && err == Some(libc::EFAULT)
    }

    #[test]
    #[cfg_attr(miri, ignore = "mmap and madvise are system calls miri cannot run")]
    fn released_stacks_keep_their_guards_and_come_back_zeroed() {
        let pool = StackPool::new(64 << 10);
        let n = HOT_KEEP + 300;
        let mut stacks = Vec::new();
        pool.get_batch(&mut stacks, n).unwrap();
        let page = page_size();
        let bases: Vec<usize> = stacks.iter().map(|s| s.base() as usize).collect();
        for s in &stacks {
            // SAFETY: the stack is ours; its top and second-lowest usable pages are mapped.
            unsafe {
                s.top().sub(8).cast::<u64>().write(0xfeed);
                s.base().add(guard_bytes()).cast::<u64>().write(0xbeef);
            }
        }
        pool.put_batch(stacks.into_iter());
        // Two ageing periods: the first pass sees the stacks unused for a whole period.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.inner.lock().unwrap().hot.len() > HOT_KEEP && Instant::now() < deadline {
            match pool.release_step() {
                Some(wait) => std::thread::sleep(wait),
                None => break,
            }
        }
        let inner = pool.inner.lock().unwrap();
        assert_eq!(inner.hot.len(), HOT_KEEP);
        let released: usize = inner.slabs.iter().map(|s| s.ncold).sum();
        assert!(released >= n - HOT_KEEP, "{released} cold stacks");
        drop(inner);
        // The oldest stacks were released: every page zero again, top page included; their
        // guards (adjacent stacks went back in one range across them) still fault.
        for &base in &bases[..n - HOT_KEEP] {
            let size = pool.stack_size;
            // SAFETY: the pool owns these stacks and nothing runs on them; reading is fine.
            unsafe {
                assert_eq!(((base + size - 8) as *const u64).read(), 0);
                assert_eq!(((base + guard_bytes()) as *const u64).read(), 0);
            }
            assert!(faults(base) && faults(base + guard_bytes() - page));
            assert!(!faults(base + guard_bytes()));
        }
        // The warm reserve kept its pages.
        for &base in &bases[n - HOT_KEEP..] {
            // SAFETY: as above.
            let v = unsafe { ((base + pool.stack_size - 8) as *const u64).read() };
            assert_eq!(v, 0xfeed);
        }
        // Reuse: warm stacks first, then cold ones (top page prefaulted, zeroed).
        let mut again = Vec::new();
        pool.get_batch(&mut again, n).unwrap();
        assert!(
            again[..HOT_KEEP]
                .iter()
                .all(|s| bases.contains(&(s.base() as usize)))
        );
        for s in &again[HOT_KEEP..] {
            // SAFETY: the stack is ours again.
            assert_eq!(unsafe { s.top().sub(8).cast::<u64>().read() }, 0);
            assert!(faults(s.base() as usize));
        }
        let mut distinct: Vec<usize> = again.iter().map(|s| s.base() as usize).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), n, "a stack was handed out twice");
        pool.put_batch(again.into_iter());
    }

    #[test]
    #[cfg_attr(miri, ignore = "mmap and madvise are system calls miri cannot run")]
    fn carved_stacks_are_guarded_page_aligned_and_distinct() {
        let pool = StackPool::new(100_000);
        let page = page_size();
        assert_eq!(pool.stack_size % page, 0);
        let mut stacks = Vec::new();
        pool.get_batch(&mut stacks, CARVE_BATCH + 10).unwrap();
        for s in &stacks {
            assert_eq!(s.base() as usize % page, 0);
            assert!(faults(s.base() as usize));
            assert!(!faults(s.top() as usize - 8));
        }
        pool.put_batch(stacks.into_iter());
    }
}
