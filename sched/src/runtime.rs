//! The runtime handle: `Builder`, `Runtime`, `run`, and the Go-API functions that need one.

use crate::idle::{FutexIdle, IdleHook};
use crate::m::current_m;
use crate::park::current;
use crate::sched::{MAX_PROCS, Shared, ThreadLimits};
use crate::spawn::{JoinHandle, SpawnError, spawn_on, start};
use crate::stack::{MAX_STACK_SIZE, MIN_STACK_SIZE, page_size};
use crate::sysmon::SysmonStats;
use crate::world::WorldStopped;
use std::sync::Arc;
use std::time::Duration;

/// Default virtual size of a goroutine stack (only touched pages cost memory).
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Default cap on the runtime's OS threads (Go's default for `debug.SetMaxThreads`).
pub const DEFAULT_MAX_THREADS: usize = 10_000;

/// Default time a surplus idle OS thread lingers before exiting (`Builder::idle_thread_exit`).
pub const DEFAULT_IDLE_THREAD_EXIT: Duration = Duration::from_secs(2);

/// Why a `Builder` refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// The requested stack size is outside `[MIN_STACK_SIZE, MAX_STACK_SIZE]`.
    StackSize {
        /// What was asked for.
        requested: usize,
        /// Smallest accepted size.
        min: usize,
        /// Largest accepted size.
        max: usize,
    },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::StackSize {
                requested,
                min,
                max,
            } => write!(
                f,
                "goroutine stack size {requested} bytes is out of range: choose between \
                 {min} and {max} bytes"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Parses a `GOMAXPROCS` value exactly as Go does (its `atoi32`): an optional `-` and one or
/// more ASCII digits whose value fits an `i32`. A positive value is the answer (clamped to
/// [`MAX_PROCS`]); anything else — zero, negative, `+1`, surrounding spaces, overflow —
/// is `None`: use the CPU count.
pub fn parse_gomaxprocs(value: &str) -> Option<usize> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: i64 = 0;
    for b in digits.bytes() {
        n = n * 10 + i64::from(b - b'0');
        if n > i64::from(i32::MAX) + i64::from(negative) {
            return None; // does not fit an i32
        }
    }
    if negative || n == 0 {
        return None;
    }
    Some((n as usize).min(MAX_PROCS))
}

/// Configures a [`Runtime`].
pub struct Builder {
    procs: Option<usize>,
    stack_size: usize,
    threads: ThreadLimits,
    hook: Option<Box<dyn IdleHook>>,
    on_p_retire: Option<PRetireHook>,
}

