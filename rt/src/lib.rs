//! gort: Go's runtime for Rust — goroutines, channels, `select!`, `sync`, timers, and a
//! `net` whose blocking calls park goroutines on an epoll / kqueue netpoller, behind Go's
//! vocabulary. The one import a user needs.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! // SAFETY: no goroutine holds a thread-bound value across a call that can park.
//! unsafe {
//!     gort::run(|| {
//!         let l = gort::net::TcpListener::bind("127.0.0.1:7000").unwrap();
//!         loop {
//!             let (mut c, _) = l.accept().unwrap();
//!             gort::go(move || {
//!                 let mut buf = [0u8; 4096];
//!                 while let Ok(n @ 1..) = c.read(&mut buf) {
//!                     if c.write_all(&buf[..n]).is_err() { break }
//!                 }
//!             });
//!         }
//!     })
//! }
//! ```
//!
//! # The facade
//!
//! The subsystems stay usable on their own (`gort-sched`, `gort-netpoll`, `gort-alloc`);
//! this crate re-exports the goroutine API ([`go`], [`chan`], [`select!`], [`sync`],
//! [`time`], [`blocking`], [`runtime`]) and adds what needs two of them at once: the
//! netpoller as the scheduler's idle hook, and [`net`].
//!
//! Starting it stays `unsafe` ([`run`], [`Builder::build`], [`Builder::run`]): goroutines
//! migrate between OS threads, so the caller promises what `gort_sched::Builder::build`
//! spells out (no thread-bound value held across a call that can park). No macro or wrapper
//! hides that `unsafe`.
//!
//! **Several runtimes per process** work: each has its own netpoller, and a socket belongs
//! to the poller of the runtime it was made in (found through the calling goroutine's idle
//! hook). A socket made on a plain thread, or in a goroutine of a bare `gort_sched` runtime,
//! belongs to a process-wide poller that one thread of its own drives; plain threads can do
//! blocking I/O on any socket (they park on the thread). A goroutine of one runtime may use a
//! socket of another, but the other runtime's deadlock detector does not count it.
//!
//! # The netpoller in the scheduler
//!
//! sched's idle path is one hook (`gort_sched::IdleHook`: `poll(timeout)`, `wake()`,
//! `has_waiters()`); [`Builder`] plugs in a `gort_netpoll::Poller` (`netpoller.rs`):
//!
//! - **Idle.** One idle M at a time blocks in `epoll_wait` with the earliest timer as its
//!   timeout (the poller shortens it to its earliest I/O deadline); other idle Ms park.
//!   Goroutines readied by that poll go to the global queue and a P is taken for them at
//!   once. New work, or a timer earlier than the poll's timeout, calls `wake()` (an
//!   eventfd write). An idle runtime with only timers pending therefore sleeps in the
//!   kernel until the earliest — no busy polling.
//! - **Busy.** An M about to steal polls with a zero timeout first when descriptors have
//!   waiters (Go's `findrunnable` order); every 61st scheduling round of every P
//!   (`find_runnable`'s fairness tick, also taken by the yield fast path) polls with a zero
//!   timeout while descriptors have waiters; and sched's sysmon polls when no M has for
//!   10 ms (Go's `sysmon` → `netpoll(0)`), so I/O and deadlines are noticed with every P
//!   busy, even behind goroutines that never yield. What a busy P's poll readies goes to its
//!   `runnext`; sysmon's goes to the global queue.
//! - **Deadlock.** `has_waiters()` is the poller's count of parked waiters: a goroutine
//!   waiting on a socket (which a peer or a deadline may wake) is not a deadlock; when
//!   nothing but parked goroutines with no I/O waits remain, `run` reports Go's
//!   `fatal error: all goroutines are asleep - deadlock!`.
//!
//! # Parking on a descriptor
//!
//! A goroutine waiting on a socket parks (its M runs other goroutines) through netpoll's
//! reserve / commit protocol: `Poller::io` reserves the descriptor's semaphore and calls our
//! `park` closure with a `Commit`; the closure publishes the goroutine's *waiter cell* and
//! parks until the cell's wake-up flag is set (`waiter.rs`, loom-checked). The cell is made
//! once per goroutine (a goroutine-local holding the goroutine's handle), so parking on a
//! descriptor allocates nothing: a wait is a reference-count increment and the semaphore's
//! compare-exchange. Readiness, a deadline or a close takes the waiter out of the semaphore
//! with one read-modify-write and wakes it — exactly once, netpoll's guarantee — by setting
//! the flag and readying the goroutine (into the waker's `runnext`, or the global queue from
//! the idle M). A spurious return from `park` (a token left by an earlier wake-up) finds the
//! flag clear and parks again.
//!
//! A TCP read that leaves the receive queue empty — a short read, or on Linux one the kernel
//! reports so through `TCP_INQ` (a read of exactly the size asked for) — lets the next read
//! park before trying, instead of first failing with `EAGAIN`: a request / response
//! exchange makes one `recv` per message rather than two (netpoll's `io_stream_hinted`).
//!
//! # Time and blocking work
//!
//! [`time`] is sched's `sleep` / `after` / `tick` / `Timer` / `Ticker`: timers live in per-P
//! heaps; the idle M's poll sleeps until the earliest. Work that blocks in the kernel and
//! cannot be polled — files, `std::process`, name resolution — goes through [`blocking`],
//! which hands the goroutine's P to another M for the call (`net` resolves names this way).
//!
//! # Faults
//!
//! Building a runtime ignores SIGPIPE (a write to a closed peer is `BrokenPipe`, never a
//! killed process). Accept errors such as EMFILE are returned, not retried. Deadlines in
//! the past fail at once with `TimedOut`; a socket closed by one goroutine wakes the others
//! blocked on it with Go's "use of closed network connection".
//!
//! # What is missing
//!
//! The collector's wiring (`gc`, `read_mem_stats`) is a later issue.
#![deny(unsafe_op_in_unsafe_fn)]

