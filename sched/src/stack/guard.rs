//! Stack guards: `MADV_GUARD_INSTALL` where it really works, `mprotect` otherwise; probed once.

use super::advise::{self, Fallback};
use std::io;
use std::sync::OnceLock;

/// `MADV_GUARD_INSTALL` (Linux 6.13); the libc crate has no constant for it yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How stack guards are installed in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)`: no extra VMA per stack, so millions of stacks fit under
    /// the default `vm.max_map_count`.
    GuardRegion,
    /// `mprotect(PROT_NONE)`: splits the mapping, one more VMA per stack; about 32k stacks
    /// exhaust the default `vm.max_map_count` (65530).
    Mprotect,
}

/// The mode chosen by the start-up probe (or forced with `GORT_STACK_GUARD=mprotect`).
pub fn guard_mode() -> GuardMode {
    static MODE: OnceLock<GuardMode> = OnceLock::new();
    *MODE.get_or_init(|| {
        if std::env::var_os("GORT_STACK_GUARD").is_some_and(|v| v == "mprotect") {
            return GuardMode::Mprotect;
        }
        probe()
    })
}

/// Installs a guard and checks that it really faults: qemu-user, for one, accepts
/// `MADV_GUARD_INSTALL` and installs nothing. The check makes the kernel read the page on our
/// behalf (a `write` from it into a pipe), which fails with `EFAULT` instead of a signal.
#[cold]
fn probe() -> GuardMode {
    let page = super::page_size();
    // SAFETY: a fresh private anonymous mapping; nothing else knows its address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return GuardMode::Mprotect;
    }
    let mut mode = GuardMode::Mprotect;
    // SAFETY: `p` is our own mapping of two pages.
    if unsafe { libc::madvise(p, page, MADV_GUARD_INSTALL) } == 0 {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid two-element array for pipe(2).
        if unsafe { libc::pipe(fds.as_mut_ptr()) } == 0 {
            // SAFETY: the kernel validates the source address; a guard makes it fail with
            // EFAULT rather than fault this thread.
            let n = unsafe { libc::write(fds[1], p, 1) };
            let err = io::Error::last_os_error().raw_os_error();
            if n == -1 && err == Some(libc::EFAULT) {
                mode = GuardMode::GuardRegion;
            }
            // SAFETY: closing the two descriptors pipe(2) just gave us.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
        }
    }
    // SAFETY: unmapping our own probe mapping.
    unsafe { libc::munmap(p, 2 * page) };
    mode
}

/// Makes every `(start, len)` range fault on any access: with guard regions in batches of
/// up to 1024 ranges per system call, with `mprotect` one call per range.
///
/// # Safety
/// Every range must be page-aligned, inside a mapping owned by the caller, and hold nothing
/// anyone will read again.
pub(crate) unsafe fn install_many(ranges: &[(usize, usize)]) -> io::Result<()> {
    match guard_mode() {
        GuardMode::GuardRegion => {
            // SAFETY: per the contract, the ranges are ours and unused.
            unsafe { advise::advise_ranges(ranges, MADV_GUARD_INSTALL, Fallback::EachRange) }
        }
        GuardMode::Mprotect => {
            for &(start, len) in ranges {
                // SAFETY: as above.
                if unsafe { libc::mprotect(start as *mut libc::c_void, len, libc::PROT_NONE) } != 0
                {
                    return Err(mprotect_error());
                }
            }
            Ok(())
        }
    }
}

#[cold]
fn mprotect_error() -> io::Error {
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOMEM) {
        return err;
    }
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "cannot install a stack guard with mprotect: the process reached \
             vm.max_map_count ({err}); each mprotect guard costs a mapping, so run fewer \
             live goroutines, or use a kernel with MADV_GUARD_INSTALL (Linux 6.13+)"
        ),
    )
}
