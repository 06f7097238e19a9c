//! The stack-overflow report: a SIGSEGV/SIGBUS handler on an alternate signal stack.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// Id of the goroutine this thread is running, 0 when none. Written by the M before it
    /// switches to a G; read by the fault handler on the same thread. `const`-initialised, so
    /// reading it from a signal handler allocates nothing.
    static CURRENT_GOID: Cell<u64> = const { Cell::new(0) };
}

/// Records which goroutine the calling thread is about to run (0: none).
#[inline]
pub(crate) fn set_current_goid(id: u64) {
    CURRENT_GOID.with(|c| c.set(id));
}

/// Previous handlers, chained to for faults that are not ours. Written once before our
/// handler is installed; read by the handler.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();

/// Installs the overflow handler once per process.
pub(crate) fn install_overflow_handler() {
    PREVIOUS.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid "no handler" value to be overwritten.
        let mut prev: [libc::sigaction; 2] = unsafe { std::mem::zeroed() };
        for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
            // SAFETY: as above.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = on_fault as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `act` is a fully initialised sigaction; `prev[i]` receives the old one.
            unsafe {
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(sig, &act, &mut prev[i]);
            }
        }
        prev
    });
}

fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writing from a valid slice to stderr; async-signal-safe.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

fn write_u64(mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    write_all(&buf[i..]);
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some((size, guard)) = super::registry::guard_hit(addr) {
        let id = CURRENT_GOID.with(|c| c.get());
        write_all(b"fatal error: stack overflow\n\nruntime: goroutine ");
        write_u64(id);
        write_all(b" stack exceeds ");
        write_u64((size - guard) as u64);
        write_all(b"-byte limit\n\ngoroutine ");
        write_u64(id);
        write_all(b" [running]:\n");
        // SAFETY: abort is async-signal-safe and never returns.
        unsafe { libc::abort() };
    }
    let Some(prev) = PREVIOUS.get() else { return };
    let prev = &prev[usize::from(sig == libc::SIGBUS)];
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Not ours and nobody else's: restore the default action and return, so the faulting
        // instruction runs again and the kernel ends the process with the usual signal.
        // SAFETY: an all-zero sigaction with SIG_DFL is the default disposition.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a handler installed without SA_SIGINFO takes just the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// An alternate signal stack for an M thread that has none, so the overflow handler can run
/// after the goroutine's stack is exhausted. Removed when dropped.
#[derive(Debug)]
pub(crate) struct AltStack {
    mapping: *mut libc::c_void,
    len: usize,
}

impl AltStack {
    /// Installs an alternate stack on the calling thread unless one is already in place.
    pub(crate) fn ensure() -> Option<AltStack> {
        // SAFETY: querying the current alternate stack into a zeroed stack_t.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new-stack pointer only queries.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut old) };
        if old.ss_flags & libc::SS_DISABLE == 0 {
            return None;
        }
        let len = 64 * 1024;
        // SAFETY: a fresh private anonymous mapping nothing else knows.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return None;
        }
        let st = libc::stack_t {
            ss_sp: mapping,
            ss_flags: 0,
            ss_size: len,
        };
        // SAFETY: `st` describes our own mapping, used only by this thread's handlers.
        unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
        Some(AltStack { mapping, len })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let st = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling this thread's alternate stack, then unmapping the region we
        // mapped for it; no handler can be running on it since we are on the normal stack.
        unsafe {
            libc::sigaltstack(&st, std::ptr::null_mut());
            libc::munmap(self.mapping, self.len);
        }
    }
}
