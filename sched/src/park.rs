//! The park / ready contract (Go's gopark / goready), yielding, `goexit` and `blocking`.
//!
//! # The contract other crates build on
//!
//! A goroutine waits by publishing a [`Goroutine`] handle to itself (from [`current`])
//! wherever its waker will find it, re-checking its condition, and calling [`park`]. A waker
//! makes the condition true and calls [`Goroutine::ready`]. The handle carries a one-shot
//! token, as `std::thread::park` / `Thread::unpark` do:
//!
//! * `ready` before `park`: the token is kept and `park` returns at once;
//! * several `ready`s before one `park` leave one token;
//! * `park` may return without a matching `ready` (a token left by an earlier wake-up), so
//!   callers always park in a loop around their condition;
//! * a handle outliving its goroutine is harmless: its `ready` does nothing.
//!
//! `ready` never blocks and may be called from any thread: on an M of the same runtime
//! holding a P, the goroutine goes to that P's `runnext` (it runs next, as in Go); otherwise
//! it goes to the global queue and an idle M is woken.

use crate::g::G;
use crate::m::{M, MNote, current_g, current_m};
use crate::parker::Parker;
use crate::sched::Shared;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

/// The payload of the unwind that [`goexit`] starts. [`JoinHandle::join`](crate::JoinHandle::join)
/// returns it as the error of a goroutine that called `goexit`.
#[derive(Debug)]
pub struct Goexit;

/// A handle to a goroutine, for waking it from another goroutine or thread.
#[derive(Clone)]
pub struct Goroutine {
    g: Arc<G>,
    generation: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Goroutine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Goroutine")
            .field("id", &self.g.id())
            .finish_non_exhaustive()
    }
}

/// A handle to the calling goroutine, or `None` on a plain thread.
pub fn current() -> Option<Goroutine> {
    let m = current_m();
    let g = current_g();
    if g.is_null() {
        return None;
    }
    // SAFETY: `g` is the running goroutine; the scheduler holds a strong reference to it
    // (its scheduling reference) for as long as it runs, so bumping the count is sound.
    let g = unsafe {
        Arc::increment_strong_count(g);
        Arc::from_raw(g)
    };
    let generation = g.state.generation();
    // SAFETY: `m` is this thread's live M (non-null since `g` is).
    let shared = unsafe { (*m).shared.clone() };
    Some(Goroutine {
        g,
        generation,
        shared,
    })
}

/// The calling goroutine's id, or `None` on a plain thread.
pub fn goid() -> Option<u64> {
    let g = current_g();
    // SAFETY: the running goroutine is alive while it runs.
    (!g.is_null()).then(|| unsafe { (*g).id() })
}

impl Goroutine {
    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        self.g.id()
    }

    /// The G this handle wakes (compared, never dereferenced, by its users).
    pub(crate) fn g_ptr(&self) -> *const G {
        Arc::as_ptr(&self.g)
    }

    /// Makes the goroutine runnable if it is parked, or leaves it a token if it is not.
    pub fn ready(&self) {
        if self.g.state.ready(self.generation) {
            enqueue_ready(&self.shared, NonNull::from(&*self.g));
            return;
        }
        // A goroutine parked without leaving its thread waits on its M's parker.
        // SeqCst fence: pairs with the one in `park_pinned` (token set here, waiter stored
        // there: at least one side sees the other).
        fence(Ordering::SeqCst);
        let w = self.g.pinned_waiter.load(Ordering::SeqCst);
        if !w.is_null() {
            // SAFETY: pinned waiters are parkers of Ms, kept alive by the runtime's
            // `notes` list for the life of `shared`, which our handle keeps alive.
            unsafe { (*w).unpark() };
        }
    }
}

/// A parked goroutine to wake without a handle: what [`ready_parked_here`] needs, read out of
/// a [`Goroutine`] before the handle may go away.
#[derive(Clone, Copy)]
pub(crate) struct ParkedRef {
    g: NonNull<G>,
    generation: u64,
    shared: *const Shared,
}

impl Goroutine {
    /// The raw parts of this handle, for [`ready_parked_here`].
    pub(crate) fn parked_ref(&self) -> ParkedRef {
        ParkedRef {
            g: NonNull::from(&*self.g),
            generation: self.generation,
            shared: Arc::as_ptr(&self.shared),
        }
    }
}

