//! One goroutine stack: a fixed virtual region whose lowest pages are a guard.

use std::io;

/// Bytes at the bottom of every stack that fault on access (a guard region or a PROT_NONE
/// mapping). Stack probes (which rustc emits for frames larger than a page on x86_64 and
/// aarch64) guarantee that an overflowing frame touches the guard before anything below it.
pub(crate) const GUARD_BYTES: usize = 8 * 1024;

/// Smallest stack a builder accepts: the guard, the first frames and a margin for a real
/// function call chain.
pub const MIN_STACK_SIZE: usize = 32 * 1024;

/// Largest stack a builder accepts (virtual size per goroutine).
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// The system page size, read once.
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no memory-safety preconditions.
    *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize)
}

/// A stack region `[base, base + size)`; `[base, base + GUARD_BYTES)` is the guard.
///
/// A `Stack` is owned by exactly one party at a time: a pool, or the G it was given to. It is
/// plain data; the mapping belongs to the pool's slabs, which outlive every `Stack` carved
/// from them.
#[derive(Debug)]
pub(crate) struct Stack {
    base: *mut u8,
    size: usize,
}

// SAFETY: a `Stack` is an exclusive claim on a region of a slab that outlives it; moving the
// claim to another thread moves no shared state.
unsafe impl Send for Stack {}

impl Stack {
    /// # Safety
    /// `[base, base + size)` must be a stack region of a live slab, with its guard installed,
    /// not claimed by any other `Stack`.
    pub(crate) unsafe fn from_raw(base: *mut u8, size: usize) -> Stack {
        Stack { base, size }
    }

    /// Exclusive upper end; the first frame is built just below it.
    pub(crate) fn top(&self) -> *mut u8 {
        self.base.wrapping_add(self.size)
    }

    /// Gives the region's pages back to the OS except the top `keep` bytes and the guard.
    /// The region stays reserved; a later touch refaults zeroed pages.
    pub(crate) fn release_pages(&self, keep: usize) -> io::Result<()> {
        let start = self.base.wrapping_add(GUARD_BYTES);
        let len = self.size - GUARD_BYTES - keep;
        // SAFETY: `[start, start + len)` lies inside this stack's region, which this `Stack`
        // claims exclusively; nothing runs on it while it is pooled.
        let rc = unsafe { libc::madvise(start.cast(), len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
