//! How a suspended handler sleeps until resumed: a futex on Linux, a sleep-poll loop on macOS.
//!
//! Both sides are async-signal-safe (a raw `futex` system call; `select` with a timeout).
//! Spurious returns are fine: the caller re-checks the state word.

use crate::loom::AtomicU32;

/// Sleeps while `*word == expected` (or returns early, spuriously).
#[cfg(all(target_os = "linux", not(loom)))]
pub(super) fn wait_while(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT_PRIVATE only reads the word, which `word` keeps alive for the call;
    // a null timeout waits indefinitely. EINTR / EAGAIN returns are handled by the caller.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes the thread sleeping in `wait_while` on `word`, if any.
#[cfg(all(target_os = "linux", not(loom)))]
pub(super) fn wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE_PRIVATE touches no memory; the address only names the wait queue.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Sleeps while `*word == expected`: macOS has no public futex, so the handler polls the
/// word every 50 µs (`select` is async-signal-safe; `nanosleep` is not listed as such).
#[cfg(all(target_vendor = "apple", not(loom)))]
pub(super) fn wait_while(word: &AtomicU32, expected: u32) {
    use crate::loom::Ordering;
    // Relaxed: the caller re-reads the word with Acquire.
    if word.load(Ordering::Relaxed) != expected {
        return;
    }
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50,
    };
    // SAFETY: a select with no descriptors only sleeps; `tv` is ours.
    unsafe {
        libc::select(
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        );
    }
}

/// Nothing to do on macOS: the waiter polls.
#[cfg(all(target_vendor = "apple", not(loom)))]
pub(super) fn wake(_word: &AtomicU32) {}

/// Under loom the waiter yields and re-checks.
#[cfg(loom)]
pub(super) fn wait_while(_word: &AtomicU32, _expected: u32) {
    crate::loom::thread::yield_now();
}

/// Under loom the waiter polls.
#[cfg(loom)]
pub(super) fn wake(_word: &AtomicU32) {}
