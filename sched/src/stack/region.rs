//! One goroutine stack: a fixed virtual region whose lowest pages are a guard; page arithmetic.

/// Smallest guard: two 4 KiB pages. On kernels with larger pages the guard is one page.
const MIN_GUARD_BYTES: usize = 8 * 1024;

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

/// Bytes at the bottom of every stack that fault on access (a guard region or a PROT_NONE
/// mapping) with pages of `page` bytes: at least 8 KiB and at least one page, page-aligned.
/// Stack probes (which rustc emits for frames larger than a page on x86_64 and aarch64)
/// guarantee that an overflowing frame touches the guard before anything below it.
pub(crate) const fn guard_bytes_for(page: usize) -> usize {
    if page > MIN_GUARD_BYTES {
        page
    } else {
        MIN_GUARD_BYTES.div_ceil(page) * page
    }
}

/// The guard size on this system.
pub(crate) fn guard_bytes() -> usize {
    guard_bytes_for(page_size())
}

/// The region a requested stack size becomes with pages of `page` bytes: whole pages, and
/// at least the usable bytes of a `MIN_STACK_SIZE` stack above the guard (a 64 KiB-page
/// kernel would otherwise leave a minimum-size stack nothing but guard).
pub(crate) const fn region_bytes_for(requested: usize, page: usize) -> usize {
    let usable = MIN_STACK_SIZE - MIN_GUARD_BYTES;
    let min = guard_bytes_for(page) + usable;
    let size = if requested > min { requested } else { min };
    size.div_ceil(page) * page
}

/// A stack region `[base, base + size)`; `[base, base + guard_bytes())` is the guard.
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

    /// Lowest address of the region (the guard's start).
    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// Exclusive upper end; the first frame is built just below it.
    pub(crate) fn top(&self) -> *mut u8 {
        self.base.wrapping_add(self.size)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const PAGES: [usize; 3] = [4 << 10, 16 << 10, 64 << 10];

    #[test]
    fn guard_is_at_least_one_page_and_page_aligned() {
        assert_eq!(guard_bytes_for(4 << 10), 8 << 10);
        assert_eq!(guard_bytes_for(16 << 10), 16 << 10);
        assert_eq!(guard_bytes_for(64 << 10), 64 << 10);
        for page in PAGES {
            let g = guard_bytes_for(page);
            assert!(
                g >= page && g >= MIN_GUARD_BYTES && g.is_multiple_of(page),
                "{page}"
            );
        }
        assert_eq!(guard_bytes() % page_size(), 0);
    }

    #[test]
    fn regions_are_whole_pages_with_room_above_the_guard() {
        for page in PAGES {
            for requested in [
                MIN_STACK_SIZE,
                MIN_STACK_SIZE + 1,
                100_000,
                256 << 10,
                MAX_STACK_SIZE,
            ] {
                let size = region_bytes_for(requested, page);
                assert_eq!(size % page, 0, "{requested} on {page}");
                assert!(size >= requested, "{requested} on {page}");
                assert!(
                    size - guard_bytes_for(page) >= MIN_STACK_SIZE - MIN_GUARD_BYTES,
                    "{requested} on {page}"
                );
            }
        }
        // With 4 KiB pages nothing changes for sizes the builder accepts.
        assert_eq!(region_bytes_for(256 << 10, 4 << 10), 256 << 10);
        assert_eq!(region_bytes_for(MIN_STACK_SIZE, 4 << 10), MIN_STACK_SIZE);
        // With 64 KiB pages a minimum stack is one guard page and one usable page.
        assert_eq!(region_bytes_for(MIN_STACK_SIZE, 64 << 10), 128 << 10);
    }
}
