//! Batched `madvise`: one `process_madvise` call on our own memory for many ranges at once.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// `MADV_POPULATE_WRITE` (Linux 5.14): fault pages in writable, as a first write would.
pub(crate) const MADV_POPULATE_WRITE: libc::c_int = 23;

/// `PIDFD_SELF_THREAD` (Linux 6.15): "the calling thread" without opening a pidfd, so there
/// is no descriptor to leak or to point at a parent after `fork`. Any advice is accepted for
/// one's own memory since Linux 6.13.
const PIDFD_SELF: libc::c_int = -10000;

/// Most ranges one `process_madvise` call takes (`UIO_MAXIOV`).
const MAX_RANGES: usize = 1024;

/// Cleared when `process_madvise` on ourselves is unavailable (older kernel, seccomp); from
/// then on every range gets its own `madvise`.
static BATCHES_WORK: AtomicBool = AtomicBool::new(true);

/// What to do with ranges a batch call did not cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// One `madvise` per range: the advice is required (a guard).
    EachRange,
    /// Nothing: the advice is an optimisation (prefaulting), and one system call per range
    /// costs about what it saves.
    Skip,
}

/// Applies `advice` to every `(start, len)` range, up to `MAX_RANGES` ranges per system call.
///
/// # Safety
/// Every range must be page-aligned, inside a private anonymous mapping the caller owns, and
/// hold nothing anyone relies on that `advice` would change.
pub(crate) unsafe fn advise_ranges(
    ranges: &[(usize, usize)],
    advice: libc::c_int,
    fallback: Fallback,
) -> io::Result<()> {
    let mut first_err = None;
    for chunk in ranges.chunks(MAX_RANGES) {
        // SAFETY: forwarded caller contract.
        if unsafe { advise_batch(chunk, advice) } {
            continue;
        }
        if fallback == Fallback::Skip {
            continue;
        }
        for &(start, len) in chunk {
            // SAFETY: forwarded caller contract; advice that was already applied by a partial
            // batch is idempotent.
            if unsafe { libc::madvise(start as *mut libc::c_void, len, advice) } != 0
                && first_err.is_none()
            {
                first_err = Some(io::Error::last_os_error());
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// One `process_madvise` call; true when it covered every byte.
///
/// # Safety
/// As `advise_ranges`.
unsafe fn advise_batch(ranges: &[(usize, usize)], advice: libc::c_int) -> bool {
    if ranges.len() < 2 || !BATCHES_WORK.load(Ordering::Relaxed) {
        return false;
    }
    let iov: Vec<libc::iovec> = ranges
        .iter()
        .map(|&(start, len)| libc::iovec {
            iov_base: start as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let total: usize = ranges.iter().map(|r| r.1).sum();
    // SAFETY: `iov` describes `iov.len()` ranges of our own memory (caller contract); the
    // kernel only reads the array.
    let done = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            PIDFD_SELF,
            iov.as_ptr(),
            iov.len(),
            advice,
            0,
        )
    };
    if done == -1 {
        let errno = io::Error::last_os_error().raw_os_error();
        if matches!(
            errno,
            Some(libc::ENOSYS | libc::EBADF | libc::EPERM | libc::ESRCH)
        ) {
            BATCHES_WORK.store(false, Ordering::Relaxed);
        }
        return false;
    }
    done as usize == total
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Which of the `pages` pages from `p` are resident.
    fn resident(p: *mut libc::c_void, pages: usize) -> Vec<bool> {
        let mut v = vec![0u8; pages];
        let len = pages * super::super::page_size();
        // SAFETY: `p` is our mapping of `pages` pages; `v` has one byte per page.
        let rc = unsafe { libc::mincore(p, len, v.as_mut_ptr()) };
        assert_eq!(rc, 0);
        v.iter().map(|b| b & 1 == 1).collect()
    }

    #[test]
    #[cfg_attr(miri, ignore = "mmap and madvise are system calls miri cannot run")]
    fn batched_and_per_range_advice_touch_exactly_the_ranges() {
        let page = super::super::page_size();
        for batched in [true, false] {
            // SAFETY: a fresh private anonymous mapping nothing else knows.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    8 * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            let ranges = [(p as usize + page, page), (p as usize + 5 * page, 2 * page)];
            let r = if batched {
                // SAFETY: the ranges are pages of our own fresh mapping.
                unsafe { advise_ranges(&ranges, MADV_POPULATE_WRITE, Fallback::EachRange) }
            } else {
                // The fallback path, as on a kernel without `process_madvise` on oneself.
                // SAFETY: as above.
                ranges.iter().try_for_each(|&r| unsafe {
                    advise_ranges(&[r], MADV_POPULATE_WRITE, Fallback::EachRange)
                })
            };
            r.unwrap();
            let want = [false, true, false, false, false, true, true, false];
            assert_eq!(resident(p, 8), want, "batched: {batched}");
            // SAFETY: unmapping our own mapping.
            unsafe { libc::munmap(p, 8 * page) };
        }
    }
}
