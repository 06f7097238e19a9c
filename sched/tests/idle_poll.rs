//! The idle hook is polled without blocking only when no M is blocked in it already (Go's
//! `lastpoll` rule): an M that runs dry beside a blocked poller goes idle instead.
#![cfg(not(loom))]

use gort_sched::IdleHook;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A hook that always has waiters and counts the zero-timeout polls made while another
/// thread sits in a blocking one.
#[derive(Default)]
struct Counting {
    blocked: AtomicUsize,
    beside: AtomicUsize,
    zero: AtomicUsize,
    blocking: AtomicUsize,
    woken: Mutex<bool>,
    cv: Condvar,
    stop: AtomicBool,
}

/// The runtime owns its hook; the test keeps a second reference to read the counts.
struct Shared(Arc<Counting>);

impl IdleHook for Shared {
    fn poll(&self, timeout: Option<Duration>) {
        let h = &*self.0;
        if timeout == Some(Duration::ZERO) {
            h.zero.fetch_add(1, Ordering::SeqCst);
            if h.blocked.load(Ordering::SeqCst) > 0 {
                h.beside.fetch_add(1, Ordering::SeqCst);
            }
            // A poll takes time (a syscall): an M may begin a blocking poll meanwhile. Its
            // mark that it blocks must outlive this poll, or every M that runs dry after
            // this one polls beside it until it wakes.
            std::thread::sleep(Duration::from_micros(100));
            return;
        }
        h.blocking.fetch_add(1, Ordering::SeqCst);
        h.blocked.fetch_add(1, Ordering::SeqCst);
        let mut w = h.woken.lock().unwrap();
        let limit = timeout
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        if !*w {
            w = h.cv.wait_timeout(w, limit).unwrap().0;
        }
        *w = false;
        drop(w);
        h.blocked.fetch_sub(1, Ordering::SeqCst);
    }
    fn wake(&self) {
        let h = &*self.0;
        *h.woken.lock().unwrap() = true;
        h.cv.notify_all();
    }
    fn has_waiters(&self) -> bool {
        !self.0.stop.load(Ordering::SeqCst)
    }
}

#[test]
fn ms_running_dry_do_not_poll_beside_a_blocked_poller() {
    let hook = Arc::new(Counting::default());
    // SAFETY: the goroutines hold no thread-bound values.
    let rt = unsafe {
        gort_sched::Builder::new()
            .gomaxprocs(2)
            .idle_hook(Shared(hook.clone()))
            .build()
    }
    .unwrap();
    // Goroutines started from a plain thread one at a time: each wakes an M, which runs it,
    // runs dry and goes idle — while the runtime's other idle M waits in the hook.
    let ran = Arc::new(AtomicUsize::new(0));
    const N: usize = 5_000;
    for _ in 0..N {
        let ran = ran.clone();
        rt.go(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        std::thread::sleep(Duration::from_micros(50));
    }
    while ran.load(Ordering::SeqCst) < N {
        std::thread::sleep(Duration::from_millis(1));
    }
    hook.stop.store(true, Ordering::SeqCst);
    let (zero, beside, blocking) = (
        hook.zero.load(Ordering::SeqCst),
        hook.beside.load(Ordering::SeqCst),
        hook.blocking.load(Ordering::SeqCst),
    );
    drop(rt);
    eprintln!("{zero} zero-timeout polls, {beside} beside a blocked poll, {blocking} blocking");
    assert!(blocking > 0, "no M ever blocked in the hook");
    // A poll can begin just as another M enters its blocking one (the hint is read before),
    // so a few may overlap; polling each time an M runs dry would be thousands.
    assert!(
        beside < N / 50,
        "{beside} of {N} dry runs polled beside a blocked poller"
    );
}