/// The channel hand-off's wake-up, when it can be done without a reference to the handle:
/// if the calling thread is an M of the goroutine's runtime holding a P, and the goroutine
/// is parked, takes it (so it cannot run yet), calls `publish`, and queues it on this P as
/// [`Goroutine::ready`] would. Returns `false` without calling `publish` otherwise (the
/// caller then takes the general path).
///
/// Whatever `publish` releases (the handle `r` was read from, the waiter's group) may be
/// freed once it returns: nothing but `r` is used after, and `r` only for the goroutine —
/// whose scheduling reference we hold from the moment we took it — and for comparing the
/// runtime with the calling M's own, which stays alive while the M runs.
#[inline(always)]
pub(crate) fn ready_parked_here(r: ParkedRef, publish: impl FnOnce()) -> bool {
    let m = current_m();
    if m.is_null() {
        return false;
    }
    // SAFETY: this thread's live M; no switch happens while we use it.
    let m = unsafe { &*m };
    if !m.has_p() || !std::ptr::eq(Arc::as_ptr(&m.shared), r.shared) {
        return false;
    }
    // SAFETY: the caller's handle (alive until `publish`) keeps the G allocated.
    if !unsafe { r.g.as_ref() }.state.ready_if_parked(r.generation) {
        return false;
    }
    publish();
    // We hold the G's scheduling reference now; the runtime is `m.shared`.
    enqueue_local(m, r.g);
    true
}

/// Queues a goroutine we hold the scheduling reference of on `m`'s P (which `m` holds, in
/// the goroutine's runtime): into `runnext`, so it runs next, as in Go.
#[inline(always)]
fn enqueue_local(m: &M, g: NonNull<G>) {
    if let Some(old) = m.p_ref().runq.put_next(g) {
        m.push_back(old);
    }
    m.shared.wakep_after_put_next();
}

/// Queues a goroutine that `GState::ready` just handed to us.
fn enqueue_ready(shared: &Arc<Shared>, g: NonNull<G>) {
    let m = current_m();
    if !m.is_null() {
        // SAFETY: this thread's live M; no switch happens while we use it.
        let m = unsafe { &*m };
        if m.has_p() && Arc::ptr_eq(&m.shared, shared) {
            enqueue_local(m, g);
            return;
        }
    }
    shared.global.push(g);
    shared.wakep();
}

/// Why a goroutine is parked, in Go's words (`goroutine 7 [chan receive]:`), for goroutine
/// dumps and the deadlock report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum WaitReason {
    /// A plain [`park`] with no reason given.
    Parked = 1,
    /// Waiting in a channel receive.
    ChanReceive,
    /// Waiting in a channel send.
    ChanSend,
    /// Waiting in a select.
    Select,
    /// Sleeping.
    Sleep,
    /// Waiting for a file descriptor (the netpoller).
    IoWait,
    /// Waiting for a `sync.Mutex`.
    SyncMutexLock,
    /// Waiting for a `sync.RWMutex` read lock.
    SyncRWMutexRLock,
    /// Waiting for a `sync.RWMutex` write lock.
    SyncRWMutexLock,
    /// Waiting on a `sync.WaitGroup`.
    SyncWaitGroupWait,
    /// Waiting on a `sync.Cond`.
    SyncCondWait,
    /// Waiting for a semaphore.
    SemAcquire,
    /// Joining another goroutine.
    Join,
}

impl WaitReason {
    const ALL: [WaitReason; 13] = [
        WaitReason::Parked,
        WaitReason::ChanReceive,
        WaitReason::ChanSend,
        WaitReason::Select,
        WaitReason::Sleep,
        WaitReason::IoWait,
        WaitReason::SyncMutexLock,
        WaitReason::SyncRWMutexRLock,
        WaitReason::SyncRWMutexLock,
        WaitReason::SyncWaitGroupWait,
        WaitReason::SyncCondWait,
        WaitReason::SemAcquire,
        WaitReason::Join,
    ];

    /// The reason stored as `reason as u8`, if it is one.
    pub(crate) fn from_u8(v: u8) -> Option<WaitReason> {
        WaitReason::ALL.into_iter().find(|r| *r as u8 == v)
    }

