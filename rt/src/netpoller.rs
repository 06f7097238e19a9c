//! The netpoller as the scheduler's idle hook, the poller a socket belongs to, and the
//! `park` closure that parks a goroutine (or thread) on a poll descriptor.

use crate::waiter::{GWaiter, WaitCell};
use gort_netpoll::{Commit, Poller};
use gort_sched::{GoroutineLocal, IdleHook};
use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The poller type of the facade: goroutines (and plain threads) park on it.
pub(crate) type NetPoller = Poller<GWaiter>;

/// sched's idle hook, backed by a netpoller: the idle M sleeps in `epoll_wait` with the
/// earliest timer as timeout (shortened by the poller to its earliest I/O deadline), `wake`
/// writes the poller's eventfd, and descriptors with parked goroutines count as waiters
/// for the deadlock detector.
#[derive(Debug)]
pub(crate) struct NetHook {
    pub(crate) poller: Arc<NetPoller>,
}

impl IdleHook for NetHook {
    fn poll(&self, timeout: Option<Duration>) {
        // Errors (EINTR from a signal) just end this poll: the M looks for work and comes
        // back.
        let _ = self.poller.poll(timeout);
    }

    fn wake(&self) {
        self.poller.wake();
    }

    fn has_waiters(&self) -> bool {
        self.poller.has_waiters()
    }

    fn as_any(&self) -> Option<&(dyn Any + Send + Sync)> {
        Some(self)
    }
}

/// The poller for a socket made by the calling code: its runtime's, when it runs in a
/// goroutine of a `gort` runtime; else the process-wide fallback poller, which a thread of
/// its own drives (plain threads, and goroutines of a bare `gort_sched` runtime).
pub(crate) fn current_poller() -> Arc<NetPoller> {
    let own = gort_sched::with_idle_hook(|h| {
        h.as_any()
            .and_then(|a| a.downcast_ref::<NetHook>())
            .map(|n| n.poller.clone())
    })
    .flatten();
    own.unwrap_or_else(fallback_poller)
}

/// The process-wide poller for code outside a `gort` runtime, driven by one thread that
/// polls without a timeout (woken by new deadlines, like any poll).
fn fallback_poller() -> Arc<NetPoller> {
    static FALLBACK: OnceLock<Arc<NetPoller>> = OnceLock::new();
    FALLBACK
        .get_or_init(|| {
            let p =
                Arc::new(NetPoller::new().unwrap_or_else(|e| {
                    panic!("runtime: cannot create the fallback netpoller: {e}")
                }));
            let driver = p.clone();
            std::thread::Builder::new()
                .name("gort-netpoll".into())
                .spawn(move || {
                    loop {
                        let _ = driver.poll(None);
                    }
                })
                .unwrap_or_else(|e| panic!("runtime: cannot start the netpoll thread: {e}"));
            p
        })
        .clone()
}

/// The calling party's waiter cell, made on its first wait and kept for its life (the
/// shim's `Arc`, the type the loom model of `waiter.rs` checks).
static CELL: GoroutineLocal<crate::loom::Arc<WaitCell>> =
    GoroutineLocal::new(|| crate::loom::Arc::new(WaitCell::for_current()));

/// The `park` closure handed to `Poller::io` / `wait`: publish this party's cell and, if the
/// commit succeeded, park until woken (a goroutine gives its M to other goroutines).
pub(crate) fn park(c: Commit<'_, GWaiter>) {
    let cell = CELL.with(crate::loom::Arc::clone);
    if c.commit(GWaiter(cell.clone())).is_ok() {
        cell.wait();
    }
}
