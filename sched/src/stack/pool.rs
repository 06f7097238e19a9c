//! A runtime's stack pool: slabs reserved with MAP_NORESERVE, carved lazily, reused hot first.

use super::region::{GUARD_BYTES, Stack, page_size};
use super::{guard, registry};
use std::io;
use std::sync::Mutex;

/// Virtual size of one slab. Slabs are reserved, not committed: a stack costs memory only for
/// the pages its goroutine touched.
const SLAB_BYTES: usize = 256 << 20;

/// Stacks kept in the shared pool without releasing their pages: the hot working set reused
/// by bursts of short goroutines.
const HOT_KEEP: usize = 64;

/// Most stacks one background release pass hands back to the OS.
const RELEASE_BATCH: usize = 256;

#[derive(Debug)]
struct Slab {
    base: *mut u8,
    len: usize,
    /// Stacks carved so far; the next one starts at `base + carved * stack_size`.
    carved: usize,
    registry_index: usize,
}

#[derive(Debug, Default)]
struct Inner {
    slabs: Vec<Slab>,
    /// Free stacks whose touched pages are still resident, most recently freed last.
    hot: Vec<Stack>,
    /// Free stacks whose pages (but the top one) were released.
    cold: Vec<Stack>,
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
    pub(crate) fn new(stack_size: usize) -> StackPool {
        super::install_overflow_handler();
        StackPool {
            stack_size,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Moves up to `n` free stacks into `out`, carving new ones when the pool is empty.
    #[cold]
    pub(crate) fn get_batch(&self, out: &mut Vec<Stack>, n: usize) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..n {
            let s = match inner.hot.pop().or_else(|| inner.cold.pop()) {
                Some(s) => s,
                None => self.carve(&mut inner)?,
            };
            out.push(s);
        }
        Ok(())
    }

    /// Returns stacks to the pool.
    #[cold]
    pub(crate) fn put_batch(&self, stacks: impl Iterator<Item = Stack>) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hot
            .extend(stacks);
    }

    /// Background release: hands the pages of the oldest hot stacks beyond the hot working
    /// set back to the OS, a batch at a time, outside the lock. Called by Ms going idle, never
    /// on a goroutine's exit path. Returns how many stacks were released.
    #[cold]
    pub(crate) fn release_idle(&self) -> usize {
        let batch: Vec<Stack> = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.hot.len() <= HOT_KEEP {
                return 0;
            }
            let n = (inner.hot.len() - HOT_KEEP).min(RELEASE_BATCH);
            inner.hot.drain(..n).collect()
        };
        let n = batch.len();
        for s in &batch {
            // A failed madvise only means the pages stay resident; the stack is still usable.
            let _ = s.release_pages(page_size());
        }
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cold
            .extend(batch);
        n
    }

    fn carve(&self, inner: &mut Inner) -> io::Result<Stack> {
        let size = self.stack_size;
        if inner
            .slabs
            .last()
            .is_none_or(|s| (s.carved + 1) * size > s.len)
        {
            inner.slabs.push(self.map_slab()?);
        }
        let slab = inner.slabs.last_mut().expect("a slab was just ensured");
        let base = slab.base.wrapping_add(slab.carved * size);
        // SAFETY: `base .. base + GUARD_BYTES` is page-aligned, inside our slab and belongs to
        // a stack nobody has been given yet.
        unsafe { guard::install(base, GUARD_BYTES)? };
        slab.carved += 1;
        // SAFETY: the region was carved exactly once, just now, and its guard is installed.
        Ok(unsafe { Stack::from_raw(base, size) })
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
        let Some(registry_index) = registry::register(p as usize, len, size) else {
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
