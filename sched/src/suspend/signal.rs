//! The suspend signal: installing its handler, the handler itself, and sending it to one thread.
//!
//! **Why SIGURG.** Go uses it for preemption for the same reason: its default action is to
//! ignore, and few programs use it (only for out-of-band socket data with `F_SETOWN`). A
//! handler found installed before ours is chained to for signals that are not ours.
//!
//! **Interrupted system calls.** The handler is installed with `SA_RESTART`, so most blocking
//! calls resume transparently, but some never restart after a handler ran (`nanosleep`,
//! `epoll_wait`, `poll`, `select`, `sigtimedwait`, calls with a timeout in general) and fail
//! with `EINTR` instead. The runtime's own system calls retry on `EINTR` (so does std's
//! `thread::sleep`); FFI code running on a registered thread must do the same.
//!
//! **Ours or not.** On Linux the signal is sent with `rt_tgsigqueueinfo`, carrying
//! `SI_QUEUE` and a cookie (the address of a static) in `si_value`, so the handler tells our
//! signals from foreign ones and chains only the latter. On macOS (`pthread_kill`, no
//! payload) a signal is ours when the receiving thread is registered.
//!
//! **A blocked signal.** A thread that blocks SIGURG in its signal mask cannot be suspended:
//! its slot stays Pending until it unblocks the signal.

use super::context::SavedContext;
use super::nopreempt;
use super::registration;
use std::sync::OnceLock;

/// The signal that suspends a thread.
pub(crate) const SUSPEND_SIGNAL: libc::c_int = libc::SIGURG;

/// The handler found installed before ours, chained to for foreign signals. Written once
/// before our handler is installed; read by the handler.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the suspend handler once per process; later calls return at once. Blocks no
/// signal of the calling thread.
pub(crate) fn install() {
    PREVIOUS.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid value to be filled in or overwritten.
        let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_signal as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        // SAFETY: `act` is a fully initialised sigaction owned by this frame; `prev`
        // receives the old one. While the handler runs (perhaps suspended for a while) every
        // signal but the synchronous faults is blocked, so no other handler runs on the
        // suspended thread's stack meanwhile (process-directed signals go to other threads).
        unsafe {
            libc::sigfillset(&mut act.sa_mask);
            for sig in [
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGILL,
                libc::SIGFPE,
                libc::SIGTRAP,
            ] {
                libc::sigdelset(&mut act.sa_mask, sig);
            }
            libc::sigaction(SUSPEND_SIGNAL, &act, &mut prev);
        }
        prev
    });
}

/// The calling thread's id, as a slot records it: `gettid` on Linux.
#[cfg(target_os = "linux")]
pub(super) fn current_tid() -> usize {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as usize }
}

/// The calling thread's id, as a slot records it: `pthread_self` on macOS.
#[cfg(target_vendor = "apple")]
pub(super) fn current_tid() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// `siginfo_t` as `rt_tgsigqueueinfo` reads it for `SI_QUEUE` (64-bit Linux layout).
#[cfg(target_os = "linux")]
#[repr(C)]
struct QueueInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: usize,
    _rest: [u64; 12],
}

#[cfg(target_os = "linux")]
const _: () = assert!(size_of::<QueueInfo>() == size_of::<libc::siginfo_t>());

/// The cookie our signals carry: an address no foreign sender knows.
#[cfg(target_os = "linux")]
static COOKIE: u8 = 0;

#[cfg(target_os = "linux")]
fn cookie() -> usize {
    &COOKIE as *const u8 as usize
}

/// Sends the suspend signal to thread `tid` of this process. The caller guarantees the
/// thread is registered (it cannot unregister before the caller's `end_send`).
#[cfg(target_os = "linux")]
pub(super) fn send(tid: usize) {
    // SAFETY: getpid and getuid have no preconditions.
    let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
    let info = QueueInfo {
        signo: SUSPEND_SIGNAL,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid,
        uid,
        value: cookie(),
        _rest: [0; 12],
    };
    // SAFETY: `info` is a complete siginfo_t image that lives across the call; the target is
    // a thread of this process. A failure (ESRCH: cannot happen while it is registered)
    // leaves the slot Pending, which the coordinator sees.
    unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid as libc::pid_t,
            SUSPEND_SIGNAL,
            &info as *const QueueInfo,
        );
    }
}

/// Sends the suspend signal to thread `tid` (a `pthread_t`) of this process. The caller
/// guarantees the thread is registered, hence alive.
#[cfg(target_vendor = "apple")]
pub(super) fn send(tid: usize) {
    // SAFETY: `tid` is the pthread_t of a registered thread, which cannot exit before the
    // caller's `end_send` (its Registration's drop waits for it).
    unsafe {
        libc::pthread_kill(tid as libc::pthread_t, SUSPEND_SIGNAL);
    }
}

/// Whether the signal described by `info` is one of ours.
#[cfg(target_os = "linux")]
fn is_ours(info: *const libc::siginfo_t) -> bool {
    if info.is_null() {
        return false;
    }
    // SAFETY: the kernel passes a complete siginfo_t to SA_SIGINFO handlers; QueueInfo has
    // its size and the SI_QUEUE layout, and we read the payload only when the code says so.
    let info = unsafe { &*info.cast::<QueueInfo>() };
    info.code == libc::SI_QUEUE && info.value == cookie()
}

/// Whether the signal is ours: on macOS, whether this thread is registered.
#[cfg(target_vendor = "apple")]
fn is_ours(_info: *const libc::siginfo_t) -> bool {
    !registration::current().is_null()
}

#[cfg(target_os = "linux")]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns this thread's errno address; async-signal-safe.
    unsafe { libc::__errno_location() }
}

#[cfg(target_vendor = "apple")]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns this thread's errno address; async-signal-safe.
    unsafe { libc::__error() }
}

/// The suspend handler: suspends the thread if its slot has a request outstanding and it is
/// not inside runtime code, defers if it is, ignores the signal otherwise; chains foreign
/// signals to the previous handler. Touches only atomics, the pre-allocated slot and
/// `const`-initialised thread-locals; saves and restores `errno`.
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let errno = errno_location();
    // SAFETY: errno is this thread's; the handler is the only code running on it now.
    let saved_errno = unsafe { *errno };
    let slot = registration::current();
    if !slot.is_null() {
        // SAFETY: a non-null link means this thread is registered, and its Registration
        // keeps the slot alive until it clears the link (on this thread, so not meanwhile).
        let slot = unsafe { &*slot };
        // Ignored, deferred or resumed: nothing more to do here in any case.
        slot.on_signal(nopreempt::should_defer, |ctx: &mut SavedContext| {
            nopreempt::clear_deferred();
            // SAFETY: `uc` is the context the kernel passed to this running handler.
            unsafe { ctx.capture(uc) }
        });
    }
    if !is_ours(info) {
        chain(sig, info, uc);
    }
    // SAFETY: as above.
    unsafe { *errno = saved_errno };
}

/// Passes a foreign signal to the handler installed before ours, if it was a function.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let Some(prev) = PREVIOUS.get() else { return };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SIGURG's default action is to ignore it.
        return;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, uc);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes just the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}