mod loom;
pub mod net;
mod netpoller;
pub mod runtime;
mod waiter;

pub use gort_sched::chan::{Receiver, Sender, chan};
pub use gort_sched::{
    GoroutineLocal, JoinHandle, Runtime, SpawnError, blocking, go, goexit, gosched, select, spawn,
};

/// Go's `sync`: `Mutex`, `RwLock`, `WaitGroup`, `Once`, `Cond`, `Semaphore`.
pub mod sync {
    pub use gort_sched::sync::*;
}

/// Go's `time`: `sleep`, `after`, `tick`, `Timer`, `Ticker` (goroutines park; an idle
/// runtime sleeps in the netpoller until the earliest timer).
pub mod time {
    pub use gort_sched::time::*;
    pub use std::time::{Duration, Instant};
}

/// Channels and their errors (`gort::chan` makes one).
pub mod channel {
    pub use gort_sched::chan::*;
}

use netpoller::{NetHook, NetPoller};
use std::sync::Arc;

/// Why a [`Builder`] could not build a runtime.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The scheduler refused the configuration.
    Sched(gort_sched::BuildError),
    /// The netpoller could not be created (e.g. EMFILE: out of descriptors).
    Poller(std::io::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Sched(e) => e.fmt(f),
            BuildError::Poller(e) => write!(f, "cannot create the netpoller: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Configures a gort runtime: the scheduler with the netpoller as its idle hook.
#[derive(Debug)]
pub struct Builder {
    sched: gort_sched::Builder,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: GOMAXPROCS from the `GOMAXPROCS` environment variable when it is a positive
    /// integer (Go's rule: anything else — empty, zero, negative, `+2`, spaces, overflow — is
    /// ignored; see [`runtime::parse_gomaxprocs`]), else the CPU count; 256 KiB stacks.
    pub fn new() -> Builder {
        Builder {
            sched: gort_sched::Builder::new(),
        }
    }

    /// Number of Ps (clamped to `1..=1024`).
    pub fn gomaxprocs(mut self, n: usize) -> Builder {
        self.sched = self.sched.gomaxprocs(n);
        self
    }

    /// Virtual size of each goroutine stack (see `gort_sched::Builder::stack_size`).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.sched = self.sched.stack_size(bytes);
        self
    }

    /// Most OS threads the runtime may run at once (Go's `debug.SetMaxThreads`).
    pub fn max_threads(mut self, n: usize) -> Builder {
        self.sched = self.sched.max_threads(n);
        self
    }

    fn with_poller(self) -> Result<gort_sched::Builder, BuildError> {
        ignore_sigpipe();
        let poller = Arc::new(NetPoller::new().map_err(BuildError::Poller)?);
        Ok(self.sched.idle_hook(NetHook { poller }))
    }

    /// Builds the runtime. No thread starts until the first goroutine does.
    ///
    /// # Safety
    /// As `gort_sched::Builder::build`: goroutines migrate between OS threads, so no
    /// goroutine may hold a thread-bound value (a `thread_local!` reference, a reentrant
    /// lock's guard, a `!Send` value shared with its thread) across a call that can park or
    /// yield — every channel, lock, sleep and socket call. Use [`GoroutineLocal`] instead of
    /// `thread_local!`.
    pub unsafe fn build(self) -> Result<Runtime, BuildError> {
        let b = self.with_poller()?;
        // SAFETY: forwarded to our caller.
        unsafe { b.build() }.map_err(BuildError::Sched)
    }

    /// Builds the runtime and runs `main` as goroutine 1, as [`run`] does.
    ///
    /// # Safety
    /// As [`Builder::build`].
    pub unsafe fn run<F, T>(self, main: F) -> Result<T, BuildError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let b = self.with_poller()?;
        // SAFETY: forwarded to our caller.
        unsafe { b.run(main) }.map_err(BuildError::Sched)
    }
}

/// Runs `main` as the first goroutine of a new runtime with the default configuration and
/// returns its value; the program ends when `main` returns, whatever other goroutines do
/// (Go's `main`). A panic in `main` prints Go's report and exits with status 2; when every
/// goroutine is blocked and nothing — no socket, timer or outside thread — can wake one, the
/// process prints `fatal error: all goroutines are asleep - deadlock!` and exits with status 2.
///
/// # Safety
/// As [`Builder::build`].
pub unsafe fn run<F, T>(main: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: forwarded to our caller.
    match unsafe { Builder::new().run(main) } {
        Ok(v) => v,
        Err(e) => panic!("runtime: {e}"),
    }
}

/// A write to a closed peer must be `BrokenPipe`, never a killed process.
fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; it is
        // process-wide and idempotent, which is what we want.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    });
}