/// What `Builder::on_p_retire` installs.
pub(crate) type PRetireHook = Box<dyn Fn(usize) + Send + Sync>;

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("procs", &self.procs)
            .field("stack_size", &self.stack_size)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: GOMAXPROCS from the `GOMAXPROCS` environment variable when it holds a positive
    /// integer, else the number of CPUs; 256 KiB stacks; the futex idle hook.
    pub fn new() -> Builder {
        let procs = std::env::var("GOMAXPROCS")
            .ok()
            .and_then(|v| parse_gomaxprocs(&v));
        Builder {
            procs,
            stack_size: DEFAULT_STACK_SIZE,
            threads: ThreadLimits {
                max: DEFAULT_MAX_THREADS,
                idle_exit_after: DEFAULT_IDLE_THREAD_EXIT,
            },
            hook: None,
            on_p_retire: None,
        }
    }

    /// Number of Ps; clamped to `1..=MAX_PROCS` (1024).
    pub fn gomaxprocs(mut self, n: usize) -> Builder {
        self.procs = Some(n.clamp(1, MAX_PROCS));
        self
    }

    /// Virtual size of each goroutine stack, rounded up to whole pages; must lie within
    /// `[MIN_STACK_SIZE, MAX_STACK_SIZE]` (32 KiB .. 1 GiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Most OS threads (Ms) the runtime may run at once (Go's `debug.SetMaxThreads`, default
    /// 10000). Starting one more is fatal: `fatal error: thread exhaustion`. At least 1.
    pub fn max_threads(mut self, n: usize) -> Builder {
        self.threads.max = n.max(1);
        self
    }

    /// How long an idle OS thread (M) waits to be given work before it exits, when more than
    /// a small reserve (4) of idle Ms exists (default 2 s). A burst of [`blocking`]
    /// calls starts an M per call; this bounds how long their threads outlive the burst.
    ///
    /// [`blocking`]: crate::blocking
    pub fn idle_thread_exit(mut self, after: Duration) -> Builder {
        self.threads.idle_exit_after = after;
        self
    }

    /// Installs `f`, called with a P's id on the thread holding it just before that thread
    /// gives it up for a while: a spare P going back to the pool (its loan ended), or a P
    /// beyond GOMAXPROCS retiring. The holder is the only thread that may touch the P's state,
    /// so this is where per-P state kept elsewhere — an allocation cache, a barrier buffer,
    /// indexed by P id — is flushed. `f` runs on a scheduler stack between goroutines: it
    /// must not park or yield. A P that is idle when a shrink retires it has no holder and
    /// is not reported: [`Runtime::for_each_p`] reaches it (and every other P).
    pub fn on_p_retire(mut self, f: impl Fn(usize) + Send + Sync + 'static) -> Builder {
        self.on_p_retire = Some(Box::new(f));
        self
    }

    /// Replaces the default idle hook (the netpoller plugs in here).
    pub fn idle_hook(mut self, hook: impl IdleHook) -> Builder {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Builds the runtime. No thread starts until the first goroutine does.
    ///
    /// # Safety
    /// Goroutines of this runtime migrate between OS threads whenever they park or yield, and
    /// Rust assumes a function never changes thread. The caller promises that no goroutine
    /// started on this runtime holds a thread-bound value across a call that can park or
    /// yield (`gosched`, `park`, `join`, any channel or lock operation of the runtime):
    ///
    /// * a reference into a `thread_local!` (`LocalKey::with` borrows, `thread_rng()`'s
    ///   handle, anything whose address came from thread-local storage — the compiler may also
    ///   cache such an address across the call);
    /// * a guard of a lock that must be released on the thread that took it (a reentrant
    ///   mutex such as `Stdout::lock()`, a pthread mutex);
    /// * a `!Send` value shared with code that stays on the original thread.
    ///
    /// An `Rc` or `RefCell` private to the goroutine is fine: it moves with its goroutine.
    /// For example, this is undefined behaviour, because after `gosched` the goroutine may run
    /// on another thread while a second goroutine uses the same generator on the first one:
    ///
    /// ```ignore
    /// thread_local!(static RNG: RefCell<u64> = RefCell::new(1));
    /// RNG.with(|r| { let mut b = r.borrow_mut(); gort_sched::gosched(); *b += 1; });
    /// ```
    ///
    /// Use [`GoroutineLocal`](crate::GoroutineLocal) instead of `thread_local!`.
    pub unsafe fn build(self) -> Result<Runtime, BuildError> {
        let page = page_size();
        let size = self.stack_size.div_ceil(page) * page;
        if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&self.stack_size) {
            return Err(BuildError::StackSize {
                requested: self.stack_size,
                min: MIN_STACK_SIZE,
                max: MAX_STACK_SIZE,
            });
        }
        let procs = self
            .procs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let hook = self.hook.unwrap_or_else(|| Box::new(FutexIdle::default()));
        let shared = Arc::new(Shared::new(
            procs,
            size,
            self.threads,
            hook,
            self.on_p_retire,
        ));
        Ok(Runtime { shared })
    }

    /// Builds the runtime and runs `main` in it as [`run`] does (goroutine 1, deadlock
    /// detection, `main` ends the program), with this configuration.
    ///
    /// # Safety
    /// As [`Builder::build`].
    pub unsafe fn run<F, T>(self, main: F) -> Result<T, BuildError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // SAFETY: forwarded to our caller.
        let rt = unsafe { self.build() }?;
        rt.shared
            .detect_deadlock
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let h = match crate::spawn::spawn_main(&rt.shared, main) {
            Ok(h) => h,
            Err(e) => panic!("runtime: {e}"),
        };
        match h.join() {
            Ok(v) => Ok(v),
            // `spawn_main` ends the process on a panic and never completes after a goexit.
            Err(_) => unreachable!("runtime: main goroutine completed with an error"),
        }
    }
}