    /// Go's wording.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Parked => "parked",
            WaitReason::ChanReceive => "chan receive",
            WaitReason::ChanSend => "chan send",
            WaitReason::Select => "select",
            WaitReason::Sleep => "sleep",
            WaitReason::IoWait => "IO wait",
            WaitReason::SyncMutexLock => "sync.Mutex.Lock",
            WaitReason::SyncRWMutexRLock => "sync.RWMutex.RLock",
            WaitReason::SyncRWMutexLock => "sync.RWMutex.Lock",
            WaitReason::SyncWaitGroupWait => "sync.WaitGroup.Wait",
            WaitReason::SyncCondWait => "sync.Cond.Wait",
            WaitReason::SemAcquire => "semacquire",
            WaitReason::Join => "join",
        }
    }
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parks the calling goroutine until a [`Goroutine::ready`] for it (see the module docs:
/// returns at once when a token is waiting, and may return spuriously).
///
/// # Panics
/// On a plain thread: use `std::thread::park` there.
pub fn park() {
    park_for(WaitReason::Parked);
}

/// [`park`], recording why (shown in goroutine dumps and the deadlock report).
///
/// # Panics
/// On a plain thread.
#[inline]
pub fn park_for(reason: WaitReason) {
    let m = current_m();
    let g = if m.is_null() {
        std::ptr::null()
    } else {
        // SAFETY: a non-null current M is this thread's live M.
        unsafe { (*m).curg.get() }
    };
    if g.is_null() {
        panic!("runtime: park called outside a goroutine; use std::thread::park on threads");
    }
    // SAFETY: `g` is the running goroutine.
    let gr = unsafe { &*g };
    if gr.state.try_consume_token() {
        return;
    }
    // Relaxed: read only by dumps, which tolerate a stale reason.
    gr.wait_reason.store(reason as u8, Ordering::Relaxed);
    // SAFETY: `m` is this thread's live M.
    let has_p = unsafe { (*m).has_p() };
    if !has_p || pinned(gr) {
        park_pinned(m, gr, has_p);
        return;
    }
    // SAFETY: we are the goroutine running on `m`, which we do not use afterwards.
    unsafe { M::park_now(m) };
}

/// Whether goroutine `g` (the caller) must stay on its thread: it is unwinding a panic (std
/// counts panics per thread) or is locked to the thread (`lock_os_thread`).
#[inline]
fn pinned(g: &G) -> bool {
    g.locked.load(Ordering::Relaxed) != 0 || std::thread::panicking()
}

/// Parking a goroutine that must stay on its thread (`pinned`): it hands its P off and
/// waits on the M's own parker. Inside `blocking` (no P held) it just waits.
#[cold]
fn park_pinned(m: *const M, g: &G, has_p: bool) {
    // SAFETY: `m` is this thread's live M, and stays so: we do not leave the thread.
    let note: &MNote = unsafe { &(*m).note };
    let parker: *const Parker = &note.parker;
    g.pinned_waiter.store(parker.cast_mut(), Ordering::SeqCst);
    // SeqCst fence: pairs with the one in `Goroutine::ready`.
    fence(Ordering::SeqCst);
    let wait = || {
        while !g.state.try_consume_token() {
            // SAFETY: as above, the parker outlives this wait.
            unsafe { (*parker).park(None) };
        }
    };
    if has_p {
        blocking(wait);
    } else {
        wait();
    }
    g.pinned_waiter
        .store(std::ptr::null_mut(), Ordering::SeqCst);
}

/// Yields the processor: the calling goroutine goes to the back of its P's queue (Go's
/// `runtime.Gosched`). On a plain thread, yields the thread. While a panic unwinds it does
/// nothing, since an unwinding goroutine must stay on its thread.
pub fn gosched() {
    let m = current_m();
    let g = current_g();
    if g.is_null() {
        std::thread::yield_now();
        return;
    }
    // SAFETY: `m` is this thread's live M (non-null since a goroutine runs on it).
    if std::thread::panicking() || unsafe { !(*m).has_p() } {
        // Unwinding, or inside `blocking`: stay on this thread.
        std::thread::yield_now();
        return;
    }
    // SAFETY: the running goroutine is alive while it runs.
    if pinned(unsafe { &*g }) {
        // Locked to this thread: let the P's other goroutines run on another M meanwhile.
        blocking(std::thread::yield_now);
        return;
    }
    // SAFETY: we are the goroutine running on `m`, which we do not use afterwards.
    unsafe { M::yield_now(m) };
}

/// Yields because of a preempt request (a safepoint): like [`gosched`], but the goroutine
/// goes to the back of the global queue, as Go's preemption does, so that goroutines queued
/// there run before it comes back — yielding to the local queue let a preempted loop and
/// the local queue starve the global one for 61 rounds (over half a second at one yield per
/// 10 ms slice). A goroutine that must keep its thread yields as `gosched` does.
pub(crate) fn preempt_yield() {
    let m = current_m();
    let g = current_g();
    // SAFETY: `m` is this thread's live M when a goroutine runs on it.
    if g.is_null() || std::thread::panicking() || unsafe { !(*m).has_p() } || pinned(unsafe { &*g })
    {
        gosched();
        return;
    }
    // SAFETY: we are the goroutine running on `m`, which we do not use afterwards.
    unsafe { M::switch_out(m, crate::m::Action::Requeue) };
}

/// Ends the calling goroutine after running the destructors of its live frames (Go runs its
/// deferred calls). Implemented as an unwind with a [`Goexit`] payload, so a `catch_unwind`
/// between here and the goroutine's entry stops it, as `recover` would stop a panic in Go.
///
/// # Panics
/// On a plain thread (there is no goroutine to end).
pub fn goexit() -> ! {
    if current_g().is_null() {
        panic!("runtime: goexit called outside a goroutine");
    }
    std::panic::resume_unwind(Box::new(Goexit))
}

/// Runs `f`, which is expected to block in the OS (a blocking system call, a lock held
/// elsewhere), after handing the calling goroutine's P to another M, so the goroutine's
/// peers keep running (Go's `entersyscallblock`). Afterwards the goroutine takes an idle P,
/// or waits in the queue for one. On a plain thread, just runs `f`.
///
/// `f` stays on the calling thread: inside it, `park` and `gosched` wait or yield the thread
/// itself rather than switching goroutines.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    /// Takes a P back when `f` returns or unwinds.
    struct Reacquire(*const M);
    impl Drop for Reacquire {
        fn drop(&mut self) {
            // `f` ran on this thread, so `self.0` is still our M. A goroutine that must keep
            // its thread (unwinding, or locked to it) waits here for a P rather than being
            // requeued.
            // SAFETY: `self.0` is our live M and a goroutine runs on it (checked on entry);
            // we are that goroutine, and do not use the M afterwards.
            let pin = pinned(unsafe { &*(*self.0).curg.get() });
            // SAFETY: as above.
            unsafe { M::reacquire_p(self.0, pin) };
        }
    }
    let m = current_m();
    // SAFETY: `m` is this thread's live M when a goroutine runs on it.
    if current_g().is_null() || unsafe { !(*m).has_p() } {
        return f();
    }
    // SAFETY: as above; the reference ends before `f` runs.
    unsafe { (*m).hand_off_p() };
    let _reacquire = Reacquire(m);
    f()
}

