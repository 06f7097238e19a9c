//! A process-wide event word that stop-the-world's coordinator sleeps on between checks.
//!
//! Every answer to a stop — a holder stopping at a safepoint, a P given up, a suspension
//! handler saving its registers — bumps the word and wakes its sleepers. The coordinator
//! reads the word, checks the Ps it waits for, and sleeps until the word changes (or a short
//! timeout passes, for deferred suspensions it must signal again). Sleeping rather than
//! spinning matters when threads outnumber cores: a signal is handled only when its thread
//! runs, and a spinning coordinator would keep it off the core.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Bumped by every answer; slept on by coordinators. Release bumps pair with the Acquire
/// load in `current`.
static PROGRESS: AtomicU32 = AtomicU32::new(0);

/// The current value, to pass to `wait` after checking.
pub(crate) fn current() -> u32 {
    PROGRESS.load(Ordering::Acquire)
}

/// Announces an answer: bumps the word and wakes every coordinator sleeping on it.
/// Async-signal-safe (an atomic and one system call), so the suspension handler calls it.
pub(crate) fn announce() {
    PROGRESS.fetch_add(1, Ordering::Release);
    #[cfg(target_os = "linux")]
    // SAFETY: FUTEX_WAKE on a valid, aligned word of this process; no memory is written.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            PROGRESS.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Sleeps until the word differs from `seen` or `timeout` passes (spurious returns are
/// fine: the caller checks again).
pub(crate) fn wait(seen: u32, timeout: Duration) {
    #[cfg(target_os = "linux")]
    {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on a valid, aligned word with a valid relative timeout; it only
        // reads the word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                PROGRESS.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &ts as *const libc::timespec,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        if PROGRESS.load(Ordering::Acquire) == seen {
            std::thread::sleep(timeout);
        }
    }
}