/// A running scheduler: Ps, Ms and goroutines. Dropping it shuts it down.
///
/// Shutting down stops Ms at their next scheduling point. Goroutines still running or
/// parked are abandoned, as when a Go program's `main` returns; their stacks stay mapped.
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("shared", &self.shared)
            .finish()
    }
}

impl Runtime {
    /// Starts `f` as a goroutine and returns a handle to join it.
    pub fn spawn<F, T>(&self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_on(&self.shared, f)
    }

    /// Starts `f` as a goroutine (Go's `go`); returns its id.
    pub fn go<F>(&self, f: F) -> Result<u64, SpawnError>
    where
        F: FnOnce() + Send + 'static,
    {
        start(&self.shared, crate::entry::Entry::new(f))
    }

    /// Runs `f` as a goroutine and waits for it, returning its value or resuming its panic
    /// on the calling thread.
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let h = match self.spawn(f) {
            Ok(h) => h,
            Err(e) => panic!("runtime: {e}"),
        };
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Sets GOMAXPROCS (0 only queries) and returns the previous value. Values above
    /// `MAX_PROCS` (1024) are clamped. A shrink returns once the retired Ps' goroutines have
    /// moved off them, which waits for those goroutines to reach a scheduling point.
    pub fn gomaxprocs(&self, n: usize) -> usize {
        set_gomaxprocs(&self.shared, n)
    }

    /// Number of goroutines that exist now.
    pub fn num_goroutine(&self) -> usize {
        self.shared.num_goroutine()
    }

    /// Stops the world: returns once no goroutine of this runtime runs (except the caller,
    /// when it is one) — each P's holder stopped at a safepoint or between goroutines, or
    /// its thread suspended by signal with its registers saved. The world restarts when the
    /// returned guard is started or dropped. `reason` names the stop in diagnostics (Go's
    /// `stopTheWorld(reason)`). Stops are serialised: a second caller waits for the first
    /// to restart.
    ///
    /// See [`WorldStopped`] for what the caller may do meanwhile.
    pub fn stop_the_world(&self, reason: &'static str) -> WorldStopped<'_> {
        let _ = reason;
        WorldStopped::stop(&self.shared)
    }

    /// Holds goroutine `id` still so that its stack can be scanned (Go's `suspendG`), and
    /// returns `None` when no such goroutine exists (or it is the caller). A parked goroutine
    /// is held by its park word — whoever readies it waits until the hold ends; a running
    /// one by stopping the one P it runs on (its holder answers at a safepoint or is
    /// suspended by signal, registers saved); one that stays queued (runnable) through
    /// repeated attempts, by stopping the world. The rest of the program keeps running in
    /// the first two cases. Released when the returned guard drops.
    pub fn suspend_goroutine(&self, id: u64) -> Option<crate::world::SuspendedGoroutine<'_>> {
        crate::world::SuspendedGoroutine::suspend(&self.shared, id)
    }

    /// Runs `f` with the id of every P (regular and spare) while that P's owner is stopped
    /// — at a safepoint, between goroutines, or suspended by signal when it does not answer
    /// — one P at a time, so the rest of the program keeps running. This is how work that
    /// must happen on every P (flushing a per-P cache or buffer) is done without two threads
    /// ever touching one P's state.
    pub fn for_each_p(&self, f: impl FnMut(usize)) {
        crate::world::for_each_p(&self.shared, f);
    }

    /// Installs (or with `None` removes) the hook that tells the suspension handler whether
    /// the interrupted thread is inside a window of another subsystem — an allocation between
    /// claiming a slot and publishing it, a barrier-buffer append, a handle push (their
    /// `busy` words) — in which case the suspension is deferred and retried a few
    /// microseconds later. Process-wide; the facade installs it.
    ///
    /// # Safety
    /// `hook` runs inside a signal handler on any thread of any runtime: it must be
    /// async-signal-safe (atomics, pre-allocated memory and `const`-initialised
    /// thread-locals only: no allocation, lock or printing) and must never panic.
    pub unsafe fn set_busy_hook(hook: Option<fn() -> bool>) {
        // SAFETY: forwarded contract.
        #[cfg(not(loom))]
        unsafe {
            crate::suspend::set_busy_hook(hook)
        }
        #[cfg(loom)]
        let _ = hook;
    }