/// Wires the calling goroutine to its current OS thread (Go's `runtime.LockOSThread`): until
/// as many [`unlock_os_thread`] calls as lock calls, it never runs on another thread, and no
/// other goroutine runs on this one. When it parks, its thread waits for it (its P goes to
/// another thread meanwhile). If it exits while still locked, the thread ends with it, as in
/// Go (the goroutine may have changed thread state: namespaces, signal masks,
/// thread-locals). While locked, `thread_local!` values and thread-bound guards are safe to
/// hold across scheduling points. On a plain thread it does nothing.
pub fn lock_os_thread() {
    let g = current_g();
    if !g.is_null() {
        // SAFETY: the running goroutine is alive while it runs; only it writes `locked`.
        let g = unsafe { &*g };
        let n = g.locked.load(Ordering::Relaxed);
        assert!(n < u32::MAX, "runtime: lock_os_thread nested too deeply");
        g.locked.store(n + 1, Ordering::Relaxed);
    }
}

/// Undoes one [`lock_os_thread`]; the goroutine may migrate again once every lock is undone.
/// An unlock without a lock does nothing (as in Go). On a plain thread it does nothing.
pub fn unlock_os_thread() {
    let g = current_g();
    if !g.is_null() {
        // SAFETY: as in `lock_os_thread`.
        let g = unsafe { &*g };
        let n = g.locked.load(Ordering::Relaxed);
        g.locked.store(n.saturating_sub(1), Ordering::Relaxed);
    }
}

/// Whether the calling goroutine is locked to its thread (false on a plain thread).
pub fn locked_to_thread() -> bool {
    let g = current_g();
    // SAFETY: as in `lock_os_thread`.
    !g.is_null() && unsafe { &*g }.locked.load(Ordering::Relaxed) != 0
}

/// Who is waiting: a goroutine or a plain thread.
pub(crate) enum Waiter {
    Goroutine(Goroutine),
    Thread(std::thread::Thread),
}

impl Waiter {
    pub(crate) fn current() -> Waiter {
        match current() {
            Some(g) => Waiter::Goroutine(g),
            None => Waiter::Thread(std::thread::current()),
        }
    }

    pub(crate) fn wake(self) {
        match self {
            Waiter::Goroutine(g) => g.ready(),
            Waiter::Thread(t) => t.unpark(),
        }
    }

    pub(crate) fn park_current(reason: WaitReason) {
        if current_g().is_null() {
            std::thread::park();
        } else {
            park_for(reason);
        }
    }
}