    /// What sysmon has done so far (preempt requests, spare Ps lent, idle-hook polls).
    pub fn sysmon_stats(&self) -> SysmonStats {
        self.shared.sysmon.stats()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops the runtime (idempotent); later spawns fail with [`SpawnError::Shutdown`].
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}

fn set_gomaxprocs(shared: &Arc<Shared>, n: usize) -> usize {
    if n == 0 {
        return shared.procs();
    }
    let old = shared.set_procs(n);
    if n > old {
        shared.wakep();
    } else if n < old {
        shared.wait_retired(current().is_some());
    }
    old
}

fn calling_shared(what: &str) -> Arc<Shared> {
    let m = current_m();
    if m.is_null() {
        panic!("runtime: {what} called outside a goroutine; use the Runtime handle's method");
    }
    // SAFETY: this thread's live M.
    unsafe { (*m).shared.clone() }
}

/// Registers the calling code as a thread outside the runtime that may ready goroutines
/// (through [`Goroutine::ready`](crate::Goroutine::ready)), for as long as the guard lives:
/// while one exists, `run`'s deadlock detector never reports a deadlock. Move the guard into
/// the thread that does the readying.
///
/// # Panics
/// Outside a goroutine.
pub fn foreign_thread() -> ForeignThread {
    let shared = calling_shared("foreign_thread");
    shared
        .foreign_threads
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ForeignThread { shared }
}

/// See [`foreign_thread`].
pub struct ForeignThread {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ForeignThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignThread").finish_non_exhaustive()
    }
}

impl Drop for ForeignThread {
    fn drop(&mut self) {
        self.shared
            .foreign_threads
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Go's `runtime.GOMAXPROCS` for the calling goroutine's runtime: sets it (0 only queries)
/// and returns the previous value.
///
/// # Panics
/// Outside a goroutine: use [`Runtime::gomaxprocs`].
pub fn gomaxprocs(n: usize) -> usize {
    set_gomaxprocs(&calling_shared("gomaxprocs"), n)
}

/// Go's `runtime.NumGoroutine` for the calling goroutine's runtime.
///
/// # Panics
/// Outside a goroutine: use [`Runtime::num_goroutine`].
pub fn num_goroutine() -> usize {
    calling_shared("num_goroutine").num_goroutine()
}

/// Builds a runtime with the defaults, runs `main` as its first goroutine (goroutine 1), and
/// when `main` returns shuts the runtime down and returns `main`'s value — whatever the
/// other goroutines are doing, as a Go program ends when its `main` returns.
///
/// As in Go:
/// * a panic escaping `main` prints `panic: <message>`, a blank line and
///   `goroutine 1 [running]:`, and exits the process with status 2;
/// * `goexit` in `main` ends only the main goroutine: the others keep running, and when none
///   is left the process prints `fatal error: no goroutines (main called runtime.Goexit) -
///   deadlock!` and exits with status 2;
/// * when every goroutine is parked and nothing can ready one — no M is running or inside
///   [`blocking`](crate::blocking), the idle hook has no waiters, no [`ForeignThread`] is
///   registered and no goroutine waits on another runtime — the process prints
///   `fatal error: all goroutines are asleep - deadlock!` and exits with status 2.
///
/// # Safety
/// As [`Builder::build`]: no goroutine of the runtime may hold a thread-bound value across a
/// call that can park or yield.
pub unsafe fn run<F, T>(main: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: forwarded to our caller.
    unsafe { Builder::new().run(main) }.expect("runtime: the default configuration is valid")
}

/// Plain threads blocked right now in one of the runtime's primitives (a channel operation),
/// across all runtimes. Such a thread may be woken by a goroutine and then feed goroutines in
/// turn, so while any exists no runtime reports a deadlock (the detectors read it; a
/// conservative rule: no false reports, at the price of missing a deadlock that involves a
/// blocked thread).
pub(crate) static BLOCKED_THREADS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Counts the calling plain thread in [`BLOCKED_THREADS`] while it lives.
#[derive(Debug)]
pub(crate) struct BlockedThread(());

impl BlockedThread {
    pub(crate) fn enter() -> BlockedThread {
        // SeqCst: read by `check_deadlock`.
        BLOCKED_THREADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        BlockedThread(())
    }
}

impl Drop for BlockedThread {
    fn drop(&mut self) {
        BLOCKED_THREADS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
